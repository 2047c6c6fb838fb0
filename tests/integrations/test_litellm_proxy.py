"""The real LiteLLM proxy, started offline with examples/litellm-proxy/config.yaml, answers
through getgpt's LiteLLM provider from a real ``getgpt serve`` (echo backend)."""

from __future__ import annotations

import secrets
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..support.processes import process
from ..support.sdk import openai_sdk
from ..support.servers import free_port

CONFIG = Path(__file__).resolve().parents[2] / "examples" / "litellm-proxy" / "config.yaml"
TEXT = "Через прокси LiteLLM 🙂"


@pytest.fixture(scope="module")
def proxy(served: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The proxy's /v1 URL and its master key (a fresh random one)."""
    key = "sk-" + secrets.token_hex(16)
    port = free_port()
    command = [
        shutil.which("litellm") or sys.executable,
        *([] if shutil.which("litellm") else ["-m", "litellm"]),
        "--config",
        str(CONFIG),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    env = {
        "GETGPT_BASE_URL": served,
        "LITELLM_MASTER_KEY": key,
        # Offline: LiteLLM's own copy of its price list instead of fetching one.
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    }
    url = f"http://127.0.0.1:{port}/"
    cwd = str(tmp_path_factory.mktemp("litellm-proxy"))
    with process(command, url + "health/liveliness", env=env, cwd=cwd, limit=120):
        yield url + "v1", key


def test_the_proxy_answers_through_the_getgpt_provider(proxy: tuple[str, str]) -> None:
    base_url, key = proxy
    client = openai_sdk(base_url, key, max_retries=0)
    reply = client.chat.completions.create(
        model="gpt-3.5-turbo", messages=[{"role": "user", "content": TEXT}]
    )
    assert reply.choices[0].message.content == TEXT
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.completion_tokens > 0


def test_the_proxy_streams_through_the_getgpt_provider(proxy: tuple[str, str]) -> None:
    base_url, key = proxy
    client = openai_sdk(base_url, key, max_retries=0)
    stream = client.chat.completions.create(
        model="gpt-3.5-turbo", messages=[{"role": "user", "content": TEXT}], stream=True
    )
    chunks = list(stream)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert pieces == [TEXT[i : i + 4] for i in range(0, len(TEXT), 4)]  # the echo's pieces, one by one
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "stop"
    ]
