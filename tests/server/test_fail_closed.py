"""Defences that must fail closed: an empty key list, proxy headers, the rate-limit table, the README."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest

from getgpt.protocol.envelope import encrypt
from getgpt.protocol.request import build_request, encode
from getgpt.server import ServerConfig
from getgpt.server.admission import security

from ..support.processes import SSL_CONTEXT
from ..support.serve_process import getgpt_serve, run_getgpt
from ..support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]


def sealed(content: str = "hi") -> dict[str, str]:
    request = build_request([{"role": "user", "content": content}])
    return {"signature": encrypt(encode(request).decode())}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --------------------------------------------------------------------------- API keys


@pytest.mark.parametrize("value", [",", " , ", ",,", ""])
def test_an_api_key_variable_holding_no_key_stops_the_server_at_start(value: str) -> None:
    result = run_getgpt("serve", "--port", str(free_port()), env={"GETGPT_API_KEYS": value})
    assert result.returncode == 1
    assert "GETGPT_API_KEYS is set but holds no value" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_api_key_variable_holding_no_key_is_refused_by_the_config_too() -> None:
    for value in (",", " , ", ""):
        with pytest.raises(ValueError, match="GETGPT_API_KEYS is set but holds no value"):
            ServerConfig.from_env({"GETGPT_API_KEYS": value})
    assert ServerConfig.from_env({"GETGPT_API_KEYS": " , key ,"}).api_keys == ("key",)
    assert ServerConfig.from_env({}).api_keys == ()  # unset: no keys, as documented


# --------------------------------------------------------------------------- proxy headers


def _statuses(url: str, forwarded_for: list[str]) -> list[int]:
    return [
        httpx.post(
            url + "api/chat/stream", json=sealed(), headers={"x-forwarded-for": address}, verify=SSL_CONTEXT
        ).status_code
        for address in forwarded_for
    ]


def test_forwarded_for_from_loopback_is_not_believed_by_default() -> None:
    # One bucket per peer: a client behind a local proxy cannot pick a fresh bucket per request.
    # uvicorn's own variable, which would trust everyone, is not read either.
    # A burst of 1, then one request every 100 minutes: nothing refills while the test runs.
    limited = ("--rate-limit", "0.01", "--rate-burst", "1")
    with getgpt_serve(*limited, env={"FORWARDED_ALLOW_IPS": "*"}) as server:
        assert _statuses(server.url, ["203.0.113.1", "203.0.113.2", "203.0.113.3"]) == [200, 429, 429]


def test_forwarded_for_is_believed_from_the_named_proxy_only() -> None:
    limited = ("--rate-limit", "0.01", "--rate-burst", "1")  # nothing refills while the test runs
    with getgpt_serve(*limited, "--forwarded-allow-ips", "127.0.0.1") as server:
        assert _statuses(server.url, ["203.0.113.1", "203.0.113.2", "203.0.113.1"]) == [200, 200, 429]
    # A proxy elsewhere is named: this peer is not it, so its header is ignored.
    with getgpt_serve(*limited, "--forwarded-allow-ips", "10.0.0.0/8,192.0.2.1") as server:
        assert _statuses(server.url, ["203.0.113.1", "203.0.113.2"]) == [200, 429]


def test_a_trusted_proxy_that_is_not_an_address_is_a_startup_error() -> None:
    result = run_getgpt("serve", "--forwarded-allow-ips", "proxy.example")
    assert result.returncode == 1
    assert "'proxy.example' is not an IP address or network" in result.stderr


def _help_of(command: str) -> str:
    result = run_getgpt(command, "--help", env={"COLUMNS": "2000"})  # no flag broken across lines
    assert result.returncode == 0, result.stderr
    return result.stdout


def _flags_of(command: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", _help_of(command)))


def _section(text: str, title: str) -> str:
    start = text.index(title)
    end = text.find("\n## ", start + len(title))
    return text[start : end if end != -1 else len(text)]


def test_the_readme_names_only_flags_getgpt_serve_has() -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    flags = _flags_of("serve")
    named: set[str] = set()
    for title in ("## Security", "## Limits and timeouts"):
        named |= set(re.findall(r"`(--[a-z][a-z0-9-]*)", _section(readme, title)))
    assert "--forwarded-allow-ips" in named
    assert named <= flags, f"the README names flags getgpt serve does not have: {sorted(named - flags)}"


def test_the_limits_table_gives_the_defaults_getgpt_serve_has() -> None:
    readme = _section((ROOT / "README.md").read_text("utf-8"), "## Limits and timeouts")
    # One block per option: "  --flag METAVAR  help ... (default: X; GETGPT_...)", the help on
    # the next line when the flag is long.
    blocks = re.split(r"\n(?=  -)", _help_of("serve").partition("options:")[2])
    defaults = dict(
        found.groups()
        for block in blocks
        if (found := re.match(r"(--[a-z][a-z0-9-]*) .*\(default: ([^;]+); GETGPT_", " ".join(block.split())))
    )
    rows = re.findall(r"^\| [^|]+ \| ([^|]+) \| `(--[a-z0-9-]+)` \|", readme, flags=re.MULTILINE)
    assert len(rows) >= 14
    for default, flag in rows:
        cell = default.strip()  # "5 s", "1 MiB", "4096 per worker": the value, then a unit or a note
        if defaults[flag] == "0":
            continue  # 0 means "worked out at start", which the cell describes in words
        assert cell.removesuffix(" s") == defaults[flag] or cell.startswith(defaults[flag] + " "), flag


# --------------------------------------------------------------------------- the rate-limit table


def test_the_rate_limit_table_stays_bounded_while_every_bucket_is_in_use() -> None:
    clock = FakeClock()
    limiter = security.RateLimiter(per_minute=60, burst=2, clock=clock)
    limiter.MAX_CLIENTS = 1000
    # Each client spends a token and comes back before refilling: no bucket is ever full, which
    # is all the table used to drop, so it grew with every new client.
    for i in range(5000):
        limiter.take(f"ip {i}")
        clock.now += 0.0001
    assert len(limiter._buckets) == 1000
    # The least recently seen go first; a recent client keeps its (spent) bucket.
    assert limiter.take("ip 4999") == 0.0
    assert limiter.take("ip 4999") > 0
    assert limiter.take("ip 0") == 0.0  # forgotten long ago: a new, full bucket


def test_a_client_seen_again_is_not_the_next_to_be_dropped() -> None:
    clock = FakeClock()
    limiter = security.RateLimiter(per_minute=60, burst=1, clock=clock)
    limiter.MAX_CLIENTS = 3
    for name in ("a", "b", "c"):
        assert limiter.take(name) == 0.0
    assert limiter.take("a") > 0  # seen again: now the most recent
    assert limiter.take("d") == 0.0  # drops b, the least recently seen
    assert limiter.take("a") > 0  # a's empty bucket was kept
    assert limiter.take("b") == 0.0  # b starts over


def _refused(limiter: security.RateLimiter, host: str) -> bool:
    try:
        asyncio.run(limiter({"type": "http", "client": (host, 40000)}))
    except Exception as exc:
        assert getattr(exc, "status", None) == 429
        return True
    return False


def test_ipv6_clients_share_a_bucket_per_64_network() -> None:
    # One subscriber holds a whole /64: a bucket per address would be a fresh bucket per request.
    limiter = security.RateLimiter(per_minute=60, burst=1, clock=FakeClock())
    assert not _refused(limiter, "2001:db8:1:2::1")
    assert _refused(limiter, "2001:db8:1:2:ffff:ffff:ffff:fffe")
    assert not _refused(limiter, "2001:db8:1:3::1")  # another network
    assert not _refused(limiter, "::ffff:198.51.100.9")  # an IPv4 peer on a dual-stack socket
    assert _refused(limiter, "198.51.100.9")  # ... is that IPv4 address
    assert not _refused(limiter, "198.51.100.10")


# --------------------------------------------------------------------------- the metrics key


@pytest.mark.parametrize("value", ["", " "])
def test_a_metrics_key_variable_holding_no_key_stops_the_server_at_start(value: str) -> None:
    # Set but empty (a template's unfilled ${METRICS_KEY}) used to read as unset: /metrics open.
    with pytest.raises(ValueError, match="GETGPT_METRICS_KEY is set but holds no value"):
        ServerConfig.from_env({"GETGPT_METRICS_KEY": value})
    result = run_getgpt("serve", "--port", str(free_port()), env={"GETGPT_METRICS_KEY": value})
    assert result.returncode == 1
    assert "GETGPT_METRICS_KEY is set but holds no value" in result.stderr
    assert "Traceback" not in result.stderr
    assert ServerConfig.from_env({}).metrics_key is None  # unset: /metrics open, as documented
