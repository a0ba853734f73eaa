"""/healthz: what an uptime monitor sees."""

import sqlalchemy as sa
from support import extract_token, record


def test_backlog_and_oldest_pending(client, services):
    record(services, 3)
    report = client.get("/healthz").json
    assert report["backlog"] == 3 and report["oldest_pending_seconds"] >= 0 and report["ok"] is True


def test_signups_due_with_no_worker_alive_is_a_503(client, services):
    record(services, 1)
    with services.db.transaction() as conn:
        conn.execute(
            sa.text("UPDATE signups SET next_attempt_at = next_attempt_at - 600, created_at = created_at - 600")
        )
    response = client.get("/healthz")
    assert response.status_code == 503
    assert "no worker" in response.json["problems"][0]
    with services.db.transaction() as conn:  # a worker's heartbeat clears it
        conn.execute(sa.text("INSERT INTO heartbeats (worker, seen_at) VALUES ('w', :t)"), {"t": services.db.now(conn)})
    assert client.get("/healthz").status_code == 200


def test_a_pause_is_reported_with_its_reason(client, services):
    services.delivery.pauses.pause("form:4242", "ConvertKit has no form 4242 (404)")
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json["paused"][0]["scope"] == "form:4242"


def test_storage_that_cannot_take_a_write_is_a_503_naming_the_cause(client, services):
    """A read-only or full disk refuses every signup (503): the monitor must see it too."""
    raw = services.db._sqlite_connection()  # this thread's writer, the one /healthz and form posts use here
    raw.execute("PRAGMA query_only = ON")  # what a read-only file or mount does to every write
    try:
        response = client.get("/healthz")
        assert response.status_code == 503 and response.is_json
        assert response.json["ok"] is False
        assert response.json["problems"][0].startswith("storage cannot take a write: attempt to write a readonly")
        token = extract_token(client.get("/f/simple").get_data(as_text=True))
        signup = client.post("/f/simple", data={"token": token, "email": "a@example.com"})
        assert signup.status_code == 503
    finally:
        raw.execute("PRAGMA query_only = OFF")
    assert client.get("/healthz").status_code == 200


def test_a_database_outage_is_a_503_in_json_for_the_monitor(client, services, tmp_path):
    services.db.engine.dispose()
    services.db.engine = sa.create_engine(f"sqlite:///{tmp_path}/missing/nowhere/db.sqlite3")
    response = client.get("/healthz", headers={"Accept": "text/html"})  # what uptime monitors send, or nothing
    assert response.status_code == 503 and response.is_json
    assert response.json["ok"] is False and "database unavailable" in response.json["problems"][0]
    services.db.engine.dispose()


def test_the_write_check_leaves_nothing_behind(client, services):
    for _ in range(3):
        assert client.get("/healthz").status_code == 200
    with services.db.read() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM rate_events WHERE scope = 'healthz'")).scalar() == 0
