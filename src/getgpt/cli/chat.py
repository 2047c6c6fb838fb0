"""``getgpt chat``: one message, or an interactive session with commands and a kept input history.

In a session, ``/reset``, ``/system TEXT``, ``/model NAME``, ``/save FILE`` and ``/help`` act on the
conversation; every other line is sent. Ctrl-C stops the reply in progress and keeps the text that
arrived; Ctrl-C at the prompt leaves. On a terminal, lines typed are kept between runs (readline,
where Python has it) in the user's state directory (platformdirs: ``$XDG_STATE_HOME/getgpt`` on
Linux).

Only the standard library's light modules are imported at the top, and no dataclass is made (each
costs about a millisecond at import): the client, rich, json and platformdirs load when the command
runs, so ``getgpt --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .text import LANGUAGES, Texts

if TYPE_CHECKING:
    from ..client import Client

__all__ = [
    "ChatFailed",
    "Output",
    "add_chat_parser",
    "add_lang_option",
    "answer",
    "describe_error",
    "run_chat",
]

LOCAL_URL = "http://127.0.0.1:8000/"
DEFAULT_MODEL = "gpt-3.5-turbo"
DEFAULT_KEY_ENV = "GETGPT_API_KEY"
HISTORY_LENGTH = 1000
# What a saved JSON conversation says it is: the web page's export format, so it imports it.
EXPORT_FORMAT = "getgpt.conversation"
EXPORT_VERSION = 1
_EXIT = ("/exit", "/quit", "exit", "quit")

Message = dict[str, Any]


# --- output ----------------------------------------------------------------------------------------


class Shown:
    """A reply as it reached the screen: its text, and whether Ctrl-C stopped it."""

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.stopped = False
        self.reasoning = ""
        self.tool_calls: list[dict[str, Any]] = []

    @property
    def text(self) -> str:
        return "".join(self.pieces)


class Output:
    """Where a reply goes: plain text when piped, rich colours and a spinner on a terminal."""

    def __init__(self, stream: TextIO, pretty: bool, texts: Texts) -> None:
        self.stream = stream
        self.texts = texts
        self.console: Any = None
        if pretty:
            try:
                from rich.console import Console
            except ImportError:  # rich comes with the server extra; plain text does without it
                pretty = False
            else:
                self.console = Console(file=stream, highlight=False)
        self.pretty = pretty

    def reply(self, pieces: Iterator[str], shown: Shown, before: Callable[[], None] = lambda: None) -> None:
        """Write ``pieces`` as they arrive into ``shown``; a spinner runs until the first on a terminal.
        ``before`` runs once the first piece is in (or the reply ended without one), before it is written.

        KeyboardInterrupt is left to the caller, with ``shown`` holding what was written.
        """
        try:
            if self.console is not None:
                with self.console.status(f"[dim]{self.texts('session.waiting')}[/]", spinner="dots"):
                    first = next(pieces, "")
            else:
                first = next(pieces, "")
            before()
            pieces = _chain(first, pieces)
            write, flush = self.stream.write, self.stream.flush
            with _WholePieces() as whole:
                for piece in pieces:
                    with whole:
                        if self.console is not None:
                            self.console.out(piece, end="", style="bold", highlight=False)
                        else:
                            write(piece)
                        flush()
                        shown.pieces.append(piece)
        finally:
            self.end_line(shown)

    def end_line(self, shown: Shown) -> None:
        if shown.pieces and not shown.text.endswith("\n"):
            self.stream.write("\n")
        self.stream.flush()

    def reasoning(self, text: str) -> None:
        """The model's reasoning: dimmed, or marked when plain, on stderr (it is not the answer)."""
        if not text:
            return
        label = self.texts("reply.reasoning")
        if self.console is not None:
            from rich.console import Console
            from rich.text import Text

            Console(stderr=True, highlight=False).print(Text(f"{label}: {text}", style="dim"))
        else:
            print(f"[{label}] {text}", file=sys.stderr)

    def tool_calls(self, shown: Shown) -> None:
        """The tool calls the model made, marked, where the reply goes: they are its answer."""
        for call in shown.tool_calls:
            function = call.get("function") or {}
            line = self.texts(
                "reply.tool_call", name=function.get("name", "?"), arguments=function.get("arguments", "")
            )
            if self.console is not None:
                from rich.text import Text

                self.console.print(Text(f"→ {line}", style="cyan"))
            else:
                self.stream.write(f"[{line}]\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        """A remark about the session, to stderr so it never mixes with a reply being piped."""
        if self.console is not None:
            from rich.console import Console
            from rich.text import Text

            Console(stderr=True, highlight=False).print(Text(text, style="dim"))
        else:
            print(text, file=sys.stderr)

    def ask(self) -> str:
        """The next line the user types; raises EOFError at the end of input."""
        if not sys.stdin.isatty():
            return input()
        you = self.texts("session.you")
        if self.console is not None:
            # \001 and \002 tell readline the colour codes take no room, so editing keeps its place.
            return input(f"\001\x1b[1;32m\002{you}\001\x1b[0m\002> ")
        return input(f"{you}> ")


class _WholePieces:
    """Ctrl-C never lands between writing a piece and keeping it, so the text kept is the text seen.

    Entered once around the reply, it takes SIGINT (when Python's own handler has it, in the main
    thread); entered again around each piece, it holds an interrupt back until the piece is written
    and kept, then raises it. Waiting for the next piece, Ctrl-C interrupts at once, as always.
    """

    def __init__(self) -> None:
        self.previous: Any = None
        self.depth = 0
        self.pending = False

    def _interrupt(self, signum: int, frame: Any) -> None:
        if self.depth > 1:
            self.pending = True
        else:
            raise KeyboardInterrupt

    def __enter__(self) -> _WholePieces:
        self.depth += 1
        if self.depth == 1:
            import signal
            import threading

            main = threading.current_thread() is threading.main_thread()
            if main and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                self.previous = signal.signal(signal.SIGINT, self._interrupt)
        return self

    def __exit__(self, *exc: object) -> None:
        self.depth -= 1
        if self.depth == 0 and self.previous is not None:
            import signal

            signal.signal(signal.SIGINT, self.previous)
            self.previous = None
        if self.depth == 1 and self.pending:
            self.pending = False
            raise KeyboardInterrupt


def _chain(first: str, rest: Iterator[str]) -> Iterator[str]:
    if first:
        yield first
    yield from rest


# --- errors ----------------------------------------------------------------------------------------


def _refused(exc: BaseException) -> bool:
    """Whether a ConnectionRefusedError is anywhere in the exception's chain."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError):
            return True
        current = current.__cause__ or current.__context__
    return "connection refused" in str(exc).lower()


def describe_error(exc: BaseException, texts: Texts, url: str, key_env: str, key_sent: bool) -> str:
    """One line, in the user's language, saying what went wrong talking to ``url``."""
    from ..protocol.errors import (
        GetGptError,
        IncompleteStream,
        ProtocolError,
        RateLimitError,
        RemoteError,
        StatusError,
        Timeout,
        TransportError,
        ValidationError,
    )

    if not isinstance(exc, GetGptError):
        return str(exc) or type(exc).__name__
    message = exc.message
    if isinstance(exc, Timeout):
        return texts("error.timeout", url=url, detail=message)
    if isinstance(exc, TransportError):
        if _refused(exc):
            return texts("error.refused", url=url)
        return texts("error.connect", url=url, detail=message)
    if isinstance(exc, RateLimitError):
        return texts("error.rate_limited", message=message)
    if isinstance(exc, StatusError):
        if exc.status_code == 401:
            return texts("error.bad_key" if key_sent else "error.need_key", env=key_env)
        return texts("error.status", status=exc.status_code, message=message)
    if isinstance(exc, IncompleteStream):
        return texts("error.incomplete")
    if isinstance(exc, ProtocolError):
        return texts("error.protocol", message=message)
    if isinstance(exc, RemoteError):
        return texts("error.remote", message=message)
    if isinstance(exc, ValidationError):
        return texts("error.invalid", message=message)
    return message


# --- the conversation ------------------------------------------------------------------------------


class Conversation:
    """What the model is shown: a system prompt, the turns so far, and the request's parameters."""

    def __init__(self, system: str | None, params: dict[str, Any]) -> None:
        self.system = system
        self.params = params
        self.turns: list[Message] = []
        self.started = time.time()

    def messages(self) -> list[Message]:
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
        parts = [f"# {self.title()}"]
        if self.system:
            parts.append(f"> {texts('session.system', text=self.system)}")
        for turn in self.turns:
            parts.append("## " + ("user" if turn["role"] == "user" else "assistant"))
            if turn.get("reasoning"):
                parts.append("\n".join("> " + line for line in str(turn["reasoning"]).splitlines()))
            if turn.get("content"):
                parts.append(str(turn["content"]))
            for call in turn.get("toolCalls", []):
                function = call["function"]
                parts.append(texts("reply.tool_call", name=function["name"], arguments=function["arguments"]))
        return "\n\n".join(parts) + "\n"

    def title(self) -> str:
        first = next((t["content"] for t in self.turns if t["role"] == "user"), "")
        text = " ".join(str(first).split())
        return text if len(text) <= 48 else text[:47] + "…"


# --- the session -----------------------------------------------------------------------------------


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
            shown = answer(self.client, self.conversation.messages(), self.conversation.params, self.out)
        except GetGptError as exc:
            # The session goes on; the failed turn is dropped so a retry starts clean.
            turns.pop()
            self.out.note(
                self.texts(
                    "cli.error",
                    prog="getgpt",
                    message=one_line(
                        describe_error(exc, self.texts, self.client.base_url, self.key.env, self.key.sent)
                    ),
                )
            )
            self.failed = True
            return
        if shown.stopped and not (shown.text or shown.tool_calls):
            turns.pop()
            self.out.note(self.texts("session.stopped_empty"))
            return
        reply: Message = {"role": "assistant", "content": shown.text}
        if shown.reasoning:
            reply["reasoning"] = shown.reasoning
        if shown.tool_calls:
            reply["toolCalls"] = shown.tool_calls
        if shown.stopped:
            reply["stopped"] = True
            self.out.note(self.texts("session.stopped"))
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


def answer(client: Client, messages: list[Message], params: dict[str, Any], out: Output) -> Shown:
    """Stream one reply to ``out``; Ctrl-C stops it and the part that arrived is returned.

    Reasoning that came before the text is shown before it; reasoning after the text, and the tool
    calls, once the reply has ended (the stream assembles tool calls from their fragments).
    """
    shown = Shown()
    try:
        with client.stream(messages, **params) as chat:

            def reasoning_so_far() -> None:
                shown.reasoning = chat.reasoning
                out.reasoning(shown.reasoning)

            out.reply(chat, shown, before=reasoning_so_far)
            out.reasoning(chat.reasoning[len(shown.reasoning) :])
            shown.reasoning = chat.reasoning
            shown.tool_calls = list(chat.tool_calls)
    except KeyboardInterrupt:
        shown.stopped = True
        out.end_line(shown)
        return shown
    out.tool_calls(shown)
    return shown


def one_line(text: str) -> str:
    return " ".join(text.split())


# --- input history ---------------------------------------------------------------------------------


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


# --- the command -----------------------------------------------------------------------------------


class Key:
    """Where the API key comes from, and whether one was sent."""

    def __init__(self, env: str, sent: bool) -> None:
        self.env = env
        self.sent = sent


def add_chat_parser(commands: Any, texts: Texts, **parser_options: Any) -> argparse.ArgumentParser:
    chat: argparse.ArgumentParser = commands.add_parser(
        "chat", help=texts("chat.help"), description=texts("chat.description"), **parser_options
    )
    arguments = chat.add_argument_group(texts("cli.arguments"))
    arguments.add_argument("message", nargs="?", metavar=texts("chat.metavar"), help=texts("chat.message"))
    options = chat.add_argument_group(texts("cli.options"))
    options.add_argument("-h", "--help", action="help", help=texts("cli.help"))
    options.add_argument("--base-url", help=texts("chat.base_url", url=LOCAL_URL))
    options.add_argument("--model", help=texts("chat.model"))
    options.add_argument("--system", help=texts("chat.system"))
    options.add_argument("--temperature", type=float, help=texts("chat.temperature"))
    options.add_argument("--max-tokens", type=int, help=texts("chat.max_tokens"))
    options.add_argument("--no-stream", action="store_true", help=texts("chat.no_stream"))
    options.add_argument("--timeout", type=float, default=600.0, help=texts("chat.timeout"))
    options.add_argument("--retries", type=int, default=2, help=texts("chat.retries"))
    options.add_argument(
        "--api-key-env", metavar="NAME", default=DEFAULT_KEY_ENV, help=texts("chat.api_key_env")
    )
    options.add_argument("--plain", action="store_true", help=texts("chat.plain"))
    add_lang_option(options, texts)
    return chat


def add_lang_option(group: Any, texts: Texts) -> None:
    """``--lang``: on the command line and in every command, so `getgpt chat --lang ru` reads as well
    as `getgpt --lang ru chat` (its value is read before parsing: the help is in that language)."""
    group.add_argument("--lang", choices=LANGUAGES, default=argparse.SUPPRESS, help=texts("cli.lang"))


def _params(args: argparse.Namespace) -> dict[str, Any]:
    params = {"model": args.model, "temperature": args.temperature, "max_tokens": args.max_tokens}
    params = {name: value for name, value in params.items() if value is not None}
    if args.no_stream:
        params["stream"] = False
    return params


def run_chat(args: argparse.Namespace, texts: Texts, pretty: bool) -> int:
    from ..client import Client
    from ..protocol.errors import GetGptError

    base_url = args.base_url or os.environ.get("GETGPT_BASE_URL") or LOCAL_URL
    out = Output(sys.stdout, pretty=pretty, texts=texts)
    api_key = os.environ.get(args.api_key_env, "").strip()
    key = Key(args.api_key_env, sent=bool(api_key))
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
    conversation = Conversation(system=args.system, params=_params(args))
    with Client(base_url, timeout=args.timeout, max_retries=args.retries, headers=headers) as client:
        if args.message is None:
            return Session(client, conversation, out, key).run()
        message = sys.stdin.read() if args.message == "-" else args.message
        conversation.turns.append({"role": "user", "content": message})
        try:
            shown = answer(client, conversation.messages(), conversation.params, out)
        except GetGptError as exc:
            raise ChatFailed(describe_error(exc, texts, client.base_url, key.env, key.sent)) from None
        if shown.stopped:
            out.note(texts("cli.interrupted", prog="getgpt"))
            return 130
        return 0


class ChatFailed(Exception):
    """A chat that failed, already described in the user's language."""
