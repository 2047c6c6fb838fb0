"""Atheris target: the envelope. decrypt() of anything returns text or raises SignatureError;
sealed bytes come back intact when they are UTF-8; encrypt() round-trips any text."""

from __future__ import annotations

import contextlib

import atheris

with atheris.instrument_imports(include=["getgpt"]):
    from _common import fuzz
    from getgpt.protocol import envelope
    from getgpt.protocol.errors import SignatureError

HEX = "0123456789abcdef"


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    mode = fdp.ConsumeIntInRange(0, 3)
    if mode == 0:
        # Arbitrary text, including non-ASCII and non-hex.
        signature = fdp.ConsumeUnicodeNoSurrogates(fdp.remaining_bytes())
        with contextlib.suppress(SignatureError):
            assert isinstance(envelope.decrypt(signature), str)
    elif mode == 1:
        # Hex of arbitrary length: gets past the character checks to the block and padding ones.
        signature = fdp.ConsumeBytes(fdp.remaining_bytes()).hex()
        with contextlib.suppress(SignatureError):
            assert isinstance(envelope.decrypt(signature), str)
    elif mode == 2:
        # Any bytes under any key: well-formed ciphertext whose plaintext may not be UTF-8.
        key = fdp.ConsumeBytes(8).hex().ljust(16, "0")
        iv = fdp.ConsumeBytes(8).hex().ljust(16, "0")
        plaintext = fdp.ConsumeBytes(fdp.remaining_bytes())
        signature = envelope.seal(plaintext, key, iv)
        try:
            text = plaintext.decode("utf-8")
        except UnicodeDecodeError:
            try:
                envelope.decrypt(signature)
            except SignatureError:
                return
            raise AssertionError(f"decrypt accepted non-UTF-8 plaintext {plaintext!r}") from None
        assert envelope.decrypt(signature) == text
    else:
        text = fdp.ConsumeUnicodeNoSurrogates(fdp.remaining_bytes())
        assert envelope.decrypt(envelope.encrypt(text)) == text


if __name__ == "__main__":
    fuzz(test_one_input)
