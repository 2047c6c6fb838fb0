"""ChatGetGpt beyond LangChain's standard suite: stop sequences, usage, keys, failures -- against a
real ``getgpt serve`` (echo backend) and a scripted server that cuts its stream."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessageChunk, HumanMessage, SystemMessage

import getgpt
from getgpt.integrations.langchain import ChatGetGpt

from ..support.echo_text import PIECES, TEXT
from ..support.faults import FaultUpstream, die_after
from ..support.serve_process import getgpt_serve


def test_invoke_reports_the_servers_usage_and_finish_reason(served: str) -> None:
    reply = ChatGetGpt(base_url=served).invoke([SystemMessage("be brief"), HumanMessage(TEXT)])
    assert reply.content == TEXT
    assert reply.response_metadata["finish_reason"] == "stop"
    with getgpt.Client(served) as client:
        expected = client.complete(
            [{"role": "system", "content": "be brief"}, {"role": "user", "content": TEXT}], stream=False
        ).usage
    assert expected is not None and reply.usage_metadata is not None
    assert reply.usage_metadata["input_tokens"] == expected.prompt_tokens
    assert reply.usage_metadata["output_tokens"] == expected.completion_tokens


def test_stream_gives_the_servers_pieces_and_callbacks_see_each(served: str) -> None:
    seen: list[str] = []

    class Tokens(BaseCallbackHandler):
        def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
            seen.append(token)

    chunks = list(ChatGetGpt(base_url=served).stream(TEXT, config={"callbacks": [Tokens()]}))
    assert [c.content for c in chunks[:-1]] == PIECES
    assert chunks[-1].chunk_position == "last"
    assert chunks[-1].response_metadata["finish_reason"] == "stop"
    assert [token for token in seen if token] == PIECES  # LangChain adds an empty one for the last chunk


@pytest.mark.parametrize("streaming", [False, True])
def test_a_stop_sequence_split_over_two_pieces_ends_the_reply_before_it(served: str, streaming: bool) -> None:
    chat = ChatGetGpt(base_url=served, streaming=streaming)
    reply = chat.invoke("abcdefSTOPghij", stop=["STOP"])  # echoed as "abcd" "efST" "OPgh" "ij"
    assert (reply.content, reply.response_metadata["finish_reason"]) == ("abcdef", "stop")
    on_the_model = ChatGetGpt(base_url=served, stop=["ST"])
    assert "".join(str(c.content) for c in on_the_model.stream("abcdefSTOPghij")) == "abcdef"


def test_the_api_key_from_getgpt_api_key_reaches_a_server_that_needs_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with getgpt_serve("--log-level", "warning", env={"GETGPT_API_KEYS": "sesame"}) as server:
        monkeypatch.setenv("GETGPT_API_KEY", "sesame")
        assert ChatGetGpt(base_url=server.url).invoke("hi").content == "hi"
        with pytest.raises(getgpt.StatusError) as caught:
            ChatGetGpt(base_url=server.url, api_key="wrong").invoke("hi")
    assert caught.value.status_code == 401


def test_a_stream_cut_short_yields_every_piece_then_raises_the_typed_error() -> None:
    async def read(url: str, got: list[str]) -> None:
        async for chunk in ChatGetGpt(base_url=url, max_retries=0).astream("hi"):
            got.append(str(chunk.content))

    with FaultUpstream(die_after("cut ", "short")) as upstream:
        received: list[str] = []
        with pytest.raises(getgpt.IncompleteStream) as caught:
            for chunk in ChatGetGpt(base_url=upstream.url, max_retries=0).stream("hi"):
                received.append(str(chunk.content))
        assert "".join(received) == caught.value.partial == "cut short"
        received_async: list[str] = []
        with pytest.raises(getgpt.IncompleteStream):
            asyncio.run(read(upstream.url, received_async))
        assert "".join(received_async) == "cut short"


def test_batch_answers_each_input_in_order(served: str) -> None:
    replies = ChatGetGpt(base_url=served).batch(["один", "two", "三"])
    assert [r.content for r in replies] == ["один", "two", "三"]
    assert all(isinstance(c, AIMessageChunk) for c in ChatGetGpt(base_url=served).stream("x"))
