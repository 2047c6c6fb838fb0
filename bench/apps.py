"""Servers the server benchmarks run, each in its own process under the same uvicorn settings.

- ``getgpt``: ``getgpt.server.create_app`` with the echo backend (or another, by options), with the
  connection bounds ``getgpt serve`` keeps; ``--unbounded``: on uvicorn's own protocol alone;
  ``--public-settings``: on uvicorn's h11 protocol with the bounds uvicorn's own settings offer
  (the other way issue 21 weighed: bench/server_throughput.py measures both);
- ``minimal``: the baseline, a plain Starlette ``StreamingResponse`` that echoes the last user
  message in the same 4-character pieces as the same ``chat.completion.chunk`` events, one
  ``json.dumps`` and one ``yield`` per event, as a minimal app is usually written.

``python -m bench.apps NAME [options]`` prints the port once it listens. With ``--profile FILE``
it runs under pyinstrument and writes the text report to FILE when stopped with SIGINT. With
``--workers N`` (getgpt only) it runs N workers under uvicorn's own supervisor, which shares one
listening socket between them (bench/workers.py compares that with ``getgpt serve --workers``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

__all__ = ["AppProcess", "minimal_app"]

PIECE = 4


def minimal_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    def event(delta: dict[str, str], finish: str | None, created: int, model: str) -> str:
        chunk = {
            "id": "chatcmpl-minimal",
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return "data: " + json.dumps(chunk, separators=(",", ":")) + "\n\n"

    async def chat(request: Request) -> StreamingResponse:
        body = await request.json()
        text = next((m["content"] for m in reversed(body["messages"]) if m["role"] == "user"), "")
        model, created = body.get("model", "gpt-3.5-turbo"), int(time.time())

        async def events() -> AsyncIterator[str]:
            yield event({"role": "assistant", "content": ""}, None, created, model)
            for start in range(0, len(text), PIECE):
                yield event({"content": text[start : start + PIECE]}, None, created, model)
            yield event({}, "stop", created, model)
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


def _server_options(args: argparse.Namespace) -> dict[str, Any]:
    """The getgpt ServerConfig's keyword arguments for these options (unset ones left to its defaults)."""
    options: dict[str, Any] = {"backend": args.backend, "max_streams": args.max_streams}
    if args.upstream:
        options["upstream"] = args.upstream
    if args.echo_delay:
        options["echo_delay"] = args.echo_delay
    if args.idle_timeout:
        options["idle_timeout"] = args.idle_timeout
    if getattr(args, "db", None):
        options["db"] = args.db
    if getattr(args, "api_key", None):
        options["api_keys"] = (args.api_key,)
    return options


def public_settings(config: Any) -> dict[str, Any]:
    """The connection bounds uvicorn's own documented settings give, as near as they come to
    ``getgpt serve``'s: a head bound (h11 only, so the h11 protocol), the keep-alive timer, a cap
    on connections and tasks. Nothing bounds a head's time, an idle new connection, unread
    writes or what is read ahead (bench/server_throughput.py's probes show which hold)."""
    return {
        "http": "h11",
        "ws": "none",
        "h11_max_incomplete_event_size": config.max_head_bytes,
        "timeout_keep_alive": max(1, round(config.idle_timeout)),
        # The cap getgpt serve would keep (from the open-files limit): the same connections admitted.
        "limit_concurrency": _serving().connection_limit(config, _serving().open_files_limit()),
    }


def _app(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The app, and the uvicorn settings it runs with beyond the common ones."""
    from getgpt.server import ServerConfig, create_app

    if args.name == "minimal":
        # Under the getgpt serve bounds or uvicorn's public ones, to see what each costs a chunk
        # when every chunk is a send of its own.
        if args.public_settings:
            return minimal_app(), public_settings(ServerConfig())
        if args.bounded:
            return _bounded(minimal_app(), ServerConfig())
        return minimal_app(), {}

    options = _server_options(args)
    if getattr(args, "config", None):  # many upstreams, from a config file (bench/routing.py)
        from getgpt.server.config_file import load_settings

        config = dataclasses.replace(
            load_settings(path=args.config, environ={}), max_streams=args.max_streams
        )
    else:
        config = ServerConfig(**options)
    app = create_app(config)
    if args.public_settings:
        return app, public_settings(config)
    if args.unbounded:
        return app, {}
    # As getgpt serve runs it: with the bounds on each connection.
    return _bounded(app, config)


def _serving() -> Any:
    """getgpt's ``serving`` module, wherever the tree (a baseline, say) keeps it; None if it has none."""
    for name in ("getgpt.server.running.serving", "getgpt.server.serving"):
        try:
            module = __import__(name, fromlist=["serving"])
        except ImportError:
            continue
        return module
    return None


def _bounded(app: Any, config: Any) -> tuple[Any, dict[str, Any]]:
    """``app`` and uvicorn's settings as getgpt serve runs them in this tree or an older one."""
    serving = _serving()
    if serving is None:
        return app, {}
    if hasattr(serving, "connection_settings"):
        settings = dict(serving.connection_settings(app, config))
        return settings.pop("app"), settings
    # Trees from before the bounds were composed: uvicorn's protocol subclassed, the app as it is.
    return app, {"http": serving.connection_protocol(config), "ws": "none"}


_OPTIONS_ENV = "BENCH_APP_OPTIONS"
_BOUNDED_ENV = "BENCH_APP_BOUNDED"


def getgpt_factory() -> Any:
    """The getgpt app built from the options :func:`main` left in the environment (uvicorn's workers)."""
    from getgpt.server import ServerConfig, create_app
    from getgpt.server.running.serving import tune_garbage_collector

    config = ServerConfig(**json.loads(os.environ[_OPTIONS_ENV]))
    app = create_app(config)
    if os.environ.get(_BOUNDED_ENV):
        # The bounds' own app around it, made in the worker: it tells whichever connection gave
        # a request that it is answered, and needs nothing from the parent.
        app = _bounded(app, config)[0]
    tune_garbage_collector()  # as getgpt serve does in each process
    return app


def _uvicorn_workers(args: argparse.Namespace) -> None:
    # uvicorn's own supervisor: it binds one socket and its workers share it (one accept queue).
    import uvicorn

    options = _server_options(args)
    os.environ[_OPTIONS_ENV] = json.dumps(options)
    from getgpt.server import ServerConfig

    # As getgpt serve runs each process: the bounds on each connection, unless told not to.
    protocol: dict[str, Any] = {}
    if not args.unbounded:
        os.environ[_BOUNDED_ENV] = "1"
        protocol = _bounded(None, ServerConfig(**options))[1]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    print(port, flush=True)
    uvicorn.run(
        "bench.apps:getgpt_factory",
        factory=True,
        host="127.0.0.1",
        port=port,
        workers=args.workers,
        log_level="warning",
        access_log=False,
        lifespan="on",
        backlog=args.backlog,
        **protocol,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name", choices=("getgpt", "minimal"))
    parser.add_argument("--backend", default="echo")
    parser.add_argument("--upstream")
    parser.add_argument(
        "--config", metavar="FILE", help="getgpt serve's --config (its settings and upstreams)"
    )
    parser.add_argument("--echo-delay", type=float, default=0.0)
    parser.add_argument("--max-streams", type=int, default=20_000)
    parser.add_argument("--idle-timeout", type=float, default=0.0, help="getgpt serve's --idle-timeout")
    parser.add_argument("--backlog", type=int, default=4096)
    parser.add_argument("--profile", metavar="FILE", help="pyinstrument's text profile, written at the stop")
    parser.add_argument(
        "--cprofile", metavar="FILE", help="cProfile's stats (calls counted: per request, A/B), at the stop"
    )
    parser.add_argument("--db", metavar="PATH|URL", help="getgpt's key store and ledger (bench/keys.py)")
    parser.add_argument("--api-key", metavar="KEY", help="one GETGPT_API_KEYS key (bench/keys.py)")
    parser.add_argument("--workers", type=int, default=1, help="more than 1: under uvicorn's supervisor")
    parser.add_argument(
        "--unbounded", action="store_true", help="getgpt on uvicorn's own protocol: no connection bounds"
    )
    parser.add_argument(
        "--public-settings", action="store_true", help="on uvicorn's h11 with its own bound settings"
    )
    parser.add_argument(
        "--bounded", action="store_true", help="minimal: with getgpt serve's connection bounds"
    )
    args = parser.parse_args()

    import uvicorn

    from .common import raise_nofile

    raise_nofile(65536)
    if args.workers > 1:
        _uvicorn_workers(args)
        return
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    app, protocol = _app(args)
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="on", backlog=args.backlog, **protocol
    )
    server = uvicorn.Server(config)
    serving = _serving() if args.name == "getgpt" else None
    if hasattr(serving, "tune_garbage_collector"):
        serving.tune_garbage_collector()  # as getgpt serve does
    print(sock.getsockname()[1], flush=True)
    if args.profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005)
        profiler.start()
        _run(server, sock)
        profiler.stop()
        with open(args.profile, "w") as out:
            out.write(profiler.output_text(unicode=False, color=False, show_all=False))
    elif args.cprofile:
        import cProfile

        deterministic = cProfile.Profile()
        deterministic.enable()
        _run(server, sock)
        deterministic.disable()
        deterministic.dump_stats(args.cprofile)
    else:
        _run(server, sock)


def _run(server: Any, sock: socket.socket) -> None:
    # uvicorn shuts down cleanly on SIGINT, then raises KeyboardInterrupt again for the caller.
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=[sock])


class AppProcess:
    """One of the servers above in a child process; ``url`` ends in ``/``."""

    def __init__(self, name: str, *options: str, src: str | None = None) -> None:
        """``src``: run getgpt from that source directory instead (a baseline tree, say)."""
        args = [sys.executable, "-m", "bench.apps", name, *options]
        self.name = name
        env = None
        if src is not None:
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.getcwd()])}
        self._proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env)
        self._port: int | None = None

    @property
    def port(self) -> int:
        # Waited for on first use, so servers started one after another boot side by side.
        if self._port is None:
            assert self._proc.stdout is not None
            line = self._proc.stdout.readline()
            if not line:
                raise RuntimeError(f"the {self.name} server did not start")
            _wait_listening(int(line))
            self._port = int(line)
        return self._port

    @property
    def pid(self) -> int:
        return self._proc.pid

    def cpu_seconds(self) -> float:
        """User + system CPU time the server's processes (its workers too) have used so far."""
        from .common import tree_cpu

        return tree_cpu(self._proc.pid)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def close(self) -> None:
        from .common import stop

        # SIGINT: uvicorn shuts down cleanly, so a profile gets written.
        stop(self._proc, signal.SIGINT, 30)

    def __enter__(self) -> AppProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _wait_listening(port: int) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
