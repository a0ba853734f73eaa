"""Shared fixtures: the app with a real sandbox on loopback, real gunicorn and worker processes, and the
PostgreSQL and Redis servers when the machine has them (CI must: OPTIN_REQUIRE_SERVICES=1 turns skips into errors)."""

from __future__ import annotations

import os
import sys
import uuid

import pytest
import requests
from support import (
    API_KEY,
    API_SECRET,
    FORMS_TOML,
    POSTGRES_URL,
    REDIS_URL,
    SECRET_KEY,
    extract_token,
    free_port,
    skip_or_fail,
    wait_until,
)

from bench.processes import ChildProcess
from convertkit.sandbox import SandboxServer


@pytest.fixture(scope="session")
def sandbox():
    with SandboxServer(api_key=API_KEY, api_secret=API_SECRET) as server:
        yield server


@pytest.fixture
def ck(sandbox):
    """The sandbox, emptied and with its real key, for one test."""
    sandbox.reset()
    sandbox.configure(api_key=API_KEY, rate_limit="120/60", latency=0)
    yield sandbox
    sandbox.reset()


@pytest.fixture
def forms_file(tmp_path):
    path = tmp_path / "forms.toml"
    path.write_text(FORMS_TOML)
    return path


@pytest.fixture
def env(ck, forms_file, tmp_path):
    """Environment variables for an app that talks to the sandbox; tests add or change entries."""
    return {
        "SECRET_KEY": SECRET_KEY,
        "CONVERTKIT_API_KEY": API_KEY,
        "CONVERTKIT_API_SECRET": API_SECRET,
        "CONVERTKIT_API_URL": ck.api_url,
        "CONVERTKIT_TIMEOUT": "2",
        "FORMS_FILE": str(forms_file),
        "DATABASE_URL": f"sqlite:///{tmp_path}/signups.sqlite3",
        "MIN_FILL_SECONDS": "0",
        "TRUSTED_PROXY_HOPS": "0",
        "RATE_LIMIT_PER_IP": "1000/60",
        "RATE_LIMIT_PER_EMAIL": "1000/60",
        "SHOW_INDEX": "1",
    }


@pytest.fixture
def make_app(env):
    from app import create_app

    apps = []

    def make(**overrides):
        app = create_app({**env, **{k: str(v) for k, v in overrides.items()}})
        app.config["TESTING"] = True
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["optin"].db.dispose()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def services(app):
    return app.extensions["optin"]


@pytest.fixture
def post_form(client):
    """Fill in and post a form the way a browser does: GET for a token, then POST."""

    def post(slug="launch", data=None, *, json_mode=False, page="f", **kwargs):
        token = extract_token(client.get(f"/{page}/{slug}").get_data(as_text=True))
        body = {"token": token, **(data or {})}
        headers = {"Accept": "application/json"} if json_mode else {}
        return client.post(f"/{page}/{slug}", data=body, headers=headers, **kwargs)

    return post


# Real services -----------------------------------------------------------------------------------------------


@pytest.fixture
def postgres_url():
    """A fresh schema in the test database, so tests never see each other's rows."""
    import sqlalchemy as sa

    schema = "t_" + uuid.uuid4().hex[:12]
    base = POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        engine = sa.create_engine(base, connect_args={"connect_timeout": 3})
        with engine.begin() as conn:
            conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    except Exception as exc:  # no server here
        skip_or_fail(f"PostgreSQL is not reachable at {POSTGRES_URL}: {type(exc).__name__}")
    sep = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    engine.dispose()


@pytest.fixture
def redis_url():
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
        client.ping()
    except Exception as exc:
        skip_or_fail(f"Redis is not reachable at {REDIS_URL}: {type(exc).__name__}")
    client.flushdb()
    yield REDIS_URL
    client.flushdb()
    client.close()


# Real processes ----------------------------------------------------------------------------------------------


@pytest.fixture
def processes(tmp_path):
    """Start a child process (gunicorn, a worker) on this test's settings; all are stopped after the test."""
    started: list[ChildProcess] = []

    def start(args, env, name):
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("CONVERTKIT_", "DATABASE_URL"))}
        full_env.update(env)
        full_env["PYTHONUNBUFFERED"] = "1"
        process = ChildProcess(args, full_env, tmp_path / f"{name}-{len(started)}.log")
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop(timeout=10)


@pytest.fixture
def gunicorn(processes):
    """Start the app the way the Procfile does (gunicorn app:app with gunicorn.conf.py) on a free port."""

    def start(env, *, workers: int = 2, host: str = "127.0.0.1"):
        port = free_port()
        full = {**env, "HOST": host, "PORT": str(port), "WEB_CONCURRENCY": str(workers), "ACCESS_LOG": "0"}
        process = processes([sys.executable, "-m", "gunicorn", "app:app"], full, "gunicorn")
        url = f"http://{host}:{port}"

        def healthy():
            if process.proc.poll() is not None:
                raise AssertionError(f"gunicorn exited:\n{process.output()}")
            try:
                return requests.get(url + "/healthz", timeout=1).status_code in (200, 503)
            except requests.RequestException:
                return False

        wait_until(healthy, 30, f"gunicorn did not start:\n{process.output()}")
        process.url = url
        return process

    return start


@pytest.fixture
def worker(processes):
    """Start `flask --app app worker` as its own process, as the Procfile's worker line does."""

    def start(env, *, poll: float = 0.1, threads: int | None = None):
        args = [sys.executable, "-m", "flask", "--app", "app", "worker", "--poll", str(poll)]
        return processes(args + (["--threads", str(threads)] if threads else []), env, "worker")

    return start
