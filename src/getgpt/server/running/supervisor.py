"""Running the server: one process, or a supervisor and ``--workers`` processes on one port.

With one worker (the default) ``getgpt serve`` is one uvicorn process, as ever. With more, this
process becomes a small supervisor: it reserves the port, starts the workers (``spawn``ed, so
each builds its own app and event loop), restarts one that dies, and on SIGTERM or SIGINT passes
SIGTERM on and waits for them to drain. Each worker listens on **its own socket** bound with
``SO_REUSEPORT``, and the kernel spreads new connections over the workers' accept queues.
uvicorn's supervisor instead shares one listening socket (one accept queue) between its workers;
``python -m bench.workers`` measured both on a burst of 10,000 streams opened over 2 s
(bench/RESULTS.md, "Workers"), and own sockets won. So ``--max-streams`` is per worker: the
server as a whole admits up to ``workers x max_streams`` streams, and each worker's accept queue
is as long as its own limit.

Every worker drains on SIGTERM (:mod:`getgpt.server.operations.drain`): :class:`DrainingServer` stops
accepting at once, lets streams run on for ``--shutdown-grace`` seconds, cuts any left, then exits.
With several workers, ``PROMETHEUS_MULTIPROC_DIR`` points them at a temporary directory this
supervisor makes and removes, so ``/metrics`` on any worker reports the sum of all
(:mod:`getgpt.server.operations.prometheus`).

On SIGHUP a server started with ``--config`` reads the file's routing tables again
(:func:`getgpt.server.config_file.reread_routing`): the supervisor checks the file first, then
passes the signal on to every worker, each of which swaps its routing table (streams in flight
finish on the upstream they began on); a file that does not pass is refused with a logged
error and the running tables kept. Workers started later start with the new file.

Each process runs uvicorn with :func:`~getgpt.server.running.serving.uvicorn_config`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import logging.config
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from types import FrameType
from typing import TYPE_CHECKING

import uvicorn

from ...client.transport import bracketed
from ..config import ServerConfig
from ..operations.logs import log_config
from .serving import start_lines, tune_garbage_collector, uvicorn_config

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from ..app import GetGptApp

__all__ = ["DrainingServer", "Supervisor", "check", "check_port", "run", "sockets_per_worker", "somaxconn"]

log = logging.getLogger("getgpt.server")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# uvicorn exits with 3 when the app or the socket cannot start: restarting would fail the same way.
_STARTUP_FAILURE = 3
# After the workers' own grace period: time for their last bytes and their lifespan shutdown.
_EXIT_MARGIN = 10.0


class DrainingServer(uvicorn.Server):
    """uvicorn's server, with a drain between SIGTERM (or SIGINT) and the exit.

    The first signal starts the drain; uvicorn's own shutdown follows once no request is being
    answered, or at once on a second signal.
    """

    def __init__(self, config: uvicorn.Config, app: GetGptApp, *, announce: bool = True) -> None:
        super().__init__(config)
        self.app = app
        #: Whether to log what answers and where once listening (a worker leaves it to its supervisor).
        self.announce = announce
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiter: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        if hasattr(signal, "SIGHUP"):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                self._loop.add_signal_handler(signal.SIGHUP, reload, self.app)
        await super().startup(sockets)
        if self.announce and self.started and self.servers and self.servers[0].sockets:
            port = self.servers[0].sockets[0].getsockname()[1]
            for line in start_lines(self.app.state.config, port):
                log.info("%s", line)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        drain = self.app.state.drain
        loop = self._loop
        if drain.draining or loop is None or not self.started:
            # A second signal, or one before the server was up: uvicorn's own way (cut what is open).
            if loop is not None:
                loop.call_soon_threadsafe(drain.cut)
            super().handle_exit(sig, frame)
            return
        drain.begin(loop)
        loop.call_soon_threadsafe(self._stop_accepting, sig)

    def _stop_accepting(self, sig: int) -> None:
        for server in self.servers:
            server.close()
        counts = self.app.state.counts

        async def exit_when_drained() -> None:
            await self.app.state.drain.finished(lambda: counts.active_slots)
            super(DrainingServer, self).handle_exit(sig, None)

        self._waiter = asyncio.ensure_future(exit_when_drained())


def reload(app: GetGptApp) -> bool:
    """Read the routing tables of ``app``'s config file again and route by them (SIGHUP); a file
    that does not pass is refused with a logged error, and the running tables kept."""
    from ..backends.base import ForwardingBackend
    from ..config_file import reread_routing

    config: ServerConfig = app.state.config
    try:
        new = reread_routing(config)
    except ValueError as exc:
        log.error("SIGHUP: the configuration was not reloaded, the running one is kept: %s", exc)
        return False
    backend = app.state.backend
    if not isinstance(backend, ForwardingBackend) or new.routing is None:
        log.warning(
            "SIGHUP: %s has no [[upstreams]]; its other settings apply at the next start", config.config_file
        )
        return False
    backend.reload(new)
    app.state.config = new
    log.warning(
        "SIGHUP: routing reloaded from %s (its other settings apply at the next start)", new.config_file
    )
    return True


def _serve_process(config: ServerConfig, sockets: list[socket.socket] | None, announce: bool = True) -> bool:
    """Run one server process until it is stopped; whether it started."""
    from ..app import create_app

    app = create_app(config)
    server = DrainingServer(uvicorn_config(app, config), app, announce=announce)
    tune_garbage_collector()
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn stops cleanly, then passes SIGINT on
        server.run(sockets=sockets)
    return bool(server.started)


def somaxconn() -> int:
    """The kernel's cap on one socket's accept queue (``net.core.somaxconn``)."""
    try:
        with open("/proc/sys/net/core/somaxconn") as value:
            return max(1, int(value.read()))
    except (OSError, ValueError):
        return 4096


def sockets_per_worker(config: ServerConfig) -> int:
    """Listening sockets a worker opens: enough accept queue for ``max_streams`` connections.

    The kernel caps each queue at ``somaxconn`` (4,096 here); a burst larger than a worker's
    queues overflows them and the dropped handshakes are retried by the client only 1, 3, 7 s
    later. Several ``SO_REUSEPORT`` sockets give one worker several queues (bench/workers.py).
    """
    if not hasattr(socket, "SO_REUSEPORT"):
        return 1
    if config.accept_queues:
        return config.accept_queues
    return max(1, min(16, -(-config.max_streams // somaxconn())))


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _reuseport_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _check_free(host: str, port: int) -> None:
    """Fail if anything listens on the port already: SO_REUSEPORT would otherwise share it silently."""
    if port == 0:
        return
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            taken = exc.errno == errno.EADDRINUSE
            remedy = (
                ": another server listens there; --port N (or GETGPT_PORT) picks another" if taken else ""
            )
            reason = (exc.strerror or str(exc)).lower()
            raise OSError(exc.errno, f"cannot listen on {bracketed(host)}:{port}: {reason}{remedy}") from None


def _worker(config: ServerConfig, port: int) -> None:
    """A worker process: its own listening sockets on the shared port, then the server."""
    sockets = [_reuseport_socket(config.host, port) for _ in range(sockets_per_worker(config))]
    _serve_process(config, sockets, announce=False)


class Supervisor:
    """Starts ``config.workers`` workers, keeps them running, and stops them by draining."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self._context = multiprocessing.get_context("spawn")
        self._workers: list[BaseProcess] = []
        self._stop: int | None = None
        self._metrics_dir: str | None = None

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        if self._stop is None:
            self._stop = sig
        else:
            # A second signal: hurry the workers (each cuts its streams now).
            for worker in self._workers:
                if worker.pid is not None and worker.exitcode is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(worker.pid, signal.SIGTERM)

    def _on_hangup(self, sig: int, frame: FrameType | None) -> None:
        from ..config_file import reread_routing

        try:
            self.config = reread_routing(self.config)
        except ValueError as exc:
            log.error("SIGHUP: the configuration was not reloaded, the running one is kept: %s", exc)
            return
        for worker in self._workers:
            if worker.pid is not None and worker.exitcode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGHUP)

    def _start(self, port: int) -> BaseProcess:
        worker = self._context.Process(target=_worker, args=(self.config, port), daemon=False)
        worker.start()
        return worker

    def run(self) -> int:
        config = self.config
        logging.config.dictConfig(log_config(config))
        # Held, bound but not listening, for the whole run: the port stays ours while a worker
        # restarts, and a port already taken is reported before any worker starts.
        try:
            _check_free(config.host, config.port)
            reserved = _reuseport_socket(config.host, config.port)
        except OSError as exc:
            print(f"getgpt: error: {exc.strerror or exc}", file=sys.stderr)
            return 1
        port = reserved.getsockname()[1]
        if not os.environ.get(MULTIPROC_ENV):
            self._metrics_dir = tempfile.mkdtemp(prefix="getgpt-metrics-")
            os.environ[MULTIPROC_ENV] = self._metrics_dir
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        if hasattr(signal, "SIGHUP"):
            previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._on_hangup)
        status = 0
        try:
            log.info("supervisor [%d]: %d workers on %s:%d", os.getpid(), config.workers, config.host, port)
            for line in start_lines(config, port):
                log.info("%s", line)
            started = time.monotonic()
            self._workers = [self._start(port) for _ in range(config.workers)]
            while self._stop is None:
                time.sleep(0.2)
                for index, worker in enumerate(self._workers):
                    if worker.exitcode is None or self._stop is not None:
                        continue
                    if worker.exitcode == _STARTUP_FAILURE and time.monotonic() - started < 60:
                        log.error("a worker could not start; stopping")
                        self._stop = signal.SIGTERM
                        status = 1
                        break
                    log.warning("worker [%s] ended (exit %s); starting another", worker.pid, worker.exitcode)
                    self._forget(worker)
                    self._workers[index] = self._start(port)
            self._stop_all()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            reserved.close()
            if self._metrics_dir is not None:
                shutil.rmtree(self._metrics_dir, ignore_errors=True)
        return status

    def _forget(self, worker: BaseProcess) -> None:
        if self._metrics_dir is None or worker.pid is None:
            return
        from prometheus_client import multiprocess

        # Its live gauges (the streams it had open) must leave the sum.
        multiprocess.mark_process_dead(worker.pid, self._metrics_dir)  # type: ignore[no-untyped-call]

    def _stop_all(self) -> None:
        for worker in self._workers:
            if worker.pid is not None and worker.exitcode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.config.shutdown_grace + _EXIT_MARGIN
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
            if worker.exitcode is None:
                log.error("worker [%s] did not stop in time; killing it", worker.pid)
                worker.kill()
                worker.join()


def check(config: ServerConfig) -> None:
    """Build the app and uvicorn's settings once: :class:`ValueError` for settings that make no sense."""
    from ..app import create_app

    uvicorn_config(create_app(config), config)


def check_port(config: ServerConfig) -> None:
    """An :class:`OSError` saying why the server cannot listen where ``config`` says (a port
    already taken, with the flag that picks another), before anything starts: uvicorn binds only
    after its start-up, and would say so after "Application startup complete"."""
    _check_free(config.host, config.port)


def run(config: ServerConfig) -> bool:
    """Serve ``config`` until stopped; whether the server started (and, with workers, ran well)."""
    if config.workers > 1:
        return Supervisor(config).run() == 0
    count = sockets_per_worker(config)
    try:
        check_port(config)
    except OSError as exc:
        print(f"getgpt: error: {exc.strerror or exc}", file=sys.stderr)
        return False
    if count == 1:
        return _serve_process(config, None)
    try:
        sockets = [_reuseport_socket(config.host, config.port)]
        port = sockets[0].getsockname()[1]
        sockets += [_reuseport_socket(config.host, port) for _ in range(count - 1)]
    except OSError as exc:
        print(f"getgpt: error: {exc.strerror or exc}", file=sys.stderr)
        return False
    return _serve_process(config, sockets)
