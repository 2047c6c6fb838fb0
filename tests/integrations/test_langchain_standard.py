"""LangChain's own standard test suite (langchain-tests) for ChatGetGpt: the unit tests, and the
integration tests against a real ``getgpt serve`` subprocess with the echo backend.

A capability the echo backend cannot have is declared through the suite's own properties, and
only there (the README lists them with the reason); nothing else is skipped. The echo replies with
the text it was given: it cannot decide to call a tool, so the tool-calling and structured-output
tests, which need a model that does, are declared off for it here -- and run for real in
test_langchain_tools.py, through a getgpt server whose openai backend forwards to a scripted
upstream that answers with tool calls.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests

from getgpt.integrations.langchain import ChatGetGpt

LOCAL = "http://127.0.0.1:8000/"


class TestChatGetGptUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[ChatGetGpt]:
        return ChatGetGpt

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": "gpt-3.5-turbo", "base_url": LOCAL}

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        return (
            {"GETGPT_BASE_URL": LOCAL, "GETGPT_API_KEY": "sesame"},
            {},
            {"base_url": LOCAL, "api_key": "sesame"},
        )


class TestChatGetGptIntegration(ChatModelIntegrationTests):
    base_url = ""

    @pytest.fixture(autouse=True)
    def _server(self, served: str) -> None:
        # The suite builds the model from chat_model_params; the served URL is known only here.
        type(self).base_url = served

    @property
    def chat_model_class(self) -> type[ChatGetGpt]:
        return ChatGetGpt

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": "gpt-3.5-turbo", "base_url": self.base_url}

    @property
    def model_override_value(self) -> str:
        return "echo-override"

    @property
    def has_tool_calling(self) -> bool:
        return False  # the echo never calls a tool (see the module's documentation)

    @property
    def has_structured_output(self) -> bool:
        return False  # the same: its answer is the user's own text, not the schema's
