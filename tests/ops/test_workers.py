"""``getgpt serve --workers N``: several processes on one port, supervised, stopped by draining."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import httpx

from getgpt.server import ServerConfig

from ..support.hostile import queued
from ..support.processes import SSL_CONTEXT
from ..support.serve_process import getgpt_serve, run_getgpt
from ..support.servers import wait_until


def _dead(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_two_workers_answer_on_one_port_and_a_killed_worker_is_replaced() -> None:
    with getgpt_serve("--workers", "2", "--log-level", "warning") as server:
        pids = server.workers(2)
        assert len(pids) == 2 and server.process.pid not in pids
        victim = min(pids)
        os.kill(victim, signal.SIGKILL)
        # A connection the kernel hands its socket while it dies is reset, which no server can
        # prevent: "meanwhile" begins once it is dead (a zombie until the supervisor reaps it).
        wait_until(lambda: _dead(victim), 10, "the killed worker dead")
        # The supervisor starts another; meanwhile the survivor answers every request.
        wait_until(lambda: len(server.pids(20) - {victim}) == 2, 20)
        assert (
            httpx.post(
                server.url + "v1/chat/completions",
                json={"messages": [{"role": "user", "content": "still here"}]},
                verify=SSL_CONTEXT,
            ).json()["choices"][0]["message"]["content"]
            == "still here"
        )
        assert "ended (exit -9); starting another" in server.output()


def test_sigterm_stops_the_supervisor_and_every_worker() -> None:
    with getgpt_serve("--workers", "2", "--log-level", "info") as server:
        pids = server.workers(2)
        assert len(pids) == 2
        os.kill(server.process.pid, signal.SIGTERM)
        assert server.process.wait(20) == 0
        assert not any(_alive(pid) for pid in pids)
        assert server.output().count("draining: 0 stream(s) open") == 2
        assert "Traceback" not in server.output()


def test_a_port_in_use_is_one_clear_error_with_workers_too() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for workers in ("1", "2"):
            result = run_getgpt(
                "serve", "--port", str(port), "--workers", workers, "--max-streams", "9000", timeout=60
            )
            assert result.returncode == 1
            assert "Traceback" not in result.stderr
            assert f"{port}" in result.stderr


def test_workers_auto_means_the_cpus_this_process_may_use() -> None:
    config = ServerConfig.from_env({"GETGPT_WORKERS": "auto"})
    assert config.workers == len(os.sched_getaffinity(0))
    assert ServerConfig.from_env({"GETGPT_WORKERS": "3"}).workers == 3


def test_each_worker_gets_enough_accept_queues_for_its_stream_limit() -> None:
    from getgpt.server.running.supervisor import sockets_per_worker, somaxconn

    cap = somaxconn()
    assert sockets_per_worker(ServerConfig(max_streams=cap)) == 1
    assert sockets_per_worker(ServerConfig(max_streams=cap + 1)) == 2
    assert sockets_per_worker(ServerConfig(max_streams=cap * 3, accept_queues=1)) == 1


def test_a_burst_larger_than_one_accept_queue_waits_in_the_others() -> None:
    # Two queues of 2,048 (asked for explicitly: the kernel's cap may be larger) hold a burst of
    # 3,000 connections at a stopped server: none is dropped, so none waits for a SYN retry.
    burst = 3000
    with getgpt_serve("--max-streams", "2048", "--accept-queues", "2", "--log-level", "warning") as server:
        server.process.send_signal(signal.SIGSTOP)
        try:
            assert queued(server.address, burst) == burst  # none dropped
        finally:
            server.process.send_signal(signal.SIGCONT)
