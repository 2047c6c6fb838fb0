"""The getgpt server: the GetGpt protocol endpoint, an OpenAI-compatible gateway, pluggable backends.

>>> from getgpt.server import ServerConfig, create_app
>>> app = create_app(ServerConfig(backend="echo"))  # an ASGI app: uvicorn.run(app)

Needs the ``server`` extra: ``pip install 'getgpt[server]'``. Names load on first use, so the CLI can
read :mod:`getgpt.server.config` without loading Starlette.
"""

from typing import TYPE_CHECKING

from .._lazy import exported, lazy_exports

if TYPE_CHECKING:  # the names below, for type checkers; at run time they load on first use
    from .api_error import ApiError as ApiError
    from .app import ChatCheck as ChatCheck
    from .app import GetGptApp as GetGptApp
    from .app import RequestCheck as RequestCheck
    from .app import create_app as create_app
    from .config import ServerConfig as ServerConfig

_EXPORTS = {
    ".api_error": ("ApiError",),
    ".app": ("ChatCheck", "GetGptApp", "RequestCheck", "create_app"),
    ".config": ("ServerConfig",),
}
__all__ = exported(_EXPORTS)  # noqa: PLE0605 -- from the one table above
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
