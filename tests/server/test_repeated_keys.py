"""The quick test for a top-level key given twice agrees with a slow, exact reading of the pairs."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from getgpt.server.chat.parsing import repeated_key

# Few names, so repeats are common; some hold a quote, a backslash or text that escapes.
NAMES = st.sampled_from(["model", "messages", "stream", 'a"b', "c\\d", "é", "uuid", ""])
LEAVES = st.none() | st.booleans() | st.integers() | st.text(alphabet='ab"\\:{}[], \n', max_size=8)


def _values(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    # Nested objects as lists of pairs, so they may repeat keys of their own (which are allowed).
    return st.lists(leaves, max_size=3) | st.lists(st.tuples(NAMES, leaves), max_size=3).map(_Object)


class _Object(list):  # type: ignore[type-arg]
    """Pairs written as a JSON object, repeats and all."""


VALUES = st.recursive(LEAVES, _values, max_leaves=8)
SPACE = st.sampled_from(["", " ", "\n", "\t "])


def _key(name: str, escape: bool) -> str:
    written = json.dumps(name, ensure_ascii=True)
    if escape and name:  # the first character as \\uXXXX: the same key, other bytes
        first = name[0]
        rest = json.dumps(name[1:], ensure_ascii=True)[1:-1]
        written = f'"\\u{ord(first):04x}{rest}"'
    return written


def _write(value: Any, space: str) -> str:
    if isinstance(value, _Object):
        return "{" + ",".join(f"{space}{_key(k, False)}{space}:{_write(v, space)}" for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + f",{space}".join(_write(v, space) for v in value) + "]"
    return json.dumps(value)


def _exact(body: str) -> str | None:
    found: list[str | None] = [None]

    def pairs(items: list[tuple[str, Any]]) -> None:
        seen: set[str] = set()
        found[0] = None
        for key, _ in items:
            if key in seen and found[0] is None:
                found[0] = key
            seen.add(key)

    json.loads(body, object_pairs_hook=pairs)
    return found[0]


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.tuples(NAMES, VALUES, st.booleans()), max_size=6),
    SPACE,
)
def test_the_quick_test_names_the_repeated_key_the_slow_reading_finds(
    pairs: list[tuple[str, Any, bool]], space: str
) -> None:
    body = "{" + ",".join(f"{space}{_key(k, e)}{space}:{space}{_write(v, space)}" for k, v, e in pairs) + "}"
    assert repeated_key(body.encode()) == _exact(body)


def test_a_request_with_no_repeat_is_passed_however_its_strings_quote() -> None:
    said = [{"role": "user", "content": 'say "model": twice'}]
    body = {"model": "m", "messages": said, "model2": {"a": '"'}}
    assert repeated_key(json.dumps(body).encode()) is None
    assert repeated_key(b'{"model": "a", "tools": [{"model": 1, "model": 2}]}') is None  # only the top
    assert repeated_key(b'{"model": "a", "x": 1, "model": "b"}') == "model"
