"""A sans-IO, incremental decoder for Server-Sent Events.

Feed it the bytes of a response as they arrive with :meth:`SSEDecoder.decode`; it returns the
``data`` of each event completed so far. Call :meth:`SSEDecoder.flush` at the end of the stream.
The same object serves the sync and the async client, and the server's tests.

Lines end at CR, LF or CRLF only -- never at the other characters ``str.splitlines`` treats as
line breaks (U+2028 and friends can appear inside JSON text) -- and a CRLF split across two reads
is one line end. Decoding stays bytes until a caller parses the data, so a multi-byte UTF-8
character split across reads needs no special care.
"""

from __future__ import annotations

from .errors import ProtocolError

__all__ = ["DEFAULT_MAX_EVENT_SIZE", "SSEDecoder"]

#: Largest event accepted, in bytes, unless the decoder is told otherwise.
DEFAULT_MAX_EVENT_SIZE = 1 << 20
_BOM = b"\xef\xbb\xbf"


class SSEDecoder:
    """Turns a byte stream into the ``data`` payloads of its events, as ``bytes``.

    The event type, ``id`` and ``retry`` fields are accepted and ignored: the chat protocol carries
    everything in ``data``. Comment lines (``:...``) are skipped. Multi-line ``data`` is joined
    with ``\\n`` as the SSE standard says.
    """

    __slots__ = ("_buf", "_head", "_lf_pending", "_max", "_scanned")

    def __init__(self, max_event_size: int = DEFAULT_MAX_EVENT_SIZE, *, mid_stream: bool = False) -> None:
        """``mid_stream``: the bytes fed start after the stream's beginning (at an event boundary),
        where a byte-order mark is no longer the stream's to drop."""
        self._buf = bytearray()
        self._max = max_event_size
        # A read ended in CR: if the next begins with LF, that LF belongs to the same line end.
        self._lf_pending = False
        # How much of _buf is known to hold no event boundary, so each byte is searched once.
        self._scanned = 0
        # The stream's first bytes while they may still be a byte-order mark; None once past it.
        self._head: bytes | None = None if mid_stream else b""

    def decode(self, read: bytes) -> list[bytes]:
        """Add ``read``; return the data of every event it completes, in order."""
        if self._head is not None:
            read = self._head + read
            if len(read) < len(_BOM) and _BOM.startswith(read):
                self._head = read  # a mark cut by the end of a read: wait for the rest
                return []
            self._head = None
            if read.startswith(_BOM):
                read = read[len(_BOM) :]  # a byte-order mark may open the stream, only there
        if self._lf_pending and read:
            self._lf_pending = False  # one LF at most completes the CR: a second is a line end
            if read[:1] == b"\n":
                read = read[1:]
        if b"\r" in read:
            self._lf_pending = read[-1:] == b"\r"
            read = read.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        elif read:
            self._lf_pending = False
        buf = self._buf
        if not buf and read[-2:] == b"\n\n":
            # The common case: a read holding whole events, nothing held over.
            return self._complete(read[:-2])
        buf += read
        end = buf.rfind(b"\n\n", max(self._scanned - 1, 0))
        if end < 0:
            self._scanned = len(buf)
            if len(buf) > self._max:
                self._too_large(len(buf))
            return []
        complete = bytes(buf[:end])
        del buf[: end + 2]
        self._scanned = 0
        if len(buf) > self._max:
            self._too_large(len(buf))
        return self._complete(complete)

    def flush(self) -> list[bytes]:
        """End of stream: return the data of a last event that lacked its closing blank line."""
        rest = (self._head or b"") + bytes(self._buf)
        self._head = None
        self._buf.clear()
        self._scanned = 0
        self._lf_pending = False
        return self._events([rest.rstrip(b"\n")], len(rest)) if rest.strip() else []

    def _complete(self, events: bytes) -> list[bytes]:
        """The data of ``events``: whole events, each pair separated by one blank line."""
        if events[:6] == b"data: ":
            payloads = events[6:].split(b"\n\ndata: ")
            # When the only line ends are the separators, every event is a single `data: ` line.
            if events.count(b"\n") == 2 * len(payloads) - 2:
                if len(events) > self._max:
                    self._check_sizes(payloads)
                return payloads
        return self._events(events.split(b"\n\n"), len(events))

    def _events(self, blocks: list[bytes], size: int) -> list[bytes]:
        out: list[bytes] = []
        for block in blocks:
            if block[:6] == b"data: " and b"\n" not in block:
                out.append(block[6:])
            elif block:
                self._block(block, out)
        if size > self._max:  # only then can one event be over the limit
            self._check_sizes(out)
        return out

    def _check_sizes(self, payloads: list[bytes]) -> None:
        for data in payloads:
            if len(data) > self._max:
                self._too_large(len(data))

    @staticmethod
    def _block(block: bytes, out: list[bytes]) -> None:
        # The full field grammar, for events that are not a single `data: ` line.
        data: list[bytes] | None = None
        for line in block.split(b"\n"):
            if not line or line[:1] == b":":
                continue
            name, colon, value = line.partition(b":")
            if name != b"data":
                continue  # event, id, retry and unknown fields carry nothing we use
            if colon and value[:1] == b" ":
                value = value[1:]
            if data is None:
                data = [value]
            else:
                data.append(value)
        if data is not None:
            out.append(b"\n".join(data))

    def _too_large(self, size: int) -> None:
        raise ProtocolError(f"server-sent event of {size} bytes exceeds the limit of {self._max} bytes")
