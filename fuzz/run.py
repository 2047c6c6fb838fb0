"""Run every atheris target for a bounded time; print executions and crashes found.

    python fuzz/run.py                      # each target for 60 s
    python fuzz/run.py --seconds 10 sse     # one target, 10 s
    FUZZ_SECONDS=300 python fuzz/run.py     # the same as --seconds 300

Each target starts from a few well-formed seeds written into a fresh corpus directory (or the one
given with ``--corpus``, which then keeps what the fuzzer learns between runs). A crash leaves its
input in ``--artifacts`` (default ``fuzz/artifacts/``); rerun it with
``python fuzz/fuzz_<target>.py <file>``. The exit status is 1 when any target crashed.
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
sys.path.insert(0, str(SRC))
sys.path.insert(0, str(HERE))

from _common import CUT_SEED_TAIL  # noqa: E402
from getgpt.protocol import envelope  # noqa: E402

TARGETS = ("envelope", "sse", "reply", "relay", "request", "http11")
DICTIONARIES = {
    "envelope": "request.dict",
    "sse": "sse.dict",
    "reply": "sse.dict",
    "relay": "sse.dict",
    "request": "request.dict",
    "http11": "http11.dict",
}

_STREAM = (
    b'data: {"id":"c","object":"chat.completion.chunk",'
    b'"choices":[{"index":0,"delta":{"role":"assistant"}}]}\n\n'
    b'data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":'
    b'{"content":"\xd0\x9f\xd1\x80\xd0\xb8"},"finish_reason":null}]}\n\n'
    b": keep-alive\r\n"
    b'data: {"choices":[{"index":0,"delta":{"content":"\xf0\x9f\x98\x80 \xe2\x80\xa8"}}]}\r\n\r\n'
    b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}\r\r'
    b"data: [DONE]\n\n"
)
_REQUEST = (
    b'{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"\xd0\x9f"}],'
    b'"frequency_penalty":0,"max_tokens":4000,"model":"gpt-3.5-turbo","presence_penalty":0,'
    b'"temperature":1,"top_p":1,"stream":true,"uuid":"4b0f"}'
)


def seeds(target: str) -> list[bytes]:
    """Well-formed inputs to start from; the fuzzer mutates them into the malformed ones.

    The targets draw their choices from the end of the input (atheris takes integers from
    there), so each seed ends with the bytes that choose as intended: cut into four reads, the
    largest event limit (sse), the streaming path (reply).
    """
    if target == "relay":
        return [_STREAM + CUT_SEED_TAIL, _STREAM.replace(b"\r", b"") + CUT_SEED_TAIL]
    if target in ("sse", "reply"):
        stream_choice = CUT_SEED_TAIL + (b"\x02" if target == "sse" else b"\x01")
        seeds = [
            _STREAM + stream_choice,
            b'event: x\nid: 1\ndata: {"error":{"message":"m","type":"t","code":1}}\n\n' + stream_choice,
        ]
        whole = b'{"choices":[{"message":{"content":"whole"},"finish_reason":"stop"}]}'
        return [*seeds, whole + (stream_choice if target == "sse" else b"\x00")]
    if target == "http11":
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        packed = gzip.compress(_STREAM)
        replies = [
            head + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3;x=1\r\nabc\r\n0\r\nT: 1\r\n\r\n",
            head + b"Content-Length: %d\r\n\r\n%s" % (len(_STREAM), _STREAM),
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\n\r\n" + _STREAM,
            head + b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s" % (len(packed), packed),
            head + b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 2\r\n\r\nhi",
        ]
        # Raw mode (the last byte), compression asked for (the one before), cut in four.
        raw = [reply + CUT_SEED_TAIL + b"\x01\x00" for reply in replies]
        # Built mode: the body from the start of the input, the choices from its end (a few
        # headers, gzip, asked for).
        built = [
            _STREAM + b"\x00\x02\x10\x08\x00\x05\x01\x01\x01",
            b"body" * 50 + b"\x03\x20\x00\x00\x02\x01",
        ]
        return raw + built
    signature = envelope.encrypt(_REQUEST.decode()).encode()
    return [
        signature,
        b'{"signature":"' + signature + b'"}',
        _REQUEST,
        b'{"model":"m","messages":[{"role":"developer","content":[{"type":"text","text":"t"}]}],'
        b'"stream":true,"stream_options":{"include_usage":true},"n":1}',
    ]


@dataclass
class Result:
    target: str
    seconds: float
    executions: int
    crashes: int
    artifact: str
    log: Path


def _executions(log: str) -> int:
    final = re.search(r"stat::number_of_executed_units:\s*(\d+)", log)
    if final:
        return int(final.group(1))
    # A crash ends the run before the final stats: the last status line has the count.
    counts = re.findall(r"^#(\d+)\s", log, flags=re.MULTILINE)
    return int(counts[-1]) if counts else 0


def run(target: str, seconds: int, corpus: Path, artifacts: Path, logs: Path) -> Result:
    corpus.mkdir(parents=True, exist_ok=True)
    for index, seed in enumerate(seeds(target)):
        (corpus / f"seed-{index}").write_bytes(seed)
    artifacts.mkdir(parents=True, exist_ok=True)
    before = set(artifacts.iterdir())
    command = [
        sys.executable,
        str(HERE / f"fuzz_{target}.py"),
        str(corpus),
        f"-max_total_time={seconds}",
        f"-dict={HERE / DICTIONARIES[target]}",
        f"-artifact_prefix={artifacts}/{target}-",
        "-max_len=4096",
        "-timeout=20",
        "-rss_limit_mb=2048",
        "-print_final_stats=1",
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(HERE)])}
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, errors="replace", env=env, check=False)
    elapsed = time.monotonic() - started
    log = done.stdout + done.stderr
    log_file = logs / f"{target}.log"
    log_file.write_text(log)
    found = sorted(str(path) for path in set(artifacts.iterdir()) - before)
    crashes = len(found) or (1 if done.returncode else 0)
    return Result(target, elapsed, _executions(log), crashes, ", ".join(found), log_file)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument(
        "targets", nargs="*", metavar="TARGET", help=f"some of: {', '.join(TARGETS)} (default all)"
    )
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("FUZZ_SECONDS", "60")))
    parser.add_argument("--corpus", type=Path, help="keep corpora under this directory")
    parser.add_argument("--artifacts", type=Path, default=HERE / "artifacts")
    args = parser.parse_args(argv)
    targets = args.targets or list(TARGETS)
    unknown = set(targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown target(s) {', '.join(sorted(unknown))}; choose from {', '.join(TARGETS)}")
    with tempfile.TemporaryDirectory(prefix="getgpt-fuzz-") as scratch:
        root = args.corpus or Path(scratch)
        logs = Path(scratch) / "logs"
        logs.mkdir()
        print(f"{'target':<10} {'seconds':>8} {'executions':>12} {'exec/s':>8} {'crashes':>8}")
        results = []
        for target in targets:
            result = run(target, args.seconds, root / target, args.artifacts, logs)
            results.append(result)
            rate = result.executions / result.seconds if result.seconds else 0
            row = f"{target:<10} {result.seconds:>8.0f} {result.executions:>12,} {rate:>8,.0f}"
            print(f"{row} {result.crashes:>8}", flush=True)
            if result.crashes:
                print(f"  crash input: {result.artifact or '(none written)'}")
                print("  " + "\n  ".join(result.log.read_text().splitlines()[-30:]))
        total = sum(r.executions for r in results)
        crashes = sum(r.crashes for r in results)
        print(f"{'total':<10} {sum(r.seconds for r in results):>8.0f} {total:>12,} {'':>8} {crashes:>8}")
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
