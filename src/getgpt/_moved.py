"""Import paths of modules that moved, kept working for code written against them.

The protocol's modules lived at the package root (``getgpt.errors``, ``getgpt.envelope``, ...)
before the layers became folders; ``from getgpt.errors import GetGptError`` still works and gives
the very module now at ``getgpt.protocol.errors``, with a :class:`DeprecationWarning` naming the new
path. New code imports names from ``getgpt`` itself or from the new paths.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType

__all__ = ["MOVED", "install"]

#: Old module path -> where it lives now.
MOVED = {
    "getgpt.envelope": "getgpt.protocol.envelope",
    "getgpt.errors": "getgpt.protocol.errors",
    "getgpt.reply": "getgpt.protocol.reply",
    "getgpt.request": "getgpt.protocol.request",
    "getgpt.sse": "getgpt.protocol.sse",
    "getgpt.completion": "getgpt.providers.completion",
    "getgpt.server.serving": "getgpt.server.running.serving",
}


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old path and hands back the module at its new one (the same object)."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new = MOVED[spec.name]
        warnings.warn(f"{spec.name} is now {new}", DeprecationWarning, stacklevel=2)
        return importlib.import_module(new)

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module at the new path has run already."""


def install() -> None:
    """Put the finder on ``sys.meta_path`` once."""
    if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
        sys.meta_path.append(_Finder())
