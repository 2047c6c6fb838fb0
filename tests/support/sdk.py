"""The openai SDK's clients, made as a user makes them but on the suite's one TLS context.

``openai.OpenAI(...)`` builds its own httpx client, and that client builds a TLS context from the
CA bundle, ``http://`` base URLs included: 25 ms of CPU a client, against 0.15 ms with the SDK's
own ``DefaultHttpxClient`` given the context (it keeps the SDK's timeouts, limits and redirects).
"""

from __future__ import annotations

from typing import Any

import openai

from .processes import SSL_CONTEXT

__all__ = ["async_openai_sdk", "openai_sdk", "sdk_http_clients"]


def sdk_http_clients() -> dict[str, Any]:
    """``http_client`` and ``http_async_client`` for a library that builds the SDK (LangChain's
    ``ChatOpenAI``)."""
    return {
        "http_client": openai.DefaultHttpxClient(verify=SSL_CONTEXT),
        "http_async_client": openai.DefaultAsyncHttpxClient(verify=SSL_CONTEXT),
    }


def openai_sdk(base_url: str, api_key: str = "unused", **options: Any) -> openai.OpenAI:
    """``openai.OpenAI(base_url=..., api_key=..., **options)``."""
    http = openai.DefaultHttpxClient(verify=SSL_CONTEXT)
    return openai.OpenAI(base_url=base_url, api_key=api_key, http_client=http, **options)


def async_openai_sdk(base_url: str, api_key: str = "unused", **options: Any) -> openai.AsyncOpenAI:
    """``openai.AsyncOpenAI(base_url=..., api_key=..., **options)``."""
    http = openai.DefaultAsyncHttpxClient(verify=SSL_CONTEXT)
    return openai.AsyncOpenAI(base_url=base_url, api_key=api_key, http_client=http, **options)
