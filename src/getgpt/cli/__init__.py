"""The ``getgpt`` command (:mod:`.commands`): ``chat``, ``demo``, ``serve`` and ``check``."""

from .commands import main

__all__ = ["main"]
