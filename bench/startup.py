"""Benchmark 6: start-up wall time of ``getgpt --help`` and ``import getgpt``.

Each command runs in a fresh interpreter, in turn with the bare ``python -c pass`` baseline,
and the median of the repeats is quoted. ``-X importtime`` then names the slowest imports of
``getgpt --help``, the place to look when the target is missed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time

from .common import compare, machine, table

TARGET_HELP_MS = 150.0


def _command(args: list[str]) -> None:
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _cli() -> list[str]:
    script = shutil.which("getgpt")
    # The entry point if installed; otherwise the module, which is what the script runs.
    return [script, "--help"] if script else [sys.executable, "-m", "getgpt", "--help"]


def slowest_imports(args: list[str], top: int = 8) -> list[tuple[int, str]]:
    """The ``top`` imports by cumulative microseconds, from ``-X importtime``."""
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    found = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line.split("|", 2)
        found.append((int(cumulative), name.rstrip()))
    found.sort(reverse=True)
    return found[:top]


def run_startup(repeats: int) -> str:
    commands = {
        "python -c pass (baseline)": [sys.executable, "-c", "pass"],
        "python -c 'import getgpt'": [sys.executable, "-c", "import getgpt"],
        "getgpt --help": _cli(),
    }
    medians = compare(
        {name: (lambda args=args: _command(args)) for name, args in commands.items()},
        repeats,
        lambda name, result: None,
    )
    base = medians["python -c pass (baseline)"]
    rows = [[name, f"{s * 1000:.0f}", f"{(s - base) * 1000:.0f}"] for name, s in medians.items()]
    helps = medians["getgpt --help"] * 1000
    verdict = "met" if helps < TARGET_HELP_MS else "MISSED"
    lines = [
        f"median of {repeats} runs each, alternating; "
        f"`getgpt --help` = `{' '.join(commands['getgpt --help'])}`",
        "",
        table(["command", "ms (median)", "ms over bare python"], rows),
        "",
        f"Target `getgpt --help` < {TARGET_HELP_MS:.0f} ms: {verdict} ({helps:.0f} ms).",
        "",
        "Slowest imports of `getgpt --help` (cumulative us, from -X importtime):",
        "",
    ]
    lines += [f"    {us:>8}  {name}" for us, name in slowest_imports(commands["getgpt --help"])]
    return "\n".join(lines)


def run(quick: bool = False) -> str:
    return "\n".join(["## 6. Start-up", "", run_startup(5 if quick else 21), ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=21)
    args = parser.parse_args()
    print(machine(), "\n")
    started = time.perf_counter()
    print(run_startup(args.repeats))
    print(f"\n(took {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
