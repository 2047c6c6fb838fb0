"""The TLS context a connection is verified with: the caller's, or one made as httpx makes it.

``verify=True`` trusts ``SSL_CERT_FILE`` or ``SSL_CERT_DIR`` when the environment names one, else
certifi's bundle; a path trusts that CA bundle file or directory; ``False`` checks nothing; an
:class:`ssl.SSLContext` is used as given (it is the caller's: not changed here).
"""

from __future__ import annotations

import os
import ssl

__all__ = ["Verify", "context"]

Verify = bool | str | ssl.SSLContext


def context(verify: Verify) -> ssl.SSLContext:
    """The context for ``verify``."""
    if isinstance(verify, ssl.SSLContext):
        return verify
    if isinstance(verify, str):
        made = _trusting(verify)
    elif verify:
        made = _trusting(os.environ.get("SSL_CERT_FILE") or os.environ.get("SSL_CERT_DIR") or _certifi())
    else:
        made = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        made.check_hostname = False
        made.verify_mode = ssl.CERT_NONE
    made.set_alpn_protocols(["http/1.1"])
    return made


def _trusting(ca: str) -> ssl.SSLContext:
    if os.path.isdir(ca):
        return ssl.create_default_context(capath=ca)
    return ssl.create_default_context(cafile=ca)


def _certifi() -> str:
    import certifi

    return str(certifi.where())
