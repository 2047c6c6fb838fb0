"""Benchmark 9: the gateway under load -- streamed requests, 50 at a time, through several gateways.

The upstream is the bare emitter (bench/emitter.py) answering every request with the same
10-chunk ``chat.completion.chunk`` stream. ``hey`` (a Go load generator: ``apt-get install hey``)
sends streamed ``/v1/chat/completions`` requests, 50 concurrent over kept-alive connections, for
``--seconds`` each round, to:

- the upstream directly (the ceiling: what the machine gives with no gateway at all);
- ``getgpt serve --backend openai`` with ``--workers 2``, and with one process;
- the LiteLLM proxy (``litellm[proxy]``), started offline (a random ``LITELLM_MASTER_KEY``,
  ``OPENAI_API_KEY=x``, ``LITELLM_LOCAL_MODEL_COST_MAP=True``) with one model routed to the same upstream.

Rounds rotate the order; the table gives the median of the rounds' requests/s, hey's latency
percentiles of the median round, and every status hey saw (anything but 200 is reported). Before
timing, one reply through each gateway is read whole and its text checked.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from .common import machine, raise_nofile, stop, table, tls, tree_cpu
from .emitter import EmitterProcess
from .stream import expected_text
from .workers import ServeProcess

CHUNKS = 10
CONCURRENCY = 50
TARGET_RPS = 5000.0
BODY = json.dumps({"model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": "Hi"}], "stream": True})


class LiteLLM:
    """The LiteLLM proxy in a child process, routing ``gpt-3.5-turbo`` to ``upstream`` (a /v1 base)."""

    def __init__(self, upstream: str) -> None:
        import socket

        self.dir = tempfile.mkdtemp(prefix="bench-litellm-")
        config = Path(self.dir) / "config.yaml"
        config.write_text(
            "model_list:\n"
            "  - model_name: gpt-3.5-turbo\n"
            "    litellm_params:\n"
            "      model: openai/gpt-3.5-turbo\n"
            f"      api_base: {upstream}\n"
            "      api_key: x\n"
            "litellm_settings:\n"
            "  telemetry: false\n"
        )
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.key = "sk-" + secrets.token_hex(16)
        env = {
            **os.environ,
            "LITELLM_MASTER_KEY": self.key,
            "OPENAI_API_KEY": "x",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_TELEMETRY": "False",
        }
        self.log = open(Path(self.dir) / "litellm.log", "wb")  # noqa: SIM115 -- closed by close()
        command = shutil.which("litellm") or "litellm"
        self._proc = subprocess.Popen(
            [command, "--config", str(config), "--host", "127.0.0.1", "--port", str(self.port)],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(self.url + "health/liveliness", timeout=2, verify=tls()).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "the LiteLLM proxy did not start: " + (Path(self.dir) / "litellm.log").read_text()
                )
            time.sleep(0.5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def cpu_seconds(self) -> float:
        return tree_cpu(self._proc.pid)

    def close(self) -> None:
        stop(self._proc, signal.SIGINT, 30)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _check(url: str, headers: dict[str, str]) -> None:
    """One streamed reply read whole: its text must be the upstream's."""
    from getgpt.protocol.reply import ReplyParser

    answer = httpx.post(
        url, content=BODY, headers={"Content-Type": "application/json", **headers}, timeout=30, verify=tls()
    )
    if answer.status_code != 200:
        raise AssertionError(f"{url}: HTTP {answer.status_code}: {answer.text[:200]}")
    parser = ReplyParser()
    text = "".join(parser.feed(answer.content)) + "".join(parser.close())
    if text != expected_text(CHUNKS):
        raise AssertionError(f"{url}: the reply's text differs from the upstream's")


_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_STATUS = re.compile(r"\[(\d+)\]\s+(\d+) responses")
_PERCENT = re.compile(r"(\d+)% in ([\d.]+) secs")


def _hey_cpu() -> float:
    import resource

    # hey is the only child this process waits for while a round runs.
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _hey(url: str, headers: dict[str, str], seconds: float) -> dict[str, object]:
    hey = shutil.which("hey")
    if hey is None:
        raise RuntimeError("this benchmark needs hey: apt-get install hey")
    args = [
        hey,
        "-z",
        f"{seconds}s",
        "-c",
        str(CONCURRENCY),
        "-m",
        "POST",
        "-T",
        "application/json",
        "-d",
        BODY,
    ]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    rps = _RPS.search(out)
    if rps is None:
        raise RuntimeError(f"hey printed no rate:\n{out}")
    return {
        "rps": float(rps.group(1)),
        "statuses": {int(code): int(count) for code, count in _STATUS.findall(out)},
        "percentiles": {int(p): float(s) * 1000 for p, s in _PERCENT.findall(out)},
        "errors": "Error distribution" in out,
    }


def load(seconds: float, rounds: int, with_litellm: bool = True) -> str:
    raise_nofile(65536)
    with EmitterProcess(prebuild=(CHUNKS,)) as emitter:
        upstream = emitter.base(CHUNKS) + "v1"
        servers: dict[str, tuple[str, dict[str, str], object]] = {
            "upstream directly (ceiling)": (upstream + "/chat/completions", {}, None)
        }
        gateway_options = ("--backend", "openai", "--upstream", upstream, "--max-streams", "4096")
        # Both started before either's port is asked for: they boot side by side.
        workers2 = ServeProcess(*gateway_options, "--workers", "2")
        single = ServeProcess(*gateway_options)
        servers["getgpt serve --workers 2"] = (
            f"http://127.0.0.1:{workers2.port}/v1/chat/completions",
            {},
            workers2,
        )
        servers["getgpt serve (1 process)"] = (
            f"http://127.0.0.1:{single.port}/v1/chat/completions",
            {},
            single,
        )
        if with_litellm:
            proxy = LiteLLM(upstream)
            auth = {"Authorization": f"Bearer {proxy.key}"}
            servers["LiteLLM proxy"] = (proxy.url + "v1/chat/completions", auth, proxy)
        try:
            for url, headers, _ in servers.values():
                _check(url, headers)
            results: dict[str, list[dict[str, object]]] = {name: [] for name in servers}
            names = list(servers)
            for r in range(rounds):
                for name in names[r % len(names) :] + names[: r % len(names)]:
                    url, headers, process = servers[name]
                    cpu = (
                        process.cpu_seconds() if process is not None else 0.0,  # type: ignore[attr-defined]
                        tree_cpu(emitter.pid),
                        _hey_cpu(),
                    )
                    result = _hey(url, headers, seconds)
                    served = sum(result["statuses"].values()) or 1  # type: ignore[attr-defined]
                    after = (
                        process.cpu_seconds() if process is not None else 0.0,  # type: ignore[attr-defined]
                        tree_cpu(emitter.pid),
                        _hey_cpu(),
                    )
                    # CPU microseconds per request: the gateway, the upstream, the load generator.
                    result["cpu"] = [(b - a) * 1e6 / served for a, b in zip(cpu, after, strict=True)]
                    results[name].append(result)
        finally:
            for _, _, process in servers.values():
                if process is not None:
                    process.close()  # type: ignore[attr-defined]
    ceiling = statistics.median(float(x["rps"]) for x in results[names[0]])  # type: ignore[arg-type]
    rows = []
    for name in names:
        runs = sorted(results[name], key=lambda x: float(x["rps"]))  # type: ignore[arg-type]
        middle = runs[len(runs) // 2]
        statuses: dict[int, int] = {}
        for run in runs:
            for code, count in run["statuses"].items():  # type: ignore[attr-defined]
                statuses[code] = statuses.get(code, 0) + count
        percentiles: dict[int, float] = middle["percentiles"]  # type: ignore[assignment]
        gateway_us, upstream_us, hey_us = middle["cpu"]  # type: ignore[misc]
        rps = float(middle["rps"])  # type: ignore[arg-type]
        rows.append(
            [
                name,
                f"{rps:,.0f}",
                " / ".join(f"{float(r['rps']):,.0f}" for r in runs),  # type: ignore[arg-type]
                f"{percentiles.get(50, float('nan')):.1f}",
                f"{percentiles.get(99, float('nan')):.1f}",
                f"{rps / ceiling:.2f}",
                "-" if name == names[0] else f"{gateway_us:.0f}",
                f"{upstream_us:.0f}",
                f"{hey_us:.0f}",
                ", ".join(f"{code}: {count:,}" for code, count in sorted(statuses.items()))
                + (" (and transport errors)" if any(run["errors"] for run in runs) else ""),
            ]
        )
    return (
        f"streamed /v1/chat/completions, {CHUNKS}-chunk replies, {CONCURRENCY} concurrent (hey, kept-alive "
        f"connections), {seconds:g} s a round, {rounds} rounds rotating the order; "
        "every reply checked once first\n\n"
        + table(
            [
                "target",
                "requests/s (median)",
                "each round",
                "p50 ms",
                "p99 ms",
                "vs upstream",
                "gateway CPU us/req",
                "upstream CPU us/req",
                "hey CPU us/req",
                "statuses",
            ],
            rows,
        )
        + "\n\nCPU per request is that of the median round: every process of the target (all workers), the "
        "upstream emitter, and hey. On 2 cores their sum bounds the rate: 2,000,000 us / sum per request."
        + f"\n\nTarget: getgpt serve --workers 2 >= {TARGET_RPS:,.0f} requests/s."
    )


def profile(seconds: float) -> str:
    """Where one gateway process spends its time under the same load (pyinstrument, top lines)."""
    from .apps import AppProcess

    with tempfile.TemporaryDirectory() as tmp, EmitterProcess(prebuild=(CHUNKS,)) as emitter:
        path = os.path.join(tmp, "profile.txt")
        upstream = emitter.base(CHUNKS) + "v1"
        options = ("--backend", "openai", "--upstream", upstream, "--profile", path)
        with AppProcess("getgpt", *options) as gateway:
            rate = _hey(gateway.url + "v1/chat/completions", {}, seconds)["rps"]
        with open(path) as report:
            lines = report.read().splitlines()[:90]
    return f"one gateway process under pyinstrument, {rate:,.0f} requests/s while profiled:\n\n" + "\n".join(
        "    " + line for line in lines
    )


def run(quick: bool = False) -> str:
    text = load(1.0, 1, with_litellm=False) if quick else load(10.0, 3)
    return "\n".join(["## 9. Gateway under load", "", text, ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-litellm", action="store_true")
    parser.add_argument("--profile", action="store_true", help="then profile one gateway process")
    args = parser.parse_args()
    print(machine(), "\n")
    print(load(args.seconds, args.rounds, not args.no_litellm))
    if args.profile:
        print("\n" + profile(args.seconds))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
