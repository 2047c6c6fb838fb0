"""Runs one chat request in a process of its own and prints, as JSON, what came of it, how long it
took and how much the process's resident memory grew at its peak while it ran.

    python tests/support/client_probe.py '{"kind": "sync", "url": "http://127.0.0.1:8000/", "options": {}}'

``kind`` is ``sync`` (:class:`getgpt.Client`) or ``async`` (:class:`getgpt.AsyncClient`);
``options`` are the client's keyword arguments, and ``"via_httpx": true`` among them sends through
an httpx client of the probe's own (``http_client=``) instead of the lean path. The peak is the
kernel's ``VmHWM``, reset just before the request (``/proc/self/clear_refs``), less ``VmRSS`` at
that moment: what this request cost, not what importing the package did.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import getgpt

__all__ = ["complete_one", "probe"]

HI = [{"role": "user", "content": "hi"}]
SRC = Path(__file__).resolve().parents[2] / "src"


def probe(kind: str, url: str, limit: float = 60, **options: Any) -> dict[str, Any]:
    """What one request from a fresh process came to (see the module's docstring)."""
    spec = json.dumps({"kind": kind, "url": url, "options": options})
    # The package the tests run: the one on PYTHONPATH when it is set, else this tree's.
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH") or str(SRC)}
    done = subprocess.run(
        [sys.executable, __file__, spec], capture_output=True, text=True, timeout=limit, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


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


def main() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
    spec = json.loads(sys.argv[1])
    # Everything the request path imports is loaded before the measurement begins.
    getgpt.Client("http://127.0.0.1:9/").close()
    asyncio.run(asyncio.sleep(0))
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
    print(json.dumps(outcome))


if __name__ == "__main__":
    main()
