"""The ``getgpt`` command: ``chat``, ``demo``, ``serve``, ``check``; ``keys``, ``usage``, ``db`` (admin.py).

Start-up time matters for a command line tool, so this module imports only the standard library's
lightest parts at the top; httpx, the server stack and rich load inside the command that needs them,
and ``getgpt --help`` loads none of them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .admin import add_admin_parsers
from .chat import LOCAL_URL, ChatFailed, Output, add_chat_parser, add_lang_option, answer, run_chat
from .text import Language, Texts, language_from_env, language_named

if TYPE_CHECKING:
    from ..server.config import ServerConfig

__all__ = ["main"]

PROG = "getgpt"
DEMO_MESSAGE = "Hello from getgpt! Привет! 👋"


class CommandError(Exception):
    """A failure to report as one line, without a traceback."""


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
        raise CommandError(texts("demo.server_extra", detail=exc)) from None
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
            raise CommandError(texts("demo.not_started"))
        time.sleep(0.01)

    def stop() -> None:
        server.should_exit = True
        thread.join(5)
        sock.close()

    return f"http://127.0.0.1:{port}/", stop


def _demo(args: argparse.Namespace) -> int:
    from ..client import Client
    from ..server.config import ServerConfig

    config = ServerConfig(backend="echo", echo_delay=args.delay)
    texts: Texts = args.texts
    url, stop = _start_server(config, texts)
    out = Output(sys.stdout, pretty=_pretty(args), texts=texts)
    try:
        out.note(texts("demo.note", url=url, message=repr(args.message)))
        with Client(url, max_retries=0) as client:
            answer(client, [{"role": "user", "content": args.message}], {}, out)
    finally:
        stop()
    return 0


# --- serve -----------------------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    try:
        from ..server.config_file import describe, load_settings
        from ..server.running.supervisor import check, run
    except ImportError as exc:
        raise CommandError(f"serving needs the server extra: pip install 'getgpt[server]' ({exc})") from None
    try:
        config = load_settings(args, path=args.check_config)
        # The app is built here once, so a bad setting is one line now, not a failing worker later.
        check(config)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if args.check_config:
        print(f"{args.check_config}: ok: {describe(config)}")
        return 0
    if config.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"{PROG}: warning: listening on {config.host}, reachable from other machines; "
            "the envelope is obfuscation, not secrecy: put TLS in front",
            file=sys.stderr,
        )
    if not run(config):
        raise CommandError(f"the server did not start on {config.host}:{config.port} (see above)")
    return 0


# --- check -----------------------------------------------------------------------------------------


def _check(args: argparse.Namespace) -> int:
    from ..checks import Settings, check

    url = args.url or os.environ.get("GETGPT_BASE_URL") or LOCAL_URL
    try:
        settings = Settings(
            url,
            protocol=args.protocol,
            model=args.model,
            api_key=os.environ.get("GETGPT_API_KEY"),
            timeout=args.timeout,
            max_time=args.max_time,
            burst=args.burst,
            verify=not args.insecure,
        )
        report = check(settings)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    print(report.json() if args.json else report.table())
    return 0 if report.ok else 1


# --- arguments -------------------------------------------------------------------------------------


def _pretty(args: argparse.Namespace) -> bool:
    return not args.plain and sys.stdout.isatty() and os.environ.get("TERM") != "dumb"


class _Formatter(argparse.HelpFormatter):
    """argparse's help in the user's language: its one word of its own, "usage:", from the catalogue."""

    usage = "usage: "

    def add_usage(self, usage: str | None, actions: Any, groups: Any, prefix: str | None = None) -> None:
        super().add_usage(usage, actions, groups, self.usage if prefix is None else prefix)


def _formatter(texts: Texts) -> type[argparse.HelpFormatter]:
    return type("Formatter", (_Formatter,), {"usage": texts("cli.usage")})


def _chat(args: argparse.Namespace) -> int:
    return run_chat(args, args.texts, _pretty(args))


def _parser(texts: Texts) -> argparse.ArgumentParser:
    formatter = _formatter(texts)
    parser = argparse.ArgumentParser(
        prog=PROG, description=texts("cli.description"), formatter_class=formatter, add_help=False
    )
    options = parser.add_argument_group(texts("cli.options"))
    options.add_argument("-h", "--help", action="help", help=texts("cli.help"))
    options.add_argument("--version", action="store_true", help=texts("cli.version"))
    add_lang_option(options, texts)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title=texts("cli.commands"))

    chat = add_chat_parser(commands, texts, formatter_class=formatter, add_help=False)
    chat.set_defaults(run=_chat)

    demo = commands.add_parser(
        "demo",
        help=texts("demo.help"),
        description=texts("demo.description"),
        formatter_class=formatter,
        add_help=False,
    )
    arguments = demo.add_argument_group(texts("cli.arguments"))
    arguments.add_argument(
        "message", nargs="?", default=DEMO_MESSAGE, metavar=texts("demo.metavar"), help=texts("demo.message")
    )
    demo_options = demo.add_argument_group(texts("cli.options"))
    demo_options.add_argument("-h", "--help", action="help", help=texts("cli.help"))
    demo_options.add_argument("--delay", type=float, default=0.02, help=texts("demo.delay"))
    demo_options.add_argument("--plain", action="store_true", help=texts("chat.plain"))
    add_lang_option(demo_options, texts)
    demo.set_defaults(run=_demo)

    serve = commands.add_parser(
        "serve",
        help=texts("serve.help"),
        description="Run the GetGpt server and its OpenAI-compatible gateway. Every option can also be set "
        "by an environment variable GETGPT_<OPTION> (GETGPT_BACKEND, GETGPT_MAX_STREAMS, ...); "
        "options given here win. API keys are set only by GETGPT_API_KEYS=key1,key2 (a key on a "
        "command line shows in ps).",
    )
    from ..server.config import add_flags

    add_flags(serve)
    serve.add_argument(
        "--check-config",
        metavar="FILE",
        help="check the config file FILE (with the variables and flags given) and exit: 0 when it "
        "would start, else the error naming the key",
    )
    serve.set_defaults(run=_serve)

    checker = commands.add_parser(
        "check",
        help=texts("check.help"),
        description="Run a battery of conformance checks against the server at URL and print a table "
        "of pass/fail, with the evidence for each failure. Exit status 0 only when every required "
        "check passes. An API key, when the server needs one, is read from GETGPT_API_KEY.",
    )
    checker.add_argument(
        "url", nargs="?", metavar="URL", help=f"the server (default: $GETGPT_BASE_URL, else {LOCAL_URL})"
    )
    checker.add_argument(
        "--protocol",
        choices=("getgpt", "openai"),
        default="getgpt",
        help="getgpt: POST URL/api/chat/stream with the envelope; openai: POST URL/chat/completions "
        "(give URL with its /v1) (default getgpt)",
    )
    checker.add_argument("--json", action="store_true", help="print the results as JSON, for CI")
    checker.add_argument("--model", default="gpt-3.5-turbo", help="model to ask for (default gpt-3.5-turbo)")
    checker.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds to wait for data, and for a response's head in all (default 30)",
    )
    checker.add_argument(
        "--max-time", type=float, default=300.0, help="seconds the whole run may take (default 300)"
    )
    checker.add_argument(
        "--burst", type=int, default=30, help="most requests sent to meet a 429 (default 30)"
    )
    checker.add_argument("--insecure", action="store_true", help="do not verify TLS certificates")
    checker.set_defaults(run=_check)
    add_admin_parsers(commands, texts)
    return parser


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


def _error_line(texts: Texts, message: str) -> None:
    print(texts("cli.error", prog=PROG, message=" ".join(message.split())), file=sys.stderr)


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
    except ChatFailed as exc:
        _error_line(texts, str(exc))
        return 1
    except Exception as exc:
        _error_line(texts, str(exc) or type(exc).__name__)
        return 1
