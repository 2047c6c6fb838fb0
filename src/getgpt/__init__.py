"""getgpt: the GetGpt chat protocol -- a fast sync and async client, a server, a CLI.

>>> import getgpt
>>> with getgpt.Client("http://127.0.0.1:8000/") as client:
...     for piece in client.stream([{"role": "user", "content": "Hi"}]):
...         print(piece, end="")
"""

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
    GetGptError,
    IncompleteStream,
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
    "GetGptError",
    "IncompleteStream",
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
