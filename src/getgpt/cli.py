"""The ``getgpt`` command: ``chat``, ``demo`` and ``serve``.

Start-up time matters for a command line tool, so this module imports only the standard library's
lightest parts at the top; httpx, the server stack and rich load inside the command that needs them,
and ``getgpt --help`` loads none of them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from ._client import Client
    from .server.config import ServerConfig

__all__ = ["main"]

PROG = "getgpt"
LOCAL_URL = "http://127.0.0.1:8000/"
DEMO_MESSAGE = "Hello from getgpt! Привет! 👋"
_EXIT_QUIT = ("/exit", "/quit", "exit", "quit")


class CommandError(Exception):
    """A failure to report as one line, without a traceback."""


# --- output ----------------------------------------------------------------------------------------


class Output:
    """Where a reply goes: plain text when piped, rich colours and a spinner on a terminal."""

    def __init__(self, stream: TextIO, pretty: bool) -> None:
        self.stream = stream
        self.console: Any = None
        if pretty:
            try:
                from rich.console import Console
            except ImportError:  # rich comes with the server extra; plain text does without it
                pretty = False
            else:
                self.console = Console(file=stream, highlight=False)
        self.pretty = pretty

    def reply(self, pieces: Iterator[str]) -> str:
        """Write ``pieces`` as they arrive; a spinner runs until the first one on a terminal."""
        if self.console is not None:
            with self.console.status("[dim]waiting for the reply…[/]", spinner="dots"):
                first = next(pieces, "")
            pieces = _chain(first, pieces)
        text: list[str] = []
        write, flush = self.stream.write, self.stream.flush
        for piece in pieces:
            text.append(piece)
            if self.console is not None:
                self.console.out(piece, end="", style="bold", highlight=False)
            else:
                write(piece)
            flush()
        whole = "".join(text)
        if not whole.endswith("\n"):
            write("\n")
        flush()
        return whole

    def note(self, text: str) -> None:
        """A remark about the session, to stderr so it never mixes with a reply being piped."""
        if self.console is not None:
            from rich.console import Console

            Console(stderr=True, highlight=False).print(f"[dim]{text}[/]")
        else:
            print(text, file=sys.stderr)

    def ask(self) -> str:
        """The next line the user types; raises EOFError at the end of input."""
        if self.console is not None:
            return str(self.console.input("[bold green]you[/]> "))
        return input("you> " if sys.stdin.isatty() else "")


def _chain(first: str, rest: Iterator[str]) -> Iterator[str]:
    if first:
        yield first
    yield from rest


# --- chat ------------------------------------------------------------------------------------------


def _params(args: argparse.Namespace) -> dict[str, Any]:
    params = {"model": args.model, "temperature": args.temperature, "max_tokens": args.max_tokens}
    params = {name: value for name, value in params.items() if value is not None}
    if args.no_stream:
        params["stream"] = False
    return params


def _answer(client: Client, history: list[dict[str, str]], params: dict[str, Any], out: Output) -> str:
    with client.stream(history, **params) as chat:
        return out.reply(chat)


def _chat(args: argparse.Namespace) -> int:
    from ._client import Client

    base_url = args.base_url or os.environ.get("GETGPT_BASE_URL") or LOCAL_URL
    out = Output(sys.stdout, pretty=_pretty(args))
    history: list[dict[str, str]] = [{"role": "system", "content": args.system}] if args.system else []
    params = _params(args)
    with Client(base_url, timeout=args.timeout, max_retries=args.retries) as client:
        if args.message is not None:
            message = sys.stdin.read() if args.message == "-" else args.message
            history.append({"role": "user", "content": message})
            _answer(client, history, params, out)
            return 0
        return _session(client, history, params, out)


def _session(client: Client, history: list[dict[str, str]], params: dict[str, Any], out: Output) -> int:
    from .errors import GetGptError

    if sys.stdin.isatty():
        out.note(f"chatting with {client.base_url} -- /reset forgets the conversation, /exit or Ctrl-D quits")
    failed = False
    while True:
        try:
            line = out.ask()
        except EOFError:
            break
        text = line.strip()
        if not text:
            continue
        if text in _EXIT_QUIT:
            break
        if text == "/reset":
            del history[sum(1 for m in history if m["role"] == "system") :]
            out.note("conversation forgotten")
            continue
        history.append({"role": "user", "content": line})
        try:
            reply = _answer(client, history, params, out)
        except GetGptError as exc:
            # The session goes on; the failed turn is dropped so a retry starts clean.
            history.pop()
            _error_line(exc)
            failed = True
            continue
        history.append({"role": "assistant", "content": reply})
    return 1 if failed else 0


# --- demo ------------------------------------------------------------------------------------------


def _start_server(config: ServerConfig) -> tuple[str, Callable[[], None]]:
    """Run the server in a thread on a free loopback port; return its URL and a function to stop it."""
    import socket
    import threading
    import time

    try:
        import uvicorn

        from .server import create_app
    except ImportError as exc:
        raise CommandError(f"this needs the server extra: pip install 'getgpt[server]' ({exc})") from None
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(config), log_level="warning", lifespan="on", timeout_graceful_shutdown=2)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise CommandError("the demo server did not start")
        time.sleep(0.01)

    def stop() -> None:
        server.should_exit = True
        thread.join(5)
        sock.close()

    return f"http://127.0.0.1:{port}/", stop


def _demo(args: argparse.Namespace) -> int:
    from ._client import Client
    from .server.config import ServerConfig

    config = ServerConfig(backend="echo", echo_delay=args.delay)
    url, stop = _start_server(config)
    out = Output(sys.stdout, pretty=_pretty(args))
    try:
        out.note(f"getgpt demo: server with the echo backend on {url}; sending {args.message!r}")
        with Client(url, max_retries=0) as client:
            _answer(client, [{"role": "user", "content": args.message}], {}, out)
    finally:
        stop()
    return 0


# --- serve -----------------------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    try:
        from .server.config import from_flags
        from .server.serving import check, run
    except ImportError as exc:
        raise CommandError(f"serving needs the server extra: pip install 'getgpt[server]' ({exc})") from None
    try:
        config = from_flags(args)
        # The app is built here once, so a bad setting is one line now, not a failing worker later.
        check(config)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if config.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"{PROG}: warning: listening on {config.host}, reachable from other machines; "
            "the envelope is obfuscation, not secrecy: put TLS in front",
            file=sys.stderr,
        )
    if not run(config):
        raise CommandError(f"the server did not start on {config.host}:{config.port} (see above)")
    return 0


# --- arguments -------------------------------------------------------------------------------------


def _pretty(args: argparse.Namespace) -> bool:
    return not args.plain and sys.stdout.isatty() and os.environ.get("TERM") != "dumb"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="The GetGpt chat protocol: chat with a server, run one, or see both work together.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    chat = commands.add_parser(
        "chat",
        help="chat with a GetGpt server",
        description="Send MESSAGE and stream the reply; without MESSAGE, an interactive session "
        "that keeps the conversation. MESSAGE '-' reads it from stdin.",
    )
    chat.add_argument("message", nargs="?", metavar="MESSAGE")
    chat.add_argument(
        "--base-url",
        help=f"the server (default: $GETGPT_BASE_URL, else {LOCAL_URL}, where 'getgpt serve' listens)",
    )
    chat.add_argument("--model", help="model name (default: the protocol's, gpt-3.5-turbo)")
    chat.add_argument("--system", help="a system prompt")
    chat.add_argument("--temperature", type=float, help="0..2")
    chat.add_argument("--max-tokens", type=int, help="at least 1")
    chat.add_argument("--no-stream", action="store_true", help="ask for the whole reply at once")
    chat.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for data (default 600)")
    chat.add_argument("--retries", type=int, default=2, help="retries before the first byte (default 2)")
    chat.add_argument("--plain", action="store_true", help="plain text even on a terminal")
    chat.set_defaults(run=_chat)

    demo = commands.add_parser(
        "demo",
        help="start a local echo server and chat with it over real HTTP",
        description="Start the server in this process on a free loopback port with the echo backend, "
        "send MESSAGE through the real client and print the reply.",
    )
    demo.add_argument("message", nargs="?", default=DEMO_MESSAGE, metavar="MESSAGE")
    demo.add_argument(
        "--delay", type=float, default=0.02, help="seconds between echoed pieces (default 0.02)"
    )
    demo.add_argument("--plain", action="store_true", help="plain text even on a terminal")
    demo.set_defaults(run=_demo)

    serve = commands.add_parser(
        "serve",
        help="run the server",
        description="Run the GetGpt server and its OpenAI-compatible gateway. Every option can also be set "
        "by an environment variable GETGPT_<OPTION> (GETGPT_BACKEND, GETGPT_MAX_STREAMS, ...); "
        "options given here win. API keys are set only by GETGPT_API_KEYS=key1,key2 (a key on a "
        "command line shows in ps).",
    )
    from .server.config import add_flags

    add_flags(serve)
    serve.set_defaults(run=_serve)
    return parser


def _error_line(exc: BaseException) -> None:
    message = str(exc) or type(exc).__name__
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            # An emoji must not crash a terminal that cannot show it.
            reconfigure(errors="replace")
    parser = _parser()
    args = parser.parse_args(argv)
    if args.version:
        from . import __version__

        print(f"{PROG} {__version__}")
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`getgpt chat ... | head`); say nothing more to it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:
        _error_line(exc)
        return 1
