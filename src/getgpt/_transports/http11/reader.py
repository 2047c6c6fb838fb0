"""The reply to one request, parsed as bytes arrive: sans-IO, driven by either pool.

:class:`ResponseReader` wraps httptools' llhttp parser. It is the HTTP layer only: what the body
*says* (chat chunks) is :class:`getgpt.protocol.reply.ReplyParser`'s business, one layer up.

It keeps a hostile server's head bounded: at most :data:`MAX_HEAD_BYTES` of status lines and
headers before the reply's own head is whole (interim replies included, counted as they arrive,
so one endless header line is stopped too), at most :data:`MAX_HEADERS` headers in a head, at most
:data:`MAX_INTERIM` interim (1xx) replies. A header name given many times is joined once, at the
end of its head, in linear time. The body is decoded only in a coding the request asked for, a
bounded block at a time (:mod:`getgpt._transports.decoding`).
"""

from __future__ import annotations

import httptools

from ...protocol.errors import ConnectError, LimitExceeded, TransportError
from ..decoding import BodyDecoder, decoder_for

__all__ = ["MAX_HEADERS", "MAX_HEAD_BYTES", "MAX_INTERIM", "ResponseReader", "check_tunnel"]

#: Most bytes of status lines and headers read before the reply's head is whole.
MAX_HEAD_BYTES = 64 << 10
#: Most headers in one head.
MAX_HEADERS = 256
#: Most interim (1xx) replies before the final one.
MAX_INTERIM = 16


class ResponseReader:
    """The reply to one request, parsed as bytes arrive (sans-IO).

    :meth:`feed` takes what the network gave; :meth:`take` returns the body received since the
    last call, de-chunked and decoded (while :attr:`more` is set, call it again before reading
    more from the network); :meth:`eof` is called when the peer closes. Interim 1xx replies are
    skipped. Errors are :class:`~getgpt.protocol.errors.TransportError` for a reply that is not HTTP or was
    cut short, :class:`~getgpt.protocol.errors.ProtocolError` for a body that cannot or may not be decoded,
    :class:`~getgpt.protocol.errors.LimitExceeded` for a head past the bounds; their messages name ``url``.
    Whatever else a callback raises -- KeyboardInterrupt, SystemExit, MemoryError -- comes out of
    :meth:`feed` as itself.
    """

    def __init__(self, url: str, asked: frozenset[str] = frozenset()) -> None:
        self._body: list[bytes] = []
        # httptools calls the bound C method directly: one HTTP chunk costs no Python frame.
        # It looks its callbacks up once, when the parser is made, so this comes first.
        self.on_body = self._body.append
        self.url = url
        #: The content codings the request asked for.
        self.asked = asked
        self._decoder: BodyDecoder | None = None
        self._raised: BaseException | None = None
        self.status_code = 0
        self.reason_phrase = ""
        self.headers: dict[str, str] = {}
        # Values of a header name seen more than once in this head, joined when it is whole.
        self._repeated: dict[str, list[str]] | None = None
        self._count = 0
        self._head_bytes = 0
        self._fed_before_head = 0
        self._interim = 0
        self.head_done = False
        self.complete = False
        #: True while decoded body is left to take without reading more from the network.
        self.more = False
        #: False once the connection cannot carry another request.
        self.keep_alive = False
        #: Set by the driver when the request could not be written whole.
        self.broken_request = False
        self._framed = False
        # Where the reply's body ends in _body once it is complete: what follows is another
        # message's, which the parser reports through the same callback.
        self._end: int | None = None
        #: Bytes fed since the body was last taken.
        self.unread = 0
        self._parser: httptools.HttpResponseParser | _Released = httptools.HttpResponseParser(self)

    # httptools callbacks. httptools turns what one raises into its own parser error: each keeps
    # what it raised, and feed() raises that instead.

    def on_message_begin(self) -> None:
        try:
            if self.complete:  # bytes after the reply: the connection is out of step
                self.keep_alive = False
                return
            self.headers = {}
            self._repeated = None
            self._count = 0
            self.reason_phrase = ""
        except BaseException as exc:
            self._raised = exc
            raise

    def on_status(self, status: bytes) -> None:
        try:
            self._head_bytes += len(status)
            self.reason_phrase += status.decode("latin-1")
        except BaseException as exc:
            self._raised = exc
            raise

    def on_header(self, name: bytes, value: bytes) -> None:
        try:
            if self.complete:
                return
            count = self._count = self._count + 1
            size = self._head_bytes = self._head_bytes + len(name) + len(value) + 4
            if count > MAX_HEADERS or size > MAX_HEAD_BYTES:
                raise self._too_large()
            key = name.decode("latin-1").lower()
            headers = self.headers
            if key in headers:
                self._repeat(key, value.decode("latin-1"))
            else:
                headers[key] = value.decode("latin-1")
        except BaseException as exc:
            self._raised = exc
            raise

    def _repeat(self, key: str, text: str) -> None:
        """Keeps another value of a header name already seen; joined once the head is whole."""
        repeated = self._repeated
        if repeated is None:
            repeated = self._repeated = {}
        values = repeated.get(key)
        if values is None:
            repeated[key] = [self.headers[key], text]
        else:
            values.append(text)

    def on_headers_complete(self) -> None:
        try:
            if self.complete:
                return
            headers = self.headers
            if self._repeated is not None:
                for key, values in self._repeated.items():
                    headers[key] = ", ".join(values)
            status = self._parser.get_status_code()
            if status < 200:
                self._interim += 1
                if self._interim > MAX_INTERIM:
                    raise LimitExceeded(f"{self.url} sent more than {MAX_INTERIM} interim (1xx) replies")
                return
            self.status_code = status
            self.head_done = True
            self._framed = "content-length" in headers or "chunked" in headers.get("transfer-encoding", "")
            coding = headers.get("content-encoding")
            if coding is not None:
                self._decoder = decoder_for(coding, self.asked, self.url)
        except BaseException as exc:
            self._raised = exc
            raise

    def on_message_complete(self) -> None:
        try:
            if self.complete or not self.head_done:
                return  # an interim reply (100 Continue, 103 Early Hints) ended; the real one follows
            self.complete = True
            self.keep_alive = self._parser.should_keep_alive() and not self.broken_request
            self._end = len(self._body)
        except BaseException as exc:
            self._raised = exc
            raise

    # the driver's side

    def feed(self, data: bytes | memoryview) -> None:
        self.unread += len(data)
        head_done = self.head_done
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            raised = self._raised or exc.__context__
            if raised is not None:
                self._raised = None
                raise raised from None
            raise TransportError(f"malformed HTTP reply from {self.url}: {exc}") from None
        except httptools.HttpParserUpgrade:
            raise TransportError(f"{self.url} switched protocols instead of replying") from None
        except httptools.HttpParserError as exc:
            raise TransportError(f"malformed HTTP reply from {self.url}: {exc}") from None
        if not head_done and not self.head_done:
            # Counted as bytes arrive, so that a head sent in parts is bounded before the
            # parser has all of one header: one endless header line is stopped too.
            self._fed_before_head += len(data)
            if self._fed_before_head > MAX_HEAD_BYTES:
                raise self._too_large()

    def release(self) -> None:
        """Let go of the parser once the reply is done with (read, closed or failed). The parser
        holds this reader's callbacks -- bound methods -- so the two are a reference cycle, which
        only the cyclic collector would free: 9 objects a request, for a collection that took
        ~0.2 s of CPU every ~10,000 requests through the gateway (both pools call this)."""
        self._parser = _RELEASED

    def _too_large(self) -> LimitExceeded:
        return LimitExceeded(
            f"the head of {self.url}'s reply is larger than the client reads "
            f"({MAX_HEAD_BYTES >> 10} KiB of status lines and headers, {MAX_HEADERS} headers)"
        )

    def eof(self) -> None:
        """The peer closed the connection; raises unless the reply is whole."""
        self.keep_alive = False
        if self.complete:
            return
        if not self.head_done:
            raise TransportError(f"{self.url} closed the connection without sending a response")
        if self._framed:
            raise TransportError(
                f"{self.url} closed the connection without sending the complete message body"
            )
        self.complete = True  # a body delimited by the end of the connection

    def take(self) -> bytes:
        """The body received since the last call, decoded; with a decoder, a block at most."""
        parts = self._body
        self.unread = 0
        if self._end is not None:
            del parts[self._end :]
            self._end = 0
        decoder = self._decoder
        if not parts:
            if decoder is None or not self.more:
                return b""
            data = b""
        else:
            data = parts[0] if len(parts) == 1 else b"".join(parts)
            parts.clear()
            if decoder is None:
                return data
        data = decoder.decode(data, self.url)
        self.more = decoder.pending
        return data


class _Released:
    """What a released reader has for a parser: nothing more may be fed (the callbacks that ask
    the parser for the status or keep-alive run only while it parses)."""

    def feed_data(self, data: bytes | memoryview) -> None:
        raise TransportError("the reply was already done with")

    def get_status_code(self) -> int:
        raise TransportError("the reply was already done with")

    def should_keep_alive(self) -> bool:
        raise TransportError("the reply was already done with")


_RELEASED = _Released()


def check_tunnel(reader: ResponseReader, proxy: str, url: str) -> None:
    """Raises unless the proxy's answer to ``CONNECT`` opened the tunnel."""
    if not 200 <= reader.status_code < 300:
        status = f"{reader.status_code} {reader.reason_phrase}".strip()
        raise ConnectError(f"the proxy {proxy} refused a tunnel to {url}: {status}")
    if reader.take():
        raise ConnectError(f"the proxy {proxy} sent bytes into the tunnel to {url} before TLS began")
