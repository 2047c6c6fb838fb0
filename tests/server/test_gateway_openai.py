"""The official openai SDK, unchanged, against the server's /v1 on a real uvicorn."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import openai
import pytest

from getgpt.server import ServerConfig, create_app

from ..support.sdk import async_openai_sdk, openai_sdk
from ..support.servers import serve

TEXT = 'Привет, мир! 👋🏽 code: `x = {"a": 1}`\nnext line'


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve(create_app(ServerConfig(models=("gpt-3.5-turbo", "echo")))) as base:
        yield base


@pytest.fixture
def client(url: str) -> Iterator[openai.OpenAI]:
    with openai_sdk(url + "v1", max_retries=0) as sdk:
        yield sdk


def test_sdk_non_stream(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="echo",
        messages=[{"role": "system", "content": "sys"}, {"role": "user", "content": TEXT}],
        temperature=0.2,
        max_tokens=50,
    )
    assert completion.object == "chat.completion"
    assert completion.model == "echo"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == TEXT
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (
        completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    )


def test_sdk_stream(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-3.5-turbo", messages=[{"role": "user", "content": TEXT}], stream=True
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == TEXT
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)
    assert len({c.id for c in chunks}) == 1


def test_sdk_stream_include_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-3.5-turbo",
        messages=[{"role": "user", "content": "12345678"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    *content, last = chunks
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (2, 2, 4)
    assert all(c.usage is None for c in content)
    assert "".join(c.choices[0].delta.content or "" for c in content) == "12345678"


def test_sdk_content_parts_and_developer_role(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="gpt-3.5-turbo",
        messages=[
            {"role": "developer", "content": "be kind"},
            {"role": "user", "content": [{"type": "text", "text": "one "}, {"type": "text", "text": "two"}]},
        ],
    )
    assert completion.choices[0].message.content == "one two"


def test_sdk_models(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["gpt-3.5-turbo", "echo"]


def test_sdk_async_stream(url: str) -> None:
    async def main() -> list[str]:
        async with async_openai_sdk(url + "v1", max_retries=0) as sdk:

            async def one(i: int) -> str:
                stream = await sdk.chat.completions.create(
                    model="gpt-3.5-turbo", messages=[{"role": "user", "content": f"поток {i}"}], stream=True
                )
                return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

            return await asyncio.gather(*(one(i) for i in range(10)))

    assert asyncio.run(main()) == [f"поток {i}" for i in range(10)]
