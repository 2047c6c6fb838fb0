"""Upstreams for the routing tests: :mod:`.fleet_upstream` processes, and config files naming them.

- :class:`FleetUpstream` -- one scripted upstream process on a free loopback port:
  ``start()``, ``kill()`` (SIGKILL: it dies as a crashed server does, mid-stream), ``control(...)``
  (how it answers from now on), ``counts()`` (what it received).
- :func:`fleet` -- ``with fleet("a", "b", "c") as ups:`` starts them, stops them on leaving.
- :func:`write_config` -- a ``getgpt serve --config`` file: settings, ``[[upstreams]]``,
  ``[routing]``, ``[models.aliases]``, ``[models.fallbacks]``, written as TOML.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from .processes import SRC, SSL_CONTEXT, stop
from .servers import free_port
from .waiting import wait_until

__all__ = ["FleetUpstream", "fleet", "metric", "toml_value", "upstream_state", "write_config"]

SCRIPT = Path(__file__).resolve().parent / "fleet_upstream.py"
# One client for the control calls: a fresh one per call would cost more than the call.
_http = httpx.Client(timeout=10, verify=SSL_CONTEXT)


class FleetUpstream:
    """One scripted upstream process; see the module docstring."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def v1(self) -> str:
        return self.root + "v1"

    def start(self) -> FleetUpstream:
        """Start it (again, on the same port); return once it answers."""
        self.process = subprocess.Popen(
            [sys.executable, str(SCRIPT), "--port", str(self.port), "--name", self.name],
            env={"PYTHONPATH": str(SRC)},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self._answers, 20, f"upstream {self.name} answering")
        return self

    def _answers(self) -> bool:
        assert self.process is not None and self.process.poll() is None, f"upstream {self.name} exited"
        try:
            return _http.get(self.root + "healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def kill(self) -> None:
        """SIGKILL: gone at once, its connections reset, as a crashed server's are."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process, 5)

    def control(self, **settings: Any) -> None:
        """How it answers from now on: ``status=503, retry_after="5"``, ``hang=True``,
        ``probe_status=500``; nothing: as usual."""
        _http.post(self.root + "_control", content=json.dumps(settings)).raise_for_status()

    def counts(self) -> dict[str, Any]:
        """What it received: ``chat``, ``embeddings``, ``models``, ``healthz`` counts, ``sent_models``."""
        return dict(_http.get(self.root + "_control").json())


@contextlib.contextmanager
def fleet(*names: str) -> Iterator[dict[str, FleetUpstream]]:
    upstreams = {name: FleetUpstream(name) for name in names}
    try:
        for upstream in upstreams.values():
            upstream.start()
        yield upstreams
    finally:
        for upstream in upstreams.values():
            upstream.stop()


def toml_value(value: object) -> str:
    """``value`` as TOML (the few types a config file here holds)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML for {value!r}")


def write_config(
    path: Path,
    upstreams: list[Mapping[str, Any]],
    *,
    settings: Mapping[str, Any] | None = None,
    routing: Mapping[str, Any] | None = None,
    aliases: Mapping[str, str] | None = None,
    fallbacks: Mapping[str, list[str]] | None = None,
) -> Path:
    """Write a config file at ``path`` (keys as the file spells them) and return ``path``."""
    lines = [f"{key} = {toml_value(value)}" for key, value in (settings or {}).items()]
    for upstream in upstreams:
        lines += ["", "[[upstreams]]"] + [f"{key} = {toml_value(value)}" for key, value in upstream.items()]
    if routing:
        lines += ["", "[routing]"] + [f"{key} = {toml_value(value)}" for key, value in routing.items()]
    if aliases:
        lines += ["", "[models.aliases]"] + [f"{json.dumps(k)} = {toml_value(v)}" for k, v in aliases.items()]
    if fallbacks:
        lines += ["", "[models.fallbacks]"] + [
            f"{json.dumps(k)} = {toml_value(v)}" for k, v in fallbacks.items()
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


def metric(url: str, name: str, **labels: str) -> float:
    """The value of the sample ``name`` with exactly ``labels`` in ``url``'s /metrics (0 if absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    wanted = sorted(labels.items())
    for family in text_string_to_metric_families(_http.get(url + "metrics").text):
        for sample in family.samples:
            if sample.name == name and sorted(sample.labels.items()) == wanted:
                return float(sample.value)
    return 0.0


def upstream_state(url: str, name: str) -> dict[str, Any]:
    """Upstream ``name``'s entry in the ``/healthz`` of the server at ``url``."""
    for entry in _http.get(url + "healthz").json()["upstreams"]:
        if entry["name"] == name:
            return dict(entry)
    raise AssertionError(f"/healthz lists no upstream {name}")
