"""The GetGpt protocol itself, sans-IO: no sockets, no clocks.

- :mod:`.request` -- the request model: the seed's nine fields in their order, then any OpenAI field;
- :mod:`.envelope` -- sealing and opening ``{"signature": ...}`` (AES-128-CBC, key and IV in clear);
- :mod:`.sse` -- decoding Server-Sent Events;
- :mod:`.reply` -- parsing a stream of ``chat.completion.chunk`` events into a reply;
- :mod:`.errors` -- the one error tree every layer raises.

Its public names are exported by :mod:`getgpt` itself.
"""

#: The model a request names unless told otherwise, the seed's. Here rather than in :mod:`.request`
#: so that settings can name it without loading msgspec (``getgpt --help`` reads them).
DEFAULT_MODEL = "gpt-3.5-turbo"
