"""The getgpt server: the GetGpt protocol endpoint, an OpenAI-compatible gateway, pluggable backends.

>>> from getgpt.server import ServerConfig, create_app
>>> app = create_app(ServerConfig(backend="echo"))  # an ASGI app: uvicorn.run(app)

Needs the ``server`` extra: ``pip install 'getgpt[server]'``.
"""

from .api_error import ApiError
from .app import ChatCheck, GetGptApp, RequestCheck, create_app
from .config import ServerConfig

__all__ = ["ApiError", "ChatCheck", "GetGptApp", "RequestCheck", "ServerConfig", "create_app"]
