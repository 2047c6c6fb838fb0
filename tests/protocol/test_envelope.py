"""The envelope against an independent AES implementation (pycryptodome), both ways."""

from __future__ import annotations

import json
import re

import pytest
from Crypto.Cipher import AES
from Crypto.Util.Padding import pad, unpad
from hypothesis import given
from hypothesis import strategies as st

from getgpt import SignatureError
from getgpt.protocol.envelope import decrypt, encrypt, seal


def reference_decrypt(signature: str) -> str:
    key, iv = signature[-32:-16].encode(), signature[-16:].encode()
    plain = AES.new(key, AES.MODE_CBC, iv).decrypt(bytes.fromhex(signature[:-32]))
    return unpad(plain, 16).decode()


def reference_encrypt(text: str, key: str, iv: str) -> str:
    cipher = AES.new(key.encode(), AES.MODE_CBC, iv.encode())
    return cipher.encrypt(pad(text.encode(), 16)).hex() + key + iv


def test_signature_layout() -> None:
    signature = encrypt('{"messages":[]}')
    assert re.fullmatch(r"[0-9a-f]+", signature)
    assert (len(signature) - 32) % 32 == 0
    # Key and IV are fresh for every call.
    assert encrypt("x")[-32:] != encrypt("x")[-32:]


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 31, 32, 33])
def test_pkcs7_pads_a_full_block_when_aligned(size: int) -> None:
    signature = encrypt("a" * size)
    blocks = (len(signature) - 32) // 32
    assert blocks == size // 16 + 1


@given(st.text())
def test_ours_decrypts_with_reference(text: str) -> None:
    assert reference_decrypt(encrypt(text)) == text


@given(st.text(), st.binary(min_size=8, max_size=8), st.binary(min_size=8, max_size=8))
def test_reference_decrypts_with_ours(text: str, key: bytes, iv: bytes) -> None:
    signature = reference_encrypt(text, key.hex(), iv.hex())
    assert decrypt(signature) == text
    assert seal(text.encode(), key.hex(), iv.hex()) == signature


def test_cyrillic_and_emoji_request_roundtrip() -> None:
    body = json.dumps({"messages": [{"role": "user", "content": "Привет, как дела? 🙂"}]}, ensure_ascii=False)
    assert decrypt(encrypt(body)) == body


GOOD = encrypt("hello, world " * 4)


def _bad_padding() -> str:
    key, iv = "0123456789abcdef", "fedcba9876543210"
    block = AES.new(key.encode(), AES.MODE_CBC, iv.encode()).encrypt(b"A" * 15 + b"\x07")
    return block.hex() + key + iv


def _not_utf8() -> str:
    key, iv = "0123456789abcdef", "fedcba9876543210"
    return AES.new(key.encode(), AES.MODE_CBC, iv.encode()).encrypt(pad(b"\xff\xfe", 16)).hex() + key + iv


@pytest.mark.parametrize(
    ("signature", "reason"),
    [
        ("", "too short"),
        (GOOD[:-1], "odd number"),
        ("zz" + GOOD[2:], "hex"),
        (GOOD[-32:], "too short"),
        (GOOD[:-32][:-2] + GOOD[-32:], "whole number"),
        (_bad_padding(), "padding"),
        (_not_utf8(), "UTF-8"),
        ("é" * 80, "ASCII"),
        (GOOD[:32] + "g" * 32, "hex"),
    ],
    # Named, not shown: GOOD is sealed with a fresh key at import, and every xdist worker must
    # collect the same test ids.
    ids=[
        "empty",
        "odd-length",
        "not-hex",
        "key-and-iv-alone",
        "not-whole-blocks",
        "bad-padding",
        "not-utf8",
        "not-ascii",
        "not-hex-key",
    ],
)
def test_malformed_signatures_raise_one_typed_error(signature: str, reason: str) -> None:
    with pytest.raises(SignatureError, match=reason) as caught:
        decrypt(signature)
    assert isinstance(caught.value, ValueError)  # and still catchable the old way


def test_non_string_signature() -> None:
    with pytest.raises(SignatureError):
        decrypt(123)  # type: ignore[arg-type]
