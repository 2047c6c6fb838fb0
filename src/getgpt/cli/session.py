"""``getgpt chat`` without a message: an interactive session with commands and a kept input history.

``/reset``, ``/system TEXT``, ``/model NAME``, ``/save FILE`` and ``/help`` act on the
conversation; every other line is sent. Ctrl-C stops the reply in progress and keeps the text that
arrived; Ctrl-C at the prompt leaves. On a terminal, lines typed are kept between runs (readline,
where Python has it) in the user's state directory (platformdirs: ``$XDG_STATE_HOME/getgpt`` on
Linux).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..protocol import DEFAULT_MODEL
from .conversation import Conversation, Turn
from .errors import describe_error
from .output import Output, no_color
from .reply import show_reply

if TYPE_CHECKING:
    from ..client import Client

__all__ = ["DEFAULT_MODEL", "History", "Key", "Session"]

HISTORY_LENGTH = 1000
_EXIT = ("/exit", "/quit", "exit", "quit")


class Key:
    """Where the API key comes from, and whether one was sent."""

    def __init__(self, env: str, sent: bool) -> None:
        self.env = env
        self.sent = sent


class Session:
    """An interactive chat: reads lines, runs commands, sends the rest."""

    def __init__(self, client: Client, conversation: Conversation, out: Output, key: Key) -> None:
        self.client = client
        self.conversation = conversation
        self.out = out
        self.texts = out.texts
        self.key = key
        self.failed = False

    def run(self) -> int:
        history = History.open(self.out) if sys.stdin.isatty() else None
        if sys.stdin.isatty():
            self.out.note(self.texts("session.intro", url=self.client.base_url))
        while True:
            try:
                line = self.out.ask()
            except (EOFError, KeyboardInterrupt):
                # Ctrl-D, or Ctrl-C at the prompt: the end of the session.
                if sys.stdin.isatty():
                    self.out.stream.write("\n")
                break
            if history is not None and line:
                history.add()
            text = line.strip()
            if not text:
                continue
            if text in _EXIT:
                break
            if text.startswith("/"):
                self.command(text)
                continue
            self.send(line)
        return 1 if self.failed else 0

    def send(self, line: str) -> None:
        from ..protocol.errors import GetGptError

        turns = self.conversation.turns
        turns.append({"role": "user", "content": line})
        try:
            received = show_reply(
                self.client, self.conversation.messages(), self.conversation.params, self.out
            )
        except GetGptError as exc:
            # The session goes on; the failed turn is dropped so a retry starts clean.
            turns.pop()
            problem = describe_error(exc, self.texts, self.client.base_url, self.key.env, self.key.sent)
            for text in problem.lines(self.texts, "getgpt"):
                self.out.note(text)
            self.failed = True
            return
        if received.stopped and not (received.text or received.tool_calls):
            turns.pop()
            self.out.note(self.texts("session.stopped_empty"))
            return
        reply: Turn = {"role": "assistant", "content": received.text}
        if received.reasoning:
            reply["reasoning"] = received.reasoning
        if received.tool_calls:
            reply["toolCalls"] = received.tool_calls
        if received.stopped:
            reply["stopped"] = True
            self.out.note(self.texts("session.stopped"))
        elif received.finish_reason not in (None, "stop"):
            # Why it ended, when that was not the model's own end: "length" marks a cut reply.
            reply["finishReason"] = received.finish_reason
        turns.append(reply)

    def command(self, text: str) -> None:
        name, _, rest = text.partition(" ")
        rest = rest.strip()
        texts, conversation, note = self.texts, self.conversation, self.out.note
        if name == "/help":
            note(texts("session.commands"))
        elif name == "/reset":
            count = len(conversation.turns)
            conversation.turns.clear()
            conversation.started = time.time()
            note(texts("session.reset", count=count))
        elif name == "/system":
            if rest == "-":
                conversation.system = None
                note(texts("session.system_removed"))
            elif rest:
                conversation.system = rest
                note(texts("session.system_set"))
            elif conversation.system:
                note(texts("session.system", text=conversation.system))
            else:
                note(texts("session.system_none"))
        elif name == "/model":
            if rest:
                conversation.params["model"] = rest
                note(texts("session.model", model=rest))
            elif "model" in conversation.params:
                note(texts("session.model", model=conversation.params["model"]))
            else:
                note(texts("session.model_default", model=DEFAULT_MODEL))
        elif name == "/save":
            self.save(rest)
        else:
            note(texts("session.unknown", command=name))

    def save(self, name: str) -> None:
        texts = self.texts
        if not name:
            self.out.note(texts("session.save_usage"))
            return
        path = Path(name).expanduser()
        conversation = self.conversation
        body = conversation.as_json() if path.suffix.lower() == ".json" else conversation.as_markdown(texts)
        try:
            write_private(path, body)
        except OSError as exc:
            self.out.note(texts("session.save_failed", path=path, reason=exc.strerror or exc))
            return
        self.out.note(texts("session.saved", count=len(conversation.turns), path=path))


class History:
    """Lines typed at the prompt, kept between runs in the user's state directory via readline."""

    def __init__(self, readline: Any, path: Path) -> None:
        self.readline = readline
        self.path = path

    @classmethod
    def open(cls, out: Output) -> History | None:
        try:
            import readline
        except ImportError:  # Windows' Python has no readline: no history, typing works as before
            return None
        if no_color():
            # readline announces bracketed paste to the terminal with an escape sequence of its
            # own (ESC [ ? 2004 h); NO_COLOR asks for none at all.
            readline.parse_and_bind("set enable-bracketed-paste off")
        try:
            from platformdirs import user_state_path

            path = user_state_path("getgpt") / "chat_history"
            private_directory(path.parent)
            private_file(path)
            readline.set_history_length(HISTORY_LENGTH)
            if path.exists():
                readline.read_history_file(path)
                # Appending line by line lets the file grow; trim it to the kept length once a run.
                readline.write_history_file(path)
        except (ImportError, OSError) as exc:
            out.note(out.texts("session.no_history", reason=getattr(exc, "strerror", None) or exc))
            return None
        return cls(readline, path)

    def add(self) -> None:
        """Write the line just typed at once, so a run that is killed loses none of them."""
        try:
            if not self.path.exists():
                private_file(self.path)
            self.readline.append_history_file(1, self.path)
        except OSError:
            pass  # a full disk must not end the chat; the next run notes a file it cannot read


# Every prompt and /system text is in these files: readable by their user alone (0600 in a 0700
# directory). Files and a directory an earlier version made 0644 and 0755 are tightened.


def private_directory(directory: Path) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)


def private_file(path: Path) -> None:
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    path.chmod(0o600)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (made, or emptied), readable by its user alone."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(descriptor, "w", encoding="utf-8") as out:
        path.chmod(0o600)  # a file that was there keeps its mode through O_CREAT
        out.write(text)
