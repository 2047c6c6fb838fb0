"""Stop sequences cut on the client side, whatever the split of the reply into pieces."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from getgpt.integrations.stops import StopScanner, stop_list

ALPHABET = st.sampled_from("ab\nя😀")


def cut(pieces: list[str], stop: list[str]) -> tuple[str, bool]:
    scanner = StopScanner(stop)
    out = []
    for piece in pieces:
        out.append(scanner.feed(piece))
        if scanner.stopped:
            break
    out.append(scanner.flush())
    return "".join(out), scanner.stopped


def expected(text: str, stop: list[str]) -> tuple[str, bool]:
    found = [at for at in (text.find(s) for s in stop if s) if at >= 0]
    return (text[: min(found)], True) if found else (text, False)


@given(
    text=st.text(ALPHABET, max_size=30),
    stop=st.lists(st.text(ALPHABET, max_size=4), max_size=3),
    splits=st.lists(st.integers(0, 30), max_size=10),
)
def test_the_text_before_the_first_stop_sequence_passes_whatever_the_split(
    text: str, stop: list[str], splits: list[int]
) -> None:
    bounds = sorted({0, len(text), *(s for s in splits if s <= len(text))})
    pieces = [text[a:b] for a, b in itertools.pairwise(bounds)]
    assert cut(pieces, stop) == expected(text, stop)


def test_a_longer_stop_sequence_that_began_earlier_wins_over_a_shorter_one_seen_first() -> None:
    # Found by the property above: "\n" is whole in the first piece, but "😀\nb" began before it.
    assert cut(["😀\n", "b"], ["😀\nb", "\n"]) == ("", True)
    assert cut(["😀\n", "c"], ["😀\nb", "\n"]) == ("😀", True)
    assert cut(["x😀\n"], ["😀\nb", "\n"]) == ("x😀", True)  # the reply ended: the shorter one stands


def test_text_that_cannot_begin_a_stop_sequence_is_passed_at_once() -> None:
    scanner = StopScanner(["END"])
    assert scanner.feed("hello E") == "hello "  # "E" may begin "END": held back
    assert scanner.feed("x") == "Ex"
    assert scanner.feed("EN") == ""
    assert scanner.feed("D and more") == ""
    assert scanner.stopped and scanner.flush() == ""


def test_stop_takes_a_string_a_list_or_none_and_refuses_other_things() -> None:
    assert stop_list("x") == ["x"]
    assert stop_list(["x", "", "y"]) == ["x", "y"]
    assert stop_list(None) == []
    with pytest.raises(TypeError, match="strings"):
        stop_list([1])  # type: ignore[list-item]
