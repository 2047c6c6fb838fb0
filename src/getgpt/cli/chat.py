"""``getgpt chat``: its arguments, and one message sent or a session begun.

Only the standard library's light modules are imported at the top, and no dataclass is made (each
costs about a millisecond at import): the client, rich, json and platformdirs load when the command
runs, so ``getgpt --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from .arguments import add_lang_option, number
from .conversation import Conversation
from .errors import CommandFailed, Problem, describe_error
from .output import Output
from .reply import show_reply
from .session import Key, Session
from .text import Texts

__all__ = ["DEFAULT_KEY_ENV", "LOCAL_URL", "add_chat_parser", "run_chat"]

LOCAL_URL = "http://127.0.0.1:8000/"
DEFAULT_KEY_ENV = "GETGPT_API_KEY"


def add_chat_parser(commands: Any, texts: Texts) -> argparse.ArgumentParser:
    chat: argparse.ArgumentParser = commands.add_parser(
        "chat", help=texts("chat.help"), description=texts("chat.description"), texts=texts
    )
    arguments = chat.add_argument_group(texts("cli.arguments"))
    arguments.add_argument("message", nargs="?", metavar=texts("chat.metavar"), help=texts("chat.message"))
    options = chat.add_argument_group(texts("cli.options"))
    options.add_argument("-h", "--help", action="help", help=texts("cli.help"))
    options.add_argument("--base-url", metavar="URL", help=texts("chat.base_url", url=LOCAL_URL))
    options.add_argument("--model", metavar=texts("chat.model_metavar"), help=texts("chat.model"))
    options.add_argument("--system", metavar=texts("chat.system_metavar"), help=texts("chat.system"))
    options.add_argument(
        "--temperature", type=number(texts, float, 0, 2), metavar="T", help=texts("chat.temperature")
    )
    options.add_argument(
        "--max-tokens", type=number(texts, int, 1), metavar="N", help=texts("chat.max_tokens")
    )
    options.add_argument("--no-stream", action="store_true", help=texts("chat.no_stream"))
    options.add_argument(
        "--timeout",
        type=number(texts, float, positive=True),
        default=600.0,
        metavar="S",
        help=texts("chat.timeout"),
    )
    options.add_argument(
        "--retries", type=number(texts, int, 0), default=2, metavar="N", help=texts("chat.retries")
    )
    options.add_argument(
        "--api-key-env", metavar="NAME", default=DEFAULT_KEY_ENV, help=texts("chat.api_key_env")
    )
    options.add_argument("--plain", action="store_true", help=texts("chat.plain"))
    add_lang_option(options, texts)
    return chat


def _params(args: argparse.Namespace) -> dict[str, Any]:
    params = {"model": args.model, "temperature": args.temperature, "max_tokens": args.max_tokens}
    params = {name: value for name, value in params.items() if value is not None}
    if args.no_stream:
        params["stream"] = False
    return params


def run_chat(args: argparse.Namespace, texts: Texts, pretty: bool) -> int:
    from ..client import Client
    from ..protocol.errors import GetGptError

    message = None
    if args.message is not None:
        message = sys.stdin.read() if args.message == "-" else args.message
        if not message.strip():
            raise CommandFailed(Problem(texts("chat.empty")), status=2)
    base_url = args.base_url or os.environ.get("GETGPT_BASE_URL") or LOCAL_URL
    out = Output(sys.stdout, pretty=pretty, texts=texts)
    api_key = os.environ.get(args.api_key_env, "").strip()
    key = Key(args.api_key_env, sent=bool(api_key))
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
    conversation = Conversation(system=args.system, params=_params(args))
    try:
        client = Client(
            base_url, timeout=args.timeout, max_retries=args.retries, headers=headers, on_retry=out.retrying
        )
    except ValueError as exc:  # a URL no client can send to: its scheme, its port
        problem = Problem(texts("chat.bad_url", url=base_url), str(exc), texts("error.details"))
        raise CommandFailed(problem, status=2) from None
    with client:
        if message is None:
            return Session(client, conversation, out, key).run()
        conversation.turns.append({"role": "user", "content": message})
        try:
            received = show_reply(client, conversation.messages(), conversation.params, out)
        except GetGptError as exc:
            raise CommandFailed(describe_error(exc, texts, client.base_url, key.env, key.sent)) from None
        if received.stopped:
            out.note(texts("cli.interrupted", prog="getgpt"))
            return 130
        return 0
