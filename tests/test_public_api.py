"""The package's public names: pinned, and every lazily exported one resolves."""

from __future__ import annotations

import importlib

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
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_all_is_exactly_the_pinned_public_names_and_each_has_a_home(module: str) -> None:
    package = importlib.import_module(module)
    assert sorted(package.__all__) == sorted(PUBLIC[module])
    assert set(package._HOMES) == set(package.__all__) - {"__version__"}


@pytest.mark.parametrize(("module", "name"), [(m, n) for m, names in PUBLIC.items() for n in names])
def test_every_public_name_resolves_from_its_home(module: str, name: str) -> None:
    value = getattr(importlib.import_module(module), name)
    assert value is not None
    homes = getattr(importlib.import_module(module), "_HOMES", {})
    if name in homes:  # lazily exported: the same object as in the module it comes from
        assert value is getattr(importlib.import_module(homes[name], module), name)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        getgpt.no_such_name  # noqa: B018
    with pytest.raises(AttributeError, match="no_such_name"):
        getgpt.server.no_such_name  # noqa: B018
