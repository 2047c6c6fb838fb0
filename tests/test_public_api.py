"""The package's public names: pinned, and every lazily exported one resolves."""

from __future__ import annotations

import ast
import contextlib
import importlib
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

import getgpt
import getgpt.server

PUBLIC = {
    "getgpt": [
        "DEFAULT_BASE_URL",
        "DEFAULT_TIMEOUT",
        "AsyncChatStream",
        "AsyncClient",
        "ChatCompletion",
        "ChatRequest",
        "ChatStream",
        "Client",
        "CloudflareBlocked",
        "ConnectError",
        "GetGptError",
        "IncompleteStream",
        "LimitExceeded",
        "Message",
        "ProtocolError",
        "RateLimitError",
        "RemoteError",
        "Reply",
        "ReplyParser",
        "SSEDecoder",
        "SignatureError",
        "StatusError",
        "Timeout",
        "TransportError",
        "Usage",
        "ValidationError",
        "__version__",
        "build_request",
        "decrypt",
        "encrypt",
        "parse_request",
    ],
    "getgpt.server": ["ApiError", "ChatCheck", "GetGptApp", "RequestCheck", "ServerConfig", "create_app"],
    "getgpt.client": [
        "DEFAULT_BASE_URL",
        "DEFAULT_TIMEOUT",
        "AsyncChatStream",
        "AsyncClient",
        "BaseClient",
        "ChatStream",
        "Client",
        "Messages",
        "base_url_from",
    ],
    "getgpt.checks": ["Battery", "Report", "Result", "Settings", "Table", "check"],
    "getgpt.cli": ["main"],
    "getgpt.providers": ["GetGpt"],
    "getgpt.providers.completion": ["ChatCompletion"],
    "getgpt.integrations.g4f": ["GetGpt", "g4f_error"],
    "getgpt.integrations.litellm": ["PROVIDER", "GetGptLLM", "handler", "litellm_error", "register"],
    "getgpt.integrations.langchain": ["ChatGetGpt"],
}
# Packages whose names load on first use: a table of modules and names, and a block of imports
# under TYPE_CHECKING that mirrors it for type checkers.
LAZY = ["getgpt", "getgpt.client", "getgpt.server"]

# Import paths from before the layers were folders, which code in the wild may hold.
MOVED = {
    "getgpt.envelope": "getgpt.protocol.envelope",
    "getgpt.errors": "getgpt.protocol.errors",
    "getgpt.reply": "getgpt.protocol.reply",
    "getgpt.request": "getgpt.protocol.request",
    "getgpt.sse": "getgpt.protocol.sse",
    "getgpt.completion": "getgpt.providers.completion",
    "getgpt.server.serving": "getgpt.server.running.serving",
}
# What the seed and the g4f era called, by the paths they called it by.
SEED_FACE = [
    ("getgpt.providers.GetGpt", "_create_completion"),
    ("getgpt.providers.GetGpt", "url"),
    ("getgpt.providers.GetGpt", "model"),
    ("getgpt.providers.GetGpt", "supports_stream"),
    ("getgpt.providers.GetGpt", "needs_auth"),
    ("getgpt.providers.GetGpt", "params"),
    ("getgpt", "ChatCompletion"),
    ("getgpt.completion", "ChatCompletion"),
    ("getgpt.server.serving", "uvicorn_config"),
]


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_all_is_exactly_the_pinned_public_names(module: str) -> None:
    assert sorted(importlib.import_module(module).__all__) == sorted(PUBLIC[module])


def _mirrored(package: str) -> dict[str, str]:
    """The names the TYPE_CHECKING block of ``package``'s __init__ imports, and from where."""
    path = importlib.import_module(package).__file__
    assert path is not None
    tree = ast.parse(Path(path).read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING")
    found = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom)
        for alias in node.names:
            assert alias.asname == alias.name  # `X as X`: re-exported for type checkers
            found[alias.name] = "." * node.level + (node.module or "")
    return found


@pytest.mark.parametrize("package", LAZY)
def test_the_lazy_table_the_type_checkers_mirror_and_all_agree(package: str) -> None:
    module = importlib.import_module(package)
    table = {name: home for home, names in module._EXPORTS.items() for name in names}
    mirror = _mirrored(package)
    assert set(table) == set(module.__all__) - {"__version__"}
    for name, home in table.items():  # the mirror imports each name from its home or the home's package
        assert mirror[name] == home or home.startswith(mirror[name] + ".")
    assert set(mirror) == set(table)


@pytest.mark.parametrize(("module", "name"), [(m, n) for m, names in PUBLIC.items() for n in names])
def test_every_public_name_resolves_from_its_home(module: str, name: str) -> None:
    package = importlib.import_module(module)
    value = getattr(package, name)
    assert value is not None
    for home, names in getattr(package, "_EXPORTS", {}).items():
        if name in names:  # lazily exported: the same object as in the module it comes from
            assert value is getattr(importlib.import_module(home, module), name)


@pytest.mark.parametrize(("old", "new"), sorted(MOVED.items()))
def test_an_old_import_path_gives_the_module_at_its_new_one(old: str, new: str) -> None:
    with (
        pytest.warns(DeprecationWarning, match=new.replace(".", r"\."))
        if old not in sys.modules
        else _nothing()
    ):
        moved = importlib.import_module(old)
    assert moved is importlib.import_module(new)


def test_an_old_path_imports_in_a_fresh_interpreter_with_its_warning() -> None:
    code = (
        "import warnings; warnings.simplefilter('error', DeprecationWarning)\n"
        "try:\n    from getgpt.errors import GetGptError\nexcept DeprecationWarning as w: print(w)\n"
        "warnings.simplefilter('ignore')\n"
        "from getgpt.errors import GetGptError; import getgpt; print(GetGptError is getgpt.GetGptError)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["getgpt.errors is now getgpt.protocol.errors", "True"]


@pytest.mark.parametrize(("module", "name"), SEED_FACE)
def test_the_seeds_face_keeps_its_names(module: str, name: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert getattr(importlib.import_module(module), name) is not None


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        getgpt.no_such_name  # noqa: B018
    with pytest.raises(AttributeError, match="no_such_name"):
        getgpt.server.no_such_name  # noqa: B018


@contextlib.contextmanager
def _nothing() -> Iterator[None]:
    yield
