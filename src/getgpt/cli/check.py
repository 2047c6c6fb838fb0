"""``getgpt check``: its arguments, and the battery run with a line a check as each ends.

On a terminal a spinner names the check running; piped, the lines come as they are judged. With
``--json`` only the JSON document is printed, once every check has run. The words are the
checker's own (:mod:`getgpt.checks.words`) in the language of the command line.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ..protocol import DEFAULT_MODEL
from .arguments import add_lang_option, number
from .chat import DEFAULT_KEY_ENV, LOCAL_URL
from .errors import CommandFailed, Problem
from .output import plain_wanted
from .text import Texts

__all__ = ["add_check_parser", "run_check"]


def add_check_parser(commands: Any, texts: Texts) -> argparse.ArgumentParser:
    checker: argparse.ArgumentParser = commands.add_parser(
        "check", help=texts("check.help"), description=texts("check.description"), texts=texts
    )
    arguments = checker.add_argument_group(texts("cli.arguments"))
    arguments.add_argument("url", nargs="?", metavar="URL", help=texts("check.url", url=LOCAL_URL))
    options = checker.add_argument_group(texts("cli.options"))
    options.add_argument("-h", "--help", action="help", help=texts("cli.help"))
    options.add_argument(
        "--protocol", choices=("getgpt", "openai"), default="getgpt", help=texts("check.protocol")
    )
    options.add_argument("--json", action="store_true", help=texts("check.json"))
    options.add_argument(
        "--model", default=DEFAULT_MODEL, metavar=texts("chat.model_metavar"), help=texts("check.model")
    )
    options.add_argument(
        "--timeout",
        type=number(texts, float, positive=True),
        default=30.0,
        metavar="S",
        help=texts("check.timeout"),
    )
    options.add_argument(
        "--max-time",
        type=number(texts, float, positive=True),
        default=300.0,
        metavar="S",
        help=texts("check.max_time"),
    )
    options.add_argument(
        "--burst", type=number(texts, int, 1), default=30, metavar="N", help=texts("check.burst")
    )
    options.add_argument(
        "--only", action="append", default=[], metavar=texts("check.names_metavar"), help=texts("check.only")
    )
    options.add_argument(
        "--skip", action="append", default=[], metavar=texts("check.names_metavar"), help=texts("check.skip")
    )
    options.add_argument(
        "--api-key-env", metavar="NAME", default=DEFAULT_KEY_ENV, help=texts("check.api_key_env")
    )
    options.add_argument("--insecure", action="store_true", help=texts("check.insecure"))
    options.add_argument("--plain", action="store_true", help=texts("chat.plain"))
    add_lang_option(options, texts)
    return checker


def _names(given: list[str]) -> tuple[str, ...]:
    """``--only a,b --only c``: the names, each once, in order."""
    return tuple(dict.fromkeys(name.strip() for value in given for name in value.split(",") if name.strip()))


def run_check(args: argparse.Namespace, texts: Texts) -> int:
    from ..checks import Battery, Report, Settings, Table

    url = args.url or os.environ.get("GETGPT_BASE_URL") or LOCAL_URL
    try:
        settings = Settings(
            url,
            protocol=args.protocol,
            model=args.model,
            api_key=os.environ.get(args.api_key_env, "").strip() or None,
            api_key_env=args.api_key_env,
            timeout=args.timeout,
            max_time=args.max_time,
            burst=args.burst,
            verify=not args.insecure,
            language=texts.language,
            only=_names(args.only),
            skip=_names(args.skip),
        )
        battery = Battery(settings)
    except ValueError as exc:
        raise CommandFailed(Problem(str(exc)), status=2) from None
    planned = battery.planned()
    running = battery.run()
    if args.json:
        report = Report(url, args.protocol, list(running), texts.language)
        print(report.json())
        return 0 if report.ok else 1
    table = Table(url, args.protocol, [id for id, _ in planned], battery.words)
    _print(table.header())
    results = []
    with _Spinner(battery.words, not plain_wanted(args.plain, sys.stdout)) as spinner:
        for index, (id, title) in enumerate(planned):
            if index == 0:
                spinner.update(id, title)
            result = next(running)
            results.append(result)
            if index + 1 < len(planned):
                spinner.update(*planned[index + 1])  # before the line is printed, which redraws it
            spinner.print(table.add(result))
        spinner.print(table.flush())
    report = Report(url, args.protocol, results, texts.language)
    _print(table.summary(report))
    return 0 if report.ok else 1


def _print(lines: list[str]) -> None:
    for line in lines:
        print(line)
    sys.stdout.flush()


class _Spinner:
    """rich's spinner naming the check that runs, on a terminal; nothing otherwise."""

    def __init__(self, words: Any, on: bool) -> None:
        self.words = words
        self.status: Any = None
        self.console: Any = None
        if on:
            try:
                from rich.console import Console
            except ImportError:  # rich comes with the server extra; the lines do without it
                return
            self.console = Console(highlight=False)

    def update(self, id: str, title: str) -> None:
        if self.status is not None:
            from rich.text import Text

            self.status.update(Text(self.words("table.checking", id=id, title=title), style="dim"))

    def print(self, lines: list[str]) -> None:
        if self.console is None:
            _print(lines)
            return
        from rich.text import Text

        for line in lines:
            self.console.print(Text(line))

    def __enter__(self) -> _Spinner:
        if self.console is not None:
            self.status = self.console.status("", spinner="dots")
            self.status.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.status is not None:
            self.status.__exit__(None, None, None)
            self.status = None
