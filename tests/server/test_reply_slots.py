"""Reply slots: what ``/healthz`` and ``/metrics`` count of them, under their names old and new."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from getgpt.server import ServerConfig, create_app

from ..support.servers import serve

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
CHAT = "/v1/chat/completions"


def scrape(url: str) -> Samples:
    answer = httpx.get(url + "metrics", timeout=10)
    assert answer.status_code == 200
    samples: Samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), -1.0)


def chat(url: str, text: str, *, stream: bool = True) -> httpx.Response:
    return httpx.post(
        url + CHAT.lstrip("/"),
        json={"messages": [{"role": "user", "content": text}], "stream": stream},
        timeout=10,
    )


def test_the_renamed_counts_keep_their_old_names_beside_the_new_for_one_release() -> None:
    with serve(create_app(ServerConfig(echo_delay=0.2))) as url:
        with httpx.Client(timeout=10) as client:
            body = {"messages": [{"role": "user", "content": "held open for a while"}], "stream": True}
            with client.stream("POST", url + "v1/chat/completions", json=body) as held:
                assert held.status_code == 200
                health = httpx.get(url + "healthz").json()
                samples = scrape(url)
                assert (health["active_slots"], health["active_streams"]) == (1, 1)
                assert (health["admitted_total"], health["streams_total"]) == (1, 1)
                assert value(samples, "getgpt_active_slots") == value(samples, "getgpt_active_streams") == 1
                held.read()
        assert chat(url, "whole", stream=False).status_code == 200
        health = httpx.get(url + "healthz").json()
        samples = scrape(url)
    assert (health["active_slots"], health["active_streams"]) == (0, 0)
    assert (health["admitted_total"], health["streams_total"]) == (2, 2)
    assert value(samples, "getgpt_active_slots") == value(samples, "getgpt_active_streams") == 0
    for name in ("getgpt_reply_duration_seconds_count", "getgpt_stream_duration_seconds_count"):
        assert value(samples, name, route=CHAT, outcome="ok") == 2
    for suffix, labels in (("_bucket", {"le": "+Inf"}), ("_sum", {})):
        new = value(samples, "getgpt_reply_duration_seconds" + suffix, route=CHAT, outcome="ok", **labels)
        old = value(samples, "getgpt_stream_duration_seconds" + suffix, route=CHAT, outcome="ok", **labels)
        assert new == old and new > 0
