"""The command line's parsers, in the user's language down to argparse's own words.

argparse writes its few messages in English (``usage:``, ``the following arguments are
required``, ``invalid choice``...). :class:`Parser` keeps its behaviour and says them in the
catalogue's language: the usage prefix through the help formatter, the errors through
:meth:`Parser.error`, the one method argparse documents for a subclass to replace. Numbers are
read by :func:`number`, whose complaint is the catalogue's, not argparse's ``invalid float value``.

Only the standard library is imported: ``getgpt --help`` must stay fast.
"""

from __future__ import annotations

import argparse
import functools
import math
import re
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from .text import LANGUAGES, Texts

__all__ = ["Parser", "add_lang_option", "number"]

# argparse's messages (Python 3.10-3.13), each with its words in the catalogue. The values they
# quote (an option, a choice) are kept as argparse wrote them.
_Say = Callable[[Texts, dict[str, str]], str]
_ARGPARSE: tuple[tuple[re.Pattern[str], _Say], ...] = (
    (
        re.compile(r"the following arguments are required: (?P<names>.+)"),
        lambda texts, found: texts("argparse.required", **found),
    ),
    (
        re.compile(r"unrecognized arguments: (?P<values>.+)"),
        lambda texts, found: texts("argparse.unrecognized", **found),
    ),
    (
        re.compile(r"one of the arguments (?P<names>.+) is required"),
        lambda texts, found: texts("argparse.one_of", **found),
    ),
    (
        re.compile(r"ambiguous option: (?P<option>\S+) could match (?P<matches>.+)"),
        lambda texts, found: texts("argparse.ambiguous", **found),
    ),
    (
        re.compile(r"invalid choice: (?P<value>.+?) \(choose from (?P<choices>.+)\)"),
        lambda texts, found: texts("argparse.choice", **found),
    ),
    (
        re.compile(r"invalid (?P<kind>\w+) value: (?P<value>.+)"),
        lambda texts, found: texts("argparse.value", **found),
    ),
    (re.compile(r"expected one argument"), lambda texts, found: texts("argparse.one_value")),
    (re.compile(r"expected at most one argument"), lambda texts, found: texts("argparse.at_most_one")),
    (re.compile(r"expected at least one argument"), lambda texts, found: texts("argparse.at_least_one")),
    (
        re.compile(r"not allowed with argument (?P<name>.+)"),
        lambda texts, found: texts("argparse.not_with", **found),
    ),
    (
        re.compile(r"ignored explicit argument (?P<value>.+)"),
        lambda texts, found: texts("argparse.ignored", **found),
    ),
)
_ARGUMENT = re.compile(r"argument (?P<name>[^:]+): (?P<message>.+)", re.DOTALL)


def translate(message: str, texts: Texts) -> str:
    """argparse's ``message`` in the catalogue's language (unknown ones as they are)."""
    inside = _ARGUMENT.fullmatch(message)
    if inside:
        return texts("argparse.argument", name=inside["name"], message=translate(inside["message"], texts))
    for pattern, say in _ARGPARSE:
        found = pattern.fullmatch(message)
        if found:
            return say(texts, found.groupdict())
    return message


class _Formatter(argparse.HelpFormatter):
    """argparse's help with the catalogue's "usage:"."""

    usage = "usage: "

    def add_usage(self, usage: str | None, actions: Any, groups: Any, prefix: str | None = None) -> None:
        super().add_usage(usage, actions, groups, self.usage if prefix is None else prefix)


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage line and errors are in ``texts``' language.

    Its errors are ``PROG: error: MESSAGE`` as argparse's are (exit status 2, the usage first),
    in the user's language. Sub-commands' parsers, at any depth, are made of this class with the
    same ``texts``.
    """

    def __init__(self, *args: Any, texts: Texts, **options: Any) -> None:
        options.setdefault("formatter_class", type("Formatter", (_Formatter,), {"usage": texts("cli.usage")}))
        options.setdefault("add_help", False)
        super().__init__(*args, **options)
        self.texts = texts

    def add_subparsers(self, **options: Any) -> Any:
        """argparse's sub-commands, whose parsers (and theirs) speak ``texts``' language too."""
        options.setdefault("parser_class", functools.partial(type(self), texts=self.texts))
        return super().add_subparsers(**options)

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, self.texts("cli.error", prog=self.prog, message=translate(message, self.texts)) + "\n")


def number(
    texts: Texts,
    kind: type[int] | type[float],
    least: float | None = None,
    most: float | None = None,
    *,
    positive: bool = False,
) -> Callable[[str], Any]:
    """A reader of a flag's number -- from ``least`` to ``most``, or above 0 when ``positive`` --
    complaining in ``texts``' language."""

    def read(raw: str) -> Any:
        try:
            value = kind(raw)
        except ValueError:
            text = texts("argparse.not_whole" if kind is int else "argparse.not_number", value=raw)
            raise argparse.ArgumentTypeError(text) from None
        if math.isnan(value) or (positive and not value > 0):
            raise argparse.ArgumentTypeError(texts("argparse.not_positive", value=raw))
        low, high = ("" if bound is None else f"{bound:g}" for bound in (least, most))
        if least is not None and most is not None and not least <= value <= most:
            raise argparse.ArgumentTypeError(texts("argparse.between", value=raw, least=low, most=high))
        if least is not None and value < least:
            raise argparse.ArgumentTypeError(texts("argparse.at_least", value=raw, least=low))
        if most is not None and value > most:
            raise argparse.ArgumentTypeError(texts("argparse.at_most", value=raw, most=high))
        return value

    return read


def add_lang_option(group: Any, texts: Texts) -> None:
    """``--lang``: on the command line and in every command, so `getgpt chat --lang ru` reads as well
    as `getgpt --lang ru chat` (its value is read before parsing: the help is in that language)."""
    group.add_argument("--lang", choices=LANGUAGES, default=argparse.SUPPRESS, help=texts("cli.lang"))
