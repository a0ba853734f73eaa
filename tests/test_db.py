"""The SQLite write path: plain sqlite3 transactions that behave as SQLAlchemy's did, and checkpoints off it."""

import threading

import pytest
import sqlalchemy as sa

from optin.db import Database

INSERT = sa.text("INSERT INTO used_nonces (nonce, expires_at) VALUES (:n, :e)")


@pytest.fixture
def db(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    database.migrate()
    yield database
    database.dispose()


def count(db) -> int:
    with db.read() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM used_nonces")).scalar()


def test_a_failed_transaction_leaves_nothing_behind(db):
    with pytest.raises(RuntimeError), db.transaction() as conn:
        conn.execute(INSERT, {"n": "a", "e": 1.0})
        raise RuntimeError("boom")
    with db.transaction() as conn:
        conn.execute(INSERT, {"n": "b", "e": 1.0})
    assert count(db) == 1


def test_database_errors_are_sqlalchemys_and_never_carry_the_values(db):
    with db.transaction() as conn:
        conn.execute(INSERT, {"n": "someone@example.com", "e": 1.0})
    with pytest.raises(sa.exc.IntegrityError) as raised, db.transaction() as conn:
        conn.execute(INSERT, {"n": "someone@example.com", "e": 1.0})
    assert "someone@example.com" not in str(raised.value)
    assert count(db) == 1


def test_nested_transactions_are_one_commit(db):
    with pytest.raises(RuntimeError), db.transaction() as outer:
        outer.execute(INSERT, {"n": "a", "e": 1.0})
        with db.transaction() as inner:
            inner.execute(INSERT, {"n": "b", "e": 1.0})
        raise RuntimeError("the outer step fails after the inner one")
    assert count(db) == 0


def test_rows_read_by_position_and_by_name(db):
    with db.transaction() as conn:
        row = conn.execute(sa.text("INSERT INTO used_nonces (nonce, expires_at) VALUES ('x', 2.5) RETURNING *")).one()
        assert row[0] == "x" and row._mapping == {"nonce": "x", "expires_at": 2.5}
        assert conn.execute(sa.text("SELECT nonce FROM used_nonces")).scalars().all() == ["x"]
        assert conn.execute(sa.text("SELECT nonce FROM used_nonces WHERE nonce = 'y'")).scalar() is None
        assert conn.execute(sa.text("DELETE FROM used_nonces")).rowcount == 1


def test_threads_write_side_by_side_without_losing_a_row(db):
    def write(prefix):
        for n in range(50):
            with db.transaction() as conn:
                conn.execute(INSERT, {"n": f"{prefix}{n}", "e": 1.0})

    threads = [threading.Thread(target=write, args=(f"t{i}-",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert count(db) == 200


def test_the_worker_checkpoint_empties_the_log_and_commits_leave_it_to_the_worker(db):
    for n in range(100):
        with db.transaction() as conn:
            conn.execute(INSERT, {"n": f"n{n}", "e": 1.0})
    with db.transaction() as conn:  # a write connection leaves checkpoints to the worker until ~40 MB
        assert conn.execute(sa.text("PRAGMA wal_autocheckpoint")).scalar() == 10_000
    logged, copied = db.checkpoint()
    assert logged > 0 and copied == logged
    assert count(db) == 100


@pytest.mark.postgres
def test_postgres_clock_is_read_once_a_transaction(postgres_url):
    database = Database(postgres_url)
    statements = []
    sa.event.listen(database.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    try:
        with database.transaction() as conn:
            first = database.now(conn)
            with database.transaction() as joined:  # a later step of the same post
                assert database.now(joined) == first
        with database.transaction() as conn:
            assert database.now(conn) > first
        with database.read() as conn:
            assert database.now(conn) > first
        assert sum("clock_timestamp" in s for s in statements) == 3
    finally:
        database.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def nonces(request, tmp_path):
    from optin.nonces import SqlNonces

    url = f"sqlite:///{tmp_path}/n.db" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    database = Database(url)
    database.migrate()
    yield SqlNonces(database)
    database.dispose()


def test_used_nonces_are_forgotten_once_their_tokens_expire_and_kept_until_then(nonces, monkeypatch):
    """Without the expiry the table holds every token ever posted and grows forever."""
    monkeypatch.setattr("optin.nonces.random.random", lambda: 0.0)  # this post is the one that tidies up
    with nonces.db.transaction() as conn:
        now = nonces.db.now(conn)
        for n in range(250):  # more than one post forgets at once
            conn.execute(INSERT, {"n": f"old{n}", "e": now - 60})
        for n in range(3):
            conn.execute(INSERT, {"n": f"live{n}", "e": now + 3600})

    assert nonces.use("fresh-1", 3600) and nonces.use("fresh-2", 3600)
    with nonces.db.read() as conn:
        left = conn.execute(sa.text("SELECT nonce FROM used_nonces ORDER BY nonce")).scalars().all()
    assert left == ["fresh-1", "fresh-2", "live0", "live1", "live2"]
    assert not any(nonces.use(f"live{n}", 3600) for n in range(3)), "a token still valid stays single-use"
