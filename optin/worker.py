"""The delivery worker: drains pending signups as fast as ConvertKit's limit allows, and no faster."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time

import sqlalchemy as sa

import convertkit

from . import account, heartbeats
from .delivery import ACCOUNT, Delivery

log = logging.getLogger("optin.worker")

HEARTBEAT_EVERY = 5.0
SWEEP_EVERY = 60.0


class Worker:
    """One delivery loop: one signup in flight at a time. `run_workers` runs several side by side."""

    def __init__(
        self,
        delivery: Delivery,
        *,
        poll: float = 1.0,
        lease_seconds: float | None = None,
        stop: threading.Event | None = None,
        index: int = 0,
    ):
        self.delivery = delivery
        self.signups = delivery.signups
        self.pauses = delivery.pauses
        self.poll = poll
        self.lease_seconds = max(lease_seconds, delivery.hold + 1) if lease_seconds else delivery.lease_seconds
        self.name = f"{socket.gethostname()}:{os.getpid()}:{index}"
        self.stop = stop if stop is not None else threading.Event()
        self.housekeeper = index == 0  # one loop per process sweeps old windows and checks pauses
        self._last_sweep = 0.0

    def run(self) -> None:
        log.info("worker %s started (limit %s)", self.name, self.delivery.settings.rate_limit)
        while not self.stop.is_set():
            try:
                worked = self.step()
            except sa.exc.OperationalError as exc:  # the database restarted or failed over: wait, then go on
                log.warning("worker %s: database unavailable (%s); retrying", self.name, type(exc).__name__)
                worked = False
            except Exception:  # a bug must not silently stop delivery: log it, wait, go on
                log.exception("worker %s: unexpected error; retrying", self.name)
                worked = False
            if not worked:
                self.stop.wait(self.poll)
        log.info("worker %s stopped", self.name)

    def step(self) -> bool:
        """Deliver at most one signup; False when there was nothing to do."""
        self.sweep()
        paused = self.pauses.active(fresh=True)
        if paused and self.housekeeper:
            self.check_pauses(paused)
            paused = self.pauses.active(fresh=True)
        paused_now = self.delivery.paused(paused)
        if paused_now.account or not self.signups.has_due(paused_now.forms):
            return False
        with self.delivery.slot(wait=True, stop=self.stop) as slot:
            if slot is None:
                return False
            claimed = self.signups.claim(self.name, lease_seconds=self.lease_seconds, paused_forms=paused_now.forms)
            if not claimed:
                return False  # nothing was sent: the slot is cancelled
            self.delivery.deliver(claimed[0], self.name, slot.hand_over())
        return True

    def sweep(self) -> None:
        if self.housekeeper and time.monotonic() - self._last_sweep >= SWEEP_EVERY:
            self._last_sweep = time.monotonic()
            self.delivery.sweep_windows()

    def check_pauses(self, paused: list[dict]) -> None:
        """Ask ConvertKit whether a paused key or form works again; resume by itself when it does."""
        now = self.delivery.clock()
        due = [p for p in paused if p["next_check_at"] <= now]
        if not due:
            return
        with self.delivery.slot() as slot:
            if slot is None:
                return
            try:
                forms = slot.send(self.delivery.client.forms)
            except convertkit.ConvertKitError as exc:
                for pause in due:
                    self.pauses.reschedule(pause["scope"], pause["checks"])
                log.error("delivery still paused: the check against ConvertKit failed (%s)", type(exc).__name__)
                return
        form_ids = {int(f["id"]) for f in forms if "id" in f}
        for pause in due:
            scope = pause["scope"]
            if scope == ACCOUNT or int(scope.split(":", 1)[1]) in form_ids:
                self.pauses.lift(scope)
                log.warning("delivery resumed for %s: ConvertKit accepts it again", scope)
            else:
                self.pauses.reschedule(scope, pause["checks"])


def check_key(delivery: Delivery) -> None:
    """Once at start: a key that works only with the other API version looks like a wrong key (401) to every
    delivery; say what it is, plainly and once, instead of leaving the operator to guess from pauses."""
    for probe in (False, True):  # the forms call, then the probe of the other version
        with delivery.slot() as slot:
            if slot is None:
                return  # the window is busy: no start-up check is worth a signup's slot
            try:
                if not probe:
                    slot.send(delivery.client.forms)
                    return
                works_with = slot.send(lambda: account.other_version(delivery.client))
            except convertkit.Unauthorized:
                continue
            except convertkit.ConvertKitError:
                return
        if works_with:
            log.error(account.wrong_version_message(delivery.settings.api_version, works_with))
        return


def heartbeat(db, name: str) -> None:
    """Tell /healthz this worker process is alive. Beaten here, beside the delivery loops rather than in them:
    a loop may wait minutes for ConvertKit's window (a 429 blocks every process for up to ten), and a backlog
    waiting on the limit is not a missing worker."""
    heartbeats.beat(db, name)


def run_workers(delivery: Delivery, *, threads: int = 4, poll: float = 1.0) -> None:
    """Several deliveries in flight. One at a time cannot fill ConvertKit's 120 a minute once its answers take
    longer than half a second, and refills a window slowly after a burst; the shared limiter keeps any number of
    loops, here or on other machines, within the limit.

    SIGTERM (a deploy, a daily restart): every loop finishes the signup in hand, then the process exits, well
    within the 30 s a platform allows.
    """
    stop = threading.Event()

    def handle(signum, _frame):
        log.info("worker process %s got signal %s; stopping after the signups in hand", os.getpid(), signum)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    try:
        check_key(delivery)
    except sa.exc.OperationalError:  # the database is not up yet: the loops below wait for it
        pass
    loops = [Worker(delivery, poll=poll, stop=stop, index=i) for i in range(max(1, threads))]
    running = [threading.Thread(target=loop.run, name=loop.name) for loop in loops]
    for thread in running:
        thread.start()
    name, last_beat = f"{socket.gethostname()}:{os.getpid()}", 0.0
    while not stop.wait(0.5):
        if not any(thread.is_alive() for thread in running):
            break
        try:
            if time.monotonic() - last_beat >= HEARTBEAT_EVERY:
                heartbeat(delivery.signups.db, name)
                last_beat = time.monotonic()
            delivery.signups.db.checkpoint()
        except sa.exc.OperationalError:  # a busy or unreachable database: the next half second will do
            pass
    for thread in running:
        thread.join()
