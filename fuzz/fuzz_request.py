"""Atheris target: request parsing, from the core's parse_request to the server's two endpoints.

- ``parse_request``: returns a request (that survives encode -> parse unchanged) or ValidationError;
- the server's ``parse_envelope`` and ``parse_openai``: return a request or raise ApiError with a
  4xx status -- anything else would be a 500 for a client's mistake;
- the same for an envelope sealed around arbitrary text, which reaches the checks past decryption.
"""

from __future__ import annotations

import atheris

with atheris.instrument_imports(include=["getgpt"]):
    from _common import fuzz
    from getgpt.protocol import envelope
    from getgpt.protocol.errors import ValidationError
    from getgpt.protocol.request import encode, parse_request
    from getgpt.server.api_error import ApiError
    from getgpt.server.chat.parsing import parse_envelope, parse_openai

MAX_MESSAGES = 8


def _client_error(parse: object, body: bytes) -> None:
    try:
        parse(body, MAX_MESSAGES)  # type: ignore[operator]
    except ApiError as exc:
        assert 400 <= exc.status < 500, (exc.status, exc.message, body)


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    mode = fdp.ConsumeIntInRange(0, 3)
    body = fdp.ConsumeBytes(fdp.remaining_bytes())
    if mode == 0:
        try:
            request = parse_request(body)
        except ValidationError:
            return
        assert parse_request(encode(request)) == request
    elif mode == 1:
        _client_error(parse_envelope, body)
    elif mode == 2:
        _client_error(parse_openai, body)
    else:
        text = body.decode("utf-8", "replace")
        sealed = b'{"signature":"' + envelope.encrypt(text).encode() + b'"}'
        _client_error(parse_envelope, sealed)


if __name__ == "__main__":
    fuzz(test_one_input)
