"""The config file: ``getgpt serve --config getgpt.toml`` (TOML; ``tomllib``, ``tomli`` on 3.10).

It holds every ``getgpt serve`` setting under the name of its flag without the dashes in front
(``port``, ``max-streams``, ``model``, ``redis``, ...; a repeatable flag takes a list; a setting
that has no flag, as ``api-keys``, its own name), then the upstreams and how requests are routed
among them::

    max-streams = 2048

    [[upstreams]]
    name = "vllm-a"
    url = "http://10.0.0.5:8000/v1"
    kind = "openai"                  # or "getgpt"
    api-key = "env:VLLM_KEY"         # a literal, or env:NAME
    models = ["llama3"]              # or ["*"], or { llama3 = "meta-llama/Llama-3-8B" }
    weight = 2
    max-in-flight = 256

    [routing]
    strategy = "least-in-flight"     # or "weighted", "latency"
    attempts = 3
    cooldown = 30
    failures-to-cool = 3
    health-interval = 10

    [models.aliases]
    "gpt-3.5-turbo" = "llama3"

    [models.fallbacks]
    "gpt-4o" = ["llama3"]

The format is a contract, checked whole before anything starts: an unknown key, a value of the
wrong type, an upstream without a URL, a model routed nowhere or a fallback cycle is a
:class:`ValueError` naming the key (``upstreams[2].weight``), never a silent default. A flag or
a ``GETGPT_*`` variable overrides the file's value of the same setting (:func:`load_settings`);
``--upstream`` (and the settings only it uses) cannot be combined with ``[[upstreams]]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Mapping
from typing import Any

from .config import (
    ANY_MODEL,
    KINDS,
    ROUTED,
    STRATEGIES,
    Routing,
    ServerConfig,
    UpstreamEntry,
    env_name,
    flag_values,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover -- Python 3.10
    import tomli as tomllib

__all__ = ["describe", "load_settings", "read", "reread_routing", "settings_of"]

# Settings that say where the one upstream of --upstream is: with [[upstreams]], the file says it.
_ONE_UPSTREAM = ("backend", "upstream", "upstream_key_env", "upstream_model")
_UPSTREAM_KEYS = ("name", "url", "kind", "api-key", "models", "weight", "max-in-flight")
_ROUTING_KEYS = {
    # key: (field, type, least allowed)
    "strategy": ("strategy", str, None),
    "attempts": ("attempts", int, 1),
    "cooldown": ("cooldown", float, 0),
    "failures-to-cool": ("failures_to_cool", int, 1),
    "health-interval": ("health_interval", float, 0),
}
_ENV = "env:"


def _key_of(item: dataclasses.Field[Any]) -> str:
    """A setting's key in the file: its flag without the dashes, or its name for one without a flag."""
    flag = item.metadata.get("flag")
    if flag:
        return str(flag).lstrip("-")
    return item.name.replace("_", "-")


def _setting_keys() -> dict[str, dataclasses.Field[Any]]:
    return {
        _key_of(item): item
        for item in dataclasses.fields(ServerConfig)
        if not item.metadata.get("file_only") and item.name != "config_file"
    }


def _kind_name(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


def _wrong(key: str, expected: str, value: object) -> ValueError:
    return ValueError(f"{key}: expected {expected}, got {_kind_name(value)} ({value!r})")


def _string(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise _wrong(key, "a string", value)
    return value


def _integer(key: str, value: object, least: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _wrong(key, "an integer", value)
    if least is not None and value < least:
        raise ValueError(f"{key}: must be at least {least}, not {value}")
    return value


def _number(key: str, value: object, least: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _wrong(key, "a number", value)
    if least is not None and value < least:
        raise ValueError(f"{key}: must be at least {least:g}, not {value}")
    return float(value)


def _strings(key: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _wrong(key, "an array of strings", value)
    return tuple(_string(f"{key}[{index}]", item) for index, item in enumerate(value))


def _table(key: str, value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _wrong(key, "a table", value)
    return value


def _unknown(where: str, table: Mapping[str, Any], known: object) -> None:
    for key in table:
        if key not in known:  # type: ignore[operator]
            raise ValueError(f"{where}{key}: unknown key")


def _secret(key: str, value: object, environ: Mapping[str, str]) -> str:
    """A literal, or ``env:NAME``: the value of the variable NAME (which must hold one)."""
    text = _string(key, value)
    if text.startswith(_ENV):
        name = text[len(_ENV) :]
        held = environ.get(name)
        if not name or not held:
            raise ValueError(f"{key}: the environment variable {name or '(no name)'} holds no value")
        return held
    return text


def _setting(key: str, item: dataclasses.Field[Any], value: object, environ: Mapping[str, str]) -> Any:
    """The file's ``value`` for setting ``item``, checked against the type of its default."""
    default = item.default
    parse = item.metadata.get("parse")
    if item.name in ("api_keys", "metrics_key", "redis_url"):
        if isinstance(default, tuple):
            keys = _strings(key, value)
            if not keys:
                raise ValueError(f"{key}: holds no value: give one, or leave the key out")
            return tuple(_secret(f"{key}[{i}]", part, environ) for i, part in enumerate(keys))
        return _secret(key, value, environ)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise _wrong(key, "a boolean", value)
        return value
    if parse is not None:
        # Read as a flag's text is: workers = 4 or workers = "auto".
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise _wrong(key, "an integer or a string", value)
        try:
            return parse(str(value))
        except ValueError as exc:
            raise ValueError(f"{key}: {value!r} is not a valid value: {exc}") from None
    if isinstance(default, int):
        return _integer(key, value)
    if isinstance(default, float):
        return _number(key, value)
    if isinstance(default, tuple):
        return _strings(key, value)
    text = _string(key, value)
    choices = item.metadata.get("choices")
    if choices and text not in choices:
        raise ValueError(f"{key}: must be one of {', '.join(choices)}, not {text!r}")
    return text


def read(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The TOML document at ``path``; :class:`ValueError` naming the file for one that cannot be read."""
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except OSError as exc:
        raise ValueError(f"cannot read the config file {os.fspath(path)}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"the config file {os.fspath(path)} is not valid TOML: {exc}") from None


def _models_of(key: str, value: object) -> tuple[tuple[str, str | None], ...]:
    if isinstance(value, list):
        names = _strings(key, value)
        pairs: tuple[tuple[str, str | None], ...] = tuple((name, None) for name in names)
    elif isinstance(value, dict):
        pairs = tuple((name, _string(f"{key}.{name}", own)) for name, own in value.items())
    else:
        raise _wrong(key, "an array of model names or a table of them", value)
    if not pairs:
        raise ValueError(f'{key}: names no model (use ["*"] for any)')
    for name, _ in pairs:
        if not name.strip():
            raise ValueError(f"{key}: a model name is empty")
    return pairs


def _upstream(index: int, value: object, environ: Mapping[str, str]) -> UpstreamEntry:
    where = f"upstreams[{index}]"
    table = _table(where, value)
    _unknown(where + ".", table, _UPSTREAM_KEYS)
    for required in ("name", "url"):
        if required not in table:
            raise ValueError(f"{where}.{required}: missing (every upstream needs a name and a url)")
    name = _string(f"{where}.name", table["name"]).strip()
    # It travels in a response header and a metric's label: printable ASCII, no spaces.
    if not name or not name.isascii() or any(char.isspace() or not char.isprintable() for char in name):
        raise ValueError(f"{where}.name: {table['name']!r} is not a usable name (printable ASCII, no spaces)")
    url = _string(f"{where}.url", table["url"]).strip()
    if not url.lower().startswith(("http://", "https://")):
        raise ValueError(f"{where}.url: {url!r} is not an http:// or https:// URL")
    kind = _string(f"{where}.kind", table.get("kind", "openai"))
    if kind not in KINDS:
        raise ValueError(f"{where}.kind: must be one of {', '.join(KINDS)}, not {kind!r}")
    key = _secret(f"{where}.api-key", table["api-key"], environ) if "api-key" in table else None
    return UpstreamEntry(
        name=name,
        url=url,
        kind=kind,
        api_key=key,
        models=_models_of(f"{where}.models", table.get("models", [ANY_MODEL])),
        weight=_integer(f"{where}.weight", table.get("weight", 1), 1),
        max_in_flight=_integer(f"{where}.max-in-flight", table.get("max-in-flight", 0), 0),
    )


def _routing(document: Mapping[str, Any], environ: Mapping[str, str]) -> Routing | None:
    listed = document.get("upstreams")
    routing = _table("routing", document.get("routing", {}))
    models = _table("models", document.get("models", {}))
    if listed is None:
        for name, given in (("routing", routing), ("models", models)):
            if given:
                raise ValueError(f"{name}: there are no [[upstreams]] to route among")
        return None
    if not isinstance(listed, list) or not listed:
        raise _wrong("upstreams", "one [[upstreams]] table or more", listed)
    upstreams = tuple(_upstream(index, value, environ) for index, value in enumerate(listed))
    seen: dict[str, int] = {}
    for index, entry in enumerate(upstreams):
        if entry.name in seen:
            raise ValueError(
                f"upstreams[{index}].name: {entry.name!r} is already upstreams[{seen[entry.name]}]'s"
            )
        seen[entry.name] = index
    _unknown("routing.", routing, _ROUTING_KEYS)
    options: dict[str, Any] = {}
    for key, (name, kind, least) in _ROUTING_KEYS.items():
        if key not in routing:
            continue
        where = f"routing.{key}"
        if kind is int:
            options[name] = _integer(where, routing[key], least)
        elif kind is float:
            options[name] = _number(where, routing[key], least)
        else:
            options[name] = _string(where, routing[key])
    if options.get("strategy", STRATEGIES[0]) not in STRATEGIES:
        raise ValueError(
            f"routing.strategy: must be one of {', '.join(STRATEGIES)}, not {options['strategy']!r}"
        )
    _unknown("models.", models, ("aliases", "fallbacks"))
    aliases = {
        name: _string(f"models.aliases.{name}", target)
        for name, target in _table("models.aliases", models.get("aliases", {})).items()
    }
    fallbacks = {
        name: _strings(f"models.fallbacks.{name}", targets)
        for name, targets in _table("models.fallbacks", models.get("fallbacks", {})).items()
    }
    served = {name for entry in upstreams for name, _ in entry.models}
    _check_routes(served, aliases, fallbacks)
    return Routing(
        upstreams,
        aliases=tuple(aliases.items()),
        fallbacks=tuple(fallbacks.items()),
        **options,
    )


def _check_routes(served: set[str], aliases: dict[str, str], fallbacks: dict[str, tuple[str, ...]]) -> None:
    """Every alias and fallback leads to a model some upstream serves; no fallback leads back."""

    def routed(name: str) -> bool:
        return ANY_MODEL in served or name in served

    for alias, target in aliases.items():
        if target in aliases:
            raise ValueError(f"models.aliases.{alias}: {target!r} is itself an alias; name the model")
        if not routed(target):
            raise ValueError(
                f"models.aliases.{alias}: the model {target!r} is routed nowhere (no upstream serves it)"
            )
    for model, targets in fallbacks.items():
        if not routed(aliases.get(model, model)):
            raise ValueError(f"models.fallbacks.{model}: the model {model!r} is routed nowhere")
        for index, target in enumerate(targets):
            if not routed(aliases.get(target, target)):
                raise ValueError(f"models.fallbacks.{model}[{index}]: the model {target!r} is routed nowhere")
    # A cycle: a model reached again by following fallbacks from itself.
    graph = {
        aliases.get(model, model): [aliases.get(target, target) for target in targets]
        for model, targets in fallbacks.items()
    }
    for start in graph:
        path = [start]
        stack = [(start, iter(graph.get(start, ())))]
        while stack:
            _, following = stack[-1]
            step = next(following, None)
            if step is None:
                stack.pop()
                path.pop()
                continue
            if step == start or step in path:
                cycle = " -> ".join([*path, step])
                raise ValueError(f"models.fallbacks.{start}: the fallbacks lead back in a cycle ({cycle})")
            path.append(step)
            stack.append((step, iter(graph.get(step, ()))))


def settings_of(
    document: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> tuple[dict[str, Any], Routing | None]:
    """The settings ``document`` holds, by field name, and its routing table (None for none)."""
    env = os.environ if environ is None else environ
    keys = _setting_keys()
    values: dict[str, Any] = {}
    for key, value in document.items():
        if key in ("upstreams", "routing", "models"):
            continue
        item = keys.get(key)
        if item is None:
            hint = " (the file itself is named by --config)" if key == "config" else ""
            raise ValueError(f"{key}: unknown key{hint}")
        values[item.name] = _setting(key, item, value, env)
    routing = _routing(document, env)
    if routing is not None:
        for name in _ONE_UPSTREAM:
            if name in values:
                key = _key_of(_field(name))
                raise ValueError(f"{key}: not with [[upstreams]] (each upstream says its own url and kind)")
    return values, routing


def _field(name: str) -> dataclasses.Field[Any]:
    """The :class:`ServerConfig` field called ``name``."""
    return next(item for item in dataclasses.fields(ServerConfig) if item.name == name)


def load_settings(
    args: argparse.Namespace | None = None,
    environ: Mapping[str, str] | None = None,
    path: str | None = None,
) -> ServerConfig:
    """The settings: defaults, then the config file (``path``, else ``--config``, else
    ``GETGPT_CONFIG_FILE``), then ``environ`` (``os.environ``), then the flags in ``args``."""
    env = os.environ if environ is None else environ
    flags = flag_values(args) if args is not None else {}
    path = path or flags.get("config_file") or env.get(env_name(_field("config_file"))) or None
    if not path:
        return ServerConfig.from_env(env, **flags)
    try:
        values, routing = settings_of(read(path), env)
    except ValueError as exc:
        message = str(exc)
        if not message.startswith(("cannot read the config file", "the config file")):
            message = f"{path}: {message}"
        raise ValueError(message) from None
    values["config_file"] = str(path)
    if routing is not None:
        for name in _ONE_UPSTREAM:
            item = _field(name)
            given = flags.get(name) is not None or bool((env.get(env_name(item)) or "").strip())
            if given:
                raise ValueError(
                    f"--{_key_of(item)} / {env_name(item)} is set, but the config file {path} lists "
                    "[[upstreams]]: each upstream says its own url and kind there; unset it"
                )
        values["backend"] = ROUTED
        values["routing"] = routing
    config = ServerConfig.from_env(env, base=values, **flags)
    if config.routing is not None and config.model_aliases:
        try:
            config = dataclasses.replace(config, routing=_with_aliases(config.routing, config.aliases))
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
    return config


def _with_aliases(routing: Routing, aliases: Mapping[str, str]) -> Routing:
    """``routing`` with the ``model-alias`` setting's aliases too (they win over ``[models.aliases]``,
    as a flag wins over the file), checked as the file's are."""
    merged = {**dict(routing.aliases), **aliases}
    served = {name for entry in routing.upstreams for name, _ in entry.models}
    _check_routes(served, merged, {name: targets for name, targets in routing.fallbacks})
    return dataclasses.replace(routing, aliases=tuple(merged.items()))


def reread_routing(config: ServerConfig, environ: Mapping[str, str] | None = None) -> ServerConfig:
    """``config`` with the routing tables of its config file as the file says now (SIGHUP).

    Only ``[[upstreams]]``, ``[routing]`` and ``[models]`` are taken; the file's other settings
    apply at the next start. :class:`ValueError` naming the key when the file is not valid, or no
    longer lists upstreams for a server that routes (or lists them for one that does not).
    """
    path = config.config_file
    if not path:
        raise ValueError("the server was started without --config: there is no file to read again")
    try:
        _, routing = settings_of(read(path), os.environ if environ is None else environ)
        if (routing is None) != (config.routing is None):
            raise ValueError(
                "[[upstreams]] appeared or went away: switching between routing and another backend "
                "needs a restart"
            )
        if routing is not None and config.model_aliases:
            routing = _with_aliases(routing, config.aliases)
    except ValueError as exc:
        message = str(exc)
        if not message.startswith(("cannot read the config file", "the config file")):
            message = f"{path}: {message}"
        raise ValueError(message) from None
    return dataclasses.replace(config, routing=routing)


def describe(config: ServerConfig) -> str:
    """One line on what ``config`` routes, for ``--check-config``."""
    routing = config.routing
    if routing is None:
        return f"backend {config.backend}, no [[upstreams]]"
    models = sorted({name for entry in routing.upstreams for name, _ in entry.models})
    names = ", ".join(entry.name for entry in routing.upstreams)
    return (
        f"{len(routing.upstreams)} upstream(s) ({names}) serving {', '.join(models)}; "
        f"strategy {routing.strategy}, {routing.attempts} attempt(s), "
        f"{len(routing.aliases)} alias(es), {len(routing.fallbacks)} fallback(s)"
    )
