"""The shared rolling window: exact in every window, the same on SQLite, PostgreSQL and Redis."""

import threading
import time

import pytest

from optin.db import Database
from optin.limiter import RedisWindows, SqlWindows
from optin.settings import RateLimit


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres),
                        pytest.param("redis", marks=pytest.mark.redis)])
def windows(request, tmp_path):
    if request.param == "redis":
        import redis
        client = redis.Redis.from_url(request.getfixturevalue("redis_url"))
        yield RedisWindows(client)
        client.close()
        return
    yield from sql_windows_on(request, tmp_path)


def sql_windows_on(request, tmp_path):
    url = f"sqlite:///{tmp_path}/w.db" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    db = Database(url)
    db.migrate()
    yield SqlWindows(db)
    db.dispose()


def test_the_limit_holds_and_says_how_long_to_wait(windows):
    limit = RateLimit(3, 2)
    granted = [windows.acquire("k", limit) for _ in range(3)]
    assert all(granted)
    refused = windows.acquire("k", limit)
    assert not refused and 1.5 < refused.wait <= 2.0
    assert windows.acquire("other", limit), "scopes are independent"


def test_a_slot_counts_until_its_answer_arrives_then_one_window_more(windows):
    limit = RateLimit(1, 0.5)
    verdict = windows.acquire("k", limit, hold=30)
    time.sleep(0.6)
    assert not windows.acquire("k", limit), "an unanswered request still counts"
    windows.finish(verdict.slot)
    assert not windows.acquire("k", limit), "and for one window after its answer"
    time.sleep(0.6)
    assert windows.acquire("k", limit)


def test_a_cancelled_slot_frees_its_place(windows):
    limit = RateLimit(1, 60)
    verdict = windows.acquire("k", limit, hold=5)
    windows.cancel(verdict.slot)
    assert windows.acquire("k", limit)


def test_a_block_stops_everyone_and_strikes_grow(windows):
    windows.block("k", 0.5)
    windows.block("k", 0.5)
    assert windows.strikes("k") == 2
    refused = windows.acquire("k", RateLimit(100, 1), blockable=True)
    assert not refused and refused.wait <= 0.5
    assert windows.acquire("k", RateLimit(100, 1)), "blocks are for ConvertKit's scope; visitors' windows ignore them"
    time.sleep(0.55)
    assert windows.acquire("k", RateLimit(100, 1), blockable=True)
    windows.clear_strikes("k")
    assert windows.strikes("k") == 0


def test_many_threads_at_once_never_get_more_than_the_limit(windows):
    limit = RateLimit(10, 60)
    grants = []

    def hammer():
        for _ in range(8):
            if windows.acquire("crowd", limit):
                grants.append(1)

    threads = [threading.Thread(target=hammer) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(grants) == 10


def test_sweeping_forgets_old_requests_of_every_scope(windows):
    for visitor in range(5):
        windows.acquire(f"ip:{visitor}", RateLimit(10, 0.2))
    time.sleep(0.3)
    assert windows.sweep() == (5 if isinstance(windows, SqlWindows) else 0)
    assert windows.acquire("ip:0", RateLimit(1, 0.2)), "a swept scope starts afresh"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sql_windows(request, tmp_path):
    yield from sql_windows_on(request, tmp_path)


def test_sweeping_a_launch_goes_batch_by_batch_and_keeps_live_windows(sql_windows, monkeypatch):
    monkeypatch.setattr("optin.limiter.SWEEP_BATCH", 3)
    for visitor in range(10):
        sql_windows.acquire(f"ip:{visitor}", RateLimit(10, 0.2))
    time.sleep(0.3)
    sql_windows.acquire("ip:live", RateLimit(1, 60))
    transactions = []
    open_transaction = sql_windows.db.transaction

    def counted(*args, **kwargs):
        transactions.append(args)
        return open_transaction(*args, **kwargs)

    monkeypatch.setattr(sql_windows.db, "transaction", counted)
    assert sql_windows.sweep() == 10
    assert len(transactions) == 4, "3 + 3 + 3 + 1 rows, each batch its own commit: writers wait for one batch only"
    assert not sql_windows.acquire("ip:live", RateLimit(1, 60)), "a window still open is kept"
