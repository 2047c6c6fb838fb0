"""The reply to one request, parsed as bytes arrive: sans-IO, driven by either pool.

:class:`ResponseReader` wraps httptools' llhttp parser. It is the HTTP layer only: what the body
*says* (chat chunks) is :class:`getgpt.reply.ReplyParser`'s business, one layer up.
"""

from __future__ import annotations

import httptools

from ...errors import ConnectError, ProtocolError, TransportError
from ..decoding import Decoder, decoder_for

__all__ = ["ResponseReader", "check_tunnel"]


class ResponseReader:
    """The reply to one request, parsed as bytes arrive (sans-IO).

    :meth:`feed` takes what the network gave; :meth:`take` returns the body received since the
    last call, de-chunked and decoded; :meth:`eof` is called when the peer closes. Interim 1xx
    replies are skipped. Errors are :class:`~getgpt.errors.TransportError` for a reply that is not
    HTTP or was cut short, :class:`~getgpt.errors.ProtocolError` for a body that cannot be decoded;
    their messages name ``url``.
    """

    def __init__(self, url: str) -> None:
        self._body: list[bytes] = []
        # httptools calls the bound C method directly: one HTTP chunk costs no Python frame.
        # It looks its callbacks up once, when the parser is made, so this comes first.
        self.on_body = self._body.append
        self.url = url
        self._decoder: Decoder | None = None
        self._refusal: ProtocolError | None = None
        self.status_code = 0
        self.reason_phrase = ""
        self.headers: dict[str, str] = {}
        self.head_done = False
        self.complete = False
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
        self._parser = httptools.HttpResponseParser(self)

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self.complete:  # bytes after the reply: the connection is out of step
            self.keep_alive = False
            return
        self.headers = {}
        self.reason_phrase = ""

    def on_status(self, status: bytes) -> None:
        self.reason_phrase += status.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.complete:
            return
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        old = self.headers.get(key)
        self.headers[key] = text if old is None else f"{old}, {text}"

    def on_headers_complete(self) -> None:
        if self.complete:
            return
        status = self._parser.get_status_code()
        if status < 200:
            return
        self.status_code = status
        self.head_done = True
        headers = self.headers
        self._framed = "content-length" in headers or "chunked" in headers.get("transfer-encoding", "")
        try:
            self._decoder = decoder_for(headers.get("content-encoding", ""), self.url)
        except ProtocolError as exc:
            # Raised by feed(): httptools would hide an exception raised here behind its own.
            self._refusal = exc

    def on_message_complete(self) -> None:
        if self.complete or not self.head_done:
            return  # an interim reply (100 Continue, 103 Early Hints) ended; the real one follows
        self.complete = True
        self.keep_alive = self._parser.should_keep_alive() and not self.broken_request
        self._end = len(self._body)

    # the driver's side

    def feed(self, data: bytes | memoryview) -> None:
        self.unread += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            raise TransportError(f"{self.url} switched protocols instead of replying") from None
        except httptools.HttpParserError as exc:
            raise TransportError(f"malformed HTTP reply from {self.url}: {exc}") from None
        if self._refusal is not None:
            raise self._refusal

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
        pieces = self._body
        self.unread = 0
        if self._end is not None:
            del pieces[self._end :]
            self._end = 0
        if not pieces:
            return b""
        data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        pieces.clear()
        if self._decoder is not None:
            data = self._decoder.decode(data, self.url)
        return data


def check_tunnel(reader: ResponseReader, proxy: str, url: str) -> None:
    """Raises unless the proxy's answer to ``CONNECT`` opened the tunnel."""
    if not 200 <= reader.status_code < 300:
        status = f"{reader.status_code} {reader.reason_phrase}".strip()
        raise ConnectError(f"the proxy {proxy} refused a tunnel to {url}: {status}")
    if reader.take():
        raise ConnectError(f"the proxy {proxy} sent bytes into the tunnel to {url} before TLS began")
