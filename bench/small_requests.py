"""Benchmark 2: sequential one-chunk requests per second.

The emitter answers each POST with one content chunk, a finish chunk and ``[DONE]``. The
seed-style client opens a new connection per request (``requests.post`` without a session, as
the seed does); getgpt's client (its lean HTTP/1.1 path, and through httpx as with
``http_client=``) and a plain httpx loop reuse one pooled connection.
"""

from __future__ import annotations

import argparse
import json

import httpx
import requests

import getgpt
from getgpt.protocol import envelope

from .common import compare, machine, table
from .emitter import EmitterProcess
from .stream import expected_text

MESSAGES = [{"role": "user", "content": "Hi"}]
SEED_HEADERS = {
    "Content-Type": "application/json",
    "Referer": "https://chat.getgpt.world/",
    "user-agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36",
}


def run_requests(requests_per_round: int, rounds: int) -> str:
    expected = expected_text(1)
    with EmitterProcess(prebuild=(1,)) as emitter:
        base = emitter.base(1)
        url = base + "api/chat/stream"
        client = getgpt.Client(base)
        via_httpx = getgpt.Client(base, http_client=httpx.Client())
        pooled = httpx.Client()

        def getgpt_loop() -> str:
            text = ""
            for _ in range(requests_per_round):
                text = client.complete(MESSAGES)
            return text

        def via_httpx_loop() -> str:
            text = ""
            for _ in range(requests_per_round):
                text = via_httpx.complete(MESSAGES)
            return text

        def seed_loop() -> str:
            text = ""
            for _ in range(requests_per_round):
                # The seed seals the request the same way, then opens a fresh connection.
                payload = json.dumps({"messages": MESSAGES, "stream": True})
                body = {"signature": envelope.encrypt(payload)}
                response = requests.post(url, headers=SEED_HEADERS, json=body, stream=True)
                out = []
                for line in response.iter_lines():
                    if b"content" in line:
                        line_json = json.loads(line.decode("utf-8").split("data: ")[1])
                        out.append(line_json["choices"][0]["delta"]["content"])
                text = "".join(out)
            return text

        def httpx_loop() -> str:
            text = ""
            for _ in range(requests_per_round):
                out = []
                with pooled.stream("POST", url, json={"signature": "x"}) as response:
                    for line in response.iter_lines():
                        if line.startswith("data: {"):
                            content = json.loads(line[6:])["choices"][0]["delta"].get("content")
                            if content:
                                out.append(content)
                text = "".join(out)
            return text

        def check(name: str, text: object) -> None:
            if text != expected:
                raise AssertionError(f"{name} returned {text!r}")

        try:
            medians = compare(
                {
                    "getgpt.Client (pooled)": getgpt_loop,
                    "getgpt.Client through httpx (http_client=)": via_httpx_loop,
                    "seed-style (requests.post, new connection)": seed_loop,
                    "plain pooled httpx loop": httpx_loop,
                },
                rounds,
                check,
            )
        finally:
            client.close()
            via_httpx.close()
            pooled.close()
    seed = medians["seed-style (requests.post, new connection)"]
    rows = [
        [name, f"{requests_per_round / s:.0f}", f"{s / requests_per_round * 1e6:.0f}", f"{seed / s:.2f}x"]
        for name, s in medians.items()
    ]
    return f"{requests_per_round} sequential requests per round, {rounds} rounds, alternating\n\n" + table(
        ["contender", "requests/s", "us/request", "vs seed-style"], rows
    )


def run(quick: bool = False) -> str:
    per_round, rounds = (50, 3) if quick else (500, 5)
    return "\n".join(["## 2. Small requests", "", run_requests(per_round, rounds), ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(machine(), "\n")
    print(run_requests(args.requests, args.rounds))


if __name__ == "__main__":
    main()
