"""Run every benchmark: ``python -m bench [--quick] [--only NAME ...]``; see bench/README.md."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

from . import (
    client_stream,
    concurrency,
    gateway,
    gateway_load,
    keys,
    memory,
    server_throughput,
    small_requests,
    startup,
    store_libraries,
    workers,
)
from .common import machine

BENCHMARKS: dict[str, Callable[[bool], str]] = {
    "client": client_stream.run,
    "small": small_requests.run,
    "server": server_throughput.run,
    "concurrency": concurrency.run,
    "gateway": gateway.run,
    "startup": startup.run,
    "memory": memory.run,
    "workers": workers.run,
    "load": gateway_load.run,
    "store": store_libraries.run,
    "keys": keys.run,
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="small sizes: a check that all runs, not numbers"
    )
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run only these")
    args = parser.parse_args()
    print("# getgpt benchmarks", "", machine(), "", sep="\n", flush=True)
    for name in args.only or list(BENCHMARKS):
        started = time.perf_counter()
        print(BENCHMARKS[name](args.quick), flush=True)
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"({name}: {time.perf_counter() - started:.0f} s; load average now {load})\n", flush=True)


if __name__ == "__main__":
    main()
