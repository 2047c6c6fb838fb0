"""Runs one chat request in a process of its own and returns what came of it, how long it took and
how much the process's resident memory grew at its peak while it ran.

``kind`` is ``sync`` (:class:`getgpt.Client`) or ``async`` (:class:`getgpt.AsyncClient`);
``options`` are the client's keyword arguments, and ``"via_httpx": true`` among them sends through
an httpx client of the probe's own (``http_client=``) instead of the lean path. The peak is the
kernel's ``VmHWM``, reset just before the request (``/proc/self/clear_refs``), less ``VmRSS`` at
that moment: what this request cost, not what importing the package did.

**A fork for each request.** A fresh interpreter importing getgpt cost ~0.25 s of CPU a request
(41 of them in a run of the suite). Instead each test worker keeps one process of this module
(``python client_probe.py --fork``) that has imported everything the request path needs, and it
forks a child for each request: the child's memory is its own from the fork on, which is all the
measurement needs. A request that does not end within its limit kills that process and its child;
the next request starts another. Measured: the two test files that probe took 16 s of CPU, now 8.
One difference: a child maps the interpreter's code pages as it first runs them (a fork copies no
mapping of a file), so a request reads ~4 MiB more than in a fresh process (5.3 against 1.3 MiB
for a plain reply; 21 against 17 for a capped JSON bomb): constant, and far under the bounds
the tests hold requests to (100 MiB; an attack that got through costs hundreds).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import resource
import selectors
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import IO, Any

import getgpt

__all__ = ["complete_one", "probe"]

HI = [{"role": "user", "content": "hi"}]


class _Forker:
    """The worker's forking process: a request's spec in, one JSON line out."""

    def __init__(self) -> None:
        from .processes import SRC  # here: this file is also the forking process's script

        # The package the tests run: the one on PYTHONPATH when it is set, else this tree's.
        env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH") or str(SRC)}
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--fork"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            start_new_session=True,  # its children die with it: os.killpg
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.to: IO[bytes] = self.process.stdin
        self.lines: IO[bytes] = self.process.stdout

    def run(self, spec: str, limit: float) -> dict[str, Any]:
        self.to.write(spec.encode() + b"\n")
        self.to.flush()
        with selectors.DefaultSelector() as waiting:
            waiting.register(self.lines, selectors.EVENT_READ)
            if not waiting.select(limit):
                self.kill()
                raise AssertionError(f"the probe did not end within {limit:g} s: {spec}")
        line = self.lines.readline()
        if not line:
            self.kill()
            raise AssertionError(f"the probe's process ended (status {self.process.wait()}): {spec}")
        result: dict[str, Any] = json.loads(line)
        assert "crashed" not in result, result["crashed"]
        return result

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def close(self) -> None:
        self.to.close()  # it ends at the end of its input
        self.process.wait(10)


#: This worker's forking process, once started (another replaces it when it was killed).
_FORKERS: list[_Forker] = []


def probe(kind: str, url: str, limit: float = 60, **options: Any) -> dict[str, Any]:
    """What one request from a process of its own came to (see the module's docstring)."""
    if not _FORKERS or _FORKERS[-1].process.poll() is not None:
        _FORKERS.append(_Forker())
        atexit.register(_FORKERS[-1].close)
    return _FORKERS[-1].run(json.dumps({"kind": kind, "url": url, "options": options}), limit)


def _memory_kib() -> dict[str, int]:
    found = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0])
    return found


def complete_one(kind: str, url: str, **options: Any) -> str:
    """One reply, through Client (``kind`` ``sync``) or AsyncClient (``async``) made with ``options``."""
    if options.pop("via_httpx", False):
        import httpx

        options["http_client"] = httpx.Client() if kind == "sync" else httpx.AsyncClient()
    if kind == "sync":
        with getgpt.Client(url, **options) as client:
            return str(client.complete(HI))

    async def main() -> str:
        async with getgpt.AsyncClient(url, **options) as client:
            return str(await client.complete(HI))

    return asyncio.run(main())


#: Address space the probe may use: an attack that gets through ends in MemoryError here rather
#: than in the machine's swap.
ADDRESS_SPACE = 3 << 30


def _warm() -> None:
    """Everything the request path imports loaded, and its code paged in."""
    getgpt.Client("http://127.0.0.1:9/").close()
    asyncio.run(asyncio.sleep(0))


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """The request ``spec`` asks for, made in this process, and what came of it."""
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
    _warm()
    Path("/proc/self/clear_refs").write_text("5")
    before = _memory_kib()["VmRSS"]
    started = time.monotonic()
    outcome: dict[str, Any] = {}
    try:
        outcome["text"] = complete_one(spec["kind"], spec["url"], **spec.get("options", {}))[:200]
    except BaseException as exc:  # what came of it is the result, whatever it is
        outcome["error"] = type(exc).__name__
        outcome["message"] = str(exc)[:500]
        outcome["partial"] = getattr(exc, "partial", "")[:200]
    outcome["seconds"] = time.monotonic() - started
    outcome["growth_mib"] = (_memory_kib()["VmHWM"] - before) / 1024
    return outcome


def serve_forks() -> None:
    """Read a spec a line; fork a child that measures it and writes its outcome as a JSON line."""
    _warm()
    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        out.flush()
        child = os.fork()
        if child == 0:
            try:
                result = measure(json.loads(line))
            except BaseException:
                result = {"crashed": traceback.format_exc()}
            out.write(json.dumps(result).encode() + b"\n")
            out.flush()
            os._exit(0)
        _, status = os.waitpid(child, 0)
        if status != 0:  # it died before writing its line: say so, on the line it owes
            out.write(json.dumps({"crashed": f"the child ended with wait status {status}"}).encode() + b"\n")
            out.flush()


if __name__ == "__main__":
    serve_forks()
