"""The operator's commands."""

import csv
import io

import pytest

from tests.integration.test_delivery import record


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
    services.signups.record(form_slug="simple", convertkit_form_id=4243, email="x@example.com",
                            first_name="=HYPERLINK(\"http://evil\")", fields={}, tags=(), ip_hash=None)
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
