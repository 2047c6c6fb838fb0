"""Which proxy a request goes through: the one given, else the one the environment names.

As curl, httpx and urllib read them: ``http_proxy``/``HTTP_PROXY`` for http:// URLs,
``https_proxy``/``HTTPS_PROXY`` for https:// ones, ``all_proxy``/``ALL_PROXY`` for both, lower
case first (and ``HTTP_PROXY`` not at all in a CGI script, where a request header can set it).
``NO_PROXY`` (``no_proxy``) lists where to go directly: ``*``, host names (``example.com``
matches it and its subdomains; a leading ``.`` or ``*.`` means the same), IP addresses and
networks (``10.0.0.0/8``), each optionally with ``:port``. A proxy given as an argument is used
for every request, as httpx does.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..base import basic_credentials, bracketed

__all__ = ["Proxy", "bypassed", "parse_proxy", "proxy_url_for"]

_DEFAULT_PORTS = {"http": 80, "https": 443, "socks4": 1080, "socks4a": 1080, "socks5": 1080, "socks5h": 1080}


@dataclass(frozen=True)
class Proxy:
    """A proxy: where to connect, and the credentials its URL carried."""

    scheme: str
    host: str
    port: int
    #: ``Proxy-Authorization`` for the credentials in the proxy's URL, if it had some.
    authorization: str | None
    #: The proxy's URL without its credentials, for messages.
    url: str


def parse_proxy(url: str) -> Proxy:
    """``url`` as a proxy; ValueError if it cannot be one."""
    parts = urlsplit(url if "://" in url else "http://" + url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(f"unsupported proxy scheme in {url!r}")
    host = parts.hostname
    if not host:
        raise ValueError(f"no host in the proxy URL {url!r}")
    port = parts.port or _DEFAULT_PORTS[scheme]  # ValueError for a port out of range
    authorization = None
    if parts.username is not None:
        authorization = basic_credentials(parts.username, parts.password)
    return Proxy(scheme, host, port, authorization, f"{scheme}://{bracketed(host)}:{port}")


def proxy_url_for(scheme: str, host: str, port: int, given: str | None) -> str | None:
    """The proxy URL for a request to ``scheme://host:port``: ``given``, else the environment's."""
    if given:
        return given
    proxies = urllib.request.getproxies_environment()
    url = proxies.get(scheme) or proxies.get("all")
    if not url or bypassed(host, port, proxies.get("no", "")):
        return None
    return url


def bypassed(host: str, port: int, no_proxy: str) -> bool:
    """Whether ``NO_PROXY``'s value ``no_proxy`` sends requests to ``host:port`` directly."""
    host = host.lower().rstrip(".")
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in re.split(r"[,\s]+", no_proxy.lower()):
        if not entry:
            continue
        if entry == "*":
            return True
        name, wanted = _split_port(entry)
        if wanted is not None and wanted != port:
            continue
        if address is not None:
            try:
                if address in ipaddress.ip_network(name, strict=False):
                    return True
            except ValueError:
                pass  # a host name: compared as text below
        name = name.removeprefix("*").removeprefix(".")
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


def _split_port(entry: str) -> tuple[str, int | None]:
    """``host:port``, ``[v6]:port``, a bare v6 address or a network, and the port if one is given."""
    if entry.startswith("["):
        name, _, rest = entry[1:].partition("]")
        return name, int(rest[1:]) if rest[1:].isdigit() else None
    name, colon, port = entry.rpartition(":")
    if colon and port.isdigit() and ":" not in name:
        return name, int(port)
    return entry, None
