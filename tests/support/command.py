"""``getgpt`` run as a command (``python -m getgpt``), in a known language unless told otherwise."""

from __future__ import annotations

import os
import subprocess
import sys

from .forkserver import run_forked

__all__ = ["getgpt", "locale_env"]

_LOCALE = ("LANG", "LANGUAGE", "LC_ALL", "LC_MESSAGES")


def locale_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment with the locale set to ``C.UTF-8`` (English), then ``extra``."""
    env = {name: value for name, value in os.environ.items() if name not in _LOCALE}
    return {**env, "LANG": "C.UTF-8", "PYTHONIOENCODING": "utf-8", **(extra or {})}


def getgpt(
    *args: str, stdin: str = "", env: dict[str, str] | None = None, timeout: float = 60, fresh: bool = False
) -> subprocess.CompletedProcess[str]:
    """``getgpt ARGS`` run to its end with ``stdin`` as its input: a fork of the worker's fork server
    (support/forkserver.py), or with ``fresh`` a new interpreter, as a user starts it."""
    if not fresh:
        return run_forked(args, env=locale_env(env), stdin=stdin, timeout=timeout)
    return subprocess.run(
        [sys.executable, "-m", "getgpt", *args],
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
        env=locale_env(env),
        check=False,
    )
