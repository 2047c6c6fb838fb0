"""Two ``getgpt serve`` replicas behind nginx round robin, sharing a real redis-server.

Everything is a real process on loopback (tests/support/services.py): the limits and the replay
guard must hold across replicas, a drained replica must lose nothing, a killed one must cost only
its own streams (each ending in a typed error with its partial text), and a Redis outage must be
handled as ``--redis-failure`` says.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import select
import signal
import socket
import threading
import time

import httpx

import getgpt

from ..support import sockets
from ..support.cluster import cluster, envelope_body
from ..support.hostile import read_response, status_of
from ..support.processes import SSL_CONTEXT
from ..support.servers import health, wait_until

KEYS = "k-limit,k-replay,k-drain,k-kill,k-redis,k-back"


def _auth(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def _chat(client: httpx.Client, url: str, key: str | None, text: str = "hi") -> httpx.Response:
    return client.post(
        url + "v1/chat/completions",
        json={"messages": [{"role": "user", "content": text}], "stream": False},
        headers=_auth(key),
    )


def _served(url: str) -> int:
    return health(url)["streams_total"]


def test_a_shared_burst_of_30_admits_exactly_30_of_60_requests_across_two_replicas() -> None:
    # One request every 100 minutes after the burst of 30 (--rate-limit is a number a minute):
    # nothing refills while the test runs, however slow the machine, so the counts are exact. The
    # count is the behaviour here, not Redis' deadline: under a loaded machine a command past the
    # default 0.25 s made a replica count alone (fail open) and admit 37.
    options = ("--rate-limit", "0.01", "--rate-burst", "30", "--redis-timeout", "10")
    with (
        cluster(*options, env={"GETGPT_API_KEYS": KEYS}) as c,
        httpx.Client(timeout=10, verify=SSL_CONTEXT) as client,
    ):
        statuses = [_chat(client, c.nginx.url, "k-limit").status_code for _ in range(60)]
        assert statuses.count(200) == 30
        assert statuses.count(429) == 30
        # Both replicas answered: each alone would have admitted 30.
        served = [_served(replica.url) for replica in c.replicas]
        assert all(count > 0 for count in served) and sum(served) == 30
        refused = _chat(client, c.nginx.url, "k-limit")
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1


def test_a_refusal_given_before_the_body_arrives_costs_the_client_no_kept_alive_connection() -> None:
    # A replica refuses (401, 429, 413) from the head alone. With nginx streaming request bodies
    # (proxy_request_buffering off) that answer reached the client while its body was still on the
    # way; nginx said "Connection: keep-alive" and then closed the connection once the body came:
    # the client's next request on it met "Server disconnected" (three CI failures of the burst
    # test above). deploy/nginx.conf now takes the whole body before passing a request on.
    body = json.dumps({"messages": [{"role": "user", "content": "hi"}], "stream": False}).encode()
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer not-a-key\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with (
        cluster(env={"GETGPT_API_KEYS": KEYS}) as c,
        socket.create_connection(("127.0.0.1", c.nginx.port), timeout=10) as sock,
    ):
        sock.sendall(head)
        wait_until(lambda: sockets.unread(c.nginx.port, sockets.port_of(sock)) == 0, 10)  # nginx has it
        # Room for an answer to the head alone to come, as it did: what follows must hold either way.
        select.select([sock], [], [], 1.0)
        sock.sendall(body)
        refused, rest = read_response(sock)
        assert status_of(refused) == 401 and b"connection: keep-alive" in refused.lower()
        sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        ready, _ = read_response(sock, rest)
        assert status_of(ready) == 200


def test_a_request_replayed_to_the_other_replica_is_refused_with_409() -> None:
    with (
        cluster("--replay-window", "60", env={"GETGPT_API_KEYS": KEYS}) as c,
        httpx.Client(timeout=10, verify=SSL_CONTEXT) as client,
    ):
        first, second = c.replicas
        body = envelope_body("только один раз")
        headers = {**_auth("k-replay"), "Content-Type": "application/json"}
        answer = client.post(first.url + "api/chat/stream", content=body, headers=headers)
        assert (
            answer.status_code == 200
            and answer.json()["choices"][0]["message"]["content"] == "только один раз"
        )
        replayed = client.post(second.url + "api/chat/stream", content=body, headers=headers)
        assert replayed.status_code == 409
        assert replayed.json()["error"]["code"] == "replayed_request"
        # Through nginx, whichever replica it reaches.
        again = client.post(c.nginx.url + "api/chat/stream", content=body, headers=headers)
        assert again.status_code == 409


def _refuses_connections(url: str) -> bool:
    try:
        httpx.get(url + "readyz", timeout=2, verify=SSL_CONTEXT)
    except httpx.ConnectError:
        return True
    except (httpx.ReadError, httpx.RemoteProtocolError):
        # The poll's connection met the replica's closing listener half-way. Reset: the kernel had
        # queued it as the socket closed (seen once polls stopped building an SSL context each,
        # ~27 ms). Closed unanswered: asyncio had accepted it, and the server closed before the
        # connection's transport was made (asyncio's Server._attach then refuses it and the socket
        # is dropped; seen once `getgpt serve` starts were forked). Not yet refused: look again.
        return False
    return False


def _stream_all(url: str, key: str, texts: list[str], started: threading.Barrier) -> list[object]:
    """Stream each text through ``url`` at once; each result is the text or the error raised."""

    def one(text: str) -> object:
        try:
            with getgpt.Client(url, max_retries=0, headers=_auth(key), verify=SSL_CONTEXT) as client:
                stream = client.stream([{"role": "user", "content": text}])
                pieces = [next(iter(stream))]
                started.wait(30)
                pieces += list(stream)
                return "".join(pieces)
        except getgpt.GetGptError as exc:
            return exc

    with concurrent.futures.ThreadPoolExecutor(len(texts)) as pool:
        return list(pool.map(one, texts))


def test_sigterm_to_a_streaming_replica_loses_nothing_and_new_requests_go_to_the_other() -> None:
    # Each reply: 12 pieces 0.15 s apart, about 1.7 s; the grace period is far longer.
    options = ("--echo-delay", "0.15", "--shutdown-grace", "30")
    with (
        cluster(*options, env={"GETGPT_API_KEYS": KEYS}) as c,
        httpx.Client(timeout=10, verify=SSL_CONTEXT) as client,
    ):
        draining, other = c.replicas
        texts = [f"stream {i:02d} " + "x" * 36 for i in range(6)]
        barrier = threading.Barrier(len(texts) + 1)
        results: list[object] = []
        runner = threading.Thread(
            target=lambda: results.extend(_stream_all(c.nginx.url, "k-drain", texts, barrier))
        )
        runner.start()
        barrier.wait(30)  # every stream has its first piece: three on each replica
        assert health(draining.url)["active_streams"] == 3
        before = _served(other.url)
        os.kill(draining.process.pid, signal.SIGTERM)
        # The signal is handled when the replica's event loop next runs; a request nginx passes on
        # before then is still served there (and answered: nothing is lost). Once the replica has
        # stopped accepting, a new connection to it is refused and nginx sends every request on.
        wait_until(lambda: _refuses_connections(draining.url), 10)
        # New requests while the replica drains: every one answered, all by the other replica.
        for i in range(8):
            answer = _chat(client, c.nginx.url, "k-drain", f"new {i}")
            assert (
                answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"] == f"new {i}"
            )
        assert _served(other.url) == before + 8
        runner.join(30)
        assert results == texts  # every stream of the drained replica ran to its end
        assert draining.process.wait(20) in (0, -signal.SIGTERM)
        assert "Traceback" not in draining.output()


def test_a_replica_killed_mid_stream_costs_a_typed_error_with_the_partial_text_and_nothing_else() -> None:
    # Each reply: 12 pieces 0.1 s apart; the kill follows the first piece at once, 1.1 s before the last.
    with (
        cluster("--echo-delay", "0.1", env={"GETGPT_API_KEYS": KEYS}) as c,
        httpx.Client(timeout=10, verify=SSL_CONTEXT) as client,
    ):
        killed, survivor = c.replicas
        texts = [f"kill {i} " + "y" * 40 for i in range(2)]
        barrier = threading.Barrier(len(texts) + 1)
        results: list[object] = []
        runner = threading.Thread(
            target=lambda: results.extend(_stream_all(c.nginx.url, "k-kill", texts, barrier))
        )
        runner.start()
        barrier.wait(30)
        assert health(killed.url)["active_streams"] == 1 and health(survivor.url)["active_streams"] == 1
        os.kill(killed.process.pid, signal.SIGKILL)
        runner.join(30)
        errors = [
            (text, r) for text, r in zip(texts, results, strict=True) if isinstance(r, getgpt.GetGptError)
        ]
        assert len(errors) == 1, results
        text, error = errors[0]
        assert isinstance(error, (getgpt.TransportError, getgpt.ProtocolError))
        assert error.partial and text.startswith(error.partial) and error.partial != text
        assert [r for r in results if not isinstance(r, getgpt.GetGptError)] == [
            t for t in texts if t != text
        ]
        for i in range(6):
            answer = _chat(client, c.nginx.url, "k-kill", f"after {i}")
            assert (
                answer.status_code == 200
                and answer.json()["choices"][0]["message"]["content"] == f"after {i}"
            )


def _readyz(url: str) -> tuple[int, dict[str, str]]:
    answer = httpx.get(url + "readyz", timeout=5, verify=SSL_CONTEXT)
    return answer.status_code, answer.json()


def test_a_redis_outage_is_handled_as_each_replica_policy_says_and_shared_limits_resume_after_it() -> None:
    # A burst of 10 and then one request every 100 minutes: nothing refills during the test.
    options = ("--rate-limit", "0.01", "--rate-burst", "10")
    policies = (("--redis-failure", "open"), ("--redis-failure", "closed"))
    with (
        cluster(*options, per_replica=policies, env={"GETGPT_API_KEYS": KEYS}) as c,
        httpx.Client(timeout=10, verify=SSL_CONTEXT) as client,
    ):
        fail_open, fail_closed = c.replicas
        assert _readyz(fail_open.url) == (200, {"status": "ready", "redis": "ok"})
        c.redis.stop()
        for replica in c.replicas:
            wait_until(lambda r=replica: _readyz(r.url)[1]["redis"] == "unreachable", 5)
        assert _readyz(fail_open.url) == (200, {"status": "degraded", "redis": "unreachable"})
        assert _readyz(fail_closed.url) == (503, {"status": "unavailable", "redis": "unreachable"})
        # open: served, and limited by the replica alone (burst 10 of its own).
        started = time.monotonic()
        statuses = [_chat(client, fail_open.url, "k-redis").status_code for _ in range(15)]
        assert statuses.count(200) == 10 and statuses.count(429) == 5
        # closed: refused, clearly, at once; the rest of the server answers.
        refused = _chat(client, fail_closed.url, "k-redis")
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "shared_state_unavailable"
        assert refused.headers["retry-after"] == "1"
        assert time.monotonic() - started < 5  # nothing waited on the dead Redis
        for replica in c.replicas:
            assert client.get(replica.url + "healthz").status_code == 200
            assert replica.process.poll() is None
            # One warning for the outage, however many requests met it.
            assert replica.output().count("Redis is unreachable") == 1
        c.redis.start()
        for replica in c.replicas:
            wait_until(lambda r=replica: _readyz(r.url) == (200, {"status": "ready", "redis": "ok"}), 5)
            assert replica.output().count("Redis is reachable again") == 1
        # Shared again: 20 requests of a fresh key through both replicas admit exactly its burst of 10.
        # On new connections: one kept idle through the outage may be closed by nginx as it is
        # reused (its keep-alive timeout, on a loaded machine), and a POST is not sent again.
        with httpx.Client(timeout=10, verify=SSL_CONTEXT) as fresh:
            statuses = [_chat(fresh, c.nginx.url, "k-back").status_code for _ in range(20)]
        assert statuses.count(200) == 10 and statuses.count(429) == 10


def test_a_frozen_redis_delays_no_request_beyond_its_short_timeout() -> None:
    with (
        cluster("--rate-limit", "600", "--replay-window", "60", per_replica=((),)) as c,
        httpx.Client(timeout=10, verify=SSL_CONTEXT) as client,
    ):
        (replica,) = c.replicas
        os.kill(c.redis.process.pid, signal.SIGSTOP)  # accepts connections, answers nothing
        try:
            for i in range(5):
                started = time.monotonic()
                answer = _chat(client, replica.url, None, f"frozen {i}")
                assert answer.status_code == 200
                assert time.monotonic() - started < 1.5
            status, body = _readyz(replica.url)
            assert (status, body["redis"]) == (200, "unreachable")
        finally:
            os.kill(c.redis.process.pid, signal.SIGCONT)
        wait_until(lambda: _readyz(replica.url)[1]["redis"] == "ok", 5)
