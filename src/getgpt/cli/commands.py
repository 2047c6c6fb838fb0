"""The ``getgpt`` command: ``chat``, ``demo``, ``serve``, ``check``; ``keys``, ``usage``, ``db`` (admin.py).

Start-up time matters for a command line tool, so this module imports only the standard library's
lightest parts at the top; httpx, the server stack and rich load inside the command that needs them,
and ``getgpt --help`` loads none of them. Each command's arguments and run are in a module of its
own: :mod:`.chat`, :mod:`.serve`, :mod:`.check`; ``demo`` is here.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from .admin import add_admin_parsers
from .arguments import Parser, add_lang_option, number
from .chat import add_chat_parser, run_chat
from .check import add_check_parser, run_check
from .errors import CommandFailed, Problem
from .output import Output, plain_wanted
from .reply import show_reply
from .serve import add_serve_parser, run_serve
from .text import Language, Texts, language_from_env, language_named

if TYPE_CHECKING:
    from ..server.config import ServerConfig

__all__ = ["main"]

PROG = "getgpt"
DEMO_MESSAGE = "Hello from getgpt! Привет! 👋"


# --- demo ------------------------------------------------------------------------------------------


def _start_server(config: ServerConfig, texts: Texts) -> tuple[str, Callable[[], None]]:
    """Run the server in a thread on a free loopback port; return its URL and a function to stop it."""
    import socket
    import threading
    import time

    try:
        import uvicorn

        from ..server import create_app
    except ImportError as exc:
        raise CommandFailed(Problem(texts("demo.server_extra", detail=exc))) from None
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
            raise CommandFailed(Problem(texts("demo.not_started")))
        time.sleep(0.01)

    def stop() -> None:
        server.should_exit = True
        thread.join(5)
        sock.close()

    return f"http://127.0.0.1:{port}/", stop


def _demo(args: argparse.Namespace) -> int:
    from ..client import Client
    from ..server.config import ServerConfig

    texts: Texts = args.texts
    if not args.message.strip():
        raise CommandFailed(Problem(texts("chat.empty")), status=2)
    config = ServerConfig(backend="echo", echo_delay=args.delay)
    url, stop = _start_server(config, texts)
    out = Output(sys.stdout, pretty=not plain_wanted(args.plain, sys.stdout), texts=texts)
    try:
        out.note(texts("demo.note", url=url, message=repr(args.message)))
        with Client(url, max_retries=0) as client:
            show_reply(client, [{"role": "user", "content": args.message}], {}, out)
    finally:
        stop()
    return 0


# --- arguments -------------------------------------------------------------------------------------


def _parser(texts: Texts) -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description=texts("cli.description"), texts=texts)
    options = parser.add_argument_group(texts("cli.options"))
    options.add_argument("-h", "--help", action="help", help=texts("cli.help"))
    options.add_argument("--version", action="store_true", help=texts("cli.version"))
    add_lang_option(options, texts)
    commands = parser.add_subparsers(
        dest="command", metavar=texts("cli.command_metavar"), title=texts("cli.commands")
    )

    add_chat_parser(commands, texts).set_defaults(run=lambda args: run_chat(args, args.texts, _pretty(args)))

    demo = commands.add_parser(
        "demo", help=texts("demo.help"), description=texts("demo.description"), texts=texts
    )
    arguments = demo.add_argument_group(texts("cli.arguments"))
    arguments.add_argument(
        "message", nargs="?", default=DEMO_MESSAGE, metavar=texts("demo.metavar"), help=texts("demo.message")
    )
    demo_options = demo.add_argument_group(texts("cli.options"))
    demo_options.add_argument("-h", "--help", action="help", help=texts("cli.help"))
    demo_options.add_argument(
        "--delay", type=number(texts, float, 0), default=0.02, metavar="S", help=texts("demo.delay")
    )
    demo_options.add_argument("--plain", action="store_true", help=texts("chat.plain"))
    add_lang_option(demo_options, texts)
    demo.set_defaults(run=_demo)

    add_serve_parser(commands, texts).set_defaults(run=run_serve)
    add_check_parser(commands, texts).set_defaults(run=lambda args: run_check(args, args.texts))
    add_admin_parsers(commands, texts)
    return parser


def _pretty(args: argparse.Namespace) -> bool:
    return not plain_wanted(args.plain, sys.stdout)


def _language(argv: Sequence[str], environ: Mapping[str, str]) -> Language:
    """``--lang`` wherever it is on the line (it must be known before the parser is built), else the
    locale's language."""
    for index, arg in enumerate(argv):
        value = arg.partition("=")[2] if arg.startswith("--lang=") else None
        if arg == "--lang" and index + 1 < len(argv):
            value = argv[index + 1]
        language = language_named(value)
        if language is not None:
            return language
    return language_from_env(environ)


def _say(problem: Problem, texts: Texts) -> None:
    for line in problem.lines(texts, PROG):
        print(line, file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            # An emoji must not crash a terminal that cannot show it.
            reconfigure(errors="replace")
    argv = sys.argv[1:] if argv is None else list(argv)
    texts = Texts(_language(argv, os.environ))
    parser = _parser(texts)
    args = parser.parse_args(argv)
    args.texts = texts
    if args.version:
        from .. import __version__

        print(f"{PROG} {__version__}")
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        print("\n" + texts("cli.interrupted", prog=PROG), file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`getgpt chat ... | head`); say nothing more to it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except CommandFailed as exc:
        _say(exc.problem, texts)
        return exc.status
    except Exception as exc:
        _say(Problem(str(exc) or type(exc).__name__), texts)
        return 1
