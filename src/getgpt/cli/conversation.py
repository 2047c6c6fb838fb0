"""A chat session's conversation: what the model is shown, and what ``/save`` writes.

A *turn* is one message of the conversation as the session keeps it: the role and text the
model is shown, and what only the session keeps of a reply (its reasoning, tool calls, whether
Ctrl-C stopped it, why it ended). ``/save`` writes the turns as the web page's export format
(JSON, which the page imports) or as Markdown for reading, in the session's language.
"""

from __future__ import annotations

import time
from typing import Any

from .text import Texts

__all__ = ["EXPORT_FORMAT", "EXPORT_VERSION", "Conversation", "Turn"]

# What a saved JSON conversation says it is: the web page's export format, so it imports it.
EXPORT_FORMAT = "getgpt.conversation"
EXPORT_VERSION = 1

Turn = dict[str, Any]


class Conversation:
    """What the model is shown: a system prompt, the turns so far, and the request's parameters."""

    def __init__(self, system: str | None, params: dict[str, Any]) -> None:
        self.system = system
        self.params = params
        self.turns: list[Turn] = []
        self.started = time.time()

    def messages(self) -> list[dict[str, Any]]:
        """The request's messages: what the model said is sent as text; what only this session
        keeps of a turn (reasoning, tool calls it cannot answer, a "stopped" mark) stays here."""
        messages = [{"role": "system", "content": self.system}] if self.system else []
        for turn in self.turns:
            if turn["role"] == "assistant" and not turn["content"]:
                continue  # a reply that was only tool calls: nothing to show the model as text
            messages.append({"role": turn["role"], "content": turn["content"]})
        return messages

    def as_json(self) -> str:
        """The web page's export format: the page imports what this writes."""
        import json

        document: dict[str, Any] = {
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "title": self.title(),
            "createdAt": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(self.started)),
            "messages": self.turns,
        }
        if self.system:
            document["system"] = self.system
        return json.dumps(document, ensure_ascii=False, indent=2) + "\n"

    def as_markdown(self, texts: Texts) -> str:
        """For reading: each turn under a heading naming who wrote it, in ``texts``' language, a
        stopped or cut reply marked as such (as the web page's Markdown export)."""
        parts = [f"# {self.title()}"]
        if self.system:
            parts.append(_quoted(texts("save.system"), self.system))
        for turn in self.turns:
            parts.append("## " + texts("save.user" if turn["role"] == "user" else "save.assistant"))
            if turn.get("reasoning"):
                parts.append(_quoted(texts("save.reasoning"), str(turn["reasoning"])))
            if turn.get("content"):
                parts.append(str(turn["content"]))
            for call in turn.get("toolCalls", []):
                function = call["function"]
                parts.append(texts("reply.tool_call", name=function["name"], arguments=function["arguments"]))
            if turn.get("stopped"):
                parts.append(f"*{texts('save.stopped')}*")
            elif turn.get("finishReason") == "length":
                parts.append(f"*{texts('save.cut')}*")
        return "\n\n".join(parts) + "\n"

    def title(self) -> str:
        first = next((t["content"] for t in self.turns if t["role"] == "user"), "")
        text = " ".join(str(first).split())
        return text if len(text) <= 48 else text[:47] + "…"


def _quoted(label: str, text: str) -> str:
    return f"> **{label}**\n>\n" + "\n".join("> " + line for line in text.splitlines())
