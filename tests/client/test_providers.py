"""The g4f-era face: getgpt.providers.GetGpt and getgpt.ChatCompletion."""

from __future__ import annotations

import inspect
import types
from collections.abc import Iterator

import pytest

import getgpt
from getgpt import ChatCompletion, ValidationError
from getgpt.providers import GetGpt

from ..support.faults import FaultUpstream
from ..support.hostile_upstreams import trickled_head
from ..support.scripted import Live

HELLO = [{"role": "user", "content": "Привет, как дела?"}]


def test_module_attributes_as_in_the_seed() -> None:
    assert GetGpt.url == "https://chat.getgpt.world/"
    assert GetGpt.model == ["gpt-3.5-turbo"]
    assert GetGpt.supports_stream is True and GetGpt.needs_auth is False
    assert GetGpt.params == "g4f.Providers.GetGpt supports: (model: str, messages: list, stream: bool)"
    assert inspect.isgeneratorfunction(GetGpt._create_completion)


def test_the_seeds_face_without_a_server_says_the_original_one_is_gone_and_how_to_point_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GETGPT_BASE_URL", raising=False)
    with pytest.raises(
        ValueError, match=r"the original one \(https://chat\.getgpt\.world/\) is gone"
    ) as raised:
        "".join(GetGpt._create_completion(model="gpt-3.5-turbo", messages=HELLO, stream=True))
    assert "export GETGPT_BASE_URL=http://127.0.0.1:8000/" in str(raised.value)
    with pytest.raises(ValueError, match="set GETGPT_BASE_URL"):
        ChatCompletion.create("gpt-3.5-turbo", HELLO)
    assert GetGpt.url == "https://chat.getgpt.world/"  # as the seed wrote it
    assert GetGpt.get_dict()["url"] == "https://chat.getgpt.world/"  # g4f lists it; no error


@pytest.fixture
def server(live: tuple[Live, str], monkeypatch: pytest.MonkeyPatch) -> Live:
    script, url = live
    monkeypatch.setenv("GETGPT_BASE_URL", url)
    return script


def test_create_completion_streams_from_the_configured_server(server: Live) -> None:
    pieces = list(GetGpt._create_completion(model="gpt-3.5-turbo", messages=HELLO, stream=True))
    assert pieces == ["Привет, ", "как ", "дела? "]


def test_g4f_keyword_arguments_are_sent_or_ignored(server: Live) -> None:
    # g4f handed every provider the same kwargs; the original ignored those it did not know.
    out = GetGpt._create_completion("gpt-3.5-turbo", HELLO, True, temperature=0.5, auth="x", proxy=None)
    assert "".join(out) == "Привет, как дела? "


def test_chat_completion_create(server: Live) -> None:
    assert ChatCompletion.create("gpt-3.5-turbo", HELLO) == "Привет, как дела? "
    streamed = ChatCompletion.create(types.SimpleNamespace(name="gpt-3.5-turbo"), HELLO, GetGpt, stream=True)
    assert not isinstance(streamed, str) and "".join(streamed) == "Привет, как дела? "


def test_chat_completion_typed_errors_instead_of_exit() -> None:
    no_stream = types.ModuleType("getgpt.providers.Quiet")
    no_stream.supports_stream = False  # type: ignore[attr-defined]
    with pytest.raises(ValidationError, match="Quiet does not support streaming"):
        ChatCompletion.create("m", HELLO, provider=no_stream, stream=True)
    locked = types.ModuleType("getgpt.providers.Locked")
    locked.needs_auth = True  # type: ignore[attr-defined]
    with pytest.raises(ValidationError, match="Locked requires authentication"):
        ChatCompletion.create("m", HELLO, provider=locked)
    with pytest.raises(ValidationError, match="model must be a name"):
        ChatCompletion.create(42, HELLO)


def test_errors_are_typed_not_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    from ..support.servers import free_port

    monkeypatch.setenv("GETGPT_BASE_URL", f"http://127.0.0.1:{free_port()}/")
    with pytest.raises(getgpt.TransportError):
        ChatCompletion.create("gpt-3.5-turbo", HELLO)


@pytest.fixture
def trickling(monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultUpstream]:
    """A server whose reply's head arrives a byte each 0.05 s: only a bound on the head in all ends it.

    The bounds given below are 0.2 s: each call is three tries (the client's retries), each cut
    at the bound, 1.9 s a call where 0.5 s bounds took 2.8 s.
    """
    with FaultUpstream(trickled_head(0.05)) as upstream:
        monkeypatch.setenv("GETGPT_BASE_URL", upstream.url)
        yield upstream


def test_the_module_face_takes_a_timeout_as_a_keyword(trickling: FaultUpstream) -> None:
    # It waited 600 s on a trickled head, with no way to say otherwise.
    with pytest.raises(getgpt.Timeout):
        list(GetGpt._create_completion("gpt-3.5-turbo", HELLO, True, timeout=0.2))
    with pytest.raises(getgpt.Timeout):
        ChatCompletion.create("gpt-3.5-turbo", HELLO, timeout=0.2)
    assert GetGpt.params == "g4f.Providers.GetGpt supports: (model: str, messages: list, stream: bool)"


def test_the_module_face_takes_a_timeout_from_getgpt_timeout(
    trickling: FaultUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GETGPT_TIMEOUT", "0.2")
    with pytest.raises(getgpt.Timeout):
        list(GetGpt._create_completion("gpt-3.5-turbo", HELLO, True))
    for wrong in ("soon", "0", "-1"):
        monkeypatch.setenv("GETGPT_TIMEOUT", wrong)
        with pytest.raises(ValidationError, match="GETGPT_TIMEOUT"):
            list(GetGpt._create_completion("gpt-3.5-turbo", HELLO, True))
