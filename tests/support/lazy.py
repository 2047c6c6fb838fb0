"""A module imported at its first use by a test, not when the test's file is collected.

Every pytest worker collects every test file, and importing LiteLLM alone costs ~4.3 s of CPU
(LangChain's OpenAI model ~1 s more): a test file importing them at its top made each of the
suite's workers pay that at collection, though only the one that runs those tests needs them
(measured: collecting the suite took 11.0 s of CPU a worker with them at the top, 6.8 s without).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

__all__ = ["Lazy"]


class Lazy:
    """Stands for the module ``name``: the first attribute read or written imports it, and every
    read and write goes to the module itself (``monkeypatch.setattr`` on it included)."""

    _name: str

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "_name", name)  # past __setattr__, which writes to the module

    def _module(self) -> ModuleType:
        return importlib.import_module(self._name)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") and attr.endswith("__"):
            # The proxy's own: collecting a file, pytest asks every object in it for __test__.
            raise AttributeError(attr)
        return getattr(self._module(), attr)

    def __setattr__(self, attr: str, value: Any) -> None:
        setattr(self._module(), attr, value)

    def __delattr__(self, attr: str) -> None:
        delattr(self._module(), attr)
