"""``getgpt serve`` as a real subprocess on a free loopback port, stopped by its PID.

Its output goes to a file, not a pipe: a server logging a warning per hostile connection would
block on a full pipe nobody reads. ``open_files`` runs it under a lower ``ulimit -n`` (soft and
hard), as set in the child before it starts.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from .processes import stop
from .servers import free_port

__all__ = ["ServeProcess", "getgpt_serve", "run_getgpt"]

SRC = Path(__file__).resolve().parents[2] / "src"


class ServeProcess:
    """A running ``getgpt serve``: its address, its process, what it has printed so far."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.url = f"http://127.0.0.1:{port}/"
        self._log = log

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def output(self) -> str:
        return self._log.read_text("utf-8", "replace")

    def healthz(self, timeout: float = 2.0) -> float:
        """Seconds a fresh connection took to get ``/healthz`` answered 200; raises if it was not."""
        started = time.monotonic()
        response = httpx.get(self.url + "healthz", timeout=timeout)
        assert response.status_code == 200, response.text
        return time.monotonic() - started

    def health(self) -> dict[str, object]:
        return dict(httpx.get(self.url + "healthz", timeout=5).json())


# Sets the limit in the child itself, then runs the command: preexec_fn is not safe in a process
# that has threads, as the test process has (servers in threads).
_LIMITED = (
    "import resource, sys; limit = int(sys.argv.pop(1)); "
    "resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit)); "
    "from getgpt.cli.commands import main; sys.exit(main(sys.argv[1:]))"
)


def _command(open_files: int | None) -> list[str]:
    if open_files is None:
        return [sys.executable, "-m", "getgpt"]
    return [sys.executable, "-c", _LIMITED, str(open_files)]


def run_getgpt(
    *args: str, env: dict[str, str] | None = None, open_files: int | None = None, timeout: float = 20
) -> subprocess.CompletedProcess[str]:
    """Run ``getgpt ARGS`` to its end (a command expected to stop by itself, as on a bad setting)."""
    environment = {**os.environ, "PYTHONPATH": str(SRC), **(env or {})}
    return subprocess.run(
        [*_command(open_files), *args],
        env=environment,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,  # a server that starts anyway runs until this
    )


@contextmanager
def getgpt_serve(
    *args: str, env: dict[str, str] | None = None, open_files: int | None = None, start_within: float = 20
) -> Iterator[ServeProcess]:
    """Start ``getgpt serve ARGS`` and wait until ``/healthz`` answers; stop it afterwards."""
    port = free_port()
    environment = {**os.environ, "PYTHONPATH": str(SRC), **(env or {})}
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "serve.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [*_command(open_files), "serve", "--port", str(port), *args],
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        server = ServeProcess(process, port, log)
        try:
            deadline = time.monotonic() + start_within
            while True:
                try:
                    server.healthz(timeout=1)
                    break
                except (httpx.HTTPError, AssertionError):
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"getgpt serve did not start:\n{server.output()}") from None
                    time.sleep(0.05)
            yield server
        finally:
            stop(process)
