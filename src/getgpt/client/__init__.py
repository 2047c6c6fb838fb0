"""The GetGpt clients, and the helpers the server's forwarding shares with them.

- :class:`Client` / :class:`AsyncClient` (:mod:`.clients`) over :class:`BaseClient` (:mod:`.base`),
  whose replies stream as :class:`ChatStream` / :class:`AsyncChatStream` (:mod:`.streams`);
- :mod:`.transport` opens a transport to an upstream (the one door to ``getgpt._transports``);
- :mod:`.bodies` reads a response's body within a bound; :mod:`.statuses` reads what a failed
  response says (an OpenAI-style message, ``Retry-After``, a Cloudflare block).

Names load on first use, so importing :mod:`getgpt.client.statuses` does not load the clients.
"""

from typing import TYPE_CHECKING

from .._lazy import exported, lazy_exports

if TYPE_CHECKING:  # the names below, for type checkers; at run time they load on first use
    from .base import DEFAULT_BASE_URL as DEFAULT_BASE_URL
    from .base import DEFAULT_TIMEOUT as DEFAULT_TIMEOUT
    from .base import BaseClient as BaseClient
    from .base import Messages as Messages
    from .base import base_url_from as base_url_from
    from .clients import AsyncClient as AsyncClient
    from .clients import Client as Client
    from .streams import AsyncChatStream as AsyncChatStream
    from .streams import ChatStream as ChatStream

_EXPORTS = {
    ".base": ("DEFAULT_BASE_URL", "DEFAULT_TIMEOUT", "BaseClient", "Messages", "base_url_from"),
    ".clients": ("AsyncClient", "Client"),
    ".streams": ("AsyncChatStream", "ChatStream"),
}
__all__ = exported(_EXPORTS)  # noqa: PLE0605 -- from the one table above
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
