"""The checker's own HTTP/1.1 exchanges: blocking sockets and httptools, one connection each.

A conformance checker must see what the server really sent -- each read of the body as it
arrived, malformed framing as an error rather than smoothed over, the moment a connection is
closed -- so it does not go through the project's client, whose job is the opposite. httptools
(llhttp, strict unless told otherwise) parses the response and de-chunks it; everything else is
written here, so every byte the server sent is visible. Proxies from the environment are not
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

import httptools

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


class _Parsed:
    """httptools' callbacks for one response: its head, and its body piece by piece."""

    def __init__(self) -> None:
        self.status = 0
        self.reason = ""
        self.names: list[str] = []
        self.values: list[str] = []
        self.head_done = False
        self.complete = False
        #: Bytes arriving after the response ended (the parser starts a second message).
        self.extra = False
        self.body: list[bytes] = []
        self.parser = httptools.HttpResponseParser(self)

    def on_message_begin(self) -> None:
        if self.complete:
            self.extra = True
        self.names, self.values = [], []

    def on_status(self, status: bytes) -> None:
        self.reason += status.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.names.append(name.decode("latin-1"))
        self.values.append(value.decode("latin-1"))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status >= 200:  # an interim 1xx response is skipped; the real one follows
            self.status = status
            self.head_done = True

    def on_body(self, data: bytes) -> None:
        if not self.complete:
            self.body.append(data)

    def on_message_complete(self) -> None:
        if self.head_done:
            self.complete = True


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
        self._parsed = _Parsed()
        self._eof = False
        started = time.monotonic()
        self._sock = target.connect(timeout)
        lines = [f"{method} {target.base_path + path} HTTP/1.1", f"Host: {target.host_header}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append(f"Content-Length: {len(body)}")
        try:
            try:
                self._sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
            except OSError as exc:
                raise HttpFailure(f"sending the request failed: {exc}") from None
            while not self._parsed.head_done:
                if self._eof:
                    raise HttpFailure("the server closed the connection without a response head")
                self._receive()
        except BaseException:
            self.close()
            raise
        parsed = self._parsed
        self.answer = Answer(
            status=parsed.status,
            reason=parsed.reason,
            headers=_headers(zip(parsed.names, parsed.values, strict=True)),
            waited=time.monotonic() - started,
        )
        # A body framed by neither length nor chunks ends when the connection does.
        self._framed = "content-length" in self.answer.headers or "chunked" in self.answer.headers.get(
            "transfer-encoding", ""
        )

    def _receive(self) -> None:
        """One read from the socket into the parser."""
        try:
            data = self._sock.recv(_READ)
        except TimeoutError:
            raise HttpFailure(f"no data from the server for {self.timeout:g} s") from None
        except OSError as exc:
            raise HttpFailure(f"reading from the server failed: {exc}") from None
        if not data:
            self._eof = True
            return
        try:
            self._parsed.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            raise HttpFailure("the server switched protocols") from None
        except httptools.HttpParserError as exc:
            raise HttpFailure(f"malformed HTTP from the server: {exc}") from None
        if self._parsed.extra:
            raise HttpFailure("the server sent more after its response")

    def reads(self) -> Iterator[bytes]:
        """The body's data, one item per network read, until the server ends it."""
        parsed = self._parsed
        while True:
            if parsed.body:
                data = b"".join(parsed.body)
                parsed.body.clear()
                yield data
            if parsed.complete:
                return
            if self._eof:
                if self._framed:
                    raise HttpFailure("the server closed the connection in the middle of the body")
                return
            self._receive()

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


def _headers(raw: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Names in lower case; a repeated name's values joined with ", " (once, not per repeat)."""
    values: dict[str, list[str]] = {}
    for name, value in raw:
        values.setdefault(name.lower(), []).append(value)
    return {name: ", ".join(texts) for name, texts in values.items()}
