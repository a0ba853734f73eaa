"""Used token nonces, kept until the token would have expired anyway, so a replayed form post is refused."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Protocol

import sqlalchemy as sa

from .db import Database

if TYPE_CHECKING:
    import redis

# A few at a time: the first post after a quiet spell must not pay for deleting a whole launch's nonces.
EXPIRE = sa.text(
    "DELETE FROM used_nonces WHERE nonce IN (SELECT nonce FROM used_nonces WHERE expires_at < :now LIMIT 200)"
)
USE = sa.text("INSERT INTO used_nonces (nonce, expires_at) VALUES (:n, :e) ON CONFLICT (nonce) DO NOTHING")


class Nonces(Protocol):
    """Where used nonces are kept: SqlNonces (the database) or RedisNonces (REDIS_URL)."""

    def use(self, nonce: str, ttl: float) -> bool:
        """True the first time a nonce is seen; False for a replay."""
        ...


class SqlNonces:
    def __init__(self, db: Database):
        self.db = db

    def use(self, nonce: str, ttl: float) -> bool:
        """True the first time a nonce is seen; False for a replay."""
        with self.db.transaction() as conn:
            now = self.db.now(conn)
            # Forgetting up to 200 expired nonces on one post in a hundred outpaces the one each post adds.
            if random.random() < 0.01:
                conn.execute(EXPIRE, {"now": now})
            # ON CONFLICT rather than catching the error: a failed INSERT would spoil a joined transaction.
            return conn.execute(USE, {"n": nonce, "e": now + ttl}).rowcount == 1


class RedisNonces:
    def __init__(self, client: redis.Redis, prefix: str = "optin:"):
        self.redis = client
        self.prefix = prefix

    def use(self, nonce: str, ttl: float) -> bool:
        return bool(self.redis.set(f"{self.prefix}nonce:{nonce}", 1, nx=True, ex=max(int(ttl) + 1, 1)))
