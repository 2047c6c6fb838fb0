"""The lean HTTP/1.1 path: one write per request, a C parser for the reply.

The clients send one kind of request to one URL, again and again. Through httpx every request
pays for a general-purpose stack -- request and URL objects, cookies, auth and event hooks, the
connection pool's bookkeeping, h11's pure-Python parser, two socket writes -- which costs several
times what the request itself does on a local network, and h11 turns every HTTP chunk of a
stream into its own event. Here the request head is serialised once per endpoint
(:mod:`.origin`), a request is one write, and the reply is parsed by httptools (llhttp, the
parser of Node.js and uvicorn), which de-chunks in C and hands over the body of a whole network
read at once (:mod:`.reader`). :mod:`.pool` drives the reader from blocking sockets,
:mod:`.async_pool` from an asyncio protocol. Requests go through an HTTP proxy when one is given
or the environment names one (:mod:`.proxy`): absolute-form for http:// URLs, a ``CONNECT``
tunnel for https:// ones.
"""
