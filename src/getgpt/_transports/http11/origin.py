"""Where requests go, and the bytes of their heads.

An :class:`Endpoint` is made once per transport from a URL, the headers every request carries
and the proxy, if any. The request its owner makes again and again -- a POST of a body to that
URL -- has everything but its ``Content-Length`` and body serialised once (:meth:`Endpoint.request`);
any other request to the same origin has its head written per call (:meth:`Endpoint.head`).
Headers that could smuggle a line into the head are refused, as httpx refuses them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

from ..base import DEFAULT_HEADERS, basic_credentials, bracketed
from ..decoding import accepted
from .proxy import Proxy

__all__ = ["Endpoint", "check_headers", "endpoint"]

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(r"[\r\n\x00]")
# Framing is the transport's to write, never the caller's.
_OWN = frozenset({"host", "content-length", "transfer-encoding", "connection"})
# Characters a path or query may hold as they are (RFC 3986 pchar, "/" and "?", and "%" so
# existing escapes stay); anything else, a space or a non-ASCII letter, is percent-encoded.
_SAFE_PATH = "!$&'()*+,;=:@/%-._~"
_SAFE_QUERY = _SAFE_PATH + "?"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

Fields = dict[str, tuple[str, str]]


def check_headers(headers: Mapping[str, str]) -> None:
    """Raises ValueError for a header that could not be sent as given: a CR, LF or NUL in a
    value, a name that is not a token."""
    for name, value in headers.items():
        if not _TOKEN.fullmatch(name) or _BAD_VALUE.search(value):
            raise ValueError(f"invalid HTTP header {name!r}: {value!r}")


def _fields(*layers: Mapping[str, str] | None) -> Fields:
    """Headers by lower-case name, later layers replacing earlier ones, framing left out."""
    fields: Fields = {}
    for layer in layers:
        if layer:
            fields.update((name.lower(), (name, value)) for name, value in layer.items())
    for own in _OWN:
        fields.pop(own, None)
    return fields


@dataclass(frozen=True, eq=False)
class Endpoint:
    """An origin, the fixed request's head serialised once, and the proxy requests go through."""

    #: The URL the fixed request goes to, for messages: without the credentials it may carry.
    url: str
    scheme: str
    host: str
    port: int
    #: ``scheme://authority``: a target's URL is this and its path.
    origin: str
    #: The Host header's value.
    authority: str
    #: Every request's headers, by lower-case name.
    fields: Fields
    #: The HTTP proxy requests go through, or None.
    proxy: Proxy | None
    #: The fixed request's target: the URL's path and query.
    target: str
    #: The fixed request's head up to and including ``Content-Length: ``.
    prefix: bytes = field(init=False, repr=False)
    #: The content codings its requests ask for (``Accept-Encoding``).
    asked: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        lines = self._lines("POST", self.target, self.fields.values())
        object.__setattr__(self, "prefix", ("\r\n".join(lines) + "\r\nContent-Length: ").encode("latin-1"))
        object.__setattr__(self, "asked", accepted(dict(self.fields.values())))

    def asked_with(self, headers: Mapping[str, str] | None) -> frozenset[str]:
        """The content codings a request with these extra ``headers`` asks for."""
        if headers and any(name.lower() == "accept-encoding" for name in headers):
            return accepted(headers)
        return self.asked

    @property
    def address(self) -> tuple[str, int]:
        """Where to connect: the proxy, or the origin itself."""
        if self.proxy is not None:
            return self.proxy.host, self.proxy.port
        return self.host, self.port

    @property
    def tunnel(self) -> bool:
        """Whether the connection is a ``CONNECT`` tunnel through the proxy (https:// URLs)."""
        return self.proxy is not None and self.scheme == "https"

    def request(self, body: bytes) -> bytes:
        """The whole fixed request for ``body``: one write."""
        return b"%s%d\r\n\r\n%s" % (self.prefix, len(body), body)

    def head(self, method: str, target: str, headers: Mapping[str, str] | None, length: int) -> bytes:
        """The head of a request of ``method`` to ``target`` (a path) with a ``length``-byte body.

        ``headers`` add to the endpoint's own, replacing those of the same name. Raises ValueError
        for a method that is not a token, a target that is not a path, or a header as
        :func:`check_headers` does.
        """
        if not _TOKEN.fullmatch(method):
            raise ValueError(f"invalid HTTP method {method!r}")
        if not target.startswith("/") or _BAD_VALUE.search(target):
            raise ValueError(f"the target must be a path on {self.origin}, not {target!r}")
        fields = self.fields
        if headers:
            check_headers(headers)
            fields = {**fields, **_fields(headers)}
        lines = self._lines(method, target, fields.values())
        if length or method in _BODY_METHODS:
            lines.append(f"Content-Length: {length}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def connect_request(self) -> bytes:
        """The ``CONNECT`` that opens a tunnel through the proxy to the origin."""
        assert self.proxy is not None
        lines = [f"CONNECT {self.host_port} HTTP/1.1", f"Host: {self.host_port}"]
        if self.proxy.authorization:
            lines.append(f"Proxy-Authorization: {self.proxy.authorization}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    @property
    def host_port(self) -> str:
        return f"{bracketed(self.host)}:{self.port}"

    def _lines(self, method: str, target: str, fields: Iterable[tuple[str, str]]) -> list[str]:
        """A request head's lines, but for its framing."""
        path, mark, query = target.partition("?")
        target = quote(path, safe=_SAFE_PATH) + mark + quote(query, safe=_SAFE_QUERY)
        proxy = self.proxy if self.scheme == "http" else None
        # Through an HTTP proxy an http:// request names its whole URL (absolute form) and
        # carries the proxy's credentials; in a tunnel, or directly, only its path (origin form).
        lines = [f"{method} {target if proxy is None else self.origin + target} HTTP/1.1"]
        lines.append(f"Host: {self.authority}")
        lines += [f"{name}: {value}" for name, value in fields]
        if proxy is not None and proxy.authorization:
            lines.append(f"Proxy-Authorization: {proxy.authorization}")
        return lines


def endpoint(url: str, headers: Mapping[str, str], proxy: Proxy | None = None) -> Endpoint:
    """The endpoint for POSTs to ``url`` with ``headers``, through the HTTP ``proxy`` if given.

    Credentials in the URL become an ``Authorization: Basic`` header (unless ``headers`` has
    one), as httpx does; a non-ASCII host is IDNA-encoded. Raises ValueError for a URL that is
    not http:// or https:// with a host and a valid port, or a header as :func:`check_headers` does.
    """
    check_headers(headers)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"only http:// and https:// URLs can be sent to, not {url!r}")
    host = parts.hostname
    if not host:
        raise ValueError(f"no host in the URL {url!r}")
    if not host.isascii():
        host = _idna(host)
    default = 443 if scheme == "https" else 80
    try:
        port = parts.port or default
    except ValueError:
        raise ValueError(f"invalid port in the URL {url!r}") from None
    authority = bracketed(host)
    if port != default:
        authority += f":{port}"
    origin = f"{scheme}://{authority}"
    auth: dict[str, str] = {}
    if parts.username is not None and not any(name.lower() == "authorization" for name in headers):
        auth["Authorization"] = basic_credentials(parts.username, parts.password)
    fields = _fields(DEFAULT_HEADERS, auth, headers)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Endpoint(origin + target, scheme, host, port, origin, authority, fields, proxy, target)


def _idna(host: str) -> str:
    import idna  # as httpx encodes hosts; only non-ASCII ones need it

    try:
        return str(idna.encode(host.lower()).decode("ascii"))
    except idna.IDNAError as exc:
        raise ValueError(f"invalid host {host!r}: {exc}") from None
