"""The seed document's usage example runs as written, only its import line changed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from getgpt.server import ServerConfig, create_app

from ..support.servers import serve

SEED = Path(__file__).resolve().parents[3] / "shared" / "seed" / "000_f8db48c0146893d5.txt"
SEED_IMPORT = "from hypotez.src.endpoints.freegpt_webui_ru.g4f.Provider.Providers import GetGpt"

# The example as the seed prints it, kept here so the test does not depend on where shared/ lies;
# when the seed file is present, the test also checks this copy matches it.
EXAMPLE = """import asyncio
from hypotez.src.endpoints.freegpt_webui_ru.g4f.Provider.Providers import GetGpt

async def main():
    messages = [
        {"role": "user", "content": "Привет, как дела?"}
    ]

    # Пример использования функции _create_completion
    for response_chunk in GetGpt._create_completion(model='gpt-3.5-turbo', messages=messages, stream=True):
        print(response_chunk, end='', flush=True)

if __name__ == "__main__":
    asyncio.run(main())"""


def test_example_is_the_seeds() -> None:
    if SEED.exists():  # trailing blanks aside, which the seed has on one line
        seed = "\n".join(line.rstrip() for line in SEED.read_text(encoding="utf-8").splitlines())
        assert EXAMPLE in seed
    assert SEED_IMPORT in EXAMPLE


def test_seed_example_runs_against_a_local_server(tmp_path: Path) -> None:
    script = tmp_path / "seed_example.py"
    script.write_text(EXAMPLE.replace(SEED_IMPORT, "from getgpt.providers import GetGpt"), encoding="utf-8")
    with serve(create_app(ServerConfig(backend="echo"))) as url:
        env = {**os.environ, "GETGPT_BASE_URL": url, "PYTHONIOENCODING": "utf-8"}
        done = subprocess.run(
            [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60, check=False
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Привет, как дела?"
