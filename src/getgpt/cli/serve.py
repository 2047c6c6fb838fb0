"""``getgpt serve``: the server's settings as flags, in groups, and the server run until stopped.

The flags come from the server's settings (:mod:`getgpt.server.config`), described in English as
they are; ``--quiet`` and ``--verbose`` are the command's own shorthands for ``--log-level``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .errors import CommandFailed, Problem
from .text import Texts

__all__ = ["DESCRIPTION", "add_serve_parser", "run_serve"]

DESCRIPTION = (
    "Run the GetGpt server and its OpenAI-compatible gateway. Every option can also be set by the "
    "environment variable its help line names at the end: GETGPT_PORT for --port, GETGPT_BACKEND for "
    "--backend; a repeatable option's variable holds a comma-separated list (GETGPT_MODELS for "
    "--model, GETGPT_CORS_ORIGINS for --cors-origin). Options given here win. API keys are set "
    "only by GETGPT_API_KEYS=key1,key2 (a key on a command line shows in ps)."
)


def add_serve_parser(commands: Any, texts: Texts) -> argparse.ArgumentParser:
    serve: argparse.ArgumentParser = commands.add_parser(
        "serve", help=texts("serve.help"), description=DESCRIPTION, texts=texts, add_help=True
    )
    from ..server.config import add_flags

    groups = add_flags(serve)
    groups["the config file"].add_argument(
        "--check-config",
        metavar="FILE",
        help="check the config file FILE (with the variables and flags given) and exit: 0 when it "
        "would start, else the error naming the key",
    )
    logs = groups["logs"]
    logs.add_argument(
        "-q", "--quiet", action="store_true", help="warnings and errors only (--log-level warning)"
    )
    logs.add_argument(
        "-v", "--verbose", action="store_true", help="everything, for debugging (--log-level debug)"
    )
    return serve


def run_serve(args: argparse.Namespace) -> int:
    try:
        from ..server.config_file import describe, load_settings
        from ..server.running.supervisor import check, check_port, run
    except ImportError as exc:
        raise CommandFailed(
            Problem(f"serving needs the server extra: pip install -e '.[server]' ({exc})")
        ) from None
    if args.quiet or args.verbose:
        chosen = [flag for flag, given in (("--quiet", args.quiet), ("--verbose", args.verbose)) if given]
        if args.log_level is not None:
            chosen.append("--log-level")
        if len(chosen) > 1:
            raise CommandFailed(Problem(f"{' and '.join(chosen)} say different things: give one"), status=2)
        args.log_level = "warning" if args.quiet else "debug"
    try:
        config = load_settings(args, path=args.check_config)
        # The app is built here once, so a bad setting is one line now, not a failing worker later.
        check(config)
        if args.check_config:
            print(f"{args.check_config}: ok: {describe(config)}")
            return 0
        check_port(config)
    except (ValueError, OSError) as exc:
        said = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CommandFailed(Problem(said)) from None
    if config.host not in ("127.0.0.1", "localhost", "::1") and not config.tls_certfile:
        print(
            f"getgpt: warning: listening on {config.host}, reachable from other machines; "
            "the envelope is obfuscation, not secrecy: put TLS in front (or --tls-certfile/--tls-keyfile)",
            file=sys.stderr,
        )
    if not run(config):
        raise CommandFailed(Problem(f"the server did not start on {config.host}:{config.port} (see above)"))
    return 0
