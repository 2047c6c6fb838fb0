"""Benchmark 10: routing among many upstreams (issue 19), side by side in one run.

- **decision**: the routing decision alone, in this process: picking an upstream of a model and
  the bookkeeping a try does (in flight up and down, time to first byte), for 1 and 3 upstreams,
  each strategy. Target: <= 10 us a request with 3 upstreams.
- **3 upstreams vs 1**: ``getgpt serve --config`` (one process) with three upstreams -- the same
  emitter (bench/emitter.py) behind all three names -- against one, and ``--upstream`` alone
  (the path before routing): latency added at p50 (requests alternating, a new connection each,
  as benchmark 5), then requests/s and gateway CPU per request under ``hey`` (50 at once).
- **--workers 2 with routing on**: requests/s through ``getgpt serve --workers 2 --config``
  with three upstreams, beside ``--upstream`` alone. Target: >= 5,000 requests/s.
- **the failover drill**: 60 s at a steady rate through ``--workers 2`` with three upstreams
  (emitters pacing their 10-chunk streams 20 ms a chunk, so streams are live ~0.25 s); one
  killed (SIGKILL) at 20 s and restarted at 40 s. Every request is kept: failed requests must be
  exactly the streams that were live on the killed one at the kill. ``/metrics`` is read every
  100 ms: when the gateway last sent the killed one a request, and when it took it back.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from .common import machine, percentile, raise_nofile, table, tls
from .emitter import EmitterProcess
from .gateway import PATH, _sequence
from .loadgen import text_of
from .stream import expected_text
from .workers import ServeProcess

CHUNKS = 10
CONCURRENCY = 50
TARGET_DECISION_US = 10.0
TARGET_RPS = 5000.0
ONE, THREE = "--config, 1 upstream", "--config, 3 upstreams"
BODY = json.dumps({"model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": "Hi"}], "stream": True})


def _config(directory: str, name: str, urls: list[str], **routing: object) -> str:
    """A config file routing every model to ``urls`` (upstreams u1, u2, ...)."""
    lines = []
    for index, url in enumerate(urls, 1):
        lines += ["[[upstreams]]", f'name = "u{index}"', f'url = "{url}"', ""]
    if routing:
        lines.append("[routing]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in routing.items()]
    path = Path(directory) / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


# -- the decision ---------------------------------------------------------------------------------


def decision(picks: int) -> str:
    """Microseconds a request for the routing decision and a try's bookkeeping, in this process."""
    from getgpt.client.transport import Timeouts
    from getgpt.server.config import STRATEGIES, Routing, UpstreamEntry
    from getgpt.server.upstreams.kinds import OpenAIUpstream
    from getgpt.server.upstreams.routing import Router

    timeouts = Timeouts(1.0, read=1.0, write=1.0, pool=1.0, head=1.0)

    def router(count: int, strategy: str) -> Router:
        entries = tuple(UpstreamEntry(f"u{i}", "http://127.0.0.1:9/v1") for i in range(count))
        upstreams = {e.name: OpenAIUpstream(e.name, e.url, key=None, timeouts=timeouts) for e in entries}
        return Router(Routing(entries, strategy=strategy), upstreams)

    def per_request(routed: Router) -> float:
        started = time.perf_counter()
        for _ in range(picks):
            attempts = routed.attempts("gpt-3.5-turbo", 1e12)
            picked = attempts.next()
            assert picked is not None
            health = picked[0].health
            health.in_flight += 1
            health.succeeded(0.001)
            health.in_flight -= 1
        return (time.perf_counter() - started) / picks * 1e6

    rows = []
    for strategy in STRATEGIES:
        one, three = router(1, strategy), router(3, strategy)
        runs = {1: [], 3: []}  # type: dict[int, list[float]]
        for _ in range(5):  # alternating, so the machine's mood falls on both alike
            runs[1].append(per_request(one))
            runs[3].append(per_request(three))
        a, b = statistics.median(runs[1]), statistics.median(runs[3])
        rows.append([strategy, f"{a:.2f}", f"{b:.2f}", f"{b - a:+.2f}"])
    return (
        f"the routing decision and a try's bookkeeping, in process, {picks:,} requests x 5 alternating runs; "
        "median us a request\n\n"
        + table(["strategy", "1 upstream", "3 upstreams", "3 - 1"], rows)
        + f"\n\nTarget: <= {TARGET_DECISION_US:g} us a request with 3 upstreams."
    )


# -- 3 upstreams vs 1 ------------------------------------------------------------------------------


def _hey(url: str, seconds: float) -> dict[str, object]:
    hey = shutil.which("hey")
    if hey is None:
        raise RuntimeError("this benchmark needs hey: apt-get install hey")
    args = [hey, "-z", f"{seconds}s", "-c", str(CONCURRENCY), "-m", "POST", "-T", "application/json"]
    out = subprocess.run([*args, "-d", BODY, url], capture_output=True, text=True, check=True).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    statuses = {int(code): int(n) for code, n in re.findall(r"\[(\d+)\]\s+(\d+) responses", out)}
    if rate is None or set(statuses) != {200} or "Error distribution" in out:
        raise AssertionError(f"hey saw failures:\n{out}")
    p50 = re.search(r"50% in ([\d.]+) secs", out)
    return {"rps": float(rate.group(1)), "p50": float(p50.group(1)) * 1000 if p50 else float("nan")}


def _check(port: int) -> None:
    """One reply through the gateway at ``port``, read whole: its text must be the upstream's."""
    from getgpt.protocol.reply import ReplyParser

    headers = {"Content-Type": "application/json"}
    answer = httpx.post(
        f"http://127.0.0.1:{port}/{PATH}", content=BODY, headers=headers, timeout=30, verify=tls()
    )
    if answer.status_code != 200:
        raise AssertionError(f"HTTP {answer.status_code}: {answer.text[:200]}")
    parser = ReplyParser()
    if "".join(parser.feed(answer.content)) + "".join(parser.close()) != expected_text(CHUNKS):
        raise AssertionError("a reply through the gateway has the wrong text")


def three_vs_one(repeats: int, seconds: float, rounds: int, warmup: float = 1.0) -> str:
    """``warmup``: seconds of ``hey`` against each gateway before the timed rounds (pools, caches)."""
    raise_nofile(65536)
    with tempfile.TemporaryDirectory() as tmp, EmitterProcess(prebuild=(CHUNKS,)) as emitter:
        upstream = emitter.base(CHUNKS) + "v1"
        gateways = {
            "--upstream alone": ServeProcess("--backend", "openai", "--upstream", upstream),
            ONE: ServeProcess("--config", _config(tmp, "one", [upstream])),
            THREE: ServeProcess("--config", _config(tmp, "three", [upstream] * 3)),
        }
        try:
            for gateway in gateways.values():
                _check(gateway.port)
            direct = "/" + emitter.base(CHUNKS).split("/", 3)[3] + PATH
            targets = [(emitter.port, direct)] + [(gw.port, "/" + PATH) for gw in gateways.values()]
            asyncio.run(_sequence(targets, 20))  # warm up: pools, caches
            measured = asyncio.run(_sequence(targets, repeats))
            for streams in measured:
                for stream in streams:
                    if stream.error or text_of(stream) != expected_text(CHUNKS):
                        raise AssertionError(f"a request failed: {stream.error}")
            base = [(s.ended - s.started) * 1000 for s in measured[0]]  # type: ignore[operator]
            lat_rows = []
            added: dict[str, float] = {}
            for name, streams in zip(gateways, measured[1:], strict=True):
                through = [(s.ended - s.started) * 1000 for s in streams]  # type: ignore[operator]
                paired = statistics.median(t - d for d, t in zip(base, through, strict=True))
                added[name] = paired
                p50 = percentile(through, 50)
                lat_rows.append([name, f"{p50:.3f}", f"{p50 - percentile(base, 50):+.3f}", f"{paired:+.3f}"])
            results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in gateways}
            names = list(gateways)
            for name in names:  # warm up under load
                _hey(f"http://127.0.0.1:{gateways[name].port}/{PATH}", warmup)
            for r in range(rounds):
                for name in names[r % len(names) :] + names[: r % len(names)]:
                    gateway = gateways[name]
                    cpu = gateway.cpu_seconds()
                    result = _hey(f"http://127.0.0.1:{gateway.port}/{PATH}", seconds)
                    served = float(result["rps"]) * seconds  # type: ignore[arg-type]
                    us = (gateway.cpu_seconds() - cpu) * 1e6 / max(served, 1.0)
                    results[name].append((float(result["rps"]), float(result["p50"]), us))  # type: ignore[arg-type]
        finally:
            for gateway in gateways.values():
                gateway.close()
    load_rows = []
    for name in names:
        rps = statistics.median(x[0] for x in results[name])
        p50 = statistics.median(x[1] for x in results[name])
        cpu = statistics.median(x[2] for x in results[name])
        load_rows.append(
            [
                name,
                f"{rps:,.0f}",
                " / ".join(f"{x[0]:,.0f}" for x in results[name]),
                f"{p50:.1f}",
                f"{cpu:.0f}",
            ]
        )
    one_cpu = statistics.median(x[2] for x in results[ONE])
    three_cpu = statistics.median(x[2] for x in results[THREE])
    return (
        f"latency: {repeats} streamed requests each, {CHUNKS}-chunk replies, alternating with the upstream "
        "directly, a new connection each; ms\n\n"
        + table(["gateway", "whole reply p50", "added at p50", "added, paired median"], lat_rows)
        + f"\n\n3 upstreams - 1, paired medians: {(added[THREE] - added[ONE]) * 1000:+.0f} us\n\n"
        + f"load: hey, {CONCURRENCY} at once, kept-alive connections, {seconds:g} s a round, {rounds} rounds "
        "rotating the order; medians\n\n"
        + table(["gateway", "requests/s", "each round", "p50 ms", "gateway CPU us/req"], load_rows)
        + f"\n\n3 upstreams - 1, gateway CPU a request: {three_cpu - one_cpu:+.0f} us"
    )


def workers(seconds: float, rounds: int) -> str:
    raise_nofile(65536)
    with tempfile.TemporaryDirectory() as tmp, EmitterProcess(prebuild=(CHUNKS,)) as emitter:
        upstream = emitter.base(CHUNKS) + "v1"
        gateways: dict[str, ServeProcess | None] = {
            "upstream directly (the machine's ceiling)": None,
            "--workers 2 --upstream alone": ServeProcess(
                "--backend", "openai", "--upstream", upstream, "--max-streams", "4096", "--workers", "2"
            ),
            "--workers 2 --config, 3 upstreams": ServeProcess(
                "--config", _config(tmp, "three", [upstream] * 3), "--max-streams", "4096", "--workers", "2"
            ),
        }
        urls = {
            name: (
                upstream + "/chat/completions"
                if gateway is None
                else f"http://127.0.0.1:{gateway.port}/{PATH}"
            )
            for name, gateway in gateways.items()
        }
        try:
            for gateway in gateways.values():
                if gateway is not None:
                    _check(gateway.port)
            names = list(gateways)
            results: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
            for r in range(rounds):
                for name in names[r % len(names) :] + names[: r % len(names)]:
                    gateway = gateways[name]
                    cpu = gateway.cpu_seconds() if gateway is not None else 0.0
                    rate = float(_hey(urls[name], seconds)["rps"])  # type: ignore[arg-type]
                    used = (gateway.cpu_seconds() - cpu) * 1e6 / max(rate * seconds, 1.0) if gateway else 0.0
                    results[name].append((rate, used))
        finally:
            for gateway in gateways.values():
                if gateway is not None:
                    gateway.close()
    rows = [
        [
            name,
            f"{statistics.median(x[0] for x in runs):,.0f}",
            " / ".join(f"{x[0]:,.0f}" for x in runs),
            "-" if gateways[name] is None else f"{statistics.median(x[1] for x in runs):.0f}",
        ]
        for name, runs in results.items()
    ]
    return (
        f"streamed requests/s, hey, {CONCURRENCY} at once, {seconds:g} s a round, {rounds} rounds "
        "rotating the order\n\n"
        + table(["target", "requests/s (median)", "each round", "gateway CPU us/req (all workers)"], rows)
        + f"\n\nTarget: >= {TARGET_RPS:,.0f} requests/s with routing on (--workers 2)."
    )


def profile(seconds: float) -> str:
    """Where one gateway process routing among 3 upstreams spends its time under hey's load."""
    from .apps import AppProcess

    with tempfile.TemporaryDirectory() as tmp, EmitterProcess(prebuild=(CHUNKS,)) as emitter:
        path = os.path.join(tmp, "profile.txt")
        config = _config(tmp, "three", [emitter.base(CHUNKS) + "v1"] * 3)
        with AppProcess("getgpt", "--config", config, "--profile", path) as gateway:
            rate = _hey(gateway.url + PATH, seconds)["rps"]
        with open(path) as report:
            lines = report.read().splitlines()[:100]
    return (
        f"one gateway process routing among 3 upstreams under pyinstrument, {rate:,.0f} requests/s while "
        "profiled:\n\n" + "\n".join("    " + line for line in lines)
    )


# -- the failover drill ---------------------------------------------------------------------------


@dataclass
class _Request:
    started: float
    upstream: str = ""
    head: float | None = None
    ended: float | None = None
    status: int = 0
    body: bytearray = field(default_factory=bytearray)
    error: str | None = None

    @property
    def whole(self) -> bool:
        return (
            self.status == 200
            and self.body.endswith(b"0\r\n\r\n")
            and b"data: [DONE]" in self.body
            and b'"error"' not in self.body
        )


class _Reader(asyncio.Protocol):
    def __init__(self, request: _Request, payload: bytes, done: asyncio.Future[None]) -> None:
        self.request, self.payload, self.done = request, payload, done
        self.raw = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(self.payload)

    def data_received(self, data: bytes) -> None:
        request = self.request
        if request.head is None:
            self.raw += data
            end = self.raw.find(b"\r\n\r\n")
            if end < 0:
                return
            request.head = time.monotonic()
            head = bytes(self.raw[:end]).decode("latin-1")
            request.status = int(head.split(" ", 2)[1])
            found = re.search(r"(?im)^x-getgpt-upstream:\s*(\S+)", head)
            request.upstream = found.group(1) if found else ""
            request.body += self.raw[end + 4 :]
        else:
            request.body += data

    def connection_lost(self, exc: Exception | None) -> None:
        self.request.ended = time.monotonic()
        if exc is not None:
            self.request.error = type(exc).__name__
        if not self.done.done():
            self.done.set_result(None)


async def _drill_load(port: int, rate: float, seconds: float, events: dict[str, float]) -> list[_Request]:
    """``rate`` requests a second for ``seconds``, each on its own connection (``Connection: close``)."""
    loop = asyncio.get_running_loop()
    payload = (
        f"POST /{PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(BODY)}\r\nConnection: close\r\n\r\n{BODY}"
    ).encode()
    requests: list[_Request] = []
    begin = time.monotonic()
    events["begin"] = begin

    async def one(request: _Request) -> None:
        done: asyncio.Future[None] = loop.create_future()
        try:
            await loop.create_connection(lambda: _Reader(request, payload, done), "127.0.0.1", port)
            await asyncio.wait_for(done, 60)
        except (OSError, asyncio.TimeoutError) as exc:
            request.error = type(exc).__name__
            request.ended = time.monotonic()

    tasks = []
    total = int(rate * seconds)
    for index in range(total):
        wait = begin + index / rate - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        request = _Request(time.monotonic())
        requests.append(request)
        tasks.append(asyncio.ensure_future(one(request)))
    await asyncio.gather(*tasks)
    return requests


async def _sample_metrics(url: str, stop: asyncio.Event, samples: list[tuple[float, float, float]]) -> None:
    """``getgpt_upstream_requests_total`` of u3 (all workers) and of all, every 100 ms."""
    async with httpx.AsyncClient(timeout=5, verify=tls()) as client:
        while not stop.is_set():
            try:
                text = (await client.get(url + "metrics")).text
            except httpx.HTTPError:
                text = ""
            mine = sum(
                float(v)
                for v in re.findall(r'getgpt_upstream_requests_total\{upstream="u3"\} ([\d.e+]+)', text)
            )
            every = sum(
                float(v) for v in re.findall(r"getgpt_upstream_requests_total\{[^}]*\} ([\d.e+]+)", text)
            )
            samples.append((time.monotonic(), mine, every))
            await asyncio.sleep(0.1)


def drill(seconds: float, rate: float, kill_at: float, back_at: float, interval: float) -> str:
    raise_nofile(65536)
    emitters = [EmitterProcess(prebuild=(CHUNKS,)) for _ in range(3)]
    killed_port = emitters[2].port
    urls = [f"{emitter.url}/pace20/{CHUNKS}-1/v1" for emitter in emitters]
    with tempfile.TemporaryDirectory() as tmp:
        config = _config(tmp, "drill", urls, **{"health-interval": interval})
        gateway = ServeProcess("--config", config, "--workers", "2", "--max-streams", "4096")
        events: dict[str, float] = {}
        samples: list[tuple[float, float, float]] = []

        async def run() -> list[_Request]:
            stop = asyncio.Event()
            sampler = asyncio.ensure_future(
                _sample_metrics(f"http://127.0.0.1:{gateway.port}/", stop, samples)
            )
            load = asyncio.ensure_future(_drill_load(gateway.port, rate, seconds, events))
            while "begin" not in events:
                await asyncio.sleep(0.01)
            await asyncio.sleep(max(0.0, events["begin"] + kill_at - time.monotonic()))
            emitters[2].kill()
            events["kill"] = time.monotonic()
            await asyncio.sleep(max(0.0, events["begin"] + back_at - time.monotonic()))
            emitters[2] = await asyncio.to_thread(EmitterProcess, (CHUNKS,), killed_port)
            events["back"] = time.monotonic()
            requests = await load
            stop.set()
            await sampler
            return requests

        try:
            requests = asyncio.run(run())
        finally:
            gateway.close()
            for emitter in emitters:
                emitter.close()
    kill, back = events["kill"], events["back"]
    failed = [r for r in requests if not r.whole]
    # Live on u3 at the kill: its answer came from u3 (a request is never moved once a byte of it
    # has gone out), it had begun before the kill and had not ended by then. (When its head reached
    # this process says nothing: on a busy machine the gateway may have handed u3's first event on
    # before the kill while the head arrives here after it.)
    live = [r for r in requests if r.upstream == "u3" and r.started <= kill and (r.ended or 1e18) > kill]
    failed_not_live = [r for r in failed if r not in live]
    sent = [(t, mine) for t, mine, _ in samples]
    at_kill = next((mine for t, mine in sent if t >= kill), 0.0)
    settled = max((mine for t, mine in sent if kill <= t < back), default=at_kill)
    last_pick = next((t for t, mine in sent if kill <= t < back and mine >= settled), kill) - kill
    taken_back = next((t for t, mine in sent if t >= back and mine > settled), None)
    # The first request after the restart that u3 answered, as the answer's header says.
    answered_again = min(
        (r.started for r in requests if r.upstream == "u3" and r.started >= back), default=None
    )
    by_upstream: dict[str, int] = {}
    for r in requests:
        by_upstream[r.upstream or "(none)"] = by_upstream.get(r.upstream or "(none)", 0) + 1
    rows = [
        ["requests sent", f"{len(requests):,}"],
        ["answered whole", f"{len(requests) - len(failed):,}"],
        ["failed", f"{len(failed):,}"],
        ["streams live on u3 at the kill", f"{len(live):,}"],
        ["failed that were not live on u3 at the kill", f"{len(failed_not_live):,}"],
        ["served by each upstream", ", ".join(f"{k}: {v:,}" for k, v in sorted(by_upstream.items()))],
        ["u3's last request after the kill (metrics, 100 ms samples)", f"{last_pick * 1000:.0f} ms"],
        [
            "u3 taken back after its restart (metrics, 100 ms samples)",
            "never" if taken_back is None else f"{(taken_back - back) * 1000:.0f} ms",
        ],
        [
            "u3's first answer after its restart (the answers' X-Getgpt-Upstream)",
            "never" if answered_again is None else f"{(answered_again - back) * 1000:.0f} ms",
        ],
    ]
    verdict = "met" if not failed_not_live else "MISSED"
    for r in failed_not_live[:10]:  # what a miss was, to look into
        rows.append(
            [
                "failed, not live on u3",
                f"started {r.started - events['begin']:.3f} s, upstream {r.upstream or '-'}, "
                f"status {r.status}, error {r.error}, {len(r.body)} body bytes",
            ]
        )
    return (
        f"{seconds:g} s at {rate:g} streamed requests/s (a new connection each) through --workers 2, three "
        f"upstreams pacing {CHUNKS}-chunk streams at 20 ms a chunk; u3 killed (SIGKILL) at {kill_at:g} s, "
        f"restarted at {back_at:g} s; health-interval {interval:g} s, the rest as default\n\n"
        + table(["", ""], rows)
        + f"\n\nfailed requests = only the streams live on the killed upstream: {verdict}"
    )


def run(quick: bool = False) -> str:
    parts = ["## 12. Routing (issue 19)", ""]
    if quick:
        parts += [
            decision(2_000),
            "",
            three_vs_one(20, 1.0, 1),
            "",
            workers(1.0, 1),
            "",
            drill(6.0, 50, 2.0, 4.0, 1.0),
        ]
    else:
        parts += [
            decision(100_000),
            "",
            three_vs_one(500, 10.0, 3),
            "",
            workers(10.0, 3),
            "",
            drill(60.0, 200, 20.0, 40.0, 2.0),
        ]
    return "\n".join([*parts, ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=("decision", "three", "workers", "drill", "profile"), nargs="+")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(machine(), "\n", flush=True)
    quick = args.quick
    chosen = args.only or ["decision", "three", "workers", "drill"]
    if "decision" in chosen:
        print(decision(2_000 if quick else 100_000), "\n", flush=True)
    if "three" in chosen:
        print(three_vs_one(20, 1.0, 1) if quick else three_vs_one(500, 10.0, 3), "\n", flush=True)
    if "workers" in chosen:
        print(workers(1.0, 1) if quick else workers(10.0, 3), "\n", flush=True)
    if "profile" in chosen:
        print(profile(2.0 if quick else 10.0), "\n", flush=True)
    if "drill" in chosen:
        print(drill(6.0, 50, 2.0, 4.0, 1.0) if quick else drill(60.0, 200, 20.0, 40.0, 2.0), flush=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
