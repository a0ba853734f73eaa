"""The pinned requirements (`make lock`) and their check (`make lock-check`, run by CI)."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT

FILES = [
    "pyproject.toml",
    "README.md",
    "requirements.in",
    "requirements.txt",
    "requirements-dev.txt",
    ".python-version",
    "bin/lock",
]
UV = Path(sys.executable).parent / "uv"


@pytest.fixture
def checkout(tmp_path):
    for name in FILES:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        shutil.copy2(ROOT / name, tmp_path / name)
    return tmp_path


def lock_check(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(root / "bin/lock"), "--check"],
        env={**os.environ, "UV": str(UV)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_lock_check_passes_on_the_committed_files_and_catches_drift(checkout):
    clean = lock_check(checkout)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    pyproject = checkout / "pyproject.toml"
    pyproject.write_text(re.sub(r'\n\s*"redis>=[^\n]*', "", pyproject.read_text()))  # a dependency dropped
    drifted = lock_check(checkout)
    assert drifted.returncode == 1
    assert "run `make lock`" in drifted.stderr
    assert "-redis==" in drifted.stdout  # the diff names what moved


def test_the_buildpack_file_installs_the_project_on_the_tested_pins():
    pins = dict(re.findall(r"^([a-z0-9._-]+)==(\S+)", (ROOT / "requirements.txt").read_text(), re.M))
    dev_pins = dict(re.findall(r"^([a-z0-9._-]+)==(\S+)", (ROOT / "requirements-dev.txt").read_text(), re.M))
    assert re.search(r"^\.\s", (ROOT / "requirements.txt").read_text(), re.M)  # the project itself
    assert pins and all(dev_pins[name] == version for name, version in pins.items())
    assert "--hash=sha256:" in (ROOT / "requirements-dev.txt").read_text()
