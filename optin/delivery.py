"""The one place that turns ConvertKit's answers into a signup's outcome, for the web request and the worker."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import random
import time
from dataclasses import dataclass

import sqlalchemy as sa

import convertkit

from .limiter import Slot
from .settings import Settings
from .signups import Signup, Signups, mask_email

log = logging.getLogger("optin.delivery")

ACCOUNT = "account"
RATE_SCOPE_PREFIX = "convertkit:"
FULL_WINDOW_RECHECK = 1.0  # seconds a web process trusts its last look at a full ConvertKit window
QUEUE_RECHECK = 1.0  # and its last look at a queue with signups waiting


@dataclass(frozen=True)
class Outcome:
    kind: str  # delivered | rejected | retry | paused
    message: str | None = None  # for rejected: ConvertKit's words, shown in the form


class Pauses:
    """Delivery stops for a bad key (401/403) or a missing form (404) until a check passes or an operator retries.

    Every POST asks whether its form is paused, so the answer is kept for a second per process rather than
    read from the database each time; a pause matters for minutes, and this process's own changes show at once.
    """

    FRESH_FOR = 1.0

    def __init__(self, db, *, first_check_after: float = 60.0, clock=time.monotonic):
        self.db = db
        self.first_check_after = first_check_after
        self.clock = clock
        self._cached: tuple[float, list[dict]] | None = None

    def active(self, *, fresh: bool = False) -> list[dict]:
        if not fresh and self._cached is not None and self.clock() - self._cached[0] < self.FRESH_FOR:
            return self._cached[1]
        with self.db.read() as conn:
            rows = [dict(r._mapping) for r in conn.execute(sa.text("SELECT * FROM pauses ORDER BY since"))]
        self._cached = (self.clock(), rows)
        return rows

    def pause(self, scope: str, reason: str) -> None:
        self._cached = None
        with self.db.transaction() as conn:
            now = self.db.now(conn)
            conn.execute(sa.text(
                "INSERT INTO pauses (scope, reason, since, next_check_at, checks) VALUES (:s, :r, :now, :next, 0)"
                " ON CONFLICT (scope) DO UPDATE SET reason = :r"
            ), {"s": scope, "r": reason[:300], "now": now, "next": now + self.first_check_after})

    def reschedule(self, scope: str, checks: int) -> None:
        self._cached = None
        with self.db.transaction() as conn:
            delay = min(self.first_check_after * 2 ** checks, 900)
            conn.execute(sa.text("UPDATE pauses SET next_check_at = :next, checks = :c WHERE scope = :s"),
                         {"s": scope, "next": self.db.now(conn) + delay, "c": checks + 1})

    def lift(self, scope: str | None = None) -> int:
        self._cached = None
        with self.db.transaction() as conn:
            if scope is None:
                return conn.execute(sa.text("DELETE FROM pauses")).rowcount
            return conn.execute(sa.text("DELETE FROM pauses WHERE scope = :s"), {"s": scope}).rowcount


def form_scope(form_id: int) -> str:
    return f"form:{form_id}"


class Delivery:
    def __init__(self, *, settings: Settings, signups: Signups, windows, pauses: Pauses, client: convertkit.Client,
                 clock):
        self.settings = settings
        self.signups = signups
        self.windows = windows
        self.pauses = pauses
        self.client = client
        self.clock = clock
        # The limit belongs to the key; name it by a hash so the key never lands in Redis or the database.
        self.rate_scope = RATE_SCOPE_PREFIX + hashlib.sha256(settings.api_key.encode()).hexdigest()[:16]
        self.hold = settings.api_timeout * 2 + 1  # connect + read time-outs, and a margin
        self._full_until = 0.0  # until then ConvertKit's window has no room (this process's last look)
        self._queued_until = 0.0  # until then older signups are waiting for the worker (likewise)

    def paused_forms(self, paused: list[dict] | None = None) -> list[int] | None:
        """Form ids not to deliver now; None when the whole account is paused."""
        paused = self.pauses.active() if paused is None else paused
        if any(p["scope"] == ACCOUNT for p in paused):
            return None
        return [int(p["scope"].split(":", 1)[1]) for p in paused if p["scope"].startswith("form:")]

    def may_try_now(self, form_id: int) -> bool:
        """Whether a web request may try its signup at once (see reserve): not while the form or the account is
        paused, ConvertKit's window was full a moment ago, or older signups are waiting. Those go first, through
        the worker, in order: during a launch every slot that frees up is theirs, so no visitor waits on
        ConvertKit then, and nobody jumps the queue. Reads only: call it before the signup's transaction."""
        now = self.clock()
        if now < self._full_until or now < self._queued_until:
            return False
        paused = self.paused_forms()  # a second old at most: fine for the web
        if paused is None or form_id in paused:
            return False
        if self.signups.has_due(paused):
            self._queued_until = now + QUEUE_RECHECK
            return False
        return True

    def reserve(self) -> Slot | None:
        """A slot for the web request's single attempt, only if the shared limit has room right now: the visitor
        never waits for room. Only after may_try_now said yes."""
        verdict = self.windows.acquire(self.rate_scope, self.settings.rate_limit, self.hold, blockable=True)
        if not verdict:
            # Look again in a second at most (sooner if a slot is due sooner), like the pauses. A slot freed in
            # between goes to the worker, which delivers just as well; only the inline answer is missed.
            self._full_until = self.clock() + min(verdict.wait, FULL_WINDOW_RECHECK)
        return verdict.slot

    def deliver(self, signup: Signup, owner: str, slot: Slot) -> Outcome:
        """Send one signup (the caller holds a slot and the lease) and record what ConvertKit said."""
        if signup.unconfirmed_at is not None and self.client.has_secret:
            return self._confirm(signup, owner, slot)
        try:
            answer, error = self.client.subscribe_to_form(
                signup.convertkit_form_id, signup.email, first_name=signup.first_name,
                fields=signup.fields or None, tags=list(signup.tags) or None,
            ), None
        except convertkit.ConvertKitError as exc:
            answer, error = None, exc
        with self.signups.db.transaction():  # one commit for the slot's end and the signup's outcome
            self.windows.finish(slot)
            return self._delivered(signup, owner, answer) if error is None else self._failed(signup, owner, error)

    def _delivered(self, signup: Signup, owner: str, answer: dict) -> Outcome:
        self.signups.mark_delivered(signup, owner, at=self.clock(),
                                    subscriber_id=((answer or {}).get("subscriber") or {}).get("id"))
        if self.windows.strikes(self.rate_scope):  # a success ends a run of 429s
            self.windows.clear_strikes(self.rate_scope)
        log.info("signup %s delivered (form %s, %s)", signup.id, signup.form_slug, mask_email(signup.email))
        return Outcome("delivered")

    def _failed(self, signup: Signup, owner: str, error: convertkit.ConvertKitError) -> Outcome:
        if isinstance(error, convertkit.Invalid):
            return self._rejected(signup, owner, error)
        if isinstance(error, convertkit.Unauthorized | convertkit.Forbidden | convertkit.NotFound):
            return self._paused(signup, owner, error)
        if isinstance(error, convertkit.RateLimited):
            return self._rate_limited(signup, owner, error)
        return self._transient(signup, owner, error)  # 5xx, time-outs, connection errors, odd statuses

    def _confirm(self, signup: Signup, owner: str, slot: Slot) -> Outcome:
        """The last attempt got no answer: ask whether it arrived before sending again (and emailing twice)."""
        try:
            found = self.client.find_subscriber(signup.email)
        except convertkit.ConvertKitError as exc:
            return self._transient(signup, owner, exc)
        finally:
            self.windows.finish(slot)
        now = self.clock()
        if found and _created_at(found) >= signup.unconfirmed_at - 300:
            self.signups.mark_delivered(signup, owner, at=now, subscriber_id=found.get("id"))
            log.info("signup %s had arrived at ConvertKit despite the lost answer", signup.id)
            return Outcome("delivered")
        self.signups.mark_retry(signup, owner, at=now, next_attempt_at=now, counted=False,
                                error=(signup.last_error or "") + " (checked: not at ConvertKit yet)")
        return Outcome("retry")

    def _rejected(self, signup, owner, exc) -> Outcome:
        message = exc.message or "ConvertKit did not accept this address."
        self.signups.mark_rejected(signup, owner, at=self.clock(), reason=f"{exc.status}: {message}")
        log.info("signup %s rejected by ConvertKit (%s): %s", signup.id, exc.status, message)
        return Outcome("rejected", message=message)

    def _paused(self, signup, owner, exc) -> Outcome:
        scope = form_scope(signup.convertkit_form_id) if isinstance(exc, convertkit.NotFound) else ACCOUNT
        reason = {
            401: "ConvertKit refused the API key (401): check CONVERTKIT_API_KEY",
            403: "ConvertKit refused the request (403): the account may be over its subscriber limit",
            404: f"ConvertKit has no form {signup.convertkit_form_id} (404): check convertkit_form_id",
        }.get(exc.status, f"ConvertKit answered {exc.status}")
        self.pauses.pause(scope, reason)
        now = self.clock()
        self.signups.mark_retry(signup, owner, at=now, next_attempt_at=now, error=reason, counted=False)
        log.error("delivery paused for %s: %s (signup %s kept pending)", scope, reason, signup.id)
        return Outcome("paused")

    def _rate_limited(self, signup, owner, exc) -> Outcome:
        # Our own limiter should make this rare: another program is using the key. Wait a window, then longer.
        strikes = self.windows.strikes(self.rate_scope)
        wait = min(self.settings.rate_limit.seconds * 2 ** strikes, 600)
        self.windows.block(self.rate_scope, wait)
        now = self.clock()
        self.signups.mark_retry(signup, owner, at=now, next_attempt_at=now + wait, error="429 rate limited",
                                counted=False)
        log.warning("ConvertKit rate limit hit (429); all delivery waits %.0f s", wait)
        return Outcome("retry", message="rate limited")

    def _transient(self, signup, owner, exc) -> Outcome:
        now = self.clock()
        first = signup.first_failed_at if signup.first_failed_at is not None else now
        failed = now - first >= self.settings.retry_budget_hours * 3600
        base = self.settings.retry_base_seconds
        delay = random.uniform(0.5, 1.0) * min(base * 2 ** signup.attempts, 3600)
        error = f"{type(exc).__name__}: {exc}"
        unconfirmed = isinstance(exc, convertkit.APIConnectionError) and exc.may_have_arrived
        self.signups.mark_retry(signup, owner, at=now, next_attempt_at=now + delay, error=error, failed=failed,
                                unconfirmed=unconfirmed)
        if failed:
            log.error("signup %s failed after the retry budget: %s", signup.id, error)
        else:
            log.warning("signup %s will be retried in %.0f s: %s", signup.id, delay, error)
        return Outcome("retry", message=error)


def _created_at(subscriber: dict) -> float:
    try:
        return dt.datetime.fromisoformat(str(subscriber.get("created_at"))).timestamp()
    except ValueError:
        return 0.0
