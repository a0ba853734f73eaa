"""One way to run a child process, for the benchmarks (bench/common.py) and the tests (tests/conftest.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class ChildProcess:
    """A child process in its own session, so stopping its group stops what it started too (gunicorn's
    workers), with its output in a log file to show when something goes wrong."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path, *, append: bool = False):
        self.log_path = log_path
        self._log = open(log_path, "ab" if append else "wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            argv, env=env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.url = ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self, tail: int | None = None) -> str:
        text = self.log_path.read_text(errors="replace")
        return text if tail is None else text[-tail:]

    def signal(self, sig: int) -> None:
        if self.alive():
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM to the group, SIGKILL if it is still there after `timeout`; the exit status."""
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.proc.wait(10)
        self._log.close()
        return self.proc.returncode
