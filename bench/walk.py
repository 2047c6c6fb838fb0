"""The walk of one request through the server: which of getgpt's files its calls run in, in order.

A newcomer reading how a ``/v1/chat/completions`` request is served follows it from file to file;
fewer files, and fewer moves between them, is a path easier to hold in one's head. This traces
one streamed request through ``getgpt serve``'s own stack -- uvicorn on the connection bounds,
the app, admission, the ``openai`` backend, the pump -- to an upstream (the bench emitter, in a
process of its own), after a warm-up request, and counts:

- the files of ``src/getgpt`` whose functions ran for it (Python calls, as ``sys.setprofile``
  sees them, on the server's thread);
- the file switches: consecutive calls in different files.

``python -m bench.walk [--backend openai|echo] [--list]``; another tree's server (the one before a
restructuring, say): ``PYTHONPATH=../before/src python -m bench.walk``.
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

import getgpt
from bench.emitter import EmitterProcess

ROOT = Path(getgpt.__file__).resolve().parent


class Trace:
    """The getgpt files of each Python call on the thread it profiles, while ``on``."""

    def __init__(self) -> None:
        self.on = False
        self.calls: list[str] = []

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if event == "call" and self.on:
            name = frame.f_code.co_filename
            if name.startswith(str(ROOT)):
                self.calls.append(str(Path(name).relative_to(ROOT)))

    def files(self) -> list[str]:
        return list(dict.fromkeys(self.calls))

    def switches(self) -> int:
        return sum(1 for a, b in zip(self.calls, self.calls[1:], strict=False) if a != b)


def walk(backend: str = "openai") -> tuple[list[str], int]:
    """The files one streamed chat request visits, in first-visit order, and its file switches."""
    import uvicorn

    from getgpt.server import ServerConfig, create_app

    try:
        from getgpt.server.running.serving import uvicorn_config
    except ImportError:  # a tree from before the server's parts were folders (--baseline-src)
        from getgpt.server.serving import uvicorn_config  # type: ignore[no-redef]

    emitter = EmitterProcess() if backend == "openai" else None
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    options: dict[str, Any] = {"host": "127.0.0.1", "port": port, "backend": backend}
    if emitter is not None:
        options["upstream"] = emitter.base(5) + "v1"
    config = ServerConfig(**options)
    server = uvicorn.Server(uvicorn_config(create_app(config), config))
    trace = Trace()

    def run() -> None:
        sys.setprofile(trace)
        server.run(sockets=[listener])

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    body = {"model": "m", "messages": [{"role": "user", "content": "walk"}], "stream": True}
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    try:
        with httpx.Client(timeout=10) as client:
            for _ in range(200):  # until it listens
                try:
                    client.get(f"http://127.0.0.1:{port}/healthz")
                    break
                except httpx.TransportError:
                    threading.Event().wait(0.05)
            client.post(url, json=body).raise_for_status()  # warm-up: imports, pools, caches
        # A new connection for the measured request, as a client's first request comes.
        with httpx.Client(timeout=10) as client:
            trace.on = True
            answer = client.post(url, json=body)
            trace.on = False
        answer.raise_for_status()
        if "data: [DONE]" not in answer.text:
            raise AssertionError("the traced request did not end as a stream ends")
    finally:
        server.should_exit = True
        thread.join(10)
        if emitter is not None:
            emitter.close()
    return trace.files(), trace.switches()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="openai", choices=("openai", "echo"))
    parser.add_argument("--list", action="store_true", help="list the files in first-visit order")
    args = parser.parse_args()
    files, switches = walk(args.backend)
    what = f"one streamed /v1/chat/completions through the {args.backend} backend"
    print(f"{what}: {len(files)} files, {switches} file switches")
    if args.list:
        for name in files:
            print(f"  {name}")


if __name__ == "__main__":
    main()
