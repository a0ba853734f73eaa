"""The one place that turns ConvertKit's answers into a signup's outcome, for the web request and the worker."""

from __future__ import annotations

import logging
import queue
import random
import re
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Literal

import sqlalchemy as sa

import convertkit

from . import steps
from .clock import Clock
from .limiter import HeldSlot, Slot, Windows, held
from .pauses import Pauses
from .pseudonyms import fingerprint, mask_email
from .settings import Settings
from .signups import Signup, Signups

log = logging.getLogger("optin.delivery")

ACCOUNT = "account"
RATE_SCOPE_PREFIX = "convertkit:"
FULL_WINDOW_RECHECK = 1.0  # seconds a web process trusts its last look at a full ConvertKit window
QUEUE_RECHECK = 1.0  # and its last look at a queue with signups waiting
INLINE_AT_ONCE = 2  # inline attempts in flight per web process: the other threads keep serving the form
CLOCK_SKEW = 10.0  # seconds ConvertKit's clock may differ from ours when reading its created_at
TWIN_WINDOW = 600.0  # seconds in which the same details on the same form are the visitor trying again
RECORD_RETRY_EVERY = 1.0  # seconds between tries to record an answer the database refused


# partial: one call of several (v4) done, the next due at once
OutcomeKind = Literal["delivered", "partial", "rejected", "retry", "paused"]


@dataclass(frozen=True)
class Outcome:
    kind: OutcomeKind
    message: str | None = None  # for rejected: ConvertKit's words, shown in the form


@dataclass(frozen=True)
class Paused:
    """What delivery waits on: the whole account (ConvertKit refused the key: 401/403), and forms it has not got
    (404). The worker checks each with ConvertKit now and then, and lifts it when ConvertKit accepts it again."""

    account: bool = False
    forms: frozenset[int] = frozenset()

    def holds(self, form_id: int) -> bool:
        return self.account or form_id in self.forms


def form_scope(form_id: int) -> str:
    return f"form:{form_id}"


class Delivery:
    """Sends one signup per call, exactly once as far as ConvertKit's API can tell.

    Every attempt is written ahead (the signup's `sending_at`, set in the same commit as its lease), and every
    answer that leaves the outcome unknown (a time-out, a dropped connection, a 3xx or 5xx, a 2xx with an odd body,
    a process that died mid-send) is kept as `unconfirmed_at`. The next step of such a signup asks ConvertKit
    instead of sending: is this person on this form since the attempt began? Only a yes marks it delivered; a no
    sends again; where ConvertKit cannot tell (no API secret, the look-up keeps failing), it sends again and
    counts a possible duplicate.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        signups: Signups,
        windows: Windows,
        pauses: Pauses,
        client: convertkit.Client | convertkit.ClientV4,
        clock: Clock,
    ):
        self.settings = settings
        self.signups = signups
        self.windows = windows
        self.pauses = pauses
        self.client = client
        self.clock = clock
        # The limit belongs to the key; name it by a hash so the key never lands in Redis or the database.
        self.rate_scope = RATE_SCOPE_PREFIX + fingerprint(settings.api_key)
        # The longest a request can be in flight (the client's deadline covers the whole call), and a margin.
        self.hold = settings.api_timeout + 1
        # A lease must outlast one delivery (the slot's hold) so two processes never send the same signup at once.
        self.lease_seconds = max(settings.lease_seconds or self.hold + 30, self.hold + 1)
        self._full_until = 0.0  # until then ConvertKit's window has no room (this process's last look)
        self._queued_until = 0.0  # until then older signups are waiting for the worker (likewise)
        self._slow_until = 0.0  # until then ConvertKit is too slow for a visitor to wait on (likewise)
        self._inline = threading.BoundedSemaphore(INLINE_AT_ONCE)
        self._unrecorded: queue.Queue[tuple[float, Callable[[], Outcome]]] = queue.Queue()
        self._recorder: threading.Thread | None = None
        self._recorder_lock = threading.Lock()

    def paused(self, active: list[dict] | None = None) -> Paused:
        """What not to deliver now, from the pauses table's rows (`active`; read, a second old at most, if None)."""
        active = self.pauses.active() if active is None else active
        return Paused(
            account=any(p["scope"] == ACCOUNT for p in active),
            forms=frozenset(int(p["scope"].split(":", 1)[1]) for p in active if p["scope"].startswith("form:")),
        )

    def may_try_now(self, form_id: int) -> bool:
        """Whether a web request may try its signup at once (see reserve): not while the form or the account is
        paused, ConvertKit's window was full a moment ago, ConvertKit just let an attempt time out, or older
        signups are waiting. Those go first, through the worker, in order: during a launch every slot that frees
        up is theirs, so no visitor waits on ConvertKit then, and nobody jumps the queue. Reads only: call it
        before the signup's transaction."""
        now = self.clock()
        if now < self._full_until or now < self._queued_until or now < self._slow_until:
            return False
        paused = self.paused()  # a second old at most: fine for the web
        if paused.holds(form_id):
            return False
        if self.signups.has_due(paused.forms):
            self._queued_until = now + QUEUE_RECHECK
            return False
        return True

    def slot(
        self, *, wait: bool = False, stop: threading.Event | None = None
    ) -> AbstractContextManager[HeldSlot | None]:
        """A slot of ConvertKit's window for the worker's calls, ended on leaving the block (limiter.held): with
        `wait`, blocks until one is free or `stop` is set; without, None at once when the window is full."""
        return held(self.windows, self.rate_scope, self.settings.rate_limit, self.hold, wait=wait, stop=stop)

    def sweep_windows(self) -> int:
        return self.windows.sweep()

    def reserve(self) -> Slot | None:
        """A slot for the web request's single attempt, only if the shared limit has room right now and fewer
        than INLINE_AT_ONCE of this process's requests are waiting on ConvertKit: the visitor never waits for
        room, and a slow ConvertKit never ties up the threads that serve the form. Only after may_try_now said
        yes; a slot given must end in deliver_inline or release."""
        if not self._inline.acquire(blocking=False):
            return None
        verdict = self.windows.acquire(self.rate_scope, self.settings.rate_limit, self.hold, blockable=True)
        if not verdict:
            self._inline.release()
            # Look again in a second at most (sooner if a slot is due sooner), like the pauses. A slot freed in
            # between goes to the worker, which delivers just as well; only the inline answer is missed.
            self._full_until = self.clock() + min(verdict.wait, FULL_WINDOW_RECHECK)
        return verdict.slot

    def release(self, slot: Slot) -> None:
        """A reserved slot that was not used: nothing was sent."""
        try:
            self.windows.cancel(slot)
        finally:
            self._inline.release()

    def deliver_inline(self, signup: Signup, owner: str, slot: Slot) -> Outcome:
        try:
            return self.deliver(signup, owner, slot)
        finally:
            self._inline.release()

    def deliver(self, signup: Signup, owner: str, slot: Slot) -> Outcome:
        """One step for one signup (the caller holds a slot and the lease): make its next call to ConvertKit, or
        look up the last one's unknown outcome, and record what ConvertKit said."""
        now = self.clock()
        plan = steps.steps(self.client, signup)
        if signup.steps_done >= len(plan):  # every call was taken; only the record of it was missing
            self.windows.cancel(slot)
            self.signups.mark_delivered(
                signup, owner, at=now, subscriber_id=signup.subscriber_id, counted=False, steps_done=signup.steps_done
            )
            return Outcome("delivered")
        step = plan[signup.steps_done]
        blind = False
        if signup.unconfirmed_at is not None and step.checked:
            ready_at = signup.unconfirmed_at + self.hold
            if now < ready_at:  # the attempt may still be on its way: a look-up now could miss it
                self.windows.cancel(slot)
                self.signups.mark_retry(
                    signup,
                    owner,
                    at=now,
                    next_attempt_at=ready_at,
                    counted=False,
                    error=signup.last_error or "waiting to look up an unanswered attempt",
                    unconfirmed_at=signup.unconfirmed_at,
                    check_page=signup.check_page,
                    check_cursor=signup.check_cursor,
                )
                return Outcome("retry")
            if self.client.can_look_up:
                return self._look_up(
                    signup, owner, slot, unconfirmed_at=signup.unconfirmed_at, last=signup.steps_done + 1 == len(plan)
                )
            blind = True  # v3 without the secret cannot ask: send again, and count it
        elif signup.steps_done == 0 and (twin := self.signups.twin(signup, within=TWIN_WINDOW)) is not None:
            told = Outcome("delivered") if twin.status == "delivered" else Outcome("retry")
            return self._record(signup, lambda: self._twin(signup, owner, slot, twin), told)
        try:
            answer, error = step.call(), None
        except convertkit.ConvertKitError as exc:
            answer, error = None, exc
        if isinstance(error, convertkit.APITimeout):
            self._slow_until = self.clock() + self.hold
        last = signup.steps_done + 1 == len(plan)

        def record() -> Outcome:
            with self.signups.db.transaction():  # one commit for the slot's end and the signup's outcome
                self.windows.finish(slot)
                if error is None:
                    return self._took(signup, owner, answer, last=last, blind=blind)
                if step.tag and isinstance(error, convertkit.NotFound):
                    note = f"not tagged: ConvertKit has no {step.name} (404)"
                    log.error("signup %s: %s; check the form's tags (flask --app app check)", signup.id, note)
                    return self._took(signup, owner, None, last=last, note=note)
                return self._failed(signup, owner, error, blind=blind, checked=step.checked)

        return self._record(signup, record, answer_outcome(error, last=last))

    def _record(self, signup: Signup, record: Callable[[], Outcome], outcome: Outcome) -> Outcome:
        """Record an answer. If the database refuses (a blip, a fail-over), ConvertKit's answer still stands: the
        caller (a visitor) is told what ConvertKit said, and a background thread keeps trying to write it until
        the signup's lease would end. Should the process die first, the write-ahead mark is still on the row,
        and the worker looks the signup up before anything is sent again."""
        try:
            return record()
        except sa.exc.SQLAlchemyError as exc:
            log.error(
                "signup %s: ConvertKit answered (%s) but the database refused to record it (%s); "
                "retrying in the background",
                signup.id,
                outcome.kind,
                type(exc).__name__,
            )
            self._unrecorded.put((self.clock() + self.lease_seconds, record))
            self._start_recorder()
            return outcome

    def _start_recorder(self) -> None:
        with self._recorder_lock:
            if self._recorder is None or not self._recorder.is_alive():
                self._recorder = threading.Thread(target=self._record_later, name="optin-recorder", daemon=True)
                self._recorder.start()

    def _record_later(self) -> None:
        while True:
            until, record = self._unrecorded.get()
            while True:
                try:
                    record()
                    break
                except sa.exc.SQLAlchemyError:
                    if self.clock() >= until:
                        log.error("gave up recording an answer; the worker will look the signup up")
                        break
                    time.sleep(RECORD_RETRY_EVERY)

    def _twin(self, signup: Signup, owner: str, slot: Slot, twin: Signup) -> Outcome:
        """The same details on the same form a moment ago: the visitor tried again. Never send it twice."""
        self.windows.cancel(slot)
        now = self.clock()
        if twin.status == "delivered":
            self.signups.mark_delivered(
                signup,
                owner,
                at=now,
                subscriber_id=twin.subscriber_id,
                counted=False,
                note=f"not sent: the same as signup {twin.id}, which ConvertKit has",
            )
            log.info("signup %s is the same as delivered signup %s: not sent again", signup.id, twin.id)
            return Outcome("delivered")
        self.signups.mark_retry(
            signup,
            owner,
            at=now,
            next_attempt_at=now + self.hold,
            counted=False,
            error=f"waiting for signup {twin.id}, which has the same details",
        )
        return Outcome("retry")

    def _took(
        self,
        signup: Signup,
        owner: str,
        answer: dict | None,
        *,
        last: bool,
        blind: bool = False,
        note: str | None = None,
    ) -> Outcome:
        """ConvertKit took this call (or a look-up found it had): the signup is delivered after its last call, else
        the next is due at once."""
        found = steps.subscriber_id(answer)
        if self.windows.strikes(self.rate_scope):  # a success ends a run of 429s
            self.windows.clear_strikes(self.rate_scope)
        if not last:
            self.signups.mark_step(signup, owner, at=self.clock(), subscriber_id=found, note=note, resent_blind=blind)
            return Outcome("partial")
        self.signups.mark_delivered(
            signup,
            owner,
            at=self.clock(),
            resent_blind=blind,
            note=note,
            subscriber_id=found if found is not None else signup.subscriber_id,
        )
        log.info("signup %s delivered (form %s, %s)", signup.id, signup.form_slug, mask_email(signup.email))
        return Outcome("delivered")

    def _failed(
        self,
        signup: Signup,
        owner: str,
        error: convertkit.ConvertKitError,
        *,
        blind: bool = False,
        checked: bool = True,
    ) -> Outcome:
        # Refusals (4xx) mean ConvertKit did not act on this send: a blind resend that is refused subscribed
        # nobody twice, and the earlier attempt's unknown outcome stays on record.
        if isinstance(error, convertkit.Invalid):
            return self._rejected(signup, owner, error)
        if isinstance(error, convertkit.Unauthorized | convertkit.Forbidden | convertkit.NotFound):
            return self._paused(signup, owner, error)
        if isinstance(error, convertkit.RateLimited):
            return self._rate_limited(signup, owner)
        return self._transient(signup, owner, error, blind=blind, checked=checked)  # 5xx, time-outs, odd answers

    def _look_up(self, signup: Signup, owner: str, slot: Slot, *, unconfirmed_at: float, last: bool) -> Outcome:
        """One call of the look-up after an unknown outcome (each call takes its own slot; see optin/steps.py).
        Progress is kept on the row, so another worker, or this one after a crash, goes on where it stopped."""
        answer: steps.Finding | convertkit.ConvertKitError
        try:
            answer = steps.look_up(self.client, signup, since=unconfirmed_at - CLOCK_SKEW)
        except convertkit.ConvertKitError as exc:
            answer = exc

        def record() -> Outcome:
            with self.signups.db.transaction():
                self.windows.finish(slot)
                finding = answer
                if isinstance(finding, convertkit.ConvertKitError):
                    return self._look_up_failed(signup, owner, finding, unconfirmed_at=unconfirmed_at)
                if finding.kind == "arrived":
                    log.info("signup %s had arrived at ConvertKit despite the lost answer", signup.id)
                    return self._took(
                        signup, owner, None, last=last, note="the unanswered call had arrived (looked up)"
                    )
                if finding.kind == "absent":
                    return self._send_again(signup, owner, finding.why)
                if finding.kind == "unknowable":
                    return self._send_again(signup, owner, finding.why, blind=True)
                return self._look_further(signup, owner, finding)

        return self._record(signup, record, Outcome("retry"))

    def _look_further(self, signup: Signup, owner: str, finding: steps.Finding) -> Outcome:
        """The next call of the look-up, at once: the signup keeps its place at the head of the queue."""
        self.signups.mark_retry(
            signup,
            owner,
            at=self.clock(),
            next_attempt_at=signup.next_attempt_at,
            counted=False,
            error=signup.last_error or "looking up an unanswered attempt",
            unconfirmed_at=signup.unconfirmed_at,
            check_page=finding.page,
            check_cursor=finding.cursor,
            subscriber_id=finding.subscriber_id,
        )
        return Outcome("retry")

    def _send_again(self, signup: Signup, owner: str, why: str, *, blind: bool = False) -> Outcome:
        """Back to the signup's old place in the queue, to be sent again: ConvertKit does not have it, or (`blind`)
        cannot tell, and then a duplicate confirmation email is better than a lost signup, and it is counted."""
        found = f"could not look up: {why}; sending again, possibly twice" if blind else f"looked up: {why}"
        self.signups.mark_retry(
            signup,
            owner,
            at=self.clock(),
            next_attempt_at=signup.created_at,
            counted=False,
            error=f"{signup.last_error or 'unanswered'} ({found})",
            resent_blind=blind,
        )
        level = logging.WARNING if blind else logging.INFO
        log.log(level, "signup %s: sending again after an unanswered attempt (%s)", signup.id, found)
        return Outcome("retry")

    def _look_up_failed(
        self, signup: Signup, owner: str, error: convertkit.ConvertKitError, *, unconfirmed_at: float
    ) -> Outcome:
        if isinstance(error, convertkit.RateLimited):
            return self._rate_limited(signup, owner)
        if isinstance(error, convertkit.Unauthorized | convertkit.Forbidden):
            log.error("ConvertKit refused the look-up (%s): check CONVERTKIT_API_SECRET", error.status)
            return self._send_again(signup, owner, f"ConvertKit refused the API secret ({error.status})", blind=True)
        if self.clock() - unconfirmed_at >= self.settings.check_hours * 3600:
            return self._send_again(signup, owner, f"look-ups failed for {self.settings.check_hours:g} h", blind=True)
        return self._transient(signup, owner, error)

    def _rejected(self, signup, owner, exc) -> Outcome:
        message = exc.message or "ConvertKit did not accept this address."
        self.signups.mark_rejected(signup, owner, at=self.clock(), reason=f"{exc.status}: {message}")
        log.info(
            "signup %s rejected by ConvertKit (%s): %s", signup.id, exc.status, scrub_address(message, signup.email)
        )
        return Outcome("rejected", message=message)

    def _paused(self, signup, owner, exc) -> Outcome:
        scope = form_scope(signup.convertkit_form_id) if isinstance(exc, convertkit.NotFound) else ACCOUNT
        reason = {
            401: "ConvertKit refused the API key (401): check CONVERTKIT_API_KEY and CONVERTKIT_API_VERSION",
            403: "ConvertKit refused the request (403): the account may be over its subscriber limit",
            404: f"ConvertKit has no form {signup.convertkit_form_id} (404): check convertkit_form_id",
        }.get(exc.status, f"ConvertKit answered {exc.status}")
        self.pauses.pause(scope, reason)
        now = self.clock()
        self.signups.mark_retry(
            signup,
            owner,
            at=now,
            next_attempt_at=now,
            error=reason,
            counted=False,
            unconfirmed_at=signup.unconfirmed_at,
            check_page=signup.check_page,
            check_cursor=signup.check_cursor,
        )
        log.error("delivery paused for %s: %s (signup %s kept pending)", scope, reason, signup.id)
        return Outcome("paused")

    def _rate_limited(self, signup, owner) -> Outcome:
        # Our own limiter should make this rare: another program is using the key. Wait a window, then longer.
        # A 429 is ConvertKit refusing before acting: a look-up in progress stays where it was.
        strikes = self.windows.strikes(self.rate_scope)
        wait = min(self.settings.rate_limit.seconds * 2**strikes, 600)
        self.windows.block(self.rate_scope, wait)
        now = self.clock()
        self.signups.mark_retry(
            signup,
            owner,
            at=now,
            next_attempt_at=now + wait,
            error="429 rate limited",
            counted=False,
            unconfirmed_at=signup.unconfirmed_at,
            check_page=signup.check_page,
            check_cursor=signup.check_cursor,
        )
        log.warning("ConvertKit rate limit hit (429); all delivery waits %.0f s", wait)
        return Outcome("retry", message="rate limited")

    def _transient(self, signup, owner, exc, *, blind: bool = False, checked: bool = True) -> Outcome:
        now = self.clock()
        first = signup.first_failed_at if signup.first_failed_at is not None else now
        failed = now - first >= self.settings.retry_budget_hours * 3600
        base = self.settings.retry_base_seconds
        delay = random.uniform(0.5, 1.0) * min(base * 2**signup.attempts, 3600)
        error = f"{type(exc).__name__}: {scrub_address(str(exc), signup.email)}"
        # An unknown outcome of this send, or one still being looked up: never send before asking, and never ask
        # before the attempt can have arrived (one slot hold after it began).
        unconfirmed_at = signup.unconfirmed_at if checked else None  # a call that may simply be repeated
        if unconfirmed_at is None and checked and exc.may_have_arrived:
            unconfirmed_at = signup.sending_at if signup.sending_at is not None else now
        next_attempt_at = now + delay
        if unconfirmed_at is not None:
            next_attempt_at = max(next_attempt_at, unconfirmed_at + self.hold)
        self.signups.mark_retry(
            signup,
            owner,
            at=now,
            next_attempt_at=next_attempt_at,
            error=error,
            failed=failed,
            unconfirmed_at=unconfirmed_at,
            check_page=signup.check_page,
            check_cursor=signup.check_cursor,
            resent_blind=blind and exc.may_have_arrived,
        )
        if failed:
            log.error("signup %s failed after the retry budget: %s", signup.id, error)
        else:
            log.warning("signup %s will be retried in %.0f s: %s", signup.id, next_attempt_at - now, error)
        return Outcome("retry", message=error)


def answer_outcome(error: convertkit.ConvertKitError | None, *, last: bool = True) -> Outcome:
    """What a visitor is told of ConvertKit's answer, whatever happens to its record."""
    if error is None:
        return Outcome("delivered" if last else "partial")
    if isinstance(error, convertkit.Invalid):
        return Outcome("rejected", message=error.message or "ConvertKit did not accept this address.")
    return Outcome("retry")


def scrub_address(text: str, email: str) -> str:
    """ConvertKit's messages may quote the address, in any case: logs get its pseudonym instead."""
    return re.sub(re.escape(email), mask_email(email), text, flags=re.IGNORECASE) if email else text
