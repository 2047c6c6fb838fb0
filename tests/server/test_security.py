"""Security features, each over real HTTP: API keys, CORS, rate limits, replay refusal, quiet logs, TLS."""

from __future__ import annotations

import asyncio
import datetime
import functools
import ipaddress
import json
import logging
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import getgpt
from getgpt.protocol.envelope import encrypt
from getgpt.protocol.request import build_request, encode
from getgpt.server import ServerConfig, create_app
from getgpt.server.admission import security

from ..support.processes import SSL_CONTEXT
from ..support.sdk import openai_sdk
from ..support.serve_process import getgpt_serve
from ..support.servers import health, serve, wait_until

HI = [{"role": "user", "content": "hi"}]
ROOT = Path(__file__).resolve().parents[2]


def body(content: str = "hi", **params: Any) -> dict[str, str]:
    request = build_request([{"role": "user", "content": content}], **params)
    return {"signature": encrypt(encode(request).decode())}


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code
    return dict(error)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --------------------------------------------------------------------------- API keys


@pytest.fixture(scope="module")
def keyed() -> Iterator[str]:
    with serve(create_app(ServerConfig(api_keys=("key-one", "key-two")))) as url:
        yield url


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        (None, "missing_api_key"),
        ("Bearer wrong", "invalid_api_key"),
        ("Bearer key-on", "invalid_api_key"),  # a prefix of a key
        ("Bearer key-one-and-more", "invalid_api_key"),
        ("Bearer", "invalid_api_key"),
        ("Basic key-one", "invalid_api_key"),
        ("key-one", "invalid_api_key"),
    ],
)
def test_chat_without_a_valid_key_is_401(keyed: str, authorization: str | None, code: str) -> None:
    headers = {"authorization": authorization} if authorization is not None else {}
    for path in ("api/chat/stream", "v1/chat/completions"):
        response = httpx.post(keyed + path, json=body(), headers=headers, verify=SSL_CONTEXT)
        assert_error(response, 401, code)
        assert response.headers["www-authenticate"] == "Bearer"
        assert "key-one" not in response.text


def test_either_key_is_accepted_by_the_client_and_the_openai_sdk(keyed: str) -> None:
    for key in ("key-one", "key-two"):
        with getgpt.Client(keyed, headers={"Authorization": f"Bearer {key}"}) as client:
            assert client.complete([{"role": "user", "content": "ключ 🔑"}]) == "ключ 🔑"
    with openai_sdk(keyed + "v1", "key-two", max_retries=0) as sdk:
        reply = sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "sdk"}])
        assert reply.choices[0].message.content == "sdk"
    with (
        openai_sdk(keyed + "v1", "nope", max_retries=0) as sdk,
        pytest.raises(openai.AuthenticationError),
    ):
        sdk.chat.completions.create(model="m", messages=HI)
    with getgpt.Client(keyed, max_retries=0) as client, pytest.raises(getgpt.StatusError) as caught:
        client.complete(HI)
    assert caught.value.status_code == 401


def test_a_refused_key_costs_no_body_read(keyed: str) -> None:
    # The key is checked before the body is read: a large body gets 401, not 413.
    response = httpx.post(
        keyed + "api/chat/stream",
        content=b"x" * (2 << 20),
        headers={"content-type": "application/json"},
        verify=SSL_CONTEXT,
    )
    assert_error(response, 401, "missing_api_key")


def test_health_stays_open(keyed: str) -> None:
    assert httpx.get(keyed + "healthz", verify=SSL_CONTEXT).json()["status"] == "ok"


def test_the_model_list_takes_the_key_like_the_chat_routes(keyed: str) -> None:
    # It used to stay open: with the openai backend, anyone made the server call its upstream.
    for path in ("v1/models", "v1/models/gpt-3.5-turbo"):
        refused = httpx.get(keyed + path, verify=SSL_CONTEXT)
        assert_error(refused, 401, "missing_api_key")
        assert refused.headers["www-authenticate"] == "Bearer"
        wrong = httpx.get(keyed + path, headers={"authorization": "Bearer nope"}, verify=SSL_CONTEXT)
        assert_error(wrong, 401, "invalid_api_key")
        assert (
            httpx.get(
                keyed + path, headers={"authorization": "Bearer key-two"}, verify=SSL_CONTEXT
            ).status_code
            == 200
        )
    with openai_sdk(keyed + "v1", "key-one", max_retries=0) as sdk:
        assert [model.id for model in sdk.models.list()] == ["gpt-3.5-turbo"]


def test_the_model_list_spends_the_rate_limit_of_the_chat_routes(frozen_limiter: FakeClock) -> None:
    config = ServerConfig(rate_limit=60, rate_burst=2)
    with serve(create_app(config)) as url:
        assert httpx.get(url + "v1/models", verify=SSL_CONTEXT).status_code == 200
        assert (
            httpx.post(url + "v1/chat/completions", json={"messages": HI}, verify=SSL_CONTEXT).status_code
            == 200
        )
        for path in ("v1/models", "v1/models/gpt-3.5-turbo"):
            refused = httpx.get(url + path, verify=SSL_CONTEXT)
            assert_error(refused, 429, "rate_limit_exceeded")
            assert refused.headers["retry-after"] == "1"
        assert httpx.get(url + "healthz", verify=SSL_CONTEXT).status_code == 200  # health is never limited


def test_keys_come_from_the_environment_and_stay_out_of_repr() -> None:
    config = ServerConfig.from_env({"GETGPT_API_KEYS": " alpha , beta,"})
    assert config.api_keys == ("alpha", "beta")
    assert "alpha" not in repr(config)
    with pytest.raises(ValueError, match="no key"):
        create_app(ServerConfig(api_keys=(" ",)))


def test_every_key_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # Whatever matches, every key goes through hmac.compare_digest: no early exit, no ==.
    compared: list[tuple[bytes, bytes]] = []
    real = security.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(security.hmac, "compare_digest", spy)
    keys = security.ApiKeys(["first", "second", "third"])
    assert keys.match(b"Bearer first") == 0
    assert keys.match(b"bearer  third ") == 2
    assert keys.match(b"Bearer none") is None
    assert [b for _, b in compared] == [b"first", b"second", b"third"] * 3


# --------------------------------------------------------------------------- CORS

PREFLIGHT = {
    "origin": "https://chat.example",
    "access-control-request-method": "POST",
    "access-control-request-headers": "authorization, content-type",
}


def test_cors_is_off_by_default() -> None:
    with serve(create_app(ServerConfig())) as url:
        preflight = httpx.options(url + "api/chat/stream", headers=PREFLIGHT, verify=SSL_CONTEXT)
        assert "access-control-allow-origin" not in preflight.headers
        response = httpx.post(
            url + "api/chat/stream",
            json=body(),
            headers={"origin": "https://chat.example"},
            verify=SSL_CONTEXT,
        )
        assert response.status_code == 200
        assert not any(name.startswith("access-control-") for name in response.headers)


def test_cors_allows_only_the_configured_origins() -> None:
    config = ServerConfig(cors_origins=("https://chat.example",), api_keys=("k",))
    with serve(create_app(config)) as url:
        preflight = httpx.options(url + "api/chat/stream", headers=PREFLIGHT, verify=SSL_CONTEXT)
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://chat.example"
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
        assert "POST" in preflight.headers["access-control-allow-methods"]

        other = httpx.options(
            url + "api/chat/stream",
            headers={**PREFLIGHT, "origin": "https://evil.example"},
            verify=SSL_CONTEXT,
        )
        assert "access-control-allow-origin" not in other.headers

        headers = {"origin": "https://chat.example", "authorization": "Bearer k"}
        with httpx.stream(
            "POST", url + "api/chat/stream", json=body("cors"), headers=headers, verify=SSL_CONTEXT
        ) as response:
            assert response.headers["access-control-allow-origin"] == "https://chat.example"
            text = response.read().decode()
        assert '"content":"cors"' in text and text.endswith("data: [DONE]\n\n")
        # A refusal is readable by the allowed page too, so it can show why.
        refused = httpx.post(
            url + "api/chat/stream",
            json=body(),
            headers={"origin": "https://chat.example"},
            verify=SSL_CONTEXT,
        )
        assert_error(refused, 401, "missing_api_key")
        assert refused.headers["access-control-allow-origin"] == "https://chat.example"
        evil = httpx.post(
            url + "api/chat/stream",
            json=body(),
            headers={"origin": "https://evil.example"},
            verify=SSL_CONTEXT,
        )
        assert "access-control-allow-origin" not in evil.headers


@pytest.mark.parametrize("origin", ["chat.example", "https://chat.example/", "ftp://x"])
def test_nonsense_cors_origins_are_refused_at_start(origin: str) -> None:
    with pytest.raises(ValueError, match="origin"):
        create_app(ServerConfig(cors_origins=(origin,)))


# --------------------------------------------------------------------------- rate limits


def test_token_bucket_with_a_clock() -> None:
    clock = FakeClock()
    limiter = security.RateLimiter(per_minute=60, burst=3, clock=clock)
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == pytest.approx(1.0)
    assert limiter.take("b") == 0.0  # each client has its own bucket
    clock.now += 0.5
    assert limiter.take("a") == pytest.approx(0.5)
    clock.now += 0.5
    assert limiter.take("a") == 0.0
    clock.now += 3600  # a long pause refills to the burst, not beyond
    assert [limiter.take("a") for _ in range(4)][-1] > 0
    assert security.RateLimiter(per_minute=120, clock=clock).burst == 20  # default: 10 s worth


@pytest.fixture
def frozen_limiter(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The clock of every RateLimiter made meanwhile: it moves only when the test moves it, so a
    slow machine cannot refill a bucket between two requests."""
    clock = FakeClock()
    monkeypatch.setattr(security, "RateLimiter", functools.partial(security.RateLimiter, clock=clock))
    return clock


def test_rate_limit_per_key_is_429_with_retry_after(frozen_limiter: FakeClock) -> None:
    config = ServerConfig(api_keys=("a", "b"), rate_limit=60, rate_burst=2)
    with serve(create_app(config)) as url:
        key_a, key_b = {"authorization": "Bearer a"}, {"authorization": "Bearer b"}
        for _ in range(2):
            assert (
                httpx.post(
                    url + "api/chat/stream", json=body(), headers=key_a, verify=SSL_CONTEXT
                ).status_code
                == 200
            )
        refused = httpx.post(url + "api/chat/stream", json=body(), headers=key_a, verify=SSL_CONTEXT)
        error = assert_error(refused, 429, "rate_limit_exceeded")
        assert error["type"] == "rate_limit_error"
        assert refused.headers["retry-after"] == "1"
        # The other key has its own bucket.
        assert (
            httpx.post(url + "api/chat/stream", json=body(), headers=key_b, verify=SSL_CONTEXT).status_code
            == 200
        )
        # The client reads it as a typed error with the wait.
        with (
            getgpt.Client(url, headers=key_a, max_retries=0) as client,
            pytest.raises(getgpt.RateLimitError) as caught,
        ):
            client.complete(HI)
        assert caught.value.retry_after == 1.0


def test_guessing_keys_is_rate_limited_by_address(frozen_limiter: FakeClock) -> None:
    config = ServerConfig(api_keys=("right",), rate_limit=60, rate_burst=2)
    with serve(create_app(config), proxy_headers=True, forwarded_allow_ips="127.0.0.1") as url:
        guess = {"authorization": "Bearer guess", "x-forwarded-for": "198.51.100.7"}
        statuses = [
            httpx.post(url + "api/chat/stream", json=body(), headers=guess, verify=SSL_CONTEXT).status_code
            for _ in range(3)
        ]
        assert statuses == [401, 401, 429]
        # The right key has its own bucket, whatever its address spent on guesses.
        right = {"authorization": "Bearer right", "x-forwarded-for": "198.51.100.7"}
        assert (
            httpx.post(url + "api/chat/stream", json=body(), headers=right, verify=SSL_CONTEXT).status_code
            == 200
        )


def test_rate_limit_per_ip_and_the_client_waits_as_told(
    frozen_limiter: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server's limiter runs on a clock the test moves, and the client's wait moves it too: a
    # second passes when the test (or the client, told Retry-After: 1) says so, not by sleeping.
    clock = frozen_limiter
    waits: list[float] = []

    def client_sleeps(seconds: float) -> None:
        waits.append(seconds)
        clock.now += seconds

    monkeypatch.setattr(
        "getgpt.client.clients.time", types.SimpleNamespace(sleep=client_sleeps, monotonic=time.monotonic)
    )
    # This uvicorn believes X-Forwarded-For from 127.0.0.1 (as getgpt serve does when told
    # --forwarded-allow-ips 127.0.0.1), so each value below is a different client address.
    app = create_app(ServerConfig(rate_limit=60, rate_burst=1))
    with serve(app, proxy_headers=True, forwarded_allow_ips="127.0.0.1") as url:
        first = {"x-forwarded-for": "203.0.113.1"}
        assert (
            httpx.post(url + "api/chat/stream", json=body(), headers=first, verify=SSL_CONTEXT).status_code
            == 200
        )
        assert_error(
            httpx.post(url + "api/chat/stream", json=body(), headers=first, verify=SSL_CONTEXT),
            429,
            "rate_limit_exceeded",
        )
        second = {"x-forwarded-for": "203.0.113.2"}
        assert (
            httpx.post(url + "api/chat/stream", json=body(), headers=second, verify=SSL_CONTEXT).status_code
            == 200
        )
        # One a second: 0.9 s on, still none; a second on, the bucket has a token again.
        clock.now += 0.9
        assert_error(
            httpx.post(url + "api/chat/stream", json=body(), headers=first, verify=SSL_CONTEXT),
            429,
            "rate_limit_exceeded",
        )
        clock.now += 0.1
        assert (
            httpx.post(url + "api/chat/stream", json=body(), headers=first, verify=SSL_CONTEXT).status_code
            == 200
        )
        # The client, told Retry-After: 1, waits a second and gets through on its retry.
        with getgpt.Client(url, headers=first, max_retries=1) as client:
            clock.now += 1.0
            assert client.complete([{"role": "user", "content": "a"}]) == "a"
            assert waits == []
            assert client.complete([{"role": "user", "content": "b"}]) == "b"
            assert waits == [1.0]  # it waited for Retry-After


# --------------------------------------------------------------------------- replays


def test_replay_guard_with_a_clock() -> None:
    clock = FakeClock()
    guard = security.ReplayGuard(window=60, clock=clock)
    assert guard.claim("u1") and not guard.claim("u1")
    guard.release("u1")
    assert guard.claim("u1")
    clock.now += 61
    assert guard.claim("u1")  # expired
    guard.MAX_ENTRIES = 10
    for i in range(50):
        assert guard.claim(f"x{i}")
    assert len(guard._seen) <= 10


def test_a_replayed_request_is_409_and_a_new_uuid_is_fine() -> None:
    with serve(create_app(ServerConfig(replay_window=60))) as url:
        sealed = body(uuid="request-1")
        assert httpx.post(url + "api/chat/stream", json=sealed, verify=SSL_CONTEXT).status_code == 200
        replay = httpx.post(url + "api/chat/stream", json=sealed, verify=SSL_CONTEXT)
        error = assert_error(replay, 409, "replayed_request")
        assert "request-1" in error["message"]
        # Re-sealing the same request (new key, same uuid) is the same request.
        assert_error(
            httpx.post(url + "api/chat/stream", json=body(uuid="request-1"), verify=SSL_CONTEXT),
            409,
            "replayed_request",
        )
        assert (
            httpx.post(url + "api/chat/stream", json=body(uuid="request-2"), verify=SSL_CONTEXT).status_code
            == 200
        )
        with getgpt.Client(url) as client:  # fresh uuids every time
            assert [client.complete(HI) for _ in range(3)] == ["hi"] * 3


def test_a_request_refused_before_its_reply_may_be_sent_again() -> None:
    # Over the stream limit the server answers 503: that uuid was not spent, so the client's retry
    # of the very same bytes must go through once there is room.
    config = ServerConfig(replay_window=60, max_streams=1, echo_delay=0.05, echo_piece_chars=1)
    with serve(create_app(config)) as url, getgpt.Client(url, max_retries=0) as client:
        held = client.stream([{"role": "user", "content": "x" * 100}])
        assert next(held) == "x"
        sealed = body(uuid="retry-me")
        assert_error(
            httpx.post(url + "api/chat/stream", json=sealed, verify=SSL_CONTEXT), 503, "too_many_streams"
        )
        held.close()
        wait_until(lambda: health(url)["active_streams"] == 0, what="the held stream's slot freed")
        assert httpx.post(url + "api/chat/stream", json=sealed, verify=SSL_CONTEXT).status_code == 200
        assert_error(
            httpx.post(url + "api/chat/stream", json=sealed, verify=SSL_CONTEXT), 409, "replayed_request"
        )


def test_requests_that_carry_no_uuid_spend_no_room_in_the_replay_guard(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every /v1 request (which has no uuid) used to take a slot of the table, so enough of them
    # flushed it and a captured GetGpt request replayed with 200. The table's bound, made small:
    monkeypatch.setattr(security.ReplayGuard, "MAX_ENTRIES", 40)
    with (
        serve(create_app(ServerConfig(replay_window=600))) as url,
        httpx.Client(base_url=url, verify=SSL_CONTEXT) as client,
    ):
        captured = body(uuid="captured-1")
        assert client.post("api/chat/stream", json=captured).status_code == 200
        no_uuid = {"signature": encrypt(json.dumps({"messages": HI}))}
        for _ in range(30):
            assert client.post("v1/chat/completions", json={"messages": HI}).status_code == 200
            assert client.post("api/chat/stream", json=no_uuid).status_code == 200
        assert_error(client.post("api/chat/stream", json=captured), 409, "replayed_request")
        # A /v1 request that does carry one is guarded as a GetGpt request is.
        chosen = {"messages": HI, "uuid": "v1-chosen"}
        assert client.post("v1/chat/completions", json=chosen).status_code == 200
        assert_error(client.post("v1/chat/completions", json=chosen), 409, "replayed_request")


def test_the_replay_window_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(security, "ReplayGuard", functools.partial(security.ReplayGuard, clock=clock))
    with serve(create_app(ServerConfig(replay_window=0.3))) as url:
        sealed = body(uuid="short-lived")
        assert httpx.post(url + "api/chat/stream", json=sealed, verify=SSL_CONTEXT).status_code == 200
        assert httpx.post(url + "api/chat/stream", json=sealed, verify=SSL_CONTEXT).status_code == 409
        clock.now += 0.29
        assert httpx.post(url + "api/chat/stream", json=sealed, verify=SSL_CONTEXT).status_code == 409
        clock.now += 0.02
        assert httpx.post(url + "api/chat/stream", json=sealed, verify=SSL_CONTEXT).status_code == 200


# --------------------------------------------------------------------------- logs

SECRET_TEXT = "PRIVATE-4f7c Привет медведь 🐻"


def test_message_text_is_never_logged_at_info_or_above(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG), serve(create_app(ServerConfig())) as url:
        with getgpt.Client(url, max_retries=0) as client:
            assert client.complete([{"role": "user", "content": SECRET_TEXT}]) == SECRET_TEXT
            assert client.complete([{"role": "user", "content": SECRET_TEXT}], stream=False) == SECRET_TEXT
        # Refused requests that carry the text: an invalid role, a field the echo backend does not know.
        invalid = json.dumps({"messages": [{"role": "robot", "content": SECRET_TEXT}]}, ensure_ascii=False)
        assert (
            httpx.post(
                url + "api/chat/stream", json={"signature": encrypt(invalid)}, verify=SSL_CONTEXT
            ).status_code
            == 400
        )
        extra = json.dumps({"messages": [{"role": "user", "content": SECRET_TEXT}], "x": SECRET_TEXT})
        assert (
            httpx.post(
                url + "api/chat/stream", json={"signature": encrypt(extra)}, verify=SSL_CONTEXT
            ).status_code
            == 400
        )
        httpx.post(
            url + "v1/chat/completions",
            json={"messages": [{"role": "user", "content": SECRET_TEXT}]},
            verify=SSL_CONTEXT,
        )
        httpx.post(
            url + "v1/chat/completions",
            json={"messages": [{"role": "robot", "content": SECRET_TEXT}]},
            verify=SSL_CONTEXT,
        )
    assert caplog.records, "the server logged nothing at all: the test would prove nothing"
    loud = [r for r in caplog.records if r.levelno >= logging.INFO]
    for record in loud:
        text = record.getMessage() + (record.exc_text or "")
        assert "PRIVATE-4f7c" not in text and "медведь" not in text, (record.name, text)


def test_getgpt_serve_logs_no_message_text_at_debug_level() -> None:
    # The real command, at its most talkative: uvicorn's access log, the server's own logs.
    options = ("--log-level", "debug", "--rate-limit", "600", "--replay-window", "30")
    with getgpt_serve(
        *options, "--cors-origin", "https://chat.example", env={"GETGPT_API_KEYS": "cli-key"}
    ) as server:
        url = server.url
        key = {"Authorization": "Bearer cli-key"}
        with getgpt.Client(url, headers=key, max_retries=0) as client:
            assert client.complete([{"role": "user", "content": SECRET_TEXT}]) == SECRET_TEXT
        sealed = body(SECRET_TEXT, uuid="cli-replay")
        assert (
            httpx.post(url + "api/chat/stream", json=sealed, headers=key, verify=SSL_CONTEXT).status_code
            == 200
        )
        assert (
            httpx.post(url + "api/chat/stream", json=sealed, headers=key, verify=SSL_CONTEXT).status_code
            == 409
        )
        assert httpx.post(url + "api/chat/stream", json=sealed, verify=SSL_CONTEXT).status_code == 401
        preflight = httpx.options(url + "api/chat/stream", headers=PREFLIGHT, verify=SSL_CONTEXT)
        assert preflight.headers["access-control-allow-origin"] == "https://chat.example"
        log = server.stop()  # all it printed, its shutdown included
    assert "POST /api/chat/stream" in log  # the access log ran, at INFO
    assert "PRIVATE-4f7c" not in log and "медведь" not in log
    assert "cli-key" not in log


# --------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made here: no trust store knows it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "getgpt test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


@pytest.fixture(scope="module")
def tls_url(tls_files: tuple[Path, Path]) -> Iterator[str]:
    cert_file, key_file = tls_files
    with serve(create_app(ServerConfig()), ssl_certfile=str(cert_file), ssl_keyfile=str(key_file)) as url:
        yield url.replace("http://", "https://")


def test_client_verifies_tls_by_default(tls_url: str) -> None:
    with getgpt.Client(tls_url, max_retries=0) as client, pytest.raises(getgpt.TransportError) as caught:
        client.complete(HI)
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value) or "certificate" in str(caught.value).lower()

    async def main() -> None:
        async with getgpt.AsyncClient(tls_url, max_retries=0) as client:
            with pytest.raises(getgpt.TransportError):
                await client.complete(HI)

    asyncio.run(main())


def test_client_accepts_the_certificate_only_when_told(tls_url: str) -> None:
    with getgpt.Client(tls_url, verify=False) as client:
        assert client.complete([{"role": "user", "content": "tls"}]) == "tls"


@pytest.mark.parametrize("backend", ["getgpt", "openai"])
def test_server_backends_verify_their_upstream_tls(tls_url: str, backend: str) -> None:
    upstream = tls_url + "v1" if backend == "openai" else tls_url
    with serve(create_app(ServerConfig(backend=backend, upstream=upstream))) as url:
        response = httpx.post(url + "api/chat/stream", json=body(), verify=SSL_CONTEXT)
    assert_error(response, 502, "upstream_unreachable")
