"""The getgpt server: the GetGpt protocol endpoint, an OpenAI-compatible gateway, pluggable backends.

>>> from getgpt.server import ServerConfig, create_app
>>> app = create_app(ServerConfig(backend="echo"))  # an ASGI app: uvicorn.run(app)

Needs the ``server`` extra: ``pip install 'getgpt[server]'``. Names load on first use, so the CLI can
read :mod:`getgpt.server.config` without loading Starlette.
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .api_error import ApiError
    from .app import ChatCheck, GetGptApp, RequestCheck, create_app
    from .config import ServerConfig

__all__ = ["ApiError", "ChatCheck", "GetGptApp", "RequestCheck", "ServerConfig", "create_app"]

_HOMES = {
    "ApiError": ".api_error",
    **dict.fromkeys(("ChatCheck", "GetGptApp", "RequestCheck", "create_app"), ".app"),
    "ServerConfig": ".config",
}


__getattr__, __dir__ = lazy_exports(__name__, globals(), _HOMES)
