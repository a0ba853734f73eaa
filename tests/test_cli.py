"""The operator's commands."""

import csv
import io
import os
import subprocess
import sys

import pytest
from support import ROOT, record

from optin.db import MIGRATIONS, Database


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def test_list_show_export(runner, services):
    [a, b] = record(services, 2)
    listed = runner.invoke(args=["signups", "list"])
    assert listed.exit_code == 0 and "pending: 2" in listed.output
    assert "person0@example.com" not in listed.output  # listings are for screens and logs: masked
    shown = runner.invoke(args=["signups", "show", str(a.id)])
    assert "person0@example.com" in shown.output and "pending" in shown.output
    exported = runner.invoke(args=["signups", "export", "--status", "pending"])
    rows = list(csv.DictReader(io.StringIO(exported.output)))
    assert [r["email"] for r in rows] == ["person0@example.com", "person1@example.com"]
    assert runner.invoke(args=["signups", "show", "999"]).exit_code != 0


def test_export_defuses_spreadsheet_formulas(runner, services):
    services.signups.record(
        form_slug="simple",
        convertkit_form_id=4243,
        email="x@example.com",
        first_name='=HYPERLINK("http://evil")',
        fields={},
        tags=(),
        ip_hash=None,
    )
    rows = list(csv.DictReader(io.StringIO(runner.invoke(args=["signups", "export"]).output)))
    assert rows[0]["first_name"].startswith("'=")


def test_retry_failed_and_paused(runner, services):
    import time

    [signup] = record(services, 1)
    [claimed] = services.signups.claim("w", lease_seconds=60)
    services.signups.mark_retry(claimed, "w", at=time.time(), next_attempt_at=time.time(), error="x", failed=True)
    services.delivery.pauses.pause("account", "401")
    result = runner.invoke(args=["signups", "retry", "--failed", "--paused"])
    assert "lifted 1 pause" in result.output and "queued 1 signup" in result.output
    assert services.signups.get(signup.id).status == "pending" and services.delivery.pauses.active(fresh=True) == []
    assert runner.invoke(args=["signups", "retry"]).exit_code != 0


def test_purge(runner, services):
    record(services, 2)
    result = runner.invoke(args=["signups", "purge", "PERSON0@example.com", "--yes"])
    assert "deleted 1 signup" in result.output
    assert [s.email for s in services.signups.find()] == ["person1@example.com"]


def test_check_names_missing_forms(runner, ck):
    result = runner.invoke(args=["check"])
    assert result.exit_code != 0
    assert "ghost: ConvertKit form 999999 missing!" in result.output
    assert "launch: ConvertKit form 4242 ok" in result.output


def run_flask(args, *, cwd, env=None):
    """`flask …` as an operator types it: no --app and no FLASK_APP unless the files in `cwd` provide one."""
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CONVERTKIT_", "FLASK_")) and k not in ("DATABASE_URL", "SECRET_KEY")
    }
    return subprocess.run(
        [sys.executable, "-m", "flask", *args],
        cwd=cwd,
        env={**inherited, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def schema_version(url: str) -> int:
    db = Database(url)
    try:
        return db.version()
    finally:
        db.dispose()


def test_migrate_is_the_release_step(runner, tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path}/fresh.sqlite3"
    monkeypatch.setenv("DATABASE_URL", url)
    result = runner.invoke(args=["migrate"])
    assert result.exit_code == 0, result.output
    assert f"applied schema versions {list(range(1, len(MIGRATIONS) + 1))}" in result.output
    assert schema_version(url) == len(MIGRATIONS)
    assert "schema is up to date" in runner.invoke(args=["migrate"]).output
    monkeypatch.setenv("DATABASE_URL", "mysql://nope")
    refused = runner.invoke(args=["migrate"])
    assert refused.exit_code != 0 and "DATABASE_URL must be" in refused.output


def test_flask_finds_the_app_without_app_option(env):
    # .flaskenv names it (FLASK_APP=app); Flask's own fallback, an importable `app` module, agrees.
    result = run_flask(["signups", "list"], cwd=ROOT / "docs", env=env)
    assert result.returncode == 0, result.stderr
    assert "pending: 0" in result.stdout


def test_flask_reads_dotenv_and_migrates_without_the_app_secrets(tmp_path):
    url = f"sqlite:///{tmp_path}/from-dotenv.sqlite3"
    (tmp_path / ".env").write_text(f"DATABASE_URL={url}\n")
    result = run_flask(["migrate"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert schema_version(url) == len(MIGRATIONS)


def test_flask_migrate_brings_a_postgres_schema_up_to_date(postgres_url, env):
    # The app itself refuses to start on a schema behind the code; `flask migrate` must not need it to.
    env = {**env, "DATABASE_URL": postgres_url}
    assert run_flask(["signups", "list"], cwd=ROOT, env=env).returncode != 0
    result = run_flask(["--app", "app", "migrate"], cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr
    assert schema_version(postgres_url) == len(MIGRATIONS)
    assert run_flask(["signups", "list"], cwd=ROOT, env=env).returncode == 0
