"""getgpt check: every check passes against ``getgpt serve`` (both protocols), and each one
fails against a scripted server broken in exactly the way that check looks for."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from getgpt.checks import Report, Settings, check

from ..support.conformance import BREAKAGES, Conformance
from ..support.serve_process import getgpt_serve
from ..support.servers import serve

# The burst that meets the scripted server's 429 (it refuses chat requests past the twelfth).
BURST = 10


def run(url: str, protocol: str = "getgpt") -> Report:
    return check(Settings(url, protocol=protocol, burst=BURST, timeout=10))


def statuses(report: Report) -> dict[str, str]:
    return {result.id: result.status for result in report.results}


@pytest.fixture(scope="module")
def slow_echo() -> Iterator[str]:
    """getgpt serve whose echo takes a moment a piece, as a model does: the disconnect check's
    long reply is still being written when the checker leaves it (an instant echo may be done)."""
    with getgpt_serve("--log-level", "warning", "--echo-delay", "0.002") as server:
        yield server.url


@pytest.mark.parametrize("protocol", ["getgpt", "openai"])
def test_getgpt_serve_passes_every_check(slow_echo: str, protocol: str) -> None:
    report = run(slow_echo if protocol == "getgpt" else slow_echo + "v1", protocol)
    assert report.ok, report.table()
    got = statuses(report)
    assert "fail" not in got.values()
    # What the echo gives nothing to judge: it never fails mid-stream, and has no rate limit here.
    assert {k for k, v in got.items() if v == "n/a"} == {"error-event", "retry-after"}, report.table()


@pytest.mark.parametrize("protocol", ["getgpt", "openai"])
def test_an_instant_echo_conforms_too(served: str, protocol: str) -> None:
    report = run(served if protocol == "getgpt" else served + "v1", protocol)
    assert report.ok and "fail" not in statuses(report).values(), report.table()


def test_getgpt_serves_429_carries_retry_after() -> None:
    with getgpt_serve("--log-level", "warning", "--rate-limit", "60", "--rate-burst", "12") as server:
        report = run(server.url)
    assert statuses(report)["retry-after"] == "pass", report.table()
    assert report.ok, report.table()


@pytest.mark.parametrize("protocol", ["getgpt", "openai"])
def test_the_scripted_server_unbroken_passes_every_check(protocol: str) -> None:
    scripted = Conformance()
    with serve(scripted.app) as url:
        report = run(url if protocol == "getgpt" else url + "v1", protocol)
    got = statuses(report)
    assert report.ok and "fail" not in got.values(), report.table()
    assert got["retry-after"] == got["disconnect"] == got["unicode"] == "pass"


def test_well_formed_error_events_pass() -> None:
    with serve(Conformance(errors=True).app) as url:
        report = run(url)
    got = statuses(report)
    assert got["error-event"] == "pass" and got["finish-reason"] == "pass", report.table()
    assert report.ok, report.table()


# Checks that fail along with the one broken on purpose, because they need what it broke.
FOLLOWERS = {
    "envelope": {"content-type", "framing", "done", "finish-reason", "unicode", "whole-reply", "usage"},
}


@pytest.mark.parametrize("breakage", BREAKAGES)
def test_each_check_fails_against_a_server_broken_its_way(breakage: str) -> None:
    with serve(Conformance(breakage).app) as url:
        report = run(url)
    got = statuses(report)
    failed = {k for k, v in got.items() if v == "fail"}
    assert breakage in failed, report.table()
    assert failed <= {breakage} | FOLLOWERS.get(breakage, set()), report.table()
    evidence = next(r.evidence for r in report.results if r.id == breakage)
    assert evidence  # a failure always says why
    required = next(r.required for r in report.results if r.id == breakage)
    assert report.ok is not required


@pytest.mark.parametrize("breakage", ["whole-reply", "usage", "invalid-request", "unicode"])
def test_openai_checks_fail_against_a_server_broken_their_way(breakage: str) -> None:
    with serve(Conformance(breakage).app) as url:
        report = run(url + "v1", "openai")
    failed = {r.id for r in report.results if r.status == "fail"}
    assert failed == {breakage}, report.table()
    assert not report.ok  # on the OpenAI protocol whole replies and usage are required


def test_the_command_prints_a_table_and_exits_1_on_failure_0_on_success(served: str) -> None:
    with serve(Conformance("done").app) as url:
        broken = subprocess.run(
            [sys.executable, "-m", "getgpt", "check", url, "--burst", str(BURST)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "FAIL  done" in broken.stdout and "no data: [DONE]" in broken.stdout
    good = subprocess.run(
        [
            sys.executable,
            "-m",
            "getgpt",
            "check",
            served + "v1",
            "--protocol",
            "openai",
            "--json",
            "--burst",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert good.returncode == 0, good.stdout + good.stderr
    result = json.loads(good.stdout)
    assert result["ok"] is True and result["protocol"] == "openai"
    assert {c["id"]: c["status"] for c in result["checks"]}["done"] == "pass"


def test_an_unreachable_server_fails_with_the_reason() -> None:
    from ..support.servers import free_port

    report = run(f"http://127.0.0.1:{free_port()}/")
    assert not report.ok
    assert "Connection refused" in next(r.evidence for r in report.results if r.id == "envelope")
