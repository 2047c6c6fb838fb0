"""The collector of a getgpt serve process: frozen start-up heap, a young generation that waits."""

from __future__ import annotations

import subprocess
import sys

from getgpt.server.running.serving import GC_YOUNG_THRESHOLD

PROBE = """
import gc
from getgpt.server import ServerConfig, create_app
from getgpt.server.running.serving import tune_garbage_collector
create_app(ServerConfig())
before = gc.get_freeze_count()
tune_garbage_collector()
print(before, gc.get_freeze_count(), *gc.get_threshold())
"""


def test_tuning_freezes_what_exists_and_raises_only_the_young_threshold() -> None:
    # In a process of its own: the collector's settings are the whole interpreter's.
    default = subprocess.run(
        [sys.executable, "-c", "import gc; print(*gc.get_threshold())"],
        check=True,
        capture_output=True,
        text=True,
    )
    result = subprocess.run(
        [sys.executable, "-c", PROBE], check=False, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    before, frozen, young, middle, oldest = map(int, result.stdout.split())
    _, default_middle, default_oldest = map(int, default.stdout.split())
    assert before == 0
    assert frozen > 10_000  # the modules and the app: out of every later collection's way
    assert (young, middle, oldest) == (GC_YOUNG_THRESHOLD, default_middle, default_oldest)
