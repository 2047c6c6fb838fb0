"""Fixtures, and how the suite is spread over processes; the helpers live in ``tests/support``.

**Parallel runs.** ``pytest`` alone runs the suite on :data:`WORKERS` pytest-xdist processes
(pyproject's addopts: ``-n auto --dist loadgroup``); naming test files or test ids runs them in
this one process, at once (:func:`pytest_xdist_auto_num_workers`); ``-n N`` chooses. Every
service a test starts is on a free port, in a temporary directory, stopped by its PID, so tests
in different processes never meet. Tests that share something costly to start run on one
worker, so it starts once (:data:`GROUPS`: a path's tests get ``xdist_group(name)``).

**Random order.** ``pytest --random-order-seed=N`` (pytest-random-order) shuffles the modules
and the tests within each; every worker shuffles the same way. .ci/run runs the suite once so.
"""

from __future__ import annotations

import gc
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
import trustme
from starlette.applications import Starlette
from starlette.routing import Route

import getgpt
from getgpt._transports import choose
from getgpt._transports.base import Timeouts
from getgpt._transports.http11.pool import Pool
from getgpt.server import ServerConfig, create_app

from .support.openai_upstream import ScriptedUpstream
from .support.processes import SSL_CONTEXT
from .support.scripted import Live
from .support.servers import serve
from .support.services import Postgres

# The cyclic collector is off while the suite is collected: every worker imports every test
# module and what they use, and the collector, run again and again over that growing heap, took
# 12 % of collecting's CPU (3.4 -> 3.0 s a worker, `pytest --collect-only -n0`, six runs each). A
# worker collects at the start of a run, all at once on a 2-core machine, so this is wall time
# too. It comes back on when collection ends (pytest_collection_finish) or, in pytest-xdist's
# controller, which collects nothing, once it is configured (pytest_configure).
gc.disable()

# LiteLLM fetches a price list from the internet when imported unless told to use its own copy;
# any test may be the first to import it (the public API's does).
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
# A shell that starts the tests in the background (`cmd &` in a script) starts them with Ctrl-C
# ignored, and every process they start would inherit that. The tests of Ctrl-C (getgpt chat on a
# terminal, the chat output's own handler) need what a terminal gives: Python's default handler.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# No property test is timed: hypothesis's per-example deadline (200 ms) and its too-slow health
# check failed under load (test_reply.py's fast path took 384 ms at load 21). Speed belongs to bench/.
hypothesis.settings.register_profile(
    "getgpt", deadline=None, suppress_health_check=[hypothesis.HealthCheck.too_slow]
)
hypothesis.settings.load_profile("getgpt")

TESTS = Path(__file__).resolve().parent
#: Workers for a whole-suite run: three more than the 2 cores of the project's machines, as much of
#: the suite waits (deadlines, slow peers) while another test could run. Once the tests' own CPU
#: fell (2026-12-07: 376 -> 284 s a run), the suite used 1.2 cores on 3 workers: 232 s there
#: against 215 and 210 s on 4. With the browser on its headless shell and the clients' probes forked
#: (~240 s of CPU a run), a run's second half idled a third of the time on 4 workers; same tree,
#: file order: 139-143 s on 4, 131 s on 5, 135 s on 6; random order: 150 s on 4, 146 s on 5.
#: PYTEST_XDIST_AUTO_NUM_WORKERS or -n N overrides.
WORKERS = 5
#: Paths (under tests/) whose tests run on one worker: what they share starts once there; the
#: first match wins. (Measured with the groups applied -- see the hook below: the page's tests
#: took 180 s in one Chromium against 319 s spread over three, ungrouped; four workers gave 307 s
#: against 321 s, within the noise.)
#:
#: The page's tests are three groups of about a third of their time each (144 s on one worker in
#: all, at load 7), so no one worker carries them all: each worker that runs one starts its own
#: Chromium (the session's browser fixture is per worker process) and its own servers (module
#: fixtures). A run with two Chromiums once missed an undo toast that a loaded machine let expire:
#: the tests that look at it now hold it up (support/browser.py's hold_undo).
GROUPS = {
    # Every view audited, the keyboard's tour; keys, models, import and export: ~50 s.
    "web/test_accessibility.py": "browser-audit",
    "web/test_page_features.py": "browser-audit",
    "web/test_page_usage.py": "browser-audit",
    "web/test_page_framing.py": "browser-audit",
    # Every view's screenshots against the baselines, and how each fits: ~47 s.
    "web/test_visual.py": "browser-look",
    "web/test_page_look.py": "browser-look",
    # The rest -- test_web, test_page_actions, test_languages: ~47 s.
    "web/": "browser",
    "integrations/test_litellm_proxy.py": "litellm-proxy",  # the proxy takes seconds to start
    "chaos/": "chaos",  # attacks on a server, each given the machine to itself (one at a time)
    # Replicas, drains, Redis and PostgreSQL outages: 56 s of waiting on real deadlines for 14 s of
    # CPU. Spread over every worker, they ran together late in a run, when 1.3 of the 2 cores were
    # busy; on one worker they wait beside the page's tests, which keep both cores busy. Five
    # pairs of whole runs, A/B in turn: 2.2 s less a run on average (4 of 5), within the noise.
    "ops/": "ops",
    # What imports LiteLLM (4.3 s of CPU; support/lazy.py keeps it out of collection): one worker.
    "integrations/test_litellm.py": "litellm",
    "server/test_gateway_libraries.py": "litellm",
    "test_public_api.py": "litellm",
}


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: :data:`WORKERS` for folders (the whole suite, a part of it); none -- this
    process -- when only files or test ids are named, which then start at once."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return int(os.environ["PYTEST_XDIST_AUTO_NUM_WORKERS"])
    named = [Path(arg.split("::", 1)[0]) for arg in config.args]
    if named and all(path.is_file() for path in named):
        return 0
    return WORKERS


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    # pytest-xdist's controller (its "dsession", registered in xdist's own pytest_configure)
    # collects nothing and so never reaches pytest_collection_finish: its collector comes back on
    # here. See COLLECTOR below.
    if config.pluginmanager.has_plugin("dsession"):
        gc.enable()


#: The cyclic collector's thresholds while the tests run: a full collection at most every 100th
#: collection of the middle generation instead of every 10th. A full collection walks every object
#: made since the freeze below -- LiteLLM, LangChain and the rest imported by the tests that use
#: them, each worker's caches -- and those were 75 % of the collector's time. Measured over whole
#: runs (5 workers, a gc.callbacks timer): 19.6 s in the collector at (700, 10, 10), 8.9 s at
#: (700, 10, 100); the younger generations, cheap and what keeps memory flat, are as before. Whole
#: runs with and without this and the collection change above, back to back in turn, did not
#: differ beyond the host's noise (143 / 143 s, 146 / 147 s: bench/RESULTS.md section 20).
COLLECTOR = (700, 10, 100)


def pytest_collection_finish(session: pytest.Session) -> None:
    """What exists once the suite is collected -- every module imported, every test item -- is
    left out of the cyclic collector's walks from now on (``gc.freeze``, as ``getgpt serve``
    does for its own: server/running/serving.py): it lives to the end, and every full
    collection a test's garbage triggers would walk it all again. Measured on tests/client and
    tests/protocol, 2 workers: 24.2 and 22.5 s of CPU without, 20.5 and 20.5 with.

    The collector was off until here (see the top of this file): collecting imports and builds
    all that, and left on it walked it again and again as it grew."""
    gc.collect()  # what is garbage already is freed, not frozen
    gc.freeze()
    gc.set_threshold(*COLLECTOR)
    gc.enable()


# First: pytest-xdist's own hook (its worker plugin, registered after this conftest and so called
# before it) reads the xdist_group marks to name each test's group; added later they are not seen.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        where = item.path.relative_to(TESTS).as_posix() if item.path.is_relative_to(TESTS) else ""
        for prefix, group in GROUPS.items():
            if where.startswith(prefix):
                item.add_marker(pytest.mark.xdist_group(group))
                break


@pytest.fixture
def live() -> Iterator[tuple[Live, str]]:
    """The scripted server of tests/support/scripted.py on a loopback port."""
    script = Live()
    app = Starlette(routes=[Route("/api/chat/stream", script.chat, methods=["POST"])])
    with serve(app) as url:
        yield script, url


@pytest.fixture(params=["lean", "httpx"])
def via(request: pytest.FixtureRequest) -> Any:
    """Makes clients that send one of the two ways: the lean HTTP/1.1 path, or through httpx.

    ``via(getgpt.Client, url, **options)``; the same test must pass both ways.
    """

    def make(kind: type[Any], url: str, **options: Any) -> Any:
        if request.param == "httpx":
            timeout = options.get("timeout", getgpt.DEFAULT_TIMEOUT)
            asynchronous = issubclass(kind, getgpt.AsyncClient)
            options["http_client"] = (httpx.AsyncClient if asynchronous else httpx.Client)(
                timeout=timeout, verify=SSL_CONTEXT
            )
        lean = choose.transport(url, {}, timeouts=Timeouts())
        assert isinstance(lean, Pool)  # the URL itself never forces httpx here
        lean.close()
        return kind(url, **options)

    return make


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The scripted server on https://127.0.0.1, its certificate signed by a throwaway CA; the CA's file."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    where = tmp_path_factory.mktemp("tls")
    key_file, chain_file, ca_file = where / "key.pem", where / "chain.pem", where / "ca.pem"
    cert.private_key_pem.write_to_path(str(key_file))
    cert.cert_chain_pems[0].write_to_path(str(chain_file))
    ca.cert_pem.write_to_path(str(ca_file))
    script = Live()
    app = Starlette(routes=[Route("/api/chat/stream", script.chat, methods=["POST"])])
    with serve(app, ssl_certfile=str(chain_file), ssl_keyfile=str(key_file)) as url:
        yield url, ca_file


# A module with an upstream or gateway of another kind defines its own, which overrides these two
# (tests/server/test_hostile_upstreams.py, tests/ops/test_metrics.py).
@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedUpstream]:
    """The scripted OpenAI-compatible upstream of tests/support/openai_upstream.py: the request's
    model names its script ("tools" answers with two tool calls, "text" with text, ...)."""
    with ScriptedUpstream() as scripted:
        yield scripted


@pytest.fixture(scope="module")
def gateway(upstream: ScriptedUpstream) -> Iterator[str]:
    """A getgpt server whose openai backend forwards to the scripted upstream; its base URL."""
    with serve(create_app(ServerConfig(backend="openai", upstream=upstream.url + "v1"))) as url:
        yield url


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """Debian's PostgreSQL on a free loopback port, one for the session; tests take databases of
    their own from it (``postgres.create_database()``)."""
    with Postgres() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def db_target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """What ``--db`` is given: a fresh SQLite file, or a fresh database on the session's PostgreSQL."""
    if request.param == "sqlite":
        return str(tmp_path / "getgpt.db")
    server: Postgres = request.getfixturevalue("postgres")
    return server.create_database()
