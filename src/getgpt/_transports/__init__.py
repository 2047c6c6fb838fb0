"""How requests travel: the transports under the clients and the server's forwarding backends.

    choose.py         picks the way for a URL and the caller's options, trio included: the only
                      module that knows both ways, and nothing below it imports it
    ├── http11/       the lean HTTP/1.1 path, which carries every request it can
    │   ├── origin.py     where requests go and their heads, the fixed POST's serialised once
    │   ├── proxy.py      which HTTP proxy, if any (argument or environment, NO_PROXY honoured)
    │   ├── tls.py        the TLS context: certifi, SSL_CERT_FILE/SSL_CERT_DIR, or the caller's
    │   ├── reader.py     ResponseReader: a reply parsed as bytes arrive (sans-IO, httptools)
    │   ├── pool_base.py  what both pools share: their settings, how they word a failure
    │   ├── pool.py       Pool: keep-alive connections on blocking sockets
    │   └── async_pool.py AsyncPool: keep-alive connections on an asyncio event loop
    └── httpx.py      the adapter for what the lean path does not do: SOCKS and HTTPS proxies, a
                      caller's ``transport=`` or ``http_client=``, trio
    base.py           the faces both ways share (a transport, a response), timeouts, keep-alive
    bounds.py         time bounds beside the per-step timeouts: a reply's head, a whole reply
    decoding.py       content codings: which were asked for, and their bounded decoders

A transport raises only :mod:`getgpt.protocol.errors`:
:class:`~getgpt.protocol.errors.TransportError` (and its :class:`~getgpt.protocol.errors.ConnectError`,
:class:`~getgpt.protocol.errors.Timeout`) and :class:`~getgpt.protocol.errors.ProtocolError` (and its
:class:`~getgpt.protocol.errors.LimitExceeded`), each message naming the URL (without the
credentials it may carry). The httpx adapter maps httpx's exceptions at its boundary, in one place;
nothing above the transports sees an httpx type.
"""
