"""What every benchmark needs: the services started as the Procfile starts them, tokens, wrk, and a table.

Everything runs on loopback, every process started here is stopped here (by its own process group), and
every wait is bounded, so a benchmark can never hang a terminal or leave a server behind.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import requests

from bench.processes import ROOT, ChildProcess

BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
WRK_SCRIPT = BENCH / "wrk.lua"
HOST = "127.0.0.1"
SLUG = "bench"
FORM_ID = 4242  # a form the sandbox knows
SECRET_KEY = "bench-only-secret-key-not-for-production"
FORMS_TOML = f"""
[forms.{SLUG}]
convertkit_form_id = {FORM_ID}
title = "Benchmark form"
description = "Only for bench/."
"""
TOKEN = re.compile(r'name="token" type="hidden" value="([^"]+)"')
# Variables of the caller's shell that would point the services at something other than this run's.
FOREIGN_ENV = ("CONVERTKIT_", "DATABASE_URL", "REDIS_URL", "FORMS_FILE", "SECRET_KEY", "HOST", "PORT")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile: no interpolation, so p99 of 100 samples is the 99th, a real observation."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def median(values: list[float]) -> float | None:
    return percentile(values, 50)


# Processes -------------------------------------------------------------------------------------------------


class Service(ChildProcess):
    """One of a run's processes, named, logging to `<name>.log` in the run's folder."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path):
        self.name = name
        super().__init__(argv, env, log_dir / f"{name}.log", append=True)

    def output(self, tail: int | None = 3000) -> str:
        return super().output(tail)

    def stop(self, timeout: float = 20) -> int:
        return super().stop(timeout)


class Services:
    """The processes of one run, stopped together (newest first) however the run ends."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        self.running: list[Service] = []

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> Service:
        service = Service(name, argv, env, self.log_dir)
        self.running.append(service)
        return service

    def stop(self, service: Service) -> None:
        service.stop()
        self.running.remove(service)

    def __enter__(self) -> Services:
        return self

    def __exit__(self, *exc) -> None:
        for service in reversed(self.running):
            service.stop()
        self.running.clear()


def base_env() -> dict[str, str]:
    """The caller's environment without anything that names another database, key or port; venv first on PATH,
    so `gunicorn` and `flask` below are the project's, as the Procfile expects."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_ENV)}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Databases:
    """Where a run's processes keep their data: SQLite files in the run's folder (the default: one machine,
    nothing to run), or, with a PostgreSQL URL, a fresh schema per name in that database, migrated as the
    Procfile's release step would, and dropped when the run ends."""

    def __init__(self, workdir: Path, postgres_url: str | None = None):
        self.workdir = workdir
        self.postgres_url = postgres_url
        self.kind = "postgresql" if postgres_url else "sqlite"
        self._schemas: list[str] = []
        self._engine = None
        if postgres_url:
            import sqlalchemy as sa

            self._engine = sa.create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://", 1))

    def url(self, name: str) -> str:
        if not self.postgres_url or self._engine is None:  # the one comes with the other
            return f"sqlite:///{self.workdir / f'{name}.sqlite3'}"
        from optin.db import Database

        schema = f"bench_{name}_{uuid.uuid4().hex[:8]}"
        with self._engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        self._schemas.append(schema)
        url = f"{self.postgres_url}{'&' if '?' in self.postgres_url else '?'}options=-csearch_path%3D{schema}"
        database = Database(url)
        try:
            database.migrate()
        finally:
            database.dispose()
        return url

    def __enter__(self) -> Databases:
        return self

    def __exit__(self, *exc) -> None:
        if self._engine is None:
            return
        with self._engine.begin() as conn:
            for schema in self._schemas:
                conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        self._engine.dispose()


def app_env(
    workdir: Path, sandbox_url: str, *, rate_limit: str, port: int, database_url: str | None = None
) -> dict[str, str]:
    """The app's settings for a run: env vars only, like a platform; abuse limits opened wide, as all traffic
    comes from one loopback address and tokens are posted as soon as they are fetched. The database is a SQLite
    file in `workdir` unless `database_url` names another."""
    forms = workdir / "forms.toml"
    forms.write_text(FORMS_TOML, encoding="utf-8")
    return base_env() | {
        "SECRET_KEY": SECRET_KEY,
        "CONVERTKIT_API_KEY": "sandbox_api_key",
        "CONVERTKIT_API_SECRET": "sandbox_api_secret",
        "CONVERTKIT_API_URL": f"{sandbox_url}/v3/",
        "CONVERTKIT_RATE_LIMIT": rate_limit,
        "DATABASE_URL": database_url or f"sqlite:///{workdir / 'bench.sqlite3'}",
        "FORMS_FILE": str(forms),
        "MIN_FILL_SECONDS": "0",
        "TRUSTED_PROXY_HOPS": "0",
        "RATE_LIMIT_PER_IP": "100000/60",
        "RATE_LIMIT_PER_EMAIL": "100/60",
        "HOST": HOST,
        "PORT": str(port),
        "ACCESS_LOG": "0",
    }


def wait_for(url: str, service: Service, timeout: float, *, ok=(200,), interval: float = 0.02) -> float:
    """Poll until `url` answers with an expected status; seconds since the service was started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not service.alive():
            raise RuntimeError(f"{service.name} exited:\n{service.output()}")
        try:
            if requests.get(url, timeout=2).status_code in ok:
                return time.monotonic() - service.started
        except requests.RequestException:
            pass
        time.sleep(interval)
    raise RuntimeError(f"{service.name} did not answer {url} within {timeout:.0f} s:\n{service.output()}")


def start_sandbox(services: Services, *, rate_limit: str, latency: float) -> Service:
    port = free_port()
    sandbox = services.start(
        "sandbox",
        [
            sys.executable,
            "-m",
            "convertkit.sandbox",
            "--host",
            HOST,
            "--port",
            str(port),
            "--rate-limit",
            rate_limit,
            "--latency",
            str(latency),
        ],
        base_env(),
    )
    sandbox.url = f"http://{HOST}:{port}"
    wait_for(sandbox.url + "/_sandbox/config", sandbox, 30)
    return sandbox


def start_web(
    services: Services, env: dict[str, str], *, app: str = "app:app", name: str = "web", ready_path: str = "/healthz"
) -> tuple[Service, float]:
    """`gunicorn app:app` from the repository root, so gunicorn.conf.py applies; returns (service, start-up s)."""
    web = services.start(name, [shutil.which("gunicorn", path=env["PATH"]) or "gunicorn", app], env)
    web.url = f"http://{HOST}:{env['PORT']}"
    return web, wait_for(web.url + ready_path, web, 60)


def start_worker(services: Services, env: dict[str, str]) -> Service:
    return services.start("worker", [shutil.which("flask", path=env["PATH"]) or "flask", "--app", "app", "worker"], env)


# Clients ---------------------------------------------------------------------------------------------------


def form_url(web: Service) -> str:
    return f"{web.url}/f/{SLUG}"


def token_in(page: str) -> str:
    match = TOKEN.search(page)
    if match is None:
        raise RuntimeError("the form page holds no token")
    return match[1]


def fetch_tokens(url: str, count: int, *, clients: int = 16) -> list[str]:
    """GET the form `count` times, as that many visitors would, and keep each page's token."""

    def fetch(n: int) -> list[str]:
        with requests.Session() as session:
            return [token_in(session.get(url, timeout=10).text) for _ in range(n)]

    shares = [count // clients + (1 if i < count % clients else 0) for i in range(clients)]
    with ThreadPoolExecutor(clients) as pool:
        return [token for batch in pool.map(fetch, shares) for token in batch]


class SlowClients:
    """`count` connections that trickle a request a byte a second, in a thread, for as long as the block runs:
    half send a head that never ends, half a declared body that never arrives. One the server closes (its
    408 after REQUEST_READ_SECONDS) is opened again at once, so `count` stay open throughout."""

    HEAD = b"GET /f/" + SLUG.encode() + b" HTTP/1.1\r\nHost: bench\r\nX-Slow: "
    BODY = (
        b"POST /f/" + SLUG.encode() + b" HTTP/1.1\r\nHost: bench\r\nContent-Type: "
        b"application/x-www-form-urlencoded\r\nContent-Length: 10000\r\n\r\nemail="
    )

    def __init__(self, url: str, count: int, *, byte_every: float = 1.0):
        host, port = urlsplit(url).hostname, urlsplit(url).port
        self.address = (host, port)
        self.count = count
        self.byte_every = byte_every
        self.sockets: list[socket.socket | None] = [None] * count
        self.reopened = 0
        self.failed_opens = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slow-clients", daemon=True)

    def _open(self, n: int) -> None:
        try:
            sock = socket.create_connection(self.address, timeout=2)
            sock.setblocking(False)
            sock.send(self.BODY if n % 2 else self.HEAD)
        except OSError:
            self.failed_opens += 1
            sock = None
        self.sockets[n] = sock

    def _run(self) -> None:
        steps = 10  # each step wakes a tenth of the connections, so each sends a byte every `byte_every`
        step = 0
        while not self._stop.wait(self.byte_every / steps):
            for n in range(step % steps, self.count, steps):
                sock = self.sockets[n]
                try:
                    if sock is None:
                        raise OSError("closed")
                    sock.send(b"a")
                except BlockingIOError:
                    pass
                except OSError:
                    if sock is not None:
                        sock.close()
                        self.reopened += 1
                    self._open(n)
            step += 1

    def __enter__(self) -> SlowClients:
        for n in range(self.count):
            self._open(n)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)
        for sock in self.sockets:
            if sock is not None:
                sock.close()


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(
    url: str,
    *,
    connections: int,
    duration: float,
    threads: int = 2,
    args: tuple[str, ...] = ("get",),
    log: Path | None = None,
) -> dict:
    """One wrk run with bench/wrk.lua; returns its WRK_RESULT plus requests per second and latencies in ms."""
    threads = max(1, min(threads, connections))
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration:g}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(WRK_SCRIPT),
        url,
        "--",
        *args,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60, check=False)
    if log is not None:
        with open(log, "a") as f:
            f.write(" ".join(argv) + "\n" + done.stdout + done.stderr + "\n")
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("WRK_RESULT ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    result = json.loads(line.removeprefix("WRK_RESULT "))
    seconds = result["duration_us"] / 1e6
    result["rps"] = result["requests"] / seconds
    result["ok_rps"] = result["ok"] / seconds
    result["latency_ms"] = {k: v / 1000 for k, v in result.pop("latency_us").items()}
    return result


# Reporting -------------------------------------------------------------------------------------------------


@dataclass
class Check:
    """One line of a report: a figure, its budget, and whether it is within it (None: not measured)."""

    figure: str
    value: str
    budget: str
    passed: bool | None

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "FAIL", None: "n/a"}[self.passed]


def print_table(checks: list[Check]) -> None:
    rows = [("figure", "value", "budget", "result")] + [(c.figure, c.value, c.budget, c.verdict) for c in checks]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for n, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def write_json(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"
