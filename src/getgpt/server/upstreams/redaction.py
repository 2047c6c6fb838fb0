"""What an upstream's secrets and address look like, so none of them reaches a client or a log.

An upstream that quotes back the ``Authorization`` it received (some proxies and misconfigured
servers put it in their error bodies) would otherwise hand the server's own key to every client
whose request failed; a password in ``--upstream``'s URL would be written to the log; and a
client-visible message would name the internal URL the server forwards to.

:class:`Redaction` knows one upstream's secrets -- its API key, the password of its URL and the
``Basic`` credentials that URL stands for, each as written raw, percent-encoded and inside a
JSON string -- and its address. :meth:`~Redaction.for_client` takes the secrets out of a text
(or bytes) meant for a client and names the upstream instead of its URL;
:meth:`~Redaction.for_log` takes the secrets out and keeps the URL (without its credentials),
which an operator reading the log needs. :meth:`~Redaction.error` applies the first to an
:class:`~getgpt.server.api_error.ApiError`, its message and the upstream's own error body alike.
Only errors are rewritten: a reply the upstream sends as a success goes on untouched.
"""

from __future__ import annotations

import base64
import json
import re
from urllib.parse import quote, unquote, urlsplit

import msgspec

from ...client.transport import without_credentials
from ..api_error import ApiError

__all__ = ["REDACTED", "Redaction"]

#: What stands where a secret was.
REDACTED = "[redacted]"


def _written(secret: str) -> set[str]:
    """The ways ``secret`` may appear in a text: as it is, percent-encoded, inside a JSON string
    (with non-ASCII characters escaped or not, and a solidus escaped or not)."""
    in_json = msgspec.json.encode(secret).decode()[1:-1]
    escaped = json.dumps(secret)[1:-1]
    forms = {secret, quote(secret, safe=""), in_json, escaped}
    forms |= {form.replace("/", "\\/") for form in (in_json, escaped)}
    return {form for form in forms if form}


def _alternatives(texts: set[str]) -> str:
    # Longest first: a secret that contains another is taken whole.
    return "|".join(re.escape(text) for text in sorted(texts, key=len, reverse=True))


class Redaction:
    """One upstream's secrets and address; see the module docstring.

    ``url``: the upstream's base URL as configured (it may carry ``user:password@``); ``key``: its
    API key, if any; ``name``: what a client is told the upstream is called.
    """

    def __init__(self, url: str, key: str | None, *, name: str = "the upstream") -> None:
        self.name = name
        parts = urlsplit(url)
        secrets: set[str] = set()
        if key:
            secrets |= _written(key)
        if parts.password:
            password = unquote(parts.password)
            user = unquote(parts.username or "")
            basic = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            secrets |= _written(password) | _written(parts.password) | {basic}
            secrets |= _written(f"{user}:{password}")
        #: The URL as a log may name it: without its credentials.
        self.shown = without_credentials(url)
        self._secrets = re.compile(_alternatives(secrets)) if secrets else None
        self._secret_bytes = re.compile(_alternatives(secrets).encode()) if secrets else None
        # The upstream's address as a message may write it: its scheme, any credentials, the host
        # (an IPv6 one bracketed), any port, any path (up to a space, a quote or punctuation that
        # ends a clause) -- or its host and port alone.
        host = (parts.hostname or "").lower()
        hosts = {re.escape(host), re.escape(f"[{host}]")} if ":" in host else {re.escape(host)}
        host_pattern = "(?:" + "|".join(hosts) + ")"
        # The scheme and the credentials are bounded: unbounded, a long run of letters made the
        # search quadratic (a 4 KiB error body took 58 ms, a 64 KiB one would take seconds).
        address = (
            rf"(?:[a-z][a-z0-9+.-]{{0,31}}://(?:[^@/\s\"'\\<>]{{0,255}}@)?{host_pattern}(?::\d+)?(?:/(?:[^\s\"'\\<>]*[^\s\"'\\<>;,:.)\]])?)?"
            rf"|{host_pattern}:\d+)"
        )
        self._address = re.compile(address, re.IGNORECASE) if host else None
        self._address_bytes = re.compile(address.encode(), re.IGNORECASE) if host else None
        # Most texts never name the host: looked for first, as a plain substring.
        self._host = host
        self._host_bytes = host.encode()

    def for_log(self, text: str) -> str:
        """``text`` without the upstream's secrets."""
        if self._secrets is None:
            return text
        return self._secrets.sub(REDACTED, text)

    def for_client(self, text: str) -> str:
        """``text`` without the upstream's secrets, naming the upstream instead of its address."""
        text = self.for_log(text)
        if self._address is not None and self._host in text.lower():
            text = self._address.sub(self.name, text)
        return text

    def bytes_for_client(self, data: bytes) -> bytes:
        """:meth:`for_client` of bytes (an upstream's error body): still JSON if it was, since
        neither the secrets' stand-in nor the name holds a quote or a backslash."""
        if self._secret_bytes is not None:
            data = self._secret_bytes.sub(REDACTED.encode(), data)
        if self._address_bytes is not None and self._host_bytes in data.lower():
            data = self._address_bytes.sub(self.name.encode(), data)
        return data

    def error(self, error: ApiError) -> ApiError:
        """``error`` as a client may see it: its message and body through :meth:`for_client`."""
        error.message = self.for_client(error.message)
        error.args = (error.message,)
        if error.body is not None:
            error.body = self.bytes_for_client(error.body)
        return error
