"""The package as people get it: a wheel built by the project's own build backend (hatchling, through
its PEP 517 hooks, offline) carries every module, ``py.typed``, the web page and the LICENSE; its
metadata says the version ``getgpt.__version__`` says; the version needs no installed metadata; the
CHANGELOG links every version it names to the repository the metadata names."""

from __future__ import annotations

import email
import itertools
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import hatchling.build
import pytest

import getgpt

if sys.version_info >= (3, 11):
    import tomllib
else:  # hatchling brings tomli on 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    # A PEP 517 hook reads the project from the working directory; pytest's monkeypatch.chdir is
    # function-scoped, hence by hand (no other test runs in this process meanwhile).
    before = Path.cwd()
    try:
        os.chdir(ROOT)
        name = hatchling.build.build_wheel(str(out))
    finally:
        os.chdir(before)
    return zipfile.ZipFile(out / name)


def _metadata(wheel: zipfile.ZipFile) -> email.message.Message:
    (path,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    return email.message_from_bytes(wheel.read(path))


def test_the_wheel_carries_every_source_file_py_typed_and_the_web_page(wheel: zipfile.ZipFile) -> None:
    on_disk = {
        path.relative_to(SRC).as_posix()
        for path in (SRC / "getgpt").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }
    assert {"getgpt/py.typed", "getgpt/web/index.html", "getgpt/web/app.js"} <= on_disk
    in_wheel = {n for n in wheel.namelist() if not n.split("/")[0].endswith(".dist-info")}
    assert in_wheel == on_disk


def test_the_wheel_carries_the_license_and_says_what_the_package_is(wheel: zipfile.ZipFile) -> None:
    (licence,) = [n for n in wheel.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
    text = wheel.read(licence).decode()
    assert text == (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "the getgpt authors" in text
    metadata = _metadata(wheel)
    assert metadata["Name"] == "getgpt"
    assert metadata["Version"] == getgpt.__version__
    assert metadata["License-Expression"] == "MIT"
    classifiers = metadata.get_all("Classifier") or []
    assert "Typing :: Typed" in classifiers
    assert any(c.startswith("Programming Language :: Python :: 3.10") for c in classifiers)
    urls = dict(line.split(", ", 1) for line in metadata.get_all("Project-URL") or [])
    assert {"Homepage", "Repository", "Issues", "Changelog", "Documentation"} <= set(urls)
    assert "getgpt" in (metadata["Keywords"] or "").split(",")


def test_the_version_is_written_once_and_read_by_the_build() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert project["project"]["dynamic"] == ["version"]
    assert project["tool"]["hatch"]["version"]["path"] == "src/getgpt/__init__.py"
    assert re.fullmatch(r"\d+\.\d+\.\d+(\.dev\d+|rc\d+)?", getgpt.__version__)


def test_the_version_is_known_from_a_source_checkout_without_installed_metadata() -> None:
    # -S: no site-packages, so no installed getgpt nor its metadata; only the source folder.
    code = f"import sys; sys.path.insert(0, {str(SRC)!r}); import getgpt; print(getgpt.__version__)"
    done = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == getgpt.__version__


def test_the_changelog_links_every_version_it_names_to_the_project_repository() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text()
    repository = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
    versions = re.findall(r"^## \[([^\]]+)\]", changelog, re.MULTILINE)
    assert versions[0] == "Unreleased" and getgpt.__version__ in versions
    links = dict(re.findall(r"^\[([^\]]+)\]: (\S+)$", changelog, re.MULTILINE))
    released = versions[1:]
    assert links["Unreleased"] == f"{repository}/compare/v{released[0]}...HEAD"
    for older, newer in itertools.pairwise(reversed(released)):
        assert links[newer] == f"{repository}/compare/v{older}...v{newer}"
    assert links[released[-1]] == f"{repository}/releases/tag/v{released[-1]}"
