"""The TLS context a connection is verified with: the caller's, or one made as httpx makes it.

``verify=True`` trusts ``SSL_CERT_FILE`` or ``SSL_CERT_DIR`` when the environment names one, else
certifi's bundle; a path trusts that CA bundle file or directory; ``False`` checks nothing; an
:class:`ssl.SSLContext` is used as given (it is the caller's: not changed here).
"""

from __future__ import annotations

import os
import ssl
import stat

__all__ = ["Verify", "context"]

Verify = bool | str | ssl.SSLContext


def context(verify: Verify) -> ssl.SSLContext:
    """The context for ``verify``."""
    if isinstance(verify, ssl.SSLContext):
        return verify
    if isinstance(verify, str):
        return _trusting(verify)
    if verify:
        return _trusting(os.environ.get("SSL_CERT_FILE") or os.environ.get("SSL_CERT_DIR") or _certifi())
    made = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    made.check_hostname = False
    made.verify_mode = ssl.CERT_NONE
    made.set_alpn_protocols(["http/1.1"])
    return made


# Reading a CA bundle is nearly all of making a context: 27 ms of CPU for certifi's, against
# 0.3 ms for a client given a context -- a cost paid again by every client made for an https://
# URL, when a program makes one per request. So a bundle is read once and its context shared by
# every client that trusts it (requests and aiohttp keep their default context the same way).
# Nothing here changes a context once made. The file's identity is part of the key: a bundle
# rewritten in place (a rotated CA) is read again, and the latest context alone is kept.
_trusted: dict[str, tuple[tuple[int, int, int], ssl.SSLContext]] = {}


def _trusting(ca: str) -> ssl.SSLContext:
    try:
        found = os.stat(ca)
    except OSError:
        found = None
    identity = (found.st_ino, found.st_mtime_ns, found.st_size) if found else (0, 0, 0)
    kept = _trusted.get(ca)
    if kept is not None and found is not None and kept[0] == identity:
        return kept[1]
    if found is not None and stat.S_ISDIR(found.st_mode):
        made = ssl.create_default_context(capath=ca)
    else:
        made = ssl.create_default_context(cafile=ca)
    made.set_alpn_protocols(["http/1.1"])
    _trusted[ca] = (identity, made)
    return made


def _certifi() -> str:
    import certifi

    return str(certifi.where())
