"""Which catalogue keys a program's source names: the CLI's ``texts(...)`` and the page's ``t(...)``.

Read from the source as text, so a key that is named but missing from the catalogue, or kept in
it but named nowhere, is found without running the code.
"""

from __future__ import annotations

import re

__all__ = ["first_arguments", "keys_named"]


def first_arguments(source: str, call: str) -> list[str]:
    """The first argument of every ``call(...)`` in ``source``, as source text."""
    found = []
    for match in re.finditer(rf"\b{call}\(", source):
        depth, end = 0, match.end()
        while end < len(source) and not (depth == 0 and source[end] in ",)"):
            depth += {"(": 1, ")": -1}.get(source[end], 0)
            end += 1
        found.append(source[match.end() : end])
    return found


def keys_named(source: str, call: str) -> set[str]:
    """Every catalogue key (a dotted string such as ``"session.saved"``) in the first argument of
    a ``call(...)`` in ``source``: a conditional argument may name more than one."""
    keys: set[str] = set()
    for argument in first_arguments(source, call):
        keys |= set(re.findall(r"""["']([a-z]+\.[\w.]+)["']""", argument))
    return keys
