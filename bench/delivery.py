"""`make bench-delivery`: a burst of signups against a rate-limited, slow ConvertKit must all arrive, once each,
as fast as the limit allows and never faster.

The sandbox, the app (`gunicorn app:app`) and one worker (`flask --app app worker`) run as the Procfile runs
them, configured by environment variables only. Many clients post distinct addresses at once, each with a real
token from a GET of the form; then we wait for the queue to drain and read the sandbox's own log: when each
request arrived, what it answered, and how many times each address was subscribed.

Defaults: 500 signups at 20 per 10 s with 300 ms answers. 20/10 is ConvertKit's real rate (120/60 = 2/s)
with a shorter window, so a run shows ~25 windows of backlog and drains in ~4 minutes; more signups only
make it longer, a faster limit would measure one worker's round trips rather than the limiter.

`make bench-delivery` runs it with ConvertKit misbehaving as it does for real (FAULTS: 10 % 5xx, 5 % time-outs
of which half were processed, 2 % 2xx answers with an odd body) and the worker SIGKILLed twice during the drain,
once on SQLite with one worker process and once on PostgreSQL with two: nothing may be lost, nothing subscribed
twice, and no window may see more calls than the limit (look-ups included). `make bench` runs it plain.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import requests

from bench.common import (
    FORM_ID,
    Check,
    Databases,
    Service,
    Services,
    app_env,
    fetch_tokens,
    fmt_ms,
    form_url,
    free_port,
    percentile,
    print_table,
    start_sandbox,
    start_web,
    start_worker,
    write_json,
)
from optin.db import Database
from optin.settings import ConfigError, RateLimit
from optin.signups import Signups

RATE_BUDGET = 0.95
V4_TAGS = (101, 102)  # two tags on the v4 run's form: four calls a signup
FAULT_TIMEOUT = 2.0  # the app's CONVERTKIT_TIMEOUT in a faulty run; a time-out fault answers later than this


def faults(timeout: float = FAULT_TIMEOUT) -> list[dict]:
    """ConvertKit's ordinary misbehaviour, at random, on the form subscriptions. One draw picks at most one."""
    late = timeout + 0.5
    on = {"path_contains": "/subscribe", "method": "POST"}
    return [
        {**on, "rate": 0.05, "status": 502, "body": ""},
        {**on, "rate": 0.05, "status": 500, "body": "<html><body>Oops</body></html>", "content_type": "text/html"},
        {**on, "rate": 0.025, "delay": late},  # processed, but the answer comes after the client gave up
        {**on, "rate": 0.025, "delay": late, "status": 504},  # a proxy gave up: never processed
        {**on, "rate": 0.02, "status": 200, "body": "", "process": True},  # processed, an empty 2xx
    ]


def parse_limit(text: str) -> RateLimit:
    """N/S read by the app's own parser (CONVERTKIT_RATE_LIMIT's); on the command line a bad one is a usage error."""
    try:
        return RateLimit.parse(text, name="the limit")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


@dataclass
class Burst:
    accepted: list[str] = field(default_factory=list)
    refused: Counter = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0


def post_burst(url: str, tokens: list[str], *, clients: int, tag: str) -> Burst:
    """Post one signup per token from `clients` concurrent keep-alive clients; time each POST alone."""
    burst = Burst()
    lock = threading.Lock()

    def client(n: int) -> None:
        with requests.Session() as session:
            for i in range(n, len(tokens), clients):
                email = f"{tag}-{i}@example.com"
                started = time.perf_counter()
                response = session.post(
                    url, data={"token": tokens[i], "email": email}, headers={"Accept": "application/json"}, timeout=30
                )
                elapsed = (time.perf_counter() - started) * 1000
                with lock:
                    burst.latencies_ms.append(elapsed)
                    if response.status_code == 200 and response.json().get("ok"):
                        burst.accepted.append(email)
                    else:
                        burst.refused[str(response.status_code)] += 1

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    burst.seconds = time.perf_counter() - started
    return burst


def wait_for_drain(web: Service, expected: int, timeout: float) -> tuple[float, bool]:
    """Poll /healthz until nothing is pending; (seconds waited, drained?). Prints progress now and then, as a
    drain at a real rate limit takes minutes. A web server that died says so instead of timing out."""
    started = time.monotonic()
    last_note = started
    while time.monotonic() - started < timeout:
        try:
            backlog = requests.get(web.url + "/healthz", timeout=5).json()["backlog"]
        except requests.RequestException:
            if not web.alive():
                raise RuntimeError(
                    f"the web server exited during the drain (exit status {web.proc.returncode}; "
                    "was it stopped from outside?)"
                ) from None
            backlog = None
        if backlog == 0:
            return time.monotonic() - started, True
        if backlog is not None and time.monotonic() - last_note >= 20:
            print(f"  … {expected - backlog}/{expected} delivered, {backlog} pending", flush=True)
            last_note = time.monotonic()
        time.sleep(0.5)
    return time.monotonic() - started, False


def max_in_window(arrivals: list[float], seconds: float) -> int:
    """The most requests in any rolling window, as the sandbox counts them: those in (t - seconds, t]."""
    best, first = 0, 0
    for last, t in enumerate(arrivals):
        while arrivals[first] <= t - seconds:
            first += 1
        best = max(best, last - first + 1)
    return best


def mean_in_window(arrivals: list[float], seconds: float, *, skip: int, step: float = 0.05) -> float | None:
    """Mean requests per rolling window (t - seconds, t] over the windows that lie between the first and the last
    request (a backlog was waiting all that time) and start at least `skip` windows after the first request.

    skip=0 counts every such window. skip=1 leaves out those that overlap the first window: web requests send
    that window's worth at once, then the worker refills the next one a request at a time, which costs part of
    a window once per burst; what follows is the steady rate. None when no such window fits in the run.
    """
    if len(arrivals) < 2:
        return None
    t = arrivals[0] + (skip + 1) * seconds  # the end of the first window counted
    counts, first, last = [], 0, 0
    while t <= arrivals[-1]:
        while last < len(arrivals) and arrivals[last] <= t:
            last += 1
        while arrivals[first] <= t - seconds:
            first += 1
        counts.append(last - first)
        t += step
    return sum(counts) / len(counts) if counts else None


def app_statuses(database_url: str) -> dict[str, int]:
    """The queue's own view (pending, delivered, rejected, failed), read from the run's database."""
    database = Database(database_url)
    try:
        return Signups(database).counts()
    finally:
        database.dispose()


def app_possible_duplicates(database_url: str) -> int:
    """Signups the app sent again without ConvertKit being able to rule out the first attempt."""
    database = Database(database_url)
    try:
        return Signups(database).possible_duplicates()
    finally:
        database.dispose()


def sandbox_view(sandbox_url: str, accepted: list[str], limit: RateLimit) -> dict:
    """What ConvertKit saw: arrivals per window, 429s, and each accepted address's subscription count."""
    log = requests.get(sandbox_url + "/_sandbox/requests", timeout=30).json()
    arrivals = sorted(entry["at"] for entry in log)
    statuses = Counter(str(entry["status"]) for entry in log)
    subscribed = requests.get(sandbox_url + "/_sandbox/subscribers", timeout=30).json()
    counts = {s["email"].lower(): s["count"] for s in subscribed if s["form_id"] == FORM_ID}
    steady = mean_in_window(arrivals, limit.seconds, skip=1)
    whole = mean_in_window(arrivals, limit.seconds, skip=0)
    return {
        "requests": len(log),
        "statuses": dict(statuses),
        "status_429": statuses.get("429", 0),
        "max_window": max_in_window(arrivals, limit.seconds) if arrivals else 0,
        "backlog_rate_fraction": None if steady is None else steady / limit.count,
        "backlog_rate_fraction_whole": None if whole is None else whole / limit.count,
        "lost": sum(1 for email in accepted if counts.get(email.lower(), 0) == 0),
        "duplicated": sum(1 for n in counts.values() if n > 1),
        # The same call made more than once (after an answer that was lost or refused): not a duplicate unless
        # ConvertKit acted twice.
        "resent": sum(
            1
            for n in Counter((e["path"], _address(e)) for e in log if e["method"] == "POST" and _address(e)).values()
            if n > 1
        ),
        "lookups": sum(1 for e in log if e["method"] == "GET"),
        "arrivals_s": [round(t - arrivals[0], 3) for t in arrivals],
    }


def kill_workers_later(services: Services, workers: list, env: dict[str, str], at: list[float]) -> threading.Thread:
    """SIGKILL the first worker process at each of `at` seconds from now, mid-send if one is under way, and start
    a new one at once: as a platform restarting a crashed dyno would."""

    def run() -> None:
        started = time.monotonic()
        for when in at:
            time.sleep(max(0.0, started + when - time.monotonic()))
            victim = workers.pop(0)
            os.killpg(victim.proc.pid, signal.SIGKILL)
            victim.proc.wait(10)
            workers.append(start_worker(services, env))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _address(entry: dict) -> str | None:
    body = entry.get("json") or {}
    value = body.get("email") or body.get("email_address")
    return value.lower() if isinstance(value, str) else None


def run(
    *,
    count: int,
    limit: RateLimit,
    latency: float,
    clients: int,
    log_dir: Path,
    database_url: str | None = None,
    faulty: bool = False,
    kills: int = 0,
    workers: int = 1,
    version: str = "v3",
) -> dict:
    """One full run in `log_dir` (which also holds the database, unless `database_url` names one); the figures
    as a dict. `faulty` turns on FAULTS, `kills` SIGKILLs a worker process that many times during the drain;
    `version` v4 delivers through Kit's v4 API, with two tags on the form (four calls a signup)."""
    with Services(log_dir) as services:
        sandbox = start_sandbox(services, rate_limit=str(limit), latency=latency)
        env = app_env(log_dir, sandbox.url, rate_limit=str(limit), port=free_port(), database_url=database_url)
        if version == "v4":
            env.pop("CONVERTKIT_API_SECRET")
            env |= {
                "CONVERTKIT_API_VERSION": "v4",
                "CONVERTKIT_API_KEY": "sandbox_v4_api_key",
                "CONVERTKIT_API_URL": f"{sandbox.url}/v4/",
            }
            forms = Path(env["FORMS_FILE"])
            forms.write_text(forms.read_text(encoding="utf-8") + f"tags = {list(V4_TAGS)}\n", encoding="utf-8")
        if faulty:
            env["CONVERTKIT_TIMEOUT"] = str(FAULT_TIMEOUT)
            # Back off from 1 s: the run measures what arrives, and a signup that drew five faults in a row would
            # otherwise wait minutes past the drain (10 s doubling), measured as lost.
            env["DELIVERY_RETRY_BASE_SECONDS"] = "1"
            requests.post(sandbox.url + "/_sandbox/faults", json={"faults": faults()}, timeout=5).raise_for_status()
        web, _ = start_web(services, env)
        running = [start_worker(services, env) for _ in range(workers)]
        tokens = fetch_tokens(form_url(web), count)
        burst = post_burst(form_url(web), tokens, clients=clients, tag=f"d{uuid.uuid4().hex[:6]}")
        calls = 2 + len(V4_TAGS) if version == "v4" else 1
        expected_drain = len(burst.accepted) * calls / limit.per_second
        killer = (
            kill_workers_later(services, running, env, [expected_drain * (i + 1) / (kills + 2) for i in range(kills)])
            if kills
            else None
        )
        drain_seconds, drained = wait_for_drain(web, len(burst.accepted), expected_drain * 1.5 + 120)
        if killer is not None:
            killer.join(30)
        requests.delete(sandbox.url + "/_sandbox/faults", timeout=5)
        wait_idle(sandbox.url)  # a late original counts: it is what a duplicate would be
        seen = sandbox_view(sandbox.url, burst.accepted, limit)
    return {
        "config": {
            "count": count,
            "limit": str(limit),
            "latency_s": latency,
            "clients": clients,
            "faulty": faulty,
            "kills": kills,
            "workers": workers,
            "version": version,
            "database": "postgresql" if database_url and database_url.startswith("postgres") else "sqlite",
        },
        "burst": {
            "accepted": len(burst.accepted),
            "refused": dict(burst.refused),
            "seconds": round(burst.seconds, 3),
            "accepted_per_s": len(burst.accepted) / burst.seconds,
            "post_ms": {
                "p50": percentile(burst.latencies_ms, 50),
                "p99": percentile(burst.latencies_ms, 99),
                "max": max(burst.latencies_ms, default=None),
            },
        },
        "drain": {"seconds": round(drain_seconds, 1), "drained": drained, "expected_seconds": round(expected_drain, 1)},
        "sandbox": seen,
        "app_statuses": app_statuses(env["DATABASE_URL"]),
        "possible_duplicates": app_possible_duplicates(env["DATABASE_URL"]),
    }


def wait_idle(sandbox_url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while requests.get(sandbox_url + "/_sandbox/", timeout=5).json()["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.1)


def checks(result: dict) -> list[Check]:
    """Each figure against its budget; the informational ones carry no verdict."""
    burst, seen, limit = result["burst"], result["sandbox"], parse_limit(result["config"]["limit"])
    fraction, whole = seen["backlog_rate_fraction"], seen["backlog_rate_fraction_whole"]
    return [
        Check(
            "signups accepted",
            f"{burst['accepted']}/{result['config']['count']}",
            "all",
            burst["accepted"] == result["config"]["count"],
        ),
        Check("accepted per second", f"{burst['accepted_per_s']:.0f}/s", "-", None),
        Check("POST p50", fmt_ms(burst["post_ms"]["p50"]), "-", None),
        # The POST budget belongs to `make bench` (wrk); here 32 Python client threads share the server's two
        # cores, so this latency says as much about the clients as about the server: shown, not judged.
        Check("POST p99", fmt_ms(burst["post_ms"]["p99"]), "-", None),
        Check("backlog drained", f"{result['drain']['seconds']:.0f} s", "drained", result["drain"]["drained"]),
        Check(
            "delivery rate with a backlog (steady)",
            "-" if fraction is None else f"{fraction:.3f} of {limit}",
            f">= {RATE_BUDGET}",
            None if fraction is None else fraction >= RATE_BUDGET,
        ),
        Check("delivery rate incl. the burst's refill", "-" if whole is None else f"{whole:.3f} of {limit}", "-", None),
        Check(
            "most requests in one window",
            f"{seen['max_window']}",
            f"<= {limit.count}",
            seen["max_window"] <= limit.count,
        ),
        Check("429s from ConvertKit", str(seen["status_429"]), "0", seen["status_429"] == 0),
        Check("lost (accepted, not delivered)", str(seen["lost"]), "0", seen["lost"] == 0),
        Check("duplicated (subscribed > once)", str(seen["duplicated"]), "0", seen["duplicated"] == 0),
        Check("resent (sent > once, refused or lost)", str(seen.get("resent", "-")), "-", None),
        Check("look-ups of unknown outcomes", str(seen.get("lookups", "-")), "-", None),
        Check(
            "possible duplicates (app's count)",
            str(result.get("possible_duplicates", "-")),
            "0",
            result.get("possible_duplicates", 0) == 0,
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.delivery", description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=500, help="signups in the burst (default 500)")
    parser.add_argument(
        "--limit",
        type=parse_limit,
        default=RateLimit(20, 10),
        help="ConvertKit's limit, N/S, set on both the sandbox and the app (default 20/10)",
    )
    parser.add_argument("--latency", type=float, default=0.3, help="the sandbox's answer time (default 0.3 s)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent posting clients (default 32)")
    parser.add_argument("--plain", action="store_true", help="no faults and no killed workers")
    parser.add_argument("--kills", type=int, default=2, help="worker processes SIGKILLed during the drain")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument(
        "--version",
        choices=["v3", "v4"],
        default="v3",
        help="the API to deliver through; v4 takes four calls a signup (two tags)",
    )
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL database to run on, in a fresh schema dropped at the end (default: a SQLite file)",
    )
    args = parser.parse_args(argv)
    kills = 0 if args.plain else args.kills
    where = "PostgreSQL" if args.database_url else "SQLite"
    print(
        f"delivery through {args.version} on {where}: {args.count} signups, limit {args.limit}, "
        f"ConvertKit answers in {args.latency:g} s"
        f", {args.clients} clients, {args.workers} worker process(es)"
        f"{'' if args.plain else f', faults on, {kills} SIGKILLs'}; "
        f"expect ~{args.count * (2 + len(V4_TAGS) if args.version == 'v4' else 1) / args.limit.per_second:.0f} s"
        " of draining",
        flush=True,
    )
    with (
        tempfile.TemporaryDirectory(prefix="bench-delivery-") as tmp,
        Databases(Path(tmp), args.database_url) as databases,
    ):
        try:
            result = run(
                count=args.count,
                limit=args.limit,
                latency=args.latency,
                clients=args.clients,
                log_dir=Path(tmp),
                database_url=databases.url("delivery") if args.database_url else None,
                faulty=not args.plain,
                kills=kills,
                workers=args.workers,
                version=args.version,
            )
        except Exception:
            for log in sorted(Path(tmp).glob("*.log")):
                print(f"--- {log.name} (tail) ---\n{log.read_text(errors='replace')[-2000:]}", file=sys.stderr)
            raise
    table = checks(result)
    print_table(table)
    result["checks"] = [vars(c) | {"verdict": c.verdict} for c in table]
    name = f"delivery-{args.version}-{result['config']['database']}.json"
    print(f"wrote {write_json(name, result)}")
    return 1 if any(c.passed is False for c in table) else 0


if __name__ == "__main__":
    sys.exit(main())
