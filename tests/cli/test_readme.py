"""The READMEs: the CLI section's commands work as written, and README.ru.md keeps README.md's
sections, code and tables."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from getgpt.server import ServerConfig, create_app

from ..support.command import locale_env
from ..support.servers import serve

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
README_RU = ROOT / "README.ru.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def section(text: str, heading: str) -> str:
    start = text.index(f"\n{heading}\n")
    end = text.find("\n## ", start + len(heading) + 2)
    return text[start : end if end >= 0 else len(text)]


def commands(block: str) -> list[str]:
    """The lines of a shell block without their comments."""
    return [re.sub(r"\s+#\s.*$", "", line).strip() for line in block.strip().splitlines()]


def test_the_cli_section_commands_work_as_written(tmp_path: Path) -> None:
    block = next(
        code
        for lang, code in FENCE.findall(section(README.read_text(encoding="utf-8"), "## The CLI"))
        if lang == "sh"
    )
    lines = commands(block)
    assert len(lines) == 6
    # `getgpt` on PATH is this source tree's, whatever is installed.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "getgpt"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m getgpt "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    expected = {
        0: ("", "Привет! 🙂\n"),
        1: ("", "What is AES-CBC?\n"),
        2: ("first\nsecond\n", "first\nsecond\n"),  # interactive, fed two lines
        3: ("", "a question\n"),
        4: ("", "hi\n"),
    }
    with (
        serve(create_app(ServerConfig())) as url,
        serve(create_app(ServerConfig(api_keys=("key1",)))) as keyed,
    ):
        for index, line in enumerate(lines):
            env = locale_env(
                {
                    "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                    "GETGPT_BASE_URL": keyed if "GETGPT_API_KEY=" in line else url,
                    "XDG_STATE_HOME": str(tmp_path / "state"),
                }
            )
            stdin, stdout = expected.get(index, ("", None))
            done = subprocess.run(
                ["bash", "-c", line],
                input=stdin,
                capture_output=True,
                text=True,
                env=env,
                timeout=60,
                check=False,
            )
            assert done.returncode == 0, (line, done.stderr)
            if stdout is not None:
                assert done.stdout == stdout, line
            else:
                assert done.stdout.startswith("использование: getgpt chat"), line


def _without_comments(block: str) -> list[str]:
    return [re.sub(r"(^|\s+)#\s.*$", "", line).rstrip() for line in block.splitlines()]


def headings(text: str) -> list[int]:
    return [
        len(m[1]) for m in re.finditer(r"^(#+) ", re.sub(r"^```.*?^```$", "", text, flags=re.M | re.S), re.M)
    ]


def tables(text: str) -> list[int]:
    """The number of rows of each table, in order."""
    rows: list[int] = []
    previous = False
    for line in text.splitlines():
        row = line.startswith("|")
        if row and not previous:
            rows.append(0)
        if row:
            rows[-1] += 1
        previous = row
    return rows


def test_the_russian_readme_keeps_the_english_readmes_sections_code_and_tables() -> None:
    english = README.read_text(encoding="utf-8")
    russian = README_RU.read_text(encoding="utf-8")
    assert headings(russian) == headings(english)
    assert tables(russian) == tables(english)
    blocks_en, blocks_ru = FENCE.findall(english), FENCE.findall(russian)
    assert [lang for lang, _ in blocks_ru] == [lang for lang, _ in blocks_en]
    for (lang, en), (_, ru) in zip(blocks_en, blocks_ru, strict=True):
        if lang in ("sh", "python"):
            assert commands(ru) == commands(en)  # the same code; only its comments are translated
        elif lang == "toml":  # the config file's example: the same keys and values, comments translated
            assert _without_comments(ru) == _without_comments(en)
        elif lang == "text":
            assert len(ru.splitlines()) == len(en.splitlines())  # what a command prints, in that language
        else:
            # The layout: the same files in the same order, described in the other language.
            firsts = [[line.split()[0] for line in block.splitlines()] for block in (ru, en)]
            assert firsts[0] == firsts[1]
    # Every link of the English README is in the Russian one (the two point at each other instead).
    links = set(re.findall(r"\]\(([^)]+)\)", english)) - {"README.ru.md"}
    assert links <= set(re.findall(r"\]\(([^)]+)\)", russian))


def sh_block(heading: str) -> str:
    """The first shell block of a section of README.md."""
    found = FENCE.findall(section(README.read_text(encoding="utf-8"), heading))
    return next(code for lang, code in found if lang == "sh")


PUBLISHED = "https://git.example.org/getgpt/getgpt.git"


@pytest.mark.timeout(660)  # the install below is bounded at 600 s; the suite's default is 120 s
def test_a_newcomer_runs_the_quickstart_as_written_from_a_fresh_clone(tmp_path: Path) -> None:
    """The Quickstart's lines, taken from the README, run as written in a temporary directory: a
    fresh clone (of this repository, standing for the published one), a fresh venv, the install
    and ``getgpt demo``. The last line, ``bash .ci/run``, is what CI runs itself.

    Cost, measured on the 2-core machine of the tests: the install fetches 27 packages (about
    90 MB in the venv) through pip, from PyPI or pip's cache -- 20 s alone, 70 s to over 2 min
    while the rest of the suite runs beside it; the test is bounded at 10 minutes.
    """
    *lines, last = commands(sh_block("## Quickstart"))
    assert last == "bash .ci/run"
    assert lines[0] == f"git clone {PUBLISHED} && cd getgpt"
    assert lines[1:3] == ["python3 -m venv .venv", ". .venv/bin/activate"]
    # This repository stands for the published one, under a name that clones to getgpt/ as it would.
    (tmp_path / "published").mkdir()
    (tmp_path / "published" / "getgpt.git").symlink_to(ROOT)
    (tmp_path / "newcomer").mkdir()
    here = str(tmp_path / "published" / "getgpt.git")
    script = "\n".join(["set -e", lines[0].replace(PUBLISHED, here), *lines[1:]])
    # A newcomer's shell: none of this checkout's settings, no virtual environment active.
    keep = ("PATH", "HOME", "TMPDIR", "PIP_CERT", "PIP_FIND_LINKS", "PIP_DEFAULT_TIMEOUT", "PIP_CONFIG_FILE")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    env["PATH"] = os.pathsep.join(
        part for part in env["PATH"].split(os.pathsep) if not part.startswith(str(ROOT))
    )
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=tmp_path / "newcomer",
        env={**env, "LANG": "C.UTF-8", "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.splitlines()[-1] == "Привет! 🙂"
    assert "getgpt demo: server with the echo backend on http://127.0.0.1:" in done.stderr
    assert (tmp_path / "newcomer" / "getgpt" / ".venv" / "bin" / "getgpt").exists()
    assert "PYTHONPATH" not in env  # the demo ran from the venv's install, not from this checkout


def test_the_client_example_prints_what_its_comments_say(tmp_path: Path) -> None:
    text = section(README.read_text(encoding="utf-8"), "## The client")
    example = next(code for lang, code in FENCE.findall(text) if lang == "python")
    assert 'getgpt.Client("http://127.0.0.1:8000/")' in example
    with serve(create_app(ServerConfig())) as url:
        script = example.replace("http://127.0.0.1:8000/", url)
        done = subprocess.run(
            [sys.executable, "-c", script],
            env=locale_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    # "Hi", then why it ended ("stop"), then the whole reply and its finish reason: no "Histop None".
    assert done.stdout == "Hi\nstop\nHi stop\n"
