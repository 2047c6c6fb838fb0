"""getgpt: the GetGpt chat protocol -- a fast sync and async client, a server, a CLI.

>>> import getgpt
>>> with getgpt.Client("http://127.0.0.1:8000/") as client:
...     for piece in client.stream([{"role": "user", "content": "Hi"}]):
...         print(piece, end="")
"""

from typing import TYPE_CHECKING

from ._lazy import lazy_exports

if TYPE_CHECKING:
    from ._client import (
        DEFAULT_BASE_URL,
        DEFAULT_TIMEOUT,
        AsyncChatStream,
        AsyncClient,
        ChatStream,
        Client,
    )
    from .completion import ChatCompletion
    from .envelope import decrypt, encrypt
    from .errors import (
        CloudflareBlocked,
        ConnectError,
        GetGptError,
        IncompleteStream,
        LimitExceeded,
        ProtocolError,
        RateLimitError,
        RemoteError,
        SignatureError,
        StatusError,
        Timeout,
        TransportError,
        ValidationError,
    )
    from .reply import Reply, ReplyParser, Usage
    from .request import ChatRequest, Message, build_request, parse_request
    from .sse import SSEDecoder

# The one place the version is written: the build backend reads it from here (pyproject.toml,
# [tool.hatch.version]), so an installed wheel's metadata and a source checkout agree.
__version__ = "0.1.0"

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_TIMEOUT",
    "AsyncChatStream",
    "AsyncClient",
    "ChatCompletion",
    "ChatRequest",
    "ChatStream",
    "Client",
    "CloudflareBlocked",
    "ConnectError",
    "GetGptError",
    "IncompleteStream",
    "LimitExceeded",
    "Message",
    "ProtocolError",
    "RateLimitError",
    "RemoteError",
    "Reply",
    "ReplyParser",
    "SSEDecoder",
    "SignatureError",
    "StatusError",
    "Timeout",
    "TransportError",
    "Usage",
    "ValidationError",
    "__version__",
    "build_request",
    "decrypt",
    "encrypt",
    "parse_request",
]

# Names load on first use (PEP 562), so `getgpt --help` and tools that need one corner of the
# package do not pay for httpx and the rest at start-up.
_HOMES = {
    **dict.fromkeys(
        ("DEFAULT_BASE_URL", "DEFAULT_TIMEOUT", "AsyncChatStream", "AsyncClient", "ChatStream", "Client"),
        "._client",
    ),
    "ChatCompletion": ".completion",
    **dict.fromkeys(("decrypt", "encrypt"), ".envelope"),
    **dict.fromkeys(
        (
            "CloudflareBlocked",
            "ConnectError",
            "GetGptError",
            "IncompleteStream",
            "LimitExceeded",
            "ProtocolError",
            "RateLimitError",
            "RemoteError",
            "SignatureError",
            "StatusError",
            "Timeout",
            "TransportError",
            "ValidationError",
        ),
        ".errors",
    ),
    **dict.fromkeys(("Reply", "ReplyParser", "Usage"), ".reply"),
    **dict.fromkeys(("ChatRequest", "Message", "build_request", "parse_request"), ".request"),
    "SSEDecoder": ".sse",
}


__getattr__, __dir__ = lazy_exports(__name__, globals(), _HOMES)
