"""Names a package exports but loads on first use (PEP 562), so importing it stays cheap."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["exported", "lazy_exports"]


def lazy_exports(
    package: str, namespace: dict[str, Any], exports: Mapping[str, Iterable[str]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``, whose names live in the modules ``exports``
    lists them under (``{".client": ("Client", ...), ...}``).

    A name is imported from its module on first use and kept in ``namespace`` (the package's
    globals), so later lookups cost nothing.
    """
    homes = {name: module for module, names in exports.items() for name in names}

    def load(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home, package), name)
        namespace[name] = value
        return value

    def names() -> list[str]:
        return sorted(set(namespace) | set(namespace.get("__all__", ())))

    return load, names


def exported(exports: Mapping[str, Iterable[str]], *more: str) -> list[str]:
    """A package's ``__all__``: every name of ``exports``, and ``more``, sorted."""
    return sorted([*(name for names in exports.values() for name in names), *more])
