"""A ``getgpt`` command forked from the worker's fork server (tests/support/forkserver.py: how most
tests start the command) is the command a fresh interpreter runs: the same output and status for
the same arguments, its own environment, directory, input and open-files limit, and a handle that
behaves as :class:`subprocess.Popen` does."""

from __future__ import annotations

import contextlib
import re
import resource
import signal
import subprocess
from pathlib import Path

import pytest

from ..support.command import getgpt, locale_env
from ..support.forkserver import fork_getgpt
from ..support.processes import stop
from ..support.serve_process import getgpt_serve, run_getgpt

PORT = re.compile(r":\d{2,5}\b")


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (("--help",), {}),
        (("serve", "--backend", "nope"), {}),
        (("demo", "привет 👋", "--delay", "0"), {}),
        (("chat", "--help"), {"LANG": "ru_RU.UTF-8"}),
        (("serve", "--port", "eighty"), {"LC_ALL": "ru_RU.UTF-8"}),
    ],
    ids=["help", "bad-backend", "demo", "russian-help", "russian-error"],
)
def test_a_forked_command_says_and_ends_as_a_fresh_one(args: tuple[str, ...], env: dict[str, str]) -> None:
    forked, fresh = getgpt(*args, env=env), getgpt(*args, env=env, fresh=True)

    def said(result: subprocess.CompletedProcess[str]) -> tuple[int, str, str]:
        # demo's server is on a port of its own each time
        return result.returncode, PORT.sub(":PORT", result.stdout), PORT.sub(":PORT", result.stderr)

    assert said(forked) == said(fresh)
    assert forked.stdout + forked.stderr  # it said something: the comparison compared something


def test_a_forked_command_runs_in_the_directory_it_was_given(tmp_path: Path) -> None:
    # (Its input: tests/cli/test_cli.py pipes messages to forked `getgpt chat`s.)
    out, err = tmp_path / "out", tmp_path / "err"
    forked = fork_getgpt(
        ("db", "upgrade", "--db", "here.sqlite"), env=locale_env(), stdout=out, stderr=err, cwd=str(tmp_path)
    )
    assert forked.wait(60) == 0, err.read_text()
    assert (tmp_path / "here.sqlite").is_file()  # a relative path, in the directory it was given


def test_the_open_files_limit_is_the_commands_own() -> None:
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] > 500  # the tests' own would let it start
    forked = run_getgpt("serve", "--max-connections", "500", open_files=160)
    fresh = run_getgpt("serve", "--max-connections", "500", open_files=160, fresh=True)
    assert forked.returncode == fresh.returncode == 1
    assert forked.stderr == fresh.stderr
    assert "is more than the open-files limit (ulimit -n 160) allows" in forked.stderr


def test_a_forked_server_is_signalled_waited_for_and_polled_as_a_popen_is() -> None:
    with getgpt_serve() as server:
        process = server.process
        assert process.poll() is None
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(0.05)
        process.send_signal(signal.SIGKILL)
        assert process.wait(10) == -signal.SIGKILL
        assert process.poll() == -signal.SIGKILL  # and stays so: reaped once
        stop(process)  # a process that has ended is left as it is


@pytest.mark.parametrize("fresh", [False, True], ids=["forked", "fresh"])
def test_a_server_holds_its_output_file_as_stdout_and_stderr_only(fresh: bool) -> None:
    with getgpt_serve(fresh=fresh) as server:
        fds = Path(f"/proc/{server.process.pid}/fd")
        output = (fds / "1").readlink()
        on_it = set()
        for fd in fds.iterdir():
            with contextlib.suppress(FileNotFoundError):  # a connection's socket closed meanwhile
                if fd.readlink() == output:
                    on_it.add(fd.name)
        assert on_it == {"1", "2"}
