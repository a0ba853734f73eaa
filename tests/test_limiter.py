"""The shared rolling window: exact in every window, the same on SQLite, PostgreSQL and Redis."""

import threading
import time

import pytest

from optin.db import Database
from optin.limiter import RedisWindows, SqlWindows, held
from optin.settings import RateLimit


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("redis", marks=pytest.mark.redis),
    ]
)
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


def test_a_held_slot_ends_by_how_it_was_used(windows):
    """held() owns a slot's life: cancelled when nothing was sent (also on an error), finished when a call went out
    (it counts one window from the answer), left alone when handed over (its new owner ends it)."""
    limit, hold = RateLimit(1, 60), 30
    with held(windows, "unused", limit, hold) as slot:
        assert slot is not None
    with pytest.raises(RuntimeError), held(windows, "failed", limit, hold) as slot:
        raise RuntimeError("before sending")
    assert windows.acquire("unused", limit) and windows.acquire("failed", limit), "nothing sent: room again"
    with held(windows, "sent", limit, hold) as slot:
        assert slot.send(lambda: "answer") == "answer"
        with held(windows, "sent", limit, hold) as full:
            assert full is None
    assert 59 < windows.acquire("sent", limit).wait <= 60, "finished: one window from the answer"
    with held(windows, "handed", limit, hold) as slot:
        slot.hand_over()
    assert windows.acquire("handed", limit).wait > 85, "handed over: still held until its owner ends it"
    stop = threading.Event()
    stop.set()
    with held(windows, "handed", limit, hold, wait=True, stop=stop) as slot:
        assert slot is None, "waiting gives up once told to stop"


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


@pytest.mark.redis
def test_a_signup_that_could_not_be_stored_gives_its_convertkit_slot_back_in_redis(
    make_app, ck, redis_url, monkeypatch
):
    """A Redis window does not roll back with the database: a slot kept by a failed post would hold up the
    next signup until the window ends (here: a minute, the whole limit)."""
    import redis
    import sqlalchemy as sa
    from support import extract_token

    app = make_app(REDIS_URL=redis_url, CONVERTKIT_RATE_LIMIT="1/60")
    services, client = app.extensions["optin"], app.test_client()
    store = services.signups.record

    def refused(**kwargs):
        raise sa.exc.OperationalError("INSERT INTO signups", {}, Exception("disk I/O error"))

    def post(email):
        token = extract_token(client.get("/f/simple").get_data(as_text=True))
        return client.post("/f/simple", data={"token": token, "email": email}, headers={"Accept": "application/json"})

    monkeypatch.setattr(services.signups, "record", refused)
    assert post("lost@example.com").status_code == 503
    window = redis.Redis.from_url(redis_url)
    assert window.zcard(f"optin:window:{{{services.delivery.rate_scope}}}") == 0
    window.close()

    monkeypatch.setattr(services.signups, "record", store)
    assert post("next@example.com").json["ok"]
    assert [r["json"]["email"] for r in ck.requests(path_contains="/subscribe")] == ["next@example.com"]
    assert [s.status for s in services.signups.find()] == ["delivered"]
