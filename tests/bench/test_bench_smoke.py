"""The benchmark scripts run end to end at tiny sizes (no timing is asserted: benchmarks only
print numbers). Each one checks its contenders' text, so a benchmark that silently measured the
wrong thing fails here."""

from __future__ import annotations

import asyncio

import pytest
from bench.apps import AppProcess
from bench.emitter import EmitterProcess, response_bytes
from bench.loadgen import Stream, chat_body, keepalive_load, text_of
from bench.stream import expected_text

from bench import (
    client_stream,
    concurrency,
    gateway,
    gateway_load,
    guards,
    keys,
    memory,
    routing,
    server_throughput,
    small_requests,
    store_libraries,
    workers,
)


def test_emitter_response_is_valid_chunked_sse() -> None:
    raw = response_bytes(50, 3)
    stream = Stream(parts=[raw[:100], raw[100:]])
    assert text_of(stream) == expected_text(50)


def test_client_stream_contenders_agree() -> None:
    report = client_stream.stream_throughput(300, 1)
    for name in client_stream.CONTENDERS:
        assert name in report
    assert "vs json.loads" in client_stream.json_choice(300, 1)


def test_small_requests_and_memory() -> None:
    assert "requests/s" in small_requests.run_requests(3, 1)
    assert "RSS growth" in memory.measure(3000, samples=2)


def test_server_gateway_and_concurrency_paths() -> None:
    with EmitterProcess() as emitter:
        upstream = emitter.base(5) + "v1"
        with (
            AppProcess("getgpt") as getgpt_server,
            AppProcess("getgpt", "--unbounded") as unbounded,
            AppProcess("minimal") as minimal,
            AppProcess("getgpt", "--backend", "openai", "--upstream", upstream) as gw,
        ):
            servers = {
                "getgpt server (echo)": getgpt_server,
                "getgpt server (echo), no connection bounds": unbounded,
                "minimal Starlette StreamingResponse": minimal,
            }
            report = server_throughput.throughput(3, 200, 1, servers)
            assert "chunks/s" in report and "Connection bounds:" in report
            row = concurrency.hold(getgpt_server, 5, 0.1)
            assert row[-2:] == ["5", "0"]  # all complete, no errors
            assert "through gateway" in gateway.latency(emitter, gw, 5, 3)
        with AppProcess(
            "getgpt", "--backend", "openai", "--upstream", emitter.base(gateway.LOAD_CHUNKS) + "v1"
        ) as gw:
            report = gateway.load(emitter, {"through the gateway": gw}, 60, 1)
            assert "upstream directly" in report and "through the gateway" in report
            path = "/" + emitter.base(gateway.LOAD_CHUNKS).split("/", 3)[3] + gateway.PATH
            seconds, each, failed = asyncio.run(
                keepalive_load(gw.port, "/" + gateway.PATH, chat_body("Hi"), 5, 40)
            )
            assert (len(each), failed) == (40, 0) and seconds > 0
            assert asyncio.run(keepalive_load(emitter.port, path, chat_body("Hi"), 5, 40))[2] == 0


@pytest.mark.parametrize(
    "bad", [b"HTTP/1.1 500 Oops\r\n\r\n", b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
)
def test_loadgen_rejects_what_is_not_a_chunked_stream(bad: bytes) -> None:
    with pytest.raises(ValueError):
        text_of(Stream(parts=[bad]))


def test_workers_and_gateway_load_run_and_check_their_contenders() -> None:
    report = workers.burst(40, 0.2, delay=0.01, only=("uvicorn", "getgpt serve --workers 2, 1 queue each"))
    rows = [line for line in report.splitlines() if line.startswith(("| getgpt serve", "| uvicorn"))]
    assert len(rows) == 2
    for row in rows:
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        assert cells[-2:] == ["40", "0"], row  # every stream complete, no error
    assert "KiB per stream" in workers.idle_memory(40, 0.2)
    load = gateway_load.load(0.5, 1, with_litellm=False)
    assert "getgpt serve --workers 2" in load and "200:" in load


def test_the_guards_benchmark_runs_and_checks_its_contenders() -> None:
    report = guards.run(quick=True)
    assert "duplicate-key test" in report and "through the budget" in report


def test_routing_runs_its_parts_and_the_drill_fails_only_the_streams_live_on_the_killed_upstream() -> None:
    assert "3 upstreams" in routing.decision(200)
    report = routing.three_vs_one(3, 0.5, 1)
    assert "--config, 3 upstreams" in report and "gateway CPU us/req" in report
    drill = routing.drill(4.0, 30, 1.5, 2.5, 0.5)
    assert "failed requests = only the streams live on the killed upstream: met" in drill


def test_the_key_benchmarks_run_and_check_what_they_measure() -> None:
    checks = keys.key_checks(500)
    assert checks.count("| met") + checks.count("| MISSED") == 3
    ledgers = keys.ledgers(0.3, 500)  # every record is counted in its table before a row is made
    assert "| SQLite" in ledgers and "| PostgreSQL" in ledgers
    placement = keys.placement(2_000, 1)
    assert "writes on the event loop" in placement and "writes on the thread" in placement
    libraries = store_libraries.run_libraries(50, 2, 1)
    assert "sqlite3 in a thread" in libraries and "asyncpg COPY" in libraries
