"""The scale-out set-up: PostgreSQL schema applied by the Procfile's release line, Redis for shared counters."""

import subprocess
import sys
from pathlib import Path

import pytest
import requests
from support import ROOT, extract_token, wait_until

from optin.db import MIGRATIONS

pytestmark = pytest.mark.postgres


def run_flask(env, *args):
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", *args],
        env={**env, "PATH": ""},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_release_migrates_then_web_and_worker_deliver(postgres_url, redis_url, env, ck, gunicorn, worker):
    env = {**env, "DATABASE_URL": postgres_url, "REDIS_URL": redis_url}
    before = run_flask(env, "signups", "list")
    assert before.returncode != 0 and "python -m optin.db migrate" in before.stderr
    release_line = (ROOT / "Procfile").read_text().split("release:", 1)[1].splitlines()[0].split()
    release = subprocess.run(
        release_line,
        env={**env, "PATH": str(Path(sys.executable).parent)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    every = list(range(1, len(MIGRATIONS) + 1))
    assert release.returncode == 0 and f"applied schema versions {every}" in release.stdout
    again = subprocess.run(
        [sys.executable, "-m", "optin.db", "migrate"],
        env={"DATABASE_URL": postgres_url},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "up to date" in again.stdout
    ck.configure(api_key="wrong-for-now")  # the web attempt fails, so the worker has to deliver
    web = gunicorn(env)
    session = requests.Session()
    token = extract_token(session.get(f"{web.url}/f/simple", timeout=5).text)
    answer = session.post(
        f"{web.url}/f/simple",
        data={"token": token, "email": "pg@example.com"},
        headers={"Accept": "application/json"},
        timeout=5,
    )
    assert answer.json()["ok"] is True
    ck.configure(api_key=env["CONVERTKIT_API_KEY"])
    run_flask(env, "signups", "retry", "--paused")
    worker(env)
    wait_until(lambda: "delivered: 1" in run_flask(env, "signups", "list").stdout, 30, "not delivered")
    assert [r["json"]["email"] for r in ck.requests(path_contains="forms/4243/subscribe") if r["status"] == 200] == [
        "pg@example.com"
    ]
