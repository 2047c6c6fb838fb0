"""getgpt check: every check passes against ``getgpt serve`` (both protocols), and each one
fails against a scripted server broken in exactly the way that check looks for."""

# ruff: noqa: RUF001  (Russian text on purpose: Cyrillic letters that look Latin)

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from getgpt.checks import Report, Settings, check

from ..support.command import locale_env
from ..support.conformance import BREAKAGES, Conformance
from ..support.serve_process import getgpt_serve
from ..support.servers import serve

# The burst that meets the scripted server's 429 (it refuses chat requests past the twelfth).
BURST = 10


def run(url: str, protocol: str = "getgpt", disconnect_within: float = 3.0) -> Report:
    return check(
        Settings(url, protocol=protocol, burst=BURST, timeout=10, disconnect_within=disconnect_within)
    )


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
    # A stream that is not well-formed fails every check that reads one, with that as the evidence.
    "framing": {"unicode", "usage"},
}


@pytest.mark.parametrize("breakage", BREAKAGES)
def test_each_check_fails_against_a_server_broken_its_way(breakage: str) -> None:
    # A server that never notices its client leave is as plainly caught in 0.5 s as in the 3 s
    # the check allows a real one (the scripted server lets go of a stream in milliseconds).
    with serve(Conformance(breakage).app) as url:
        report = run(url, disconnect_within=0.5 if breakage == "disconnect" else 3.0)
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
            env=locale_env(),
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
        env=locale_env(),
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


# --- what the checker says, and what it asks for ---------------------------------------------------


@pytest.mark.parametrize("kind", ["model", "echo"])
def test_a_stream_that_cuts_utf8_bytes_across_events_fails_unicode_saying_so(kind: str) -> None:
    # openai-python raises UnicodeDecodeError on such a stream, getgpt.Client a ProtocolError; the
    # checker used to say "conforms" (a model's reply: the undecodable events were skipped) or
    # blame the echo ("differs at character 0").
    with serve(Conformance(split_utf8=kind).app) as url:
        report = run(url)
    unicode = next(r for r in report.results if r.id == "unicode")
    assert unicode.status == "fail", report.table()
    assert "not UTF-8" in unicode.evidence and "echo" not in unicode.evidence, unicode.evidence
    assert not report.ok


def test_an_echo_that_parts_from_the_message_says_where_and_how() -> None:
    from getgpt.checks.battery import UNICODE, Battery

    battery = Battery(Settings("http://127.0.0.1:9/"))
    assert battery._echo_fault(UNICODE[:10]) == (
        f"the echo stops at character 10 of {len(UNICODE)}, after {UNICODE[:10]!r}"
    )
    changed = UNICODE[:5] + "X" + UNICODE[6:]
    assert battery._echo_fault(changed) == (
        f"the echo differs from the message sent at character 5: sent {UNICODE[5:17]!r}, "
        f"received {changed[5:17]!r}"
    )


@pytest.mark.parametrize("protocol", ["getgpt", "openai"])
def test_every_request_is_small_and_asks_for_few_tokens(protocol: str) -> None:
    scripted = Conformance()
    with serve(scripted.app) as url:
        run(url if protocol == "getgpt" else url + "v1", protocol)
    asked = [fields for fields in scripted.requests if isinstance(fields.get("messages"), list)]
    asked = [fields for fields in asked if fields["messages"]]
    assert len(asked) >= 8
    assert all(isinstance(fields.get("max_tokens"), int) for fields in asked)
    assert asked[0]["max_tokens"] <= 16  # the sample several checks judge
    assert max(fields["max_tokens"] for fields in asked) <= 512  # the disconnect check's long reply
    assert max(len(json.dumps(fields["messages"])) for fields in asked) < 2048


def test_one_cause_is_one_failure_with_its_hint_and_one_line_naming_the_rest() -> None:
    from ..support.servers import free_port

    report = run(f"http://127.0.0.1:{free_port()}/")
    assert {r.status for r in report.results} == {"fail"}
    lines = report.table().splitlines()
    assert lines[2].startswith("  FAIL  envelope ")
    assert "Connection refused" in lines[3]
    assert lines[4].strip() == "hint: is a server running there? 'getgpt serve' starts one"
    assert " ".join(line.strip() for line in lines[5:-2]) == (
        "FAIL  content-type, framing, done, finish-reason, unicode, whole-reply, usage, bad-json, "
        "bad-signature, invalid-request, disconnect, error-event, retry-after: the same cause"
    )
    assert sum("Connection refused" in line for line in lines) == 1
    assert lines[-1].startswith("0 passed, 14 failed, 0 not applicable -- does not conform: envelope, ")


def test_a_keyed_server_without_a_key_is_one_failure_naming_the_variable_to_set() -> None:
    from getgpt.server import ServerConfig, create_app

    with serve(create_app(ServerConfig(api_keys=("k-1",)))) as url:
        missing = check(Settings(url, api_key_env="MY_KEY", burst=2, timeout=10))
        given = check(Settings(url, api_key="k-1", burst=2, timeout=10))
    first = missing.results[0]
    assert first.evidence.startswith("HTTP 401: ")
    assert first.hint == (
        "the server wants an API key: put it in the environment variable MY_KEY (--api-key-env names another)"
    )
    assert all(
        (r.status, r.evidence, r.hint) == ("fail", first.evidence, first.hint) for r in missing.results
    )
    assert given.ok, given.table()


@pytest.mark.parametrize(
    ("suffix", "protocol", "hint"),
    [
        (
            "v1",
            "getgpt",
            "a GetGpt server's base URL has no /v1 (that path is OpenAI's API): "
            "try {url}, or --protocol openai",
        ),
        ("", "openai", "OpenAI-compatible servers answer under /v1: try {url}v1"),
    ],
)
def test_a_base_url_with_or_without_v1_gets_the_hint_that_fixes_it(
    served: str, suffix: str, protocol: str, hint: str
) -> None:
    report = run(served + suffix, protocol)
    assert report.results[0].evidence.startswith("HTTP 404")
    assert report.results[0].hint == hint.format(url=served)
    assert {r.hint for r in report.results} == {report.results[0].hint}


def test_only_and_skip_pick_the_checks_by_name(served: str) -> None:
    only = check(Settings(served, only=("done", "unicode"), timeout=10))
    assert [r.id for r in only.results] == ["done", "unicode"]
    skipped = check(Settings(served, skip=("retry-after", "disconnect"), timeout=10))
    assert {"retry-after", "disconnect"}.isdisjoint(r.id for r in skipped.results)
    assert len(skipped.results) == 12
    with pytest.raises(ValueError, match="unknown check name\\(s\\): nope; the checks are: envelope, "):
        check(Settings(served, only=("nope",)))


def test_the_report_in_russian(served: str) -> None:
    report = check(Settings(served, language="ru", only=("envelope", "retry-after"), burst=2, timeout=10))
    table = report.table()
    assert "ВЕРНО   envelope     на верный запрос чата приходит ответ 2xx" in table
    assert "ни одного ответа 429 (отправлено запросов подряд: 2)" in table
    assert table.splitlines()[-1] == "пройдено: 1, не пройдено: 0, неприменимо: 1 — соответствует протоколу"


def test_the_checkers_words_are_in_both_languages_with_the_same_values_and_all_used() -> None:
    import re
    from pathlib import Path

    from getgpt.checks.words import WORDS

    from ..support.catalogue_keys import keys_named

    assert WORDS["en"].keys() == WORDS["ru"].keys()
    for key, english in WORDS["en"].items():
        russian = WORDS["ru"][key]
        assert set(re.findall(r"(?<!\{)\{(\w+)\}", english)) == set(
            re.findall(r"(?<!\{)\{(\w+)\}", russian)
        ), key
        if not key.startswith(("evidence.status", "evidence.content_type", "table.header")):
            assert re.search("[а-яё]", russian, re.IGNORECASE), f"{key} is not translated: {russian!r}"
    from getgpt.checks.battery import Battery

    src = Path(__file__).resolve().parents[2] / "src" / "getgpt"
    sources = [*sorted((src / "checks").glob("*.py")), src / "cli" / "check.py"]
    named: set[str] = set()
    for path in sources:
        for call in ("say", "words"):
            named |= keys_named(path.read_text(encoding="utf-8"), call)
    # Named with a value in them: each check's title, and the table's three marks.
    for protocol in ("getgpt", "openai"):
        named |= {
            f"title.{c.id}" for c in Battery(Settings("http://127.0.0.1:9/", protocol=protocol)).checks()
        }
    named |= {f"table.{status}" for status in ("pass", "fail", "n/a")}
    assert named == set(WORDS["en"]), named ^ set(WORDS["en"])
