"""The getgpt server: the GetGpt protocol endpoint, an OpenAI-compatible gateway, pluggable backends.

>>> from getgpt.server import ServerConfig, create_app
>>> app = create_app(ServerConfig(backend="echo"))  # an ASGI app: uvicorn.run(app)

Needs the ``server`` extra: ``pip install 'getgpt[server]'``. Names load on first use, so the CLI can
read :mod:`getgpt.server.config` without loading Starlette.
"""

from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
