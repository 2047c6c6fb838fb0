"""The benchmark scripts run end to end at tiny sizes (no timing is asserted: benchmarks only
print numbers). Each one checks its contenders' text, so a benchmark that silently measured the
wrong thing fails here."""

from __future__ import annotations

import asyncio
import gc
import re
from collections.abc import Iterator

import pytest
from bench.apps import AppProcess
from bench.emitter import EmitterProcess, response_bytes
from bench.loadgen import Stream, chat_body, keepalive_load, text_of
from bench.stream import expected_text

from bench import (
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

from ..support.lazy import Lazy
from ..support.services import Postgres

# The client benchmark imports every contender, the openai SDK among them (0.4 s): at its first
# use, not in every worker that collects this file.
client_stream = Lazy("bench.client_stream")


@pytest.fixture(autouse=True)
def _the_runners_heap_left_out_of_collections() -> Iterator[None]:
    """The benchmarks collect garbage before each timed contender (bench/common.compare) and
    before a load (bench/loadgen.open_streams), for their own garbage; in a suite's worker each
    collection also walked every object the earlier tests left behind (0.07 s with this file's
    imports alone, 0.2 s with LiteLLM's too: client_stream's 13 collections alone took seconds of
    a loaded worker). Frozen, those objects are left out; what the benchmarks make is collected.
    What the suite had at its start is frozen already (tests/conftest.py); what the tests made
    since is collected once here, then frozen too, for the rest of this worker's life."""
    gc.collect()  # garbage is freed, not frozen
    gc.freeze()
    yield


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
        # One gateway for the latency and the load parts, both on LOAD_CHUNKS-chunk replies: one
        # server fewer to start and stop.
        upstream = emitter.base(gateway.LOAD_CHUNKS) + "v1"
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
            assert "through gateway" in gateway.latency(emitter, gw, gateway.LOAD_CHUNKS, 3)
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
    # No settling before the memory is read (a full run's 1 s): no figure of it is asserted.
    assert "KiB per stream" in workers.idle_memory(40, 0.2, settle=0.0)
    # hey for 0.5 s a target. In 0.1 s on a loaded machine (CI, four workers) hey once sent the
    # one-process gateway nothing at all (its CPU did not move; hey does wait for what it has in
    # flight): a round without a reply, which the check below refuses. 0.1 s saved 0.9 s of CPU.
    load = gateway_load.load(0.5, 1, with_litellm=False)
    assert "getgpt serve --workers 2" in load
    # Every target answered every request 200: the statuses column (the last) says nothing else.
    targets = [line for line in load.splitlines() if line.startswith("|") and "200:" in line]
    assert len(targets) == 3, load  # the upstream alone, the gateway on two workers and on one
    for line in targets:
        assert re.fullmatch(r"200: [\d,]+", line.strip().strip("|").split("|")[-1].strip()), line


def test_the_guards_benchmark_runs_and_checks_its_contenders() -> None:
    report = guards.run(quick=True, rounds=1, loops=20)  # --quick's 3 x 200: 0.75 s of CPU
    assert "duplicate-key test" in report and "through the budget" in report


def test_routing_runs_its_parts_and_the_drill_fails_only_the_streams_live_on_the_killed_upstream() -> None:
    assert "3 upstreams" in routing.decision(200)
    # hey for 0.5 s a gateway to warm up and 0.5 s a round (1 s and 0.5 s took 5.4 s of CPU): each
    # run must see replies, and in 0.1 s a loaded machine's hey once sent nothing (above).
    report = routing.three_vs_one(3, 0.5, 1, warmup=0.5)
    assert "--config, 3 upstreams" in report and "gateway CPU us/req" in report
    # 2 s at 30 requests/s, u3 killed at 0.7 s and back at 1.3 s: ~7 streams u3 took before the
    # kill, ~2 of them live at it (10 chunks 20 ms apart), 18 requests sent while it is down, and
    # time for a probe to take it back (0.6 s after its restart in a run at load 6).
    drill = routing.drill(2.0, 30, 0.7, 1.3, 0.3)
    assert "failed requests = only the streams live on the killed upstream: met" in drill


def test_the_key_benchmarks_run_and_check_what_they_measure(postgres: Postgres) -> None:
    checks = keys.key_checks(500)
    assert checks.count("| met") + checks.count("| MISSED") == 3
    # Both on the session's PostgreSQL: each of them started its own (initdb and all: ~1 s of CPU).
    ledgers = keys.ledgers(0.3, 500, postgres)  # every record is counted in its table before a row is made
    assert "| SQLite" in ledgers and "| PostgreSQL" in ledgers
    placement = keys.placement(2_000, 1)
    assert "writes on the event loop" in placement and "writes on the thread" in placement
    # Two import times of the six: 3 fresh interpreters instead of 7 (which took 1.2 s of CPU).
    libraries = store_libraries.run_libraries(50, 2, 1, postgres, imports=("sqlite3", "asyncpg"))
    assert "sqlite3 in a thread" in libraries and "asyncpg COPY" in libraries
