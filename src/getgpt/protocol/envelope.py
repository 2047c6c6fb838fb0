"""The GetGpt request envelope ("signature").

The JSON request is encrypted with AES-128-CBC and PKCS#7 padding. The key and the IV are each 8
random bytes written as 16 lowercase hex characters, and those 16 ASCII characters *are* the key
and IV bytes. The signature is ``ciphertext.hex() + key + iv``: the last 32 characters carry the
key and IV in clear, so this is obfuscation, not secrecy -- only HTTPS protects the content.
"""

from __future__ import annotations

import secrets

from cryptography.hazmat.primitives.ciphers import Cipher
from cryptography.hazmat.primitives.ciphers.algorithms import AES
from cryptography.hazmat.primitives.ciphers.modes import CBC
from cryptography.hazmat.primitives.padding import PKCS7

from .errors import SignatureError

__all__ = ["decrypt", "encrypt", "seal"]

_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
_BLOCK_HEX = 32  # one AES block, hex encoded
_TAIL = 32  # key (16) + iv (16), in clear


def seal(plaintext: bytes, key: str, iv: str) -> str:
    """Encrypt ``plaintext`` with the given 16-character ``key`` and ``iv`` into a signature."""
    padder = PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(AES(key.encode("ascii")), CBC(iv.encode("ascii"))).encryptor()
    return (encryptor.update(padded) + encryptor.finalize()).hex() + key + iv


def encrypt(text: str) -> str:
    """Return the signature of ``text`` under a fresh random key and IV."""
    return seal(text.encode("utf-8"), secrets.token_hex(8), secrets.token_hex(8))


def decrypt(signature: str) -> str:
    """Recover the text inside ``signature``; raise :class:`SignatureError` if it is malformed."""
    if not isinstance(signature, str):
        raise SignatureError(f"signature must be a string, not {type(signature).__name__}")
    if not signature.isascii():
        raise SignatureError("signature must be ASCII hex digits")
    raw = signature.encode("ascii")
    if len(raw) < _BLOCK_HEX + _TAIL:
        raise SignatureError(
            f"signature is too short: {len(raw)} characters, at least {_BLOCK_HEX + _TAIL} needed"
        )
    if len(raw) % 2:
        raise SignatureError(f"signature has an odd number of hex digits ({len(raw)})")
    if not _HEX_DIGITS.issuperset(raw):
        raise SignatureError("signature must contain only hex digits")
    body, key, iv = raw[:-_TAIL], raw[-_TAIL:-16], raw[-16:]
    if len(body) % _BLOCK_HEX:
        raise SignatureError(
            f"signature's ciphertext is not a whole number of 16-byte blocks ({len(body)} hex characters)"
        )
    decryptor = Cipher(AES(key), CBC(iv)).decryptor()
    padded = decryptor.update(bytes.fromhex(body.decode("ascii"))) + decryptor.finalize()
    unpadder = PKCS7(128).unpadder()
    try:
        plaintext = unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise SignatureError("signature does not decrypt to valid PKCS#7 padding") from None
    try:
        return plaintext.decode("utf-8")
    except UnicodeDecodeError:
        raise SignatureError("signature does not decrypt to UTF-8 text") from None
