"""Benchmark 7: the client's resident memory across a long stream.

``getgpt.Client`` reads ``--chunks`` chunks from the bare emitter; RSS is sampled as the pieces
arrive. The client must keep the text received so far (an error carries it as ``.partial``), so
part of any growth is the text itself: the report splits growth into the size of the text the
parser holds (its compacted blocks, measured with ``sys.getsizeof``) and everything else.
Run in a fresh interpreter so nothing else has touched the heap.
"""

from __future__ import annotations

import argparse
import gc
import subprocess
import sys
import time

import getgpt

from .common import machine, rss, table
from .emitter import EmitterProcess
from .stream import expected_text

MB = 1024 * 1024
TARGET_MB = 5.0


def _text_bytes(stream: getgpt.ChatStream) -> int:
    # What the parser holds for the text: its joined blocks and the pieces not yet joined.
    parser = stream._parser
    held = [*parser._blocks, *parser._pieces]
    return sum(sys.getsizeof(part) for part in held) + sys.getsizeof(parser._blocks)


def measure(chunks: int, samples: int = 10) -> str:
    expected = expected_text(chunks)
    every = max(chunks // samples, 1)
    warm = min(every, 10_000)
    with EmitterProcess(prebuild=(chunks,)) as emitter, getgpt.Client(emitter.base(chunks)) as client:
        gc.collect()
        rows = []
        start_rss = start_text = 0
        with client.stream([{"role": "user", "content": "Hi"}]) as stream:
            started = time.perf_counter()
            for count, _ in enumerate(stream, 1):
                if count == warm or count % every == 0:
                    now, text = rss(), _text_bytes(stream)
                    if count == warm:
                        start_rss, start_text = now, text
                    rows.append(
                        [
                            f"{count:,}",
                            f"{now / MB:.1f}",
                            f"{(now - start_rss) / MB:+.2f}",
                            f"{(text - start_text) / MB:+.2f}",
                            f"{((now - start_rss) - (text - start_text)) / MB:+.2f}",
                        ]
                    )
            elapsed = time.perf_counter() - started
            end_rss, end_text = rss(), _text_bytes(stream)
            if stream.text != expected:
                raise AssertionError("the client's text is not the stream's")
    growth = (end_rss - start_rss) / MB
    text_growth = (end_text - start_text) / MB
    chars = len(expected)
    lines = [
        f"{chunks:,} chunks ({chars:,} characters of text) in {elapsed:.1f} s; "
        f"RSS sampled from chunk {warm:,} (after warm-up) on",
        "",
        table(["chunks read", "RSS MB", "RSS growth MB", "of which text MB", "other MB"], rows),
        "",
        f"RSS growth {growth:+.2f} MB: the text the client keeps {text_growth:+.2f} MB, "
        f"everything else {growth - text_growth:+.2f} MB.",
        f"Target growth < {TARGET_MB:.0f} MB: {'met' if growth < TARGET_MB else 'MISSED'} in all; "
        f"{'met' if growth - text_growth < TARGET_MB else 'MISSED'} for what is not the text.",
    ]
    return "\n".join(lines)


def run(quick: bool = False) -> str:
    chunks = 50_000 if quick else 1_000_000
    # A fresh interpreter: the heap of earlier benchmarks would hide or fake growth.
    done = subprocess.run(
        [sys.executable, "-m", "bench.memory", "--chunks", str(chunks), "--bare"],
        capture_output=True,
        text=True,
        check=True,
    )
    return "\n".join(["## 7. Client memory on a long stream", "", done.stdout.strip(), ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=1_000_000)
    parser.add_argument("--bare", action="store_true", help="print only the result")
    args = parser.parse_args()
    if not args.bare:
        print(machine(), "\n")
    print(measure(args.chunks))


if __name__ == "__main__":
    main()
