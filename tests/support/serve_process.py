"""``getgpt serve`` as a process of its own on a free loopback port, stopped by its PID: every test
that starts the command goes through here. The process is a fork of the worker's fork server
(:mod:`.forkserver`: the command without an interpreter's start and imports, ~0.05 s of CPU
instead of ~0.21), or with ``fresh=True`` a new interpreter, as a user starts it.

- :func:`getgpt_serve` -- ``with getgpt_serve("--flag", "value", env={...}) as server:`` starts it,
  waits until ``/healthz`` answers and stops it on leaving (SIGTERM, then SIGKILL). ``server.url``,
  ``server.address``, ``server.process``, ``server.output()`` (what it printed so far),
  ``server.wait_for_output(text)`` (wait until it has printed ``text``: a log line is how the
  server says that something happened), ``server.health()``, ``server.stop()`` (stop it inside
  the block, to read all it printed up to its exit).
- :func:`run_getgpt` -- ``getgpt ARGS`` run to its end, for a command expected to stop by itself
  (a bad setting, a port in use).

Both run it in the C.UTF-8 locale (the command's words in English) unless ``env`` sets another.
Its output goes to a file, not a pipe: a server logging a warning per hostile connection would
block on a full pipe nobody reads. ``open_files`` runs it under a lower ``ulimit -n`` (soft and
hard), as set in the child before it starts.
"""

from __future__ import annotations

import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from .command import locale_env
from .forkserver import Forked, fork_getgpt, run_forked
from .processes import SRC, SSL_CONTEXT, stop
from .servers import free_port
from .waiting import wait_until

__all__ = ["ServeProcess", "getgpt_serve", "run_getgpt"]


class ServeProcess:
    """A running ``getgpt serve``: its address, its process, what it has printed so far."""

    def __init__(
        self,
        process: Forked | subprocess.Popen[bytes],
        port: int,
        log: Path,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.process = process
        self.port = port
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/"
        self.verify = tls or SSL_CONTEXT  # what its own requests below trust
        self._log = log

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def output(self) -> str:
        return self._log.read_text("utf-8", "replace")

    def stop(self) -> str:
        """Stop it now (SIGTERM, then SIGKILL if it lingers) and return everything it printed."""
        stop(self.process)
        return self.output()

    def wait_for_output(self, text: str, limit: float = 10.0) -> str:
        """Wait until the server has printed ``text`` (a log line of the event waited for); its output."""
        wait_until(lambda: text in self.output() or self.process.poll() is not None, limit, repr(text))
        output = self.output()
        assert text in output, f"getgpt serve exited without printing {text!r}:\n{output}"
        return output

    def healthz(self, timeout: float = 2.0) -> float:
        """Seconds a fresh connection took to get ``/healthz`` answered 200; raises if it was not."""
        started = time.monotonic()
        response = httpx.get(self.url + "healthz", timeout=timeout, verify=self.verify)
        assert response.status_code == 200, response.text
        return time.monotonic() - started

    def health(self) -> dict[str, object]:
        return dict(httpx.get(self.url + "healthz", timeout=5, verify=self.verify).json())

    def pids(self, tries: int) -> set[int]:
        """The worker PIDs that answered ``tries`` requests for ``/healthz``, each on a new
        connection (the kernel picks a worker a connection)."""
        return {int(self.health()["pid"]) for _ in range(tries)}  # type: ignore[call-overload]

    def workers(self, count: int, limit: float = 20.0) -> set[int]:
        """Wait until ``count`` workers of a ``--workers`` server have answered; their PIDs.

        :func:`getgpt_serve` returns once the first answers, and the others may still be
        importing: a test of what every worker does waits here first. (Requests that each built
        an SSL context, ~27 ms, used to be slow enough for the second worker to come up.)"""
        seen: set[int] = set()

        def all_seen() -> bool:
            seen.update(self.pids(10))
            return len(seen) >= count

        wait_until(all_seen, limit, f"{count} workers answering")
        return seen


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
    *args: str,
    env: dict[str, str] | None = None,
    open_files: int | None = None,
    timeout: float = 20,
    fresh: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run ``getgpt ARGS`` to its end (a command expected to stop by itself, as on a bad setting)."""
    environment = locale_env({"PYTHONPATH": str(SRC), **(env or {})})
    if fresh:
        return subprocess.run(
            [*_command(open_files), *args],
            env=environment,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,  # a server that starts anyway runs until this
        )
    return run_forked(args, env=environment, timeout=timeout, open_files=open_files)


def _start(
    args: tuple[str, ...],
    *,
    environment: dict[str, str],
    open_files: int | None,
    log: Path,
    tls: ssl.SSLContext | None,
    fresh: bool,
) -> ServeProcess:
    port = free_port()
    command = ("serve", "--port", str(port), *args)
    if not fresh:
        forked = fork_getgpt(command, env=environment, stdout=log, stderr=log, open_files=open_files)
        return ServeProcess(forked, port, log, tls)
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [*_command(open_files), *command],
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    return ServeProcess(process, port, log, tls)


def _answers(server: ServeProcess) -> bool:
    if server.process.poll() is not None:
        return True  # it will not answer: stop waiting
    try:
        server.healthz(timeout=1)
    except (httpx.HTTPError, AssertionError):
        return False
    return True


@contextmanager
def getgpt_serve(
    *args: str,
    env: dict[str, str] | None = None,
    open_files: int | None = None,
    start_within: float = 20,
    tls: ssl.SSLContext | None = None,
    fresh: bool = False,
) -> Iterator[ServeProcess]:
    """Start ``getgpt serve ARGS`` and wait until ``/healthz`` answers; stop it afterwards.

    ``tls``: ARGS make it serve https (``--tls-certfile``, ``--tls-keyfile``), and this context
    trusts its certificate: ``server.url`` is https, and the polls and requests here use it.

    A port another process took between :func:`free_port` and the bind (tests run in several
    processes at once) is a new try on another port, not a failure.
    """
    environment = locale_env({"PYTHONPATH": str(SRC), **(env or {})})
    with tempfile.TemporaryDirectory() as tmp:
        for attempt in range(3):
            log = Path(tmp) / f"serve-{attempt}.log"
            server = _start(
                args, environment=environment, open_files=open_files, log=log, tls=tls, fresh=fresh
            )
            try:
                wait_until(lambda s=server: _answers(s), start_within, "getgpt serve answering /healthz")
            except BaseException:
                stop(server.process)
                raise
            if server.process.poll() is None:
                break
            if "address already in use" not in server.output():
                raise RuntimeError(f"getgpt serve did not start:\n{server.output()}")
        else:
            raise RuntimeError(f"getgpt serve found no free port in 3 tries:\n{server.output()}")
        try:
            yield server
        finally:
            stop(server.process)
