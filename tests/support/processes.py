"""A server other than ``getgpt serve`` (for which see serve_process.py) as a real subprocess,
stopped by its PID."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import httpx

from .waiting import wait_until

__all__ = ["SSL_CONTEXT", "Running", "process", "stop"]

SRC = Path(__file__).resolve().parents[2] / "src"
#: httpx's own default context, built once, for one-off calls (``httpx.get(url, verify=SSL_CONTEXT)``):
#: without it every such call builds one, reading the CA bundle -- ~27 ms of CPU, much more than a
#: request on loopback, and a server's start is polled every 10 ms.
SSL_CONTEXT = httpx.create_ssl_context()


class Running(Protocol):
    """A process started by a test: a :class:`subprocess.Popen`, or a fork server's child
    (:class:`.forkserver.Forked`)."""

    def poll(self) -> int | None: ...
    def wait(self, timeout: float | None = None) -> int: ...
    def send_signal(self, sig: int) -> None: ...
    def kill(self) -> None: ...


def stop(running: Running, grace: float = 10, sig: int = signal.SIGTERM) -> None:
    """``sig`` (SIGTERM), then SIGKILL if it has not ended within ``grace`` seconds."""
    if running.poll() is None:
        running.send_signal(sig)
        try:
            running.wait(grace)
        except subprocess.TimeoutExpired:
            running.kill()
            running.wait(grace)


@contextmanager
def process(
    command: Sequence[str],
    ready_url: str,
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    limit: float = 30,
    headers: Mapping[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command``; yield once ``ready_url`` answers 2xx; stop it on leaving.

    Its output goes to a temporary file, shown when it dies or does not become ready in time.
    """
    with tempfile.TemporaryFile() as log:
        running = subprocess.Popen(
            list(command),
            env={**os.environ, "PYTHONPATH": str(SRC), **(env or {})},
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            answered = []

            def ready() -> bool:
                if running.poll() is not None:
                    return True  # it will not become ready: stop waiting
                try:
                    answered.append(
                        httpx.get(ready_url, timeout=2, headers=headers, verify=SSL_CONTEXT).is_success
                    )
                except httpx.TransportError:
                    return False
                return answered[-1]

            with contextlib.suppress(AssertionError):  # not ready in time: reported below, with its output
                wait_until(ready, limit, f"{ready_url} answering")
            if running.poll() is not None or not answered or not answered[-1]:
                log.seek(0)
                output = log.read().decode(errors="replace")[-4000:]
                raise RuntimeError(f"{command[:3]} did not become ready at {ready_url}:\n{output}")
            yield running
        finally:
            stop(running)
