"""The checker's own HTTP/1.1 exchanges: blocking sockets and h11, one connection each.

A conformance checker must see what the server really sent -- each read of the body as it
arrived, malformed framing as an error rather than smoothed over, the moment a connection is
closed -- so it does not go through the project's client, whose job is the opposite. h11 is
strict about HTTP/1.1 and leaves every byte visible. Proxies from the environment are not
used: the checker talks to the server it is pointed at.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import h11

__all__ = ["Answer", "HttpFailure", "Open", "Target", "exchange"]

_READ = 65536
#: The most body an exchange keeps; a stream longer than this is cut and marked so.
MAX_BODY = 16 << 20


class HttpFailure(Exception):
    """The exchange failed below HTTP semantics: connection, TLS, timeout or malformed HTTP."""


@dataclass(frozen=True)
class Target:
    """Where the server is: scheme, host, port and the base path every route is under."""

    scheme: str
    host: str
    port: int
    base_path: str
    verify: bool = True

    @classmethod
    def of(cls, url: str, verify: bool = True) -> Target:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        path = parts.path if parts.path.endswith("/") else parts.path + "/"
        return cls(parts.scheme, parts.hostname, port, path, verify)

    def root(self) -> Target:
        """The same server, with the base path ``/``."""
        return Target(self.scheme, self.host, self.port, "/", self.verify)

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == default else f"{name}:{self.port}"

    def connect(self, timeout: float) -> socket.socket:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=timeout)
        except OSError as exc:
            raise HttpFailure(f"cannot connect to {self.origin}: {exc}") from None
        if self.scheme == "https":
            context = ssl.create_default_context()
            if not self.verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            try:
                sock = context.wrap_socket(sock, server_hostname=self.host)
            except (OSError, ssl.SSLError) as exc:
                sock.close()
                raise HttpFailure(f"TLS with {self.origin} failed: {exc}") from None
        return sock


@dataclass
class Answer:
    """A response: its status, headers (names in lower case) and the body, read by read."""

    status: int
    reason: str
    headers: dict[str, str]
    reads: list[bytes] = field(default_factory=list)
    #: False when the body was cut by the checker (too long or too slow), not ended by the server.
    complete: bool = True
    #: Seconds from sending the request to the response's head.
    waited: float = 0.0

    @property
    def body(self) -> bytes:
        return b"".join(self.reads)

    @property
    def media_type(self) -> str:
        return self.headers.get("content-type", "").partition(";")[0].strip().lower()

    def excerpt(self, limit: int = 300) -> str:
        text = self.body[:limit].decode("utf-8", "replace")
        return text + ("…" if len(self.body) > limit else "")


class Open:
    """One request whose response is read as the caller goes, and closed when it says so."""

    def __init__(
        self,
        target: Target,
        method: str,
        path: str,
        headers: Mapping[str, str],
        *,
        body: bytes,
        timeout: float,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self._conn = h11.Connection(h11.CLIENT)
        started = time.monotonic()
        self._sock = target.connect(timeout)
        all_headers = [("Host", target.host_header), *headers.items(), ("Content-Length", str(len(body)))]
        try:
            self._send(h11.Request(method=method, target=target.base_path + path, headers=all_headers))
            self._send(h11.Data(data=body))
            self._send(h11.EndOfMessage())
            head = self._next()
            while isinstance(head, h11.InformationalResponse):
                head = self._next()
        except BaseException:
            self.close()
            raise
        if not isinstance(head, h11.Response):
            self.close()
            raise HttpFailure(f"the server sent no response head (h11 event {type(head).__name__})")
        self.answer = Answer(
            status=head.status_code,
            reason=head.reason.decode("latin-1"),
            headers=_headers(head.headers),
            waited=time.monotonic() - started,
        )

    def _send(self, event: h11.Event) -> None:
        data = self._conn.send(event)
        if data:
            try:
                self._sock.sendall(data)
            except OSError as exc:
                raise HttpFailure(f"sending the request failed: {exc}") from None

    def _next(self) -> h11.Event:
        while True:
            try:
                event = self._conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise HttpFailure(f"malformed HTTP from the server: {exc}") from None
            if event is h11.PAUSED:
                raise HttpFailure("the server sent more after its response")
            if event is not h11.NEED_DATA:
                assert isinstance(event, h11.Event)
                return event
            try:
                data = self._sock.recv(_READ)
            except TimeoutError:
                raise HttpFailure(f"no data from the server for {self.timeout:g} s") from None
            except OSError as exc:
                raise HttpFailure(f"reading from the server failed: {exc}") from None
            self._conn.receive_data(data)

    def reads(self) -> Iterator[bytes]:
        """The body's data, one item per piece h11 hands over, until the server ends it."""
        while True:
            event = self._next()
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                return

    def read_all(self, deadline: float, limit: int = MAX_BODY) -> Answer:
        """Read the body to its end, or until ``limit`` bytes or ``deadline`` (monotonic)."""
        size = 0
        try:
            for data in self.reads():
                self.answer.reads.append(data)
                size += len(data)
                if size > limit or time.monotonic() > deadline:
                    self.answer.complete = False
                    break
        finally:
            self.close()
        return self.answer

    def close(self) -> None:
        """Drop the connection at once (the server sees its peer go away)."""
        with contextlib.suppress(OSError):
            self._sock.close()


def exchange(
    target: Target,
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes = b"",
    *,
    timeout: float,
    total: float,
) -> Answer:
    """Send one request and read the whole response (within ``total`` seconds)."""
    deadline = time.monotonic() + total
    return Open(target, method, path, headers, body=body, timeout=timeout).read_all(deadline)


def _headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers
