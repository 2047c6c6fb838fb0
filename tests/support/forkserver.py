"""``getgpt`` commands started as forks of one process that has imported getgpt once, instead of a
fresh interpreter each: what :mod:`.serve_process` starts them with.

**Why.** A run of the suite starts ``getgpt serve`` ~140 times and ``getgpt`` to its end ~70. A
fresh interpreter costs ~0.21 s of CPU from its start until ``/healthz`` answers; a fork of a
process that has imported the command, 0.046 s (eight starts each way, twice: bench/RESULTS.md
section 21). That is ~25 s of CPU a run, on a 2-core machine where the suite is bound by CPU.

**What a fork is.** Each pytest worker keeps one fork server (``python forkserver.py``, started on
first use, with this tree's ``src`` first on its path). It has imported what a ``getgpt serve``
start imports and nothing more (no event loop, no thread, no server made: nothing a child could
inherit half-done), and for each command it forks a child that then does what a fresh
interpreter started with ``python -m getgpt ARGS`` would do differently: it takes the command's
environment, working directory and locale, its output files and its open-files limit, runs
``getgpt`` as ``__main__`` (``runpy``, as ``-m`` does: ``--workers`` spawns its workers the same
way) and ends as an interpreter ends, atexit handlers and flushes included. What it does not
repeat is the interpreter's start and the imports; a test of those starts the command fresh
(``getgpt_serve(..., fresh=True)``, the README's quickstart, ``tests/cli``'s terminals).

**A child's handle.** The child is the fork server's, not the test's: :class:`Forked` stands in
for a :class:`subprocess.Popen` (``pid``, ``poll``, ``wait``, ``send_signal``, ``terminate``,
``kill``, ``returncode``). Its end is seen through a pidfd the test's process opens on it
(Linux 5.3), and its status is then asked of the fork server, which reaps a child only when
asked: until then the pid stays the child's, so a signal never reaches another process.

The exchange, a JSON line each way over the fork server's stdin and stdout::

    {"start": {"args": [...], "env": {...}, "cwd": "...", "stdout": path, "stderr": path,
               "stdin": path | null, "open_files": n | null}}   -> {"pid": n}
    {"reap": pid}                                       -> {"status": wait status}
"""

from __future__ import annotations

import atexit
import contextlib
import json
import math
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

__all__ = ["Forked", "fork_getgpt", "run_forked"]

#: What a ``getgpt serve`` start imports (``python -X importtime -m getgpt serve``: everything
#: over 0.3 ms, top level), and the admin commands' module. One missing here is imported by the
#: child that needs it: slower, never wrong.
PRELOAD = (
    "getgpt.cli.commands",
    "getgpt.cli.admin",
    "getgpt.server.config",
    "getgpt.server.config_file",
    "getgpt.server.running.supervisor",
    "getgpt.server.app",
    "prometheus_client",
    "uvloop",
    "encodings.idna",
)


class Forked:
    """A command the fork server started: what the tests use of :class:`subprocess.Popen`."""

    def __init__(self, server: _ForkServer, pid: int, args: Sequence[str]) -> None:
        self._server = server
        self.pid = pid
        self.args = list(args)
        self.returncode: int | None = None
        # Opened before anything can reap it: the pid is this child's for as long as the fd is.
        self._pidfd = os.pidfd_open(pid)

    def poll(self) -> int | None:
        if self.returncode is None and self._ended(0):
            self._reap()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            if not self._ended(timeout):
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
            self._reap()
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            signal.pidfd_send_signal(self._pidfd, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def _ended(self, timeout: float | None) -> bool:
        """Whether it has ended, waiting up to ``timeout`` seconds (for ever: None) for it to.
        (poll, not select: a test holding a thousand sockets has fds past select's 1024.)"""
        waiting = select.poll()
        waiting.register(self._pidfd, select.POLLIN)
        return bool(waiting.poll(None if timeout is None else max(0, math.ceil(timeout * 1000))))

    def _reap(self) -> None:
        status = self._server.ask({"reap": self.pid})["status"]
        self.returncode = os.waitstatus_to_exitcode(status)
        os.close(self._pidfd)

    def __del__(self) -> None:
        if self.returncode is None:
            with contextlib.suppress(OSError):
                os.close(self._pidfd)


class _ForkServer:
    """The worker's side of one fork server process."""

    def __init__(self) -> None:
        # Its own locale and stdio encoding are what each child inherits unless it sets them: the
        # tests' own (support/command.py), whatever the locale the suite runs under. (Imported
        # here: this file is also the fork server's script, outside the tests' package.)
        from .command import locale_env
        from .processes import SRC

        env = locale_env({"PYTHONPATH": str(SRC)})
        self.process = subprocess.Popen(
            [sys.executable, __file__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            start_new_session=True,  # a signal to the test's process group is not one to it
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self._to: IO[bytes] = self.process.stdin
        self._from: IO[bytes] = self.process.stdout
        self._lock = threading.Lock()  # one exchange at a time, whichever thread asks

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._to.write(json.dumps(request).encode() + b"\n")
            self._to.flush()
            line = self._from.readline()
        if not line:
            raise RuntimeError(f"the fork server ended (status {self.process.wait()})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        self._to.close()  # it ends at the end of its input; its children are left to end as they do
        self.process.wait(10)


_SERVERS: list[_ForkServer] = []


def fork_getgpt(
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    stdout: Path,
    stderr: Path,
    stdin: Path | None = None,
    cwd: str | None = None,
    open_files: int | None = None,
) -> Forked:
    """``getgpt ARGS`` started as a fork (see the module's docstring), writing to ``stdout`` and
    ``stderr`` (the same path for both: one file, as ``stderr=STDOUT``), reading ``stdin`` (the
    file's bytes; none: an empty input)."""
    if not _SERVERS or _SERVERS[-1].process.poll() is not None:
        _SERVERS.append(_ForkServer())
        atexit.register(_SERVERS[-1].close)
    server = _SERVERS[-1]
    spec = {
        "args": list(args),
        "env": dict(env),
        "cwd": cwd or os.getcwd(),
        "stdout": str(stdout),
        "stderr": str(stderr),
        "stdin": None if stdin is None else str(stdin),
        "open_files": open_files,
    }
    pid = server.ask({"start": spec})["pid"]
    return Forked(server, pid, ["getgpt", *args])


def run_forked(
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    stdin: str = "",
    timeout: float = 60,
    open_files: int | None = None,
) -> subprocess.CompletedProcess[str]:
    """``getgpt ARGS`` forked and run to its end, as ``subprocess.run(..., input=stdin,
    capture_output=True, text=True, timeout=timeout)`` would run it: its output as UTF-8 text;
    past ``timeout`` it is killed and :class:`subprocess.TimeoutExpired` raised."""
    with tempfile.TemporaryDirectory() as tmp:
        given, out, err = Path(tmp) / "stdin", Path(tmp) / "stdout", Path(tmp) / "stderr"
        given.write_text(stdin, "utf-8")
        forked = fork_getgpt(args, env=env, stdout=out, stderr=err, stdin=given, open_files=open_files)
        try:
            forked.wait(timeout)
        except subprocess.TimeoutExpired:
            forked.kill()
            forked.wait()
            raise
        return subprocess.CompletedProcess(
            forked.args, forked.returncode, out.read_text("utf-8"), err.read_text("utf-8")
        )


# -- the fork server's own side --------------------------------------------------------------


def _become(spec: dict[str, Any]) -> None:
    """In the child: become ``python -m getgpt ARGS`` as started with ``spec``; never returns."""
    import locale
    import resource
    import runpy

    os.environ.clear()
    os.environ.update(spec["env"])
    os.chdir(spec["cwd"])
    with contextlib.suppress(locale.Error):  # as a fresh interpreter takes LC_CTYPE from its environment
        locale.setlocale(locale.LC_CTYPE, "")
    if spec["open_files"] is not None:
        limit = int(spec["open_files"])
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    if spec["stdin"] is not None:
        _open_onto(spec["stdin"], os.O_RDONLY, 0)
    written = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    if spec["stderr"] == spec["stdout"]:
        _open_onto(spec["stdout"], written, 1, 2)
    else:
        _open_onto(spec["stdout"], written, 1)
        _open_onto(spec["stderr"], written, 2)
    sys.argv = ["getgpt", *spec["args"]]
    runpy.run_module("getgpt", run_name="__main__", alter_sys=True)
    raise SystemExit(0)


def _open_onto(path: str, flags: int, *targets: int) -> None:
    """The file at ``path`` opened as each of the descriptors ``targets``, and as nothing else: a
    fresh process started with it as its output has no other descriptor on it."""
    fd = os.open(path, flags, 0o644)
    for target in targets:
        os.dup2(fd, target)
    os.close(fd)


def _serve() -> None:
    """Answer the requests on stdin until it ends."""
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "wb", buffering=0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):  # what a child inherits as its stdin, and its stdout until it takes its own
        os.dup2(devnull, fd)
    os.close(devnull)
    for name in PRELOAD:
        __import__(name)
    import gc

    gc.freeze()  # what is imported is shared with every child, not copied by the collector's walks
    for line in requests:
        request = json.loads(line)
        if "reap" in request:
            _, status = os.waitpid(request["reap"], 0)
            replies.write(json.dumps({"status": status}).encode() + b"\n")
            continue
        pid = os.fork()
        if pid == 0:
            requests.close()
            replies.close()
            _become(request["start"])  # raises SystemExit: the child ends as an interpreter does
        replies.write(json.dumps({"pid": pid}).encode() + b"\n")


if __name__ == "__main__":
    _serve()
