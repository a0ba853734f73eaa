"""Rolling-window limits shared by every process and machine: ConvertKit's 120/min per key, and per-IP/per-email.

A slot is held from just before a request is sent until its answer arrives (or, if the process dies, until the
request's time-out), and counts for one window after that. ConvertKit receives each request somewhere inside
that span, so no window of ConvertKit's own can ever see more than the limit, whatever the network does.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

import sqlalchemy as sa

from .db import Database
from .settings import RateLimit

if TYPE_CHECKING:
    import redis


@dataclass(frozen=True)
class Slot:
    scope: str
    id: str


@dataclass(frozen=True)
class Verdict:
    slot: Slot | None
    wait: float  # seconds until a slot may be free, when slot is None

    def __bool__(self) -> bool:
        return self.slot is not None


class Windows(Protocol):
    """The shared rolling windows, wherever they are kept: SqlWindows (the database) or RedisWindows (REDIS_URL)."""

    def acquire(self, scope: str, limit: RateLimit, hold: float = 0.0, *, blockable: bool = False) -> Verdict: ...

    def finish(self, slot: Slot) -> None: ...

    def cancel(self, slot: Slot) -> None: ...

    def sweep(self) -> int: ...

    def block(self, scope: str, seconds: float) -> None: ...

    def strikes(self, scope: str) -> int: ...

    def clear_strikes(self, scope: str) -> None: ...


# Built once: these run on every form post. Old rows are not deleted here but by sweep(), off the request path.
BLOCKED = sa.text("SELECT until FROM rate_blocks WHERE scope = :s")
ENDS = sa.text("SELECT ends_at FROM rate_events WHERE scope = :s AND ends_at > :t ORDER BY ends_at")
# Count and take in one statement: a form post takes two windows, and most posts find room.
TAKE = sa.text(
    "INSERT INTO rate_events (scope, id, ends_at, forget_at) SELECT :s, :id, :e, :f"
    " WHERE (SELECT count(*) FROM rate_events WHERE scope = :s AND ends_at > :t) < :n"
)
FORGET = sa.text(
    "DELETE FROM rate_events WHERE (scope, id) IN (SELECT scope, id FROM rate_events WHERE forget_at < :now LIMIT :n)"
)
SWEEP_BATCH = 1000  # rows per transaction: about 6 ms of SQLite's single writer


class SqlWindows:
    """Sliding log in the database: one row per request, exact, serialised by a per-scope lock."""

    def __init__(self, db: Database):
        self.db = db

    def acquire(self, scope: str, limit: RateLimit, hold: float = 0.0, *, blockable: bool = False) -> Verdict:
        """A slot if the window has room; `blockable` scopes (ConvertKit's) also honour block()."""
        with self.db.transaction(lock="optin.window." + scope) as conn:
            now = self.db.now(conn)
            blocked = conn.execute(BLOCKED, {"s": scope}).scalar() if blockable else None
            if blocked is not None and blocked > now:
                return Verdict(None, blocked - now)
            slot = Slot(scope, secrets.token_hex(8))
            if (
                conn.execute(
                    TAKE,
                    {
                        "s": scope,
                        "id": slot.id,
                        "e": now + hold,
                        "f": now + hold + limit.seconds,
                        "t": now - limit.seconds,
                        "n": limit.count,
                    },
                ).rowcount
                == 1
            ):
                return Verdict(slot, 0.0)
            # Full: room comes when the oldest request that keeps it full leaves the window. (On PostgreSQL a
            # slot may finish between the two statements: then there is room already.)
            ends = conn.execute(ENDS, {"s": scope, "t": now - limit.seconds}).scalars().all()
            full_since = len(ends) - limit.count
            wait = ends[full_since] + limit.seconds - now if full_since >= 0 else 0.0
            return Verdict(None, max(wait, 0.001))

    def finish(self, slot: Slot) -> None:
        """The answer is in: the slot counts from now, not from its time-out."""
        with self.db.transaction() as conn:
            conn.execute(
                sa.text("UPDATE rate_events SET ends_at = :now WHERE scope = :s AND id = :id"),
                {"now": self.db.now(conn), "s": slot.scope, "id": slot.id},
            )

    def sweep(self) -> int:
        """Forget requests older than their window in every scope: one-time visitors' IPs would pile up.

        In batches, each its own transaction: a launch minute leaves tens of thousands of rows, and deleting them
        in one statement held SQLite's writer for half a second (84,000 rows), which every form post waited out.
        """
        swept = 0
        while True:
            with self.db.transaction() as conn:
                deleted = conn.execute(FORGET, {"now": self.db.now(conn), "n": SWEEP_BATCH}).rowcount
            swept += deleted
            if deleted < SWEEP_BATCH:
                return swept

    def cancel(self, slot: Slot) -> None:
        """Nothing was sent after all."""
        with self.db.transaction() as conn:
            conn.execute(
                sa.text("DELETE FROM rate_events WHERE scope = :s AND id = :id"), {"s": slot.scope, "id": slot.id}
            )

    def block(self, scope: str, seconds: float) -> None:
        with self.db.transaction(lock="optin.window." + scope) as conn:
            until = self.db.now(conn) + seconds
            conn.execute(
                sa.text(
                    "INSERT INTO rate_blocks (scope, until, strikes) VALUES (:s, :u, 1)"
                    " ON CONFLICT (scope) DO UPDATE SET until = :u, strikes = rate_blocks.strikes + 1"
                ),
                {"s": scope, "u": until},
            )

    def strikes(self, scope: str) -> int:
        with self.db.read() as conn:
            return int(
                conn.execute(sa.text("SELECT strikes FROM rate_blocks WHERE scope = :s"), {"s": scope}).scalar() or 0
            )

    def clear_strikes(self, scope: str) -> None:
        with self.db.transaction() as conn:
            conn.execute(sa.text("DELETE FROM rate_blocks WHERE scope = :s"), {"s": scope})


# KEYS[1] log (sorted set: member → ends_at), KEYS[2] block (hash: until, strikes); one clock: Redis's TIME.
_ACQUIRE = """
local t = redis.call('TIME'); local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local count, window, hold, id = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
if ARGV[5] == '1' then
  local blocked = tonumber(redis.call('HGET', KEYS[2], 'until') or '0')
  if blocked > now then return {0, tostring(blocked - now)} end
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local n = redis.call('ZCARD', KEYS[1])
if n >= count then
  local e = redis.call('ZRANGE', KEYS[1], n - count, n - count, 'WITHSCORES')
  return {0, tostring(math.max(tonumber(e[2]) + window - now, 0.001))}
end
redis.call('ZADD', KEYS[1], now + hold, id)
redis.call('EXPIRE', KEYS[1], math.ceil(window + hold) + 1)
return {1, '0'}
"""
_FINISH = """
local t = redis.call('TIME'); local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
redis.call('ZADD', KEYS[1], 'XX', now, ARGV[1])
return 1
"""
_BLOCK = """
local t = redis.call('TIME'); local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
redis.call('HSET', KEYS[1], 'until', tostring(now + tonumber(ARGV[1])))
redis.call('HINCRBY', KEYS[1], 'strikes', 1)
redis.call('EXPIRE', KEYS[1], 86400)
return 1
"""


class RedisWindows:
    """The same sliding log in Redis sorted sets, atomic by Lua, for deploys that set REDIS_URL."""

    def __init__(self, client: redis.Redis, prefix: str = "optin:"):
        self.redis = client
        self.prefix = prefix
        self._acquire = client.register_script(_ACQUIRE)
        self._finish = client.register_script(_FINISH)
        self._block = client.register_script(_BLOCK)

    def _keys(self, scope: str) -> list[str]:
        return [f"{self.prefix}window:{{{scope}}}", f"{self.prefix}block:{{{scope}}}"]

    def acquire(self, scope: str, limit: RateLimit, hold: float = 0.0, *, blockable: bool = False) -> Verdict:
        slot_id = secrets.token_hex(8)
        ok, wait = self._acquire(
            keys=self._keys(scope), args=[limit.count, limit.seconds, hold, slot_id, "1" if blockable else "0"]
        )
        return Verdict(Slot(scope, slot_id), 0.0) if int(ok) else Verdict(None, float(wait))

    def finish(self, slot: Slot) -> None:
        self._finish(keys=self._keys(slot.scope)[:1], args=[slot.id])

    def cancel(self, slot: Slot) -> None:
        self.redis.zrem(self._keys(slot.scope)[0], slot.id)

    def sweep(self) -> int:
        """Nothing to do: every window key expires by itself one window after its last request."""
        return 0

    def block(self, scope: str, seconds: float) -> None:
        self._block(keys=self._keys(scope)[1:], args=[seconds])

    def strikes(self, scope: str) -> int:
        return int(self.redis.hget(self._keys(scope)[1], "strikes") or 0)

    def clear_strikes(self, scope: str) -> None:
        self.redis.delete(self._keys(scope)[1])


def wait_for_slot(
    windows: Windows, scope: str, limit: RateLimit, hold: float, *, stop: threading.Event | None = None
) -> Verdict:
    """Block until a slot is granted (for the worker); the web path never calls this."""
    while True:
        verdict = windows.acquire(scope, limit, hold, blockable=True)
        if verdict or (stop is not None and stop.is_set()):
            return verdict
        pause = min(verdict.wait, 1.0)
        if stop is not None:
            stop.wait(pause)
        else:
            time.sleep(pause)


T = TypeVar("T")


class HeldSlot:
    """A blockable scope's slot (ConvertKit's), from acquire to its end; see held()."""

    def __init__(self, slot: Slot):
        self.slot = slot
        self.sent = False  # a call went out on it: it counts from the answer
        self.handed_over = False  # someone else ends it (Delivery.deliver, in the commit of the signup's outcome)

    def send(self, call: Callable[[], T]) -> T:
        """Make the one call this slot is for."""
        self.sent = True
        return call()

    def hand_over(self) -> Slot:
        self.handed_over = True
        return self.slot


@contextmanager
def held(
    windows: Windows,
    scope: str,
    limit: RateLimit,
    hold: float,
    *,
    wait: bool = False,
    stop: threading.Event | None = None,
) -> Iterator[HeldSlot | None]:
    """One owner of a slot's life: None when none was granted (at once, or after waiting, with `wait`, until one
    is or `stop` is set). On leaving, a slot a call went out on is finished, one nobody used is cancelled, and one
    handed over is left to its new owner."""
    if wait:
        verdict = wait_for_slot(windows, scope, limit, hold, stop=stop)
    else:
        verdict = windows.acquire(scope, limit, hold, blockable=True)
    if verdict.slot is None:
        yield None
        return
    slot = HeldSlot(verdict.slot)
    try:
        yield slot
    finally:
        if slot.handed_over:
            pass
        elif slot.sent:
            windows.finish(slot.slot)
        else:
            windows.cancel(slot.slot)
