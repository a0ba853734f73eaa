"""/healthz: what an uptime monitor sees."""

import sqlalchemy as sa

from tests.integration.test_delivery import record


def test_backlog_and_oldest_pending(client, services):
    record(services, 3)
    report = client.get("/healthz").json
    assert report["backlog"] == 3 and report["oldest_pending_seconds"] >= 0 and report["ok"] is True


def test_signups_due_with_no_worker_alive_is_a_503(client, services):
    record(services, 1)
    with services.db.transaction() as conn:
        conn.execute(sa.text("UPDATE signups SET next_attempt_at = next_attempt_at - 600,"
                             " created_at = created_at - 600"))
    response = client.get("/healthz")
    assert response.status_code == 503
    assert "no worker" in response.json["problems"][0]
    with services.db.transaction() as conn:  # a worker's heartbeat clears it
        conn.execute(sa.text("INSERT INTO heartbeats (worker, seen_at) VALUES ('w', :t)"),
                     {"t": services.db.now(conn)})
    assert client.get("/healthz").status_code == 200


def test_a_pause_is_reported_with_its_reason(client, services):
    services.delivery.pauses.pause("form:4242", "ConvertKit has no form 4242 (404)")
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json["paused"][0]["scope"] == "form:4242"
