"""The checker's own HTTP/1.1 requests: a blocking socket each, closed when the checker says.

A conformance checker must see what the server really sent -- each read of the body as it
arrived, malformed framing as an error rather than smoothed over, the moment a connection is
closed -- so it does not go through the clients' pooled transports, whose job is the opposite.
It writes its requests itself and parses the replies with the lean path's sans-IO
:class:`~getgpt._transports.http11.reader.ResponseReader` (llhttp, strict about HTTP/1.1).
Proxies from the environment are not used: the checker talks to the server it is pointed at.

Time and memory are bounded whatever the server does: each read waits at most ``timeout``; a
response's head must be whole within ``timeout`` of the request however it trickles in; every
exchange of a run ends by the run's ``deadline`` (:attr:`Target.deadline`, ``--max-time``); and a
body is kept only up to :data:`MAX_BODY`, then cut and marked so.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import ssl
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ..client.transport import ResponseReader, bracketed
from ..protocol.errors import GetGptError

__all__ = ["HttpFailure", "Open", "Response", "Target", "Unreachable", "fetch"]

_READ = 65536
#: The most body a fetch keeps; a stream longer than this is cut and marked so. A check's
#: reply is a few kilobytes: this leaves room for a verbose one, and a run of some forty
#: fetches holds tens of megabytes at worst (at 16 MiB each it held up to ~1 GB).
MAX_BODY = 1 << 20


def _out_of_time(limit: float | None) -> HttpFailure:
    return HttpFailure(f"the checks ran out of time (--max-time {limit:g} s)")


class HttpFailure(Exception):
    """The request failed below HTTP semantics: connection, TLS, timeout or malformed HTTP."""


class Unreachable(HttpFailure):
    """No connection to the server at ``origin`` at all, for the system's ``reason`` (``refused``:
    nothing listens on its port)."""

    def __init__(self, message: str, *, origin: str, reason: str, refused: bool = False) -> None:
        super().__init__(message)
        self.origin = origin
        self.reason = reason
        self.refused = refused


@dataclass(frozen=True)
class Target:
    """Where the server is: scheme, host, port and the base path every route is under."""

    scheme: str
    host: str
    port: int
    base_path: str
    verify: bool = True
    #: When (``time.monotonic()``) every exchange must have ended: the run's ``--max-time``.
    deadline: float | None = None
    #: The ``--max-time`` behind ``deadline``, for the message that says it ran out.
    max_time: float | None = None

    @classmethod
    def of(cls, url: str, verify: bool = True, max_time: float | None = None) -> Target:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        path = parts.path if parts.path.endswith("/") else parts.path + "/"
        deadline = None if max_time is None else time.monotonic() + max_time
        return cls(parts.scheme, parts.hostname, port, path, verify, deadline, max_time)

    def root(self) -> Target:
        """The same server, with the base path ``/``."""
        return dataclasses.replace(self, base_path="/")

    def left(self, wait: float) -> float:
        """``wait``, or less when the run's deadline comes sooner; out of time: :class:`HttpFailure`."""
        if self.deadline is None:
            return wait
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise _out_of_time(self.max_time)
        return min(wait, left)

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        name = bracketed(self.host)
        return name if self.port == default else f"{name}:{self.port}"

    def connect(self, timeout: float) -> socket.socket:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.left(timeout))
        except OSError as exc:
            refused = isinstance(exc, ConnectionRefusedError)
            message = f"cannot connect to {self.origin}: {exc}"
            raise Unreachable(message, origin=self.origin, reason=str(exc), refused=refused) from None
        if self.scheme == "https":
            context = ssl.create_default_context()
            if not self.verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            try:
                sock = context.wrap_socket(sock, server_hostname=self.host)
            except (OSError, ssl.SSLError) as exc:
                sock.close()
                message = f"TLS with {self.origin} failed: {exc}"
                raise Unreachable(message, origin=self.origin, reason=str(exc)) from None
        return sock


@dataclass
class Response:
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
        self._reader = ResponseReader(target.origin + target.base_path + path)
        self._ended = False
        started = time.monotonic()
        self._sock = target.connect(timeout)
        lines = [f"{method} {target.base_path + path} HTTP/1.1", f"Host: {target.host_header}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append(f"Content-Length: {len(body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        # The head in all, however it trickles in: a byte a second never leaves one read waiting.
        head_by = started + timeout
        try:
            try:
                self._sock.sendall(head + body)
            except OSError as exc:
                raise HttpFailure(f"sending the request failed: {exc}") from None
            while not self._reader.head_done:
                self._receive(head_by)
                if self._ended and not self._reader.head_done:
                    raise HttpFailure("the server closed the connection without a response")
        except BaseException:
            self.close()
            raise
        self.response = Response(
            status=self._reader.status_code,
            reason=self._reader.reason_phrase,
            headers=dict(self._reader.headers),
            waited=time.monotonic() - started,
        )

    def _receive(self, head_by: float | None = None) -> None:
        """One read from the socket, fed to the parser; the end of the connection too.

        ``head_by``: when the response's head must be whole (``time.monotonic()``)."""
        wait = self.target.left(self.timeout)
        if head_by is not None:
            wait = min(wait, head_by - time.monotonic())
            if wait <= 0:
                raise HttpFailure(f"the response's head took longer than {self.timeout:g} s")
        try:
            self._sock.settimeout(wait)
            data = self._sock.recv(_READ)
        except TimeoutError:
            # Which bound it was: the next look at the time says.
            self.target.left(self.timeout)
            if head_by is not None and time.monotonic() >= head_by:
                raise HttpFailure(f"the response's head took longer than {self.timeout:g} s") from None
            raise HttpFailure(f"no data from the server for {self.timeout:g} s") from None
        except OSError as exc:
            raise HttpFailure(f"reading from the server failed: {exc}") from None
        try:
            if data:
                self._reader.feed(data)
            else:
                self._ended = True
                self._reader.eof()
        except GetGptError as exc:
            raise HttpFailure(str(exc)) from None

    def reads(self) -> Iterator[bytes]:
        """The body's data, one item per read from the socket, until the server ends it."""
        while True:
            data = self._reader.take()
            if data:
                yield data
            if self._reader.complete or self._ended:
                return
            self._receive()

    def read_all(self, deadline: float, limit: int = MAX_BODY) -> Response:
        """Read the body to its end, or until ``limit`` bytes or ``deadline`` (monotonic); past the
        run's own deadline, :class:`HttpFailure`."""
        size = 0
        try:
            for data in self.reads():
                self.response.reads.append(data)
                size += len(data)
                if size > limit or time.monotonic() > deadline:
                    self.response.complete = False
                    break
                self.target.left(self.timeout)
        finally:
            self.close()
        return self.response

    def close(self) -> None:
        """Drop the connection at once (the server sees its peer go away)."""
        with contextlib.suppress(OSError):
            self._sock.close()


def fetch(
    target: Target,
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes = b"",
    *,
    timeout: float,
    total: float,
) -> Response:
    """Send one request and read the whole response (within ``total`` seconds)."""
    deadline = time.monotonic() + total
    return Open(target, method, path, headers, body=body, timeout=timeout).read_all(deadline)
