"""One reply, sent for and shown: the job every command that chats shares (``chat``, a session,
``demo``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .output import Output, Received

if TYPE_CHECKING:
    from ..client import Client

__all__ = ["show_reply"]


def show_reply(
    client: Client, messages: list[dict[str, Any]], params: dict[str, Any], out: Output
) -> Received:
    """Stream one reply to ``out``; Ctrl-C stops it and the part that arrived is returned.

    Reasoning that came before the text is shown before it; reasoning after the text, and the tool
    calls, once the reply has ended (the stream assembles tool calls from their fragments). A
    reply the token limit cut gets a note saying so.
    """
    received = Received()
    try:
        with client.stream(messages, **params) as chat:

            def reasoning_so_far() -> None:
                received.reasoning = chat.reasoning
                out.reasoning(received.reasoning)

            out.reply(chat, received, before=reasoning_so_far)
            out.reasoning(chat.reasoning[len(received.reasoning) :])
            received.reasoning = chat.reasoning
            received.tool_calls = list(chat.tool_calls)
            received.finish_reason = chat.finish_reason
    except KeyboardInterrupt:
        received.stopped = True
        out.end_line(received)
        return received
    out.tool_calls(received)
    if received.cut:
        out.note(out.texts("reply.cut"))
    return received
