"""Two ``getgpt serve`` replicas sharing one redis-server, behind nginx round robin: all real processes."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import httpx

from getgpt.protocol.envelope import encrypt
from getgpt.protocol.request import build_request, encode

from .serve_process import ServeProcess, getgpt_serve
from .services import Nginx, Redis

__all__ = ["Cluster", "cluster", "envelope_body"]


@dataclass
class Cluster:
    redis: Redis
    replicas: list[ServeProcess]
    nginx: Nginx


@contextlib.contextmanager
def cluster(
    *options: str, per_replica: Sequence[Sequence[str]] = ((), ()), env: dict[str, str] | None = None
) -> Iterator[Cluster]:
    """redis-server, one replica per entry of ``per_replica`` (``options`` + its own), nginx in front."""
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(Redis())
        replicas = [
            stack.enter_context(getgpt_serve("--redis", redis.url, *options, *own, env=env))
            for own in per_replica
        ]
        nginx = stack.enter_context(Nginx([f"127.0.0.1:{replica.port}" for replica in replicas]))
        try:
            yield Cluster(redis, replicas, nginx)
        except httpx.TransportError as exc:
            # A connection nginx closed or reset: what nginx and each replica saw says which side
            # and why. (Three CI failures, "Server disconnected", were nginx closing a kept-alive
            # connection after an answer given before the body came: test_replicas has the case.)
            outputs = "\n".join(f"replica {r.port}:\n{r.output()[-3000:]}" for r in replicas)
            raise AssertionError(f"{exc!r}\nnginx's error log:\n{nginx.errors()}\n{outputs}") from exc


def envelope_body(text: str) -> bytes:
    """A GetGpt request body (``{"signature": ...}``) asking for ``text``; sent twice, it is a replay."""
    request = build_request([{"role": "user", "content": text}], stream=False)
    return json.dumps({"signature": encrypt(encode(request).decode())}).encode()
