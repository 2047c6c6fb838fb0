"""getgpt: the GetGpt chat protocol -- a fast sync and async client, a server, a CLI.

>>> import getgpt
>>> with getgpt.Client("http://127.0.0.1:8000/") as client:
...     for piece in client.stream([{"role": "user", "content": "Hi"}]):
...         print(piece, end="")

The layers are folders: :mod:`getgpt.protocol` (the wire format, sans-IO), :mod:`getgpt.client`
(the clients), :mod:`getgpt.server`, :mod:`getgpt.cli.commands`, :mod:`getgpt.checks`,
:mod:`getgpt.integrations` and :mod:`getgpt.providers` (the seed's module face).
"""

from typing import TYPE_CHECKING

from . import _moved
from ._lazy import exported, lazy_exports
from .protocol import errors as _errors  # the error tree: a small module, standard library only

if TYPE_CHECKING:  # the names below, for type checkers; at run time they load on first use
    from .client import DEFAULT_BASE_URL as DEFAULT_BASE_URL
    from .client import DEFAULT_TIMEOUT as DEFAULT_TIMEOUT
    from .client import AsyncChatStream as AsyncChatStream
    from .client import AsyncClient as AsyncClient
    from .client import ChatStream as ChatStream
    from .client import Client as Client
    from .protocol.envelope import decrypt as decrypt
    from .protocol.envelope import encrypt as encrypt
    from .protocol.errors import CloudflareBlocked as CloudflareBlocked
    from .protocol.errors import ConnectError as ConnectError
    from .protocol.errors import GetGptError as GetGptError
    from .protocol.errors import IncompleteStream as IncompleteStream
    from .protocol.errors import LimitExceeded as LimitExceeded
    from .protocol.errors import ProtocolError as ProtocolError
    from .protocol.errors import RateLimitError as RateLimitError
    from .protocol.errors import RemoteError as RemoteError
    from .protocol.errors import SignatureError as SignatureError
    from .protocol.errors import StatusError as StatusError
    from .protocol.errors import Timeout as Timeout
    from .protocol.errors import TransportError as TransportError
    from .protocol.errors import ValidationError as ValidationError
    from .protocol.reply import Reply as Reply
    from .protocol.reply import ReplyParser as ReplyParser
    from .protocol.reply import Usage as Usage
    from .protocol.request import ChatRequest as ChatRequest
    from .protocol.request import Message as Message
    from .protocol.request import build_request as build_request
    from .protocol.request import parse_request as parse_request
    from .protocol.sse import SSEDecoder as SSEDecoder
    from .providers.completion import ChatCompletion as ChatCompletion

# The one place the version is written: the build backend reads it from here (pyproject.toml,
# [tool.hatch.version]), so an installed wheel's metadata and a source checkout agree.
__version__ = "0.1.0"

# Names load on first use (PEP 562), so `getgpt --help` and tools that need one corner of the
# package do not pay for httpx and the rest at start-up. tests/test_public_api.py holds this table,
# __all__ and the block above to each other.
_EXPORTS = {
    ".client": (
        "DEFAULT_BASE_URL",
        "DEFAULT_TIMEOUT",
        "AsyncChatStream",
        "AsyncClient",
        "ChatStream",
        "Client",
    ),
    ".protocol.envelope": ("decrypt", "encrypt"),
    ".protocol.errors": tuple(_errors.__all__),  # the whole error tree
    ".protocol.reply": ("Reply", "ReplyParser", "Usage"),
    ".protocol.request": ("ChatRequest", "Message", "build_request", "parse_request"),
    ".protocol.sse": ("SSEDecoder",),
    ".providers.completion": ("ChatCompletion",),
}
__all__ = exported(_EXPORTS, "__version__")  # noqa: PLE0605 -- from the one table above
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
_moved.install()
