"""Rules of the source's shape, read from the AST of every module under src/getgpt.

- A private name (``_x``) defined in a module -- a function, a class, a constant -- is imported
  only by modules of the same package. A private module (``getgpt._client``) or package
  (``getgpt._transports``) is imported only from within the package that holds it.
- Each layer is a folder (protocol, _transports, client, server, checks, integrations, providers,
  cli) and imports only the layers below it; only the client package reaches the transports, and
  the faces take the clients from ``getgpt.client`` itself. Inside the server, its parts (running,
  app, admission, backends, upstreams, chat, operations, edge) import downward only.
- No import circles, counting every import (inside functions and ``if TYPE_CHECKING:`` too) but
  the ``TYPE_CHECKING`` block of a package's ``__init__``: the mirror, for type checkers, of the
  names the package loads lazily on first use (PEP 562), which never runs.
- No private attribute of httpx, httpcore or h11 is touched: httpcore and h11 are not imported
  at all, and a module that imports httpx reaches for private attributes only on its own objects.
- Of uvicorn, only what it documents: ``uvicorn.run``, ``Config``, ``Server`` (and, in logging
  configuration, its loggers and formatters); none of its modules is named (see
  :data:`UVICORN_PUBLIC` for why).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import getgpt

SRC = Path(getgpt.__file__).resolve().parent.parent
PACKAGE = "getgpt"


@dataclass(frozen=True)
class Import:
    importer: str  # module name
    module: str  # absolute module name imported from
    name: str | None  # the name imported from it, for ``from m import name``
    line: int
    type_checking: bool


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _package_of(module: str) -> str:
    """The package a module belongs to (a package's ``__init__`` belongs to the package itself)."""
    if MODULES[module].name == "__init__.py":
        return module
    return module.rpartition(".")[0]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(module: str) -> Iterator[Import]:
    tree = ast.parse(MODULES[module].read_text(), str(MODULES[module]))
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            guarded.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    package = _package_of(module)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, None, node.lineno, id(node) in guarded)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                yield Import(module, source, alias.name, node.lineno, id(node) in guarded)


@cache
def imports() -> list[Import]:
    """Every import in the package, read when a test first asks: every test worker collects this
    module, and reading them all at its import cost each one 0.4 s."""
    return [found for module in MODULES for found in _imports(module)]


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_the_walk_sees_the_whole_package() -> None:
    assert {
        "getgpt.client.base",
        "getgpt._transports.choose",
        "getgpt.server.backends.base",
    } <= MODULES.keys()
    assert len(imports()) > 200


def test_no_private_name_is_imported_from_outside_its_package() -> None:
    wrong = []
    for found in imports():
        if not found.module.startswith(PACKAGE):
            continue
        path = found.module.split(".") + ([found.name] if found.name else [])
        home = _package_of(found.importer)
        for depth in range(1, len(path)):
            owner, name = ".".join(path[:depth]), ".".join(path[: depth + 1])
            if not _private(path[depth]):
                continue
            if name in MODULES:  # a private module or package: from within its parent package
                allowed = home == owner or home.startswith(owner + ".")
            else:  # a private name defined in the module ``owner``: from that module's package
                allowed = owner in MODULES and _package_of(owner) == home
            if not allowed:
                wrong.append(f"{found.importer}:{found.line} imports {'.'.join(path)}")
                break
    assert wrong == []


# Each layer is a folder and imports only the layers listed for it: the arrows run one way, down.
LAYERS: dict[str, set[str]] = {
    "protocol": set(),
    "_transports": {"protocol"},
    "client": {"protocol", "_transports"},
    "server": {"protocol", "client"},
    "checks": {"protocol", "client"},
    "integrations": {"protocol", "client"},
    "providers": {"protocol", "client", "integrations"},
    "cli": {"protocol", "client", "server", "checks"},
}
# Helpers any layer may use, at the package root, which import no layer themselves.
ROOT_HELPERS = {"_lazy", "_moved"}
# Inside the server, parts in order from the top: each imports only parts after it. ``running``
# starts processes around the app; ``app`` builds it; admission, backends and upstreams decide a
# request's fate; ``chat`` holds the endpoints' request, parsing, pump and wire; ``operations``
# drain, logs, counts and metrics; ``edge`` the HTTP connection, body and responses; ``store`` the
# keys, the usage ledger and their databases (imported by admission, importing only leaves);
# ``api_error`` and ``config`` are leaves.
SERVER_PARTS = [
    "running", "app", "admission", "backends", "upstreams", "chat", "operations", "edge", "store",
]  # fmt: skip
SERVER_LEAVES = {"api_error", "config", "config_file", "__init__"}
# A face takes the clients from the client package's face, never from the module that defines them.
CLIENT_INSIDES = {"getgpt.client.base", "getgpt.client.clients", "getgpt.client.streams"}
FACES = ("cli", "checks", "integrations", "providers")


def _target(found: Import) -> str:
    """The module an import reaches: ``from getgpt.client import transport`` reaches the module."""
    if found.name and f"{found.module}.{found.name}" in MODULES:
        return f"{found.module}.{found.name}"
    return found.module


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "getgpt"


def _runtime_imports() -> Iterator[Import]:
    """Every import of getgpt by getgpt but a package's lazy names' mirror (never run)."""
    for found in imports():
        if found.module.startswith(PACKAGE) and not (
            found.type_checking and MODULES[found.importer].name == "__init__.py"
        ):
            yield found


def test_each_layer_imports_only_the_layers_below_it() -> None:
    wrong = []
    for found in _runtime_imports():
        importer, target = _layer(found.importer), _layer(_target(found))
        if importer == target or target in ROOT_HELPERS or importer not in LAYERS:
            continue
        if target == "getgpt" and found.name == "__version__":
            continue
        if target not in LAYERS[importer]:
            wrong.append(f"{found.importer}:{found.line} imports {_target(found)}")
    assert wrong == []
    assert set(LAYERS) | {"web"} <= {p.name for p in (SRC / PACKAGE).iterdir() if p.is_dir()}


def test_the_package_root_holds_no_layer_of_its_own() -> None:
    loose = {p.stem for p in (SRC / PACKAGE).glob("*.py")}
    assert loose == {"__init__", "__main__"} | ROOT_HELPERS


def test_only_the_client_package_reaches_the_transports() -> None:
    reached = [
        f"{found.importer}:{found.line} imports {_target(found)}"
        for found in _runtime_imports()
        if _layer(_target(found)) == "_transports" and _layer(found.importer) not in ("_transports", "client")
    ]
    assert reached == []


def test_faces_take_the_clients_from_the_client_package() -> None:
    wrong = [
        f"{found.importer}:{found.line} imports {_target(found)}"
        for found in imports()
        if _layer(found.importer) in FACES and _target(found) in CLIENT_INSIDES
    ]
    assert wrong == []
    assert any(_layer(f.importer) in FACES and f.module == "getgpt.client" for f in imports())


def _server_part(module: str) -> str | None:
    parts = module.split(".")
    if parts[:2] != ["getgpt", "server"]:
        return None
    return parts[2] if len(parts) > 2 else "__init__"


def test_the_server_parts_import_downward() -> None:
    wrong = []
    for found in _runtime_imports():
        importer, target = _server_part(found.importer), _server_part(_target(found))
        if importer is None or target is None or importer == target or target in SERVER_LEAVES:
            continue
        if importer in SERVER_LEAVES or SERVER_PARTS.index(target) <= SERVER_PARTS.index(importer):
            wrong.append(f"{found.importer}:{found.line} imports {_target(found)}")
    assert wrong == []
    found_parts = {
        p.name for p in (SRC / PACKAGE / "server").iterdir() if p.is_dir() and p.name != "__pycache__"
    }
    assert found_parts == set(SERVER_PARTS) - {"app"}


def _graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {module: set() for module in MODULES}
    for found in imports():
        if found.type_checking and MODULES[found.importer].name == "__init__.py":
            continue  # a package's lazy names' mirror: never imported at run time
        target = found.module
        if found.name and f"{target}.{found.name}" in MODULES:
            target = f"{target}.{found.name}"
        if target in MODULES and target != found.importer:
            edges[found.importer].add(target)
    return edges


def _circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_circle_finder_finds_a_circle() -> None:
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles() -> None:
    edges = _graph()
    assert "getgpt._transports.http11.pool" in edges["getgpt._transports.choose"]
    assert _circles(edges) == []


def test_nothing_below_the_chooser_imports_it() -> None:
    users = {found.importer for found in imports() if found.module == "getgpt._transports.choose"}
    users |= {
        found.importer
        for found in imports()
        if found.module == "getgpt._transports" and found.name == "choose"
    }
    assert users and not any(user.startswith("getgpt._transports") for user in users)


def test_httpcore_and_h11_are_never_imported() -> None:
    assert [f for f in imports() if f.module.split(".")[0] in ("httpcore", "h11")] == []
    for path in MODULES.values():
        text = path.read_text()
        assert "import_module(" not in text or "h11" not in text, path


def test_no_private_attribute_of_another_library_is_touched() -> None:
    httpx_users = {found.importer for found in imports() if found.module.split(".")[0] == "httpx"}
    assert "getgpt._transports.httpx" in httpx_users
    wrong = []
    for module in httpx_users:
        tree = ast.parse(MODULES[module].read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and _private(node.attr):
                owner = node.value
                if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls")):
                    wrong.append(f"{module}:{node.lineno} .{node.attr}")
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "setattr")
                and len(node.args) > 1
                and isinstance(node.args[1], ast.Constant)
                and _private(str(node.args[1].value))
            ):
                wrong.append(f"{module}:{node.lineno} {node.func.id}(..., {node.args[1].value!r})")
    assert wrong == []


# uvicorn documents, for code that runs it: ``uvicorn.run``, ``uvicorn.Config`` (whose keyword
# arguments are its settings, ``http=`` taking a protocol class among them) and ``uvicorn.Server``
# (``serve``, ``run``), plus, for logging configuration, its loggers and log formatters
# (docs/concepts/logging.md). Everything else -- ``uvicorn.protocols.*``, ``uvicorn.middleware``,
# ``uvicorn._types``, ``uvicorn.server.ServerState`` -- is how it works today: its httptools protocol
# changed 166 lines between 0.29 and 0.54, and a subclass of it once needed a version pin to stay
# correct. So src/ names no uvicorn module but the package, takes only those names from it, and
# names no other uvicorn module in a string (a dictConfig factory, an import string).
UVICORN_PUBLIC = {"run", "Config", "Server", "main"}
UVICORN_DOCUMENTED_STRINGS = {
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "uvicorn.logging.DefaultFormatter",
    "uvicorn.logging.AccessFormatter",
    "uvicorn.logging.ColourizedFormatter",
}


def _uvicorn_uses(module: str) -> Iterator[str]:
    """Each use of uvicorn in ``module`` that reaches past its documented names."""
    tree = ast.parse(MODULES[module].read_text())
    bound = set()  # names the module binds to the uvicorn package itself
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "uvicorn":
                    bound.add(alias.asname or "uvicorn")
                elif alias.name.startswith("uvicorn."):
                    yield f"{module}:{node.lineno} import {alias.name}"
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            if node.module.startswith("uvicorn."):
                yield f"{module}:{node.lineno} from {node.module} import ..."
            elif node.module == "uvicorn":
                for alias in node.names:
                    if alias.name not in UVICORN_PUBLIC:
                        yield f"{module}:{node.lineno} from uvicorn import {alias.name}"
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            if text.startswith("uvicorn.") and text not in UVICORN_DOCUMENTED_STRINGS and " " not in text:
                yield f"{module}:{node.lineno} {text!r}"
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in bound
            and node.attr not in UVICORN_PUBLIC
        ):
            yield f"{module}:{node.lineno} uvicorn.{node.attr}"


def test_the_uvicorn_rule_sees_what_it_forbids(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import uvicorn\nimport uvicorn.protocols.http.httptools_impl\n"
        "from uvicorn.server import ServerState\nfrom uvicorn import Config, main\n"
        "x = uvicorn.protocols\ny = uvicorn.Config\nz = 'uvicorn.middleware.proxy_headers:Proxy'\n"
        "w = 'uvicorn.logging.AccessFormatter'\n"
    )
    MODULES["sample"] = sample
    try:
        found = list(_uvicorn_uses("sample"))
    finally:
        del MODULES["sample"]
    assert found == [
        "sample:2 import uvicorn.protocols.http.httptools_impl",
        "sample:3 from uvicorn.server import ...",
        "sample:7 'uvicorn.middleware.proxy_headers:Proxy'",
        "sample:5 uvicorn.protocols",
    ]


def test_only_what_uvicorn_documents_is_used() -> None:
    users = {found.importer for found in imports() if found.module.split(".")[0] == "uvicorn"}
    assert "getgpt.server.running.serving" in users and "getgpt.server.edge.connections" in users
    wrong = [use for module in sorted(MODULES) for use in _uvicorn_uses(module)]
    assert wrong == []
