"""`make bench`: is the form server fast and light? One table of figures against their budgets.

1. render: wrk on GET /f/<slug> against a bare Flask "hello" app under the same gunicorn.conf.py, alternating
   (hello, form, hello, form, …) after an unmeasured 3 s warm-up of each, so both see the same noise; medians
   of the rounds.
2. intake: valid signups per second at 32 connections while ConvertKit (the sandbox) answers in 300 ms and
   enforces its limit; every POST spends a real token on a distinct address. Measured against the least a Flask
   app can do with a signup (bench/hello.py's POST: store it, answer), alternating, medians of the rounds.
3. delivery: a short backlog through the worker (bench/delivery.py): the rate as a fraction of the limit.
4. weight: gzipped bytes of /embed.js and of everything the iframe document loads; requests to other hosts.
5. caching: ETag, Cache-Control lifetimes, and compression of /embed.js and the versioned static files.
6. start-up: seconds from starting gunicorn to the first 200 from /healthz (median of 3).
7. slow clients: wrk on GET /f/<slug> at the usual connections, alternating rounds without and with 200 more
   connections that trickle a request a byte a second (bench/common.py SlowClients); the p99s' ratio, medians.

Everything runs on 127.0.0.1 and stops by itself; results also go to bench/results/bench.json.
"""

from __future__ import annotations

import argparse
import gzip
import math
import re
import sys
import tempfile
import time
import uuid
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from bench import delivery
from bench.common import (
    Check,
    Databases,
    Service,
    Services,
    SlowClients,
    app_env,
    fetch_tokens,
    fmt_ms,
    form_url,
    free_port,
    median,
    print_table,
    run_wrk,
    start_sandbox,
    start_web,
    start_worker,
    write_json,
    wrk_available,
)
from optin.settings import RateLimit

BUDGETS = {
    # intake_ratio: a form post writes four rows in one commit (spent token, client window, address window,
    # signup) and validates the form; the bare durable POST writes one. The first budget, half the
    # render rate, could not be met by any server that stores a signup before answering (docs/performance.md).
    "render_ratio": 0.85,
    "render_p99_ms": 25.0,
    "intake_p99_ms": 100.0,
    "intake_ratio": 1 / 3,
    "delivery_rate": 0.95,
    "embed_gz": 2048,
    "frame_gz": 10 * 1024,
    "startup_s": None,
    "slow_p99_ratio": 2.0,
}
SLOW_CLIENTS = 200
DAY, HOUR = 86400, 3600
INTAKE_LIMIT = "120/60"  # ConvertKit's own limit, so the web path meets it as it would in production
INTAKE_LATENCY = 0.3
WARMUP_SECONDS = 3
TOKEN_SHARE = 0.6  # tokens for form POSTs at up to this share of the bare durable POST's rate; beyond, "≥"


# 1 and 2: throughput --------------------------------------------------------------------------------------


def measure_render(hello: Service, web: Service, *, rounds: int, duration: float, connections: int, log: Path) -> dict:
    """Alternate hello and form runs, so a noisy neighbour hurts both alike; keep every run, report medians.
    The ratio is the median of each round's form/hello ratio: the two runs of a round are seconds apart, so
    they share the machine's mood better than two medians taken over the whole minute."""
    runs: dict[str, list[dict]] = {"hello": [], "form": []}
    # Steady state: each server's first seconds under load read slower (tails of 100-270 ms in the first run
    # against ~25 ms after, for hello and form alike), so a short unmeasured run comes first, for both.
    for name, url in (("hello", hello.url + "/"), ("form", form_url(web))):
        warm = run_wrk(url, connections=connections, duration=WARMUP_SECONDS, log=log)
        print(
            f"  render warm-up {name}: {warm['rps']:.0f} req/s, p99 {warm['latency_ms']['p99']:.1f} ms (not counted)",
            flush=True,
        )
    for n in range(rounds):
        for name, url in (("hello", hello.url + "/"), ("form", form_url(web))):
            result = run_wrk(url, connections=connections, duration=duration, log=log)
            runs[name].append(result)
            print(
                f"  render round {n + 1}/{rounds} {name}: {result['rps']:.0f} req/s, "
                f"p99 {result['latency_ms']['p99']:.1f} ms, errors {result['errors']}",
                flush=True,
            )
    summary: dict[str, Any] = {
        name: {"rps": median([r["rps"] for r in rs]), "p99_ms": median([r["latency_ms"]["p99"] for r in rs])}
        for name, rs in runs.items()
    }
    summary["ratio"] = median([f["rps"] / h["rps"] for h, f in zip(runs["hello"], runs["form"], strict=True)])
    summary["runs"] = runs
    return summary


def measure_intake(
    web: Service, hello: Service, workdir: Path, *, rounds: int, duration: float, connections: int, log: Path
) -> dict:
    """Alternate the bare durable POST (bench/hello.py) and the form's POST, as render alternates hello and the
    form; medians of the rounds. Every form POST spends a fresh token (fetched beforehand by GETs of the form, as
    visitors would) on a fresh address. Each round fetches tokens for TOKEN_SHARE of that round's baseline: if
    wrk runs out, the figure is a lower bound, and says so; fetching more would only spend time."""
    warmup = fill_window(web, workdir, connections=connections, log=log)
    run_wrk(
        hello.url + "/",
        connections=connections,
        duration=WARMUP_SECONDS,
        log=log,
        args=("store", f"s{uuid.uuid4().hex[:6]}"),
    )
    runs: dict[str, list[dict]] = {"store": [], "form": []}
    for n in range(rounds):
        store = run_wrk(
            hello.url + "/",
            connections=connections,
            duration=duration,
            log=log,
            args=("store", f"s{uuid.uuid4().hex[:6]}"),
        )
        runs["store"].append(store)
        count = int(store["ok_rps"] * TOKEN_SHARE * duration) + 200
        started = time.monotonic()
        token_file = workdir / "tokens.txt"
        token_file.write_text("\n".join(fetch_tokens(form_url(web), count)) + "\n", encoding="utf-8")
        fetched = time.monotonic() - started
        form = run_wrk(
            form_url(web),
            connections=connections,
            duration=duration,
            log=log,
            args=("post", str(token_file), "2", f"i{uuid.uuid4().hex[:6]}"),
        )
        form["tokens"], form["lower_bound"] = count, form["exhausted_threads"] > 0
        runs["form"].append(form)
        print(
            f"  intake round {n + 1}/{rounds} store: {store['ok_rps']:.0f}/s, "
            f"p99 {store['latency_ms']['p99']:.1f} ms;"
            f" form: {'≥ ' if form['lower_bound'] else ''}{form['ok_rps']:.0f} signups/s, "
            f"p99 {form['latency_ms']['p99']:.1f} ms, {form['ok']} ok, {form['limited']} limited, "
            f"{form['invalid']} invalid, {form['other']} other ({count} tokens fetched in {fetched:.0f} s)",
            flush=True,
        )
    summary: dict[str, Any] = {
        name: {"ok_rps": median([r["ok_rps"] for r in rs]), "p99_ms": median([r["latency_ms"]["p99"] for r in rs])}
        for name, rs in runs.items()
    }
    summary["ratio"] = median([f["ok_rps"] / s["ok_rps"] for s, f in zip(runs["store"], runs["form"], strict=True)])
    summary["lower_bound"] = any(f["lower_bound"] for f in runs["form"])
    summary["refused"] = sum(f["limited"] + f["invalid"] + f["other"] for f in runs["form"])
    summary["warmup"] = {"ok": warmup["ok"], "latency_ms": warmup["latency_ms"]}
    summary["runs"] = runs
    return summary


def fill_window(web: Service, workdir: Path, *, connections: int, log: Path | None = None) -> dict:
    """Post a window's worth of signups, so ConvertKit's window is full and older signups wait in the queue.

    The intake budget is about a launch: the limiter has no room, so the visitor must not wait for ConvertKit.
    The first posts of a quiet minute do wait for it (that single inline attempt is what puts ConvertKit's 422
    into the form), so they are reported apart; from then on the worker's backlog takes every slot that frees.
    """
    warm_file = workdir / "warm-tokens.txt"
    warm_file.write_text(
        "\n".join(fetch_tokens(form_url(web), int(INTAKE_LIMIT.split("/")[0]) + 30)) + "\n", encoding="utf-8"
    )
    warmup = run_wrk(
        form_url(web),
        connections=connections,
        duration=4,
        log=log,
        args=("post", str(warm_file), "2", f"w{uuid.uuid4().hex[:6]}"),
    )
    print(
        f"  warm-up (window filling, inline attempts): {warmup['ok']} ok, "
        f"p50 {warmup['latency_ms']['p50']:.1f} ms, p99 {warmup['latency_ms']['p99']:.1f} ms",
        flush=True,
    )
    return warmup


# 7: slow clients ------------------------------------------------------------------------------------------


def measure_slow_clients(web: Service, *, rounds: int, duration: float, connections: int, log: Path) -> dict:
    """The form's GET p99 with SLOW_CLIENTS trickling connections open beside wrk's, against the same without
    them, alternating (without, with, …) so both see the same noise; the ratio is the median of the rounds'."""
    runs: dict[str, list[dict]] = {"without": [], "with": []}
    slow_stats = []
    for n in range(rounds):
        runs["without"].append(run_wrk(form_url(web), connections=connections, duration=duration, log=log))
        with SlowClients(web.url, SLOW_CLIENTS) as slow:
            time.sleep(1)  # every slow connection open and trickling before wrk starts
            runs["with"].append(run_wrk(form_url(web), connections=connections, duration=duration, log=log))
        slow_stats.append({"reopened": slow.reopened, "failed_opens": slow.failed_opens})
        without, with_ = runs["without"][-1], runs["with"][-1]
        print(
            f"  slow clients round {n + 1}/{rounds}: p99 {without['latency_ms']['p99']:.1f} ms without, "
            f"{with_['latency_ms']['p99']:.1f} ms with {SLOW_CLIENTS} trickling ({slow.reopened} reopened after "
            f"408s); {with_['rps']:.0f} against {without['rps']:.0f} req/s",
            flush=True,
        )
    summary: dict[str, Any] = {
        name: {
            "rps": median([r["rps"] for r in rs]),
            "p99_ms": median([r["latency_ms"]["p99"] for r in rs]),
            "errors": sum(sum(r["errors"].values()) for r in rs),
        }
        for name, rs in runs.items()
    }
    # A run that got no answer at all has no latencies: its p99 reads 0, so it counts as infinitely slow.
    summary["ratio"] = median(
        [
            w["latency_ms"]["p99"] / wo["latency_ms"]["p99"] if w["requests"] else math.inf
            for wo, w in zip(runs["without"], runs["with"], strict=True)
        ]
    )
    summary["slow"] = slow_stats
    summary["runs"] = runs
    return summary


# 4: weight ------------------------------------------------------------------------------------------------


class Subresources(HTMLParser):
    """The URLs a document makes the browser fetch: stylesheets, scripts, images, frames, preloads."""

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if (
            tag == "link"
            and attrs.get("href")
            and ({"stylesheet", "preload", "modulepreload", "icon"} & set((attrs.get("rel") or "").split()))
        ):
            self.urls.append(attrs["href"])
        elif tag in ("script", "img", "iframe") and attrs.get("src"):
            self.urls.append(attrs["src"])


def css_urls(css: str) -> list[str]:
    """url(...) and @import in a stylesheet: fonts and images are requests too."""
    found = re.findall(r"""url\(\s*['"]?([^'")]+)['"]?\s*\)""", css)
    found += re.findall(r"""@import\s+['"]([^'"]+)['"]""", css)
    return [u for u in found if not u.startswith("data:")]


def gz_size(data: bytes) -> int:
    """What the bytes cost on the wire when compressed (gzip -9, as WhiteNoise's own compressor does)."""
    return len(gzip.compress(data, compresslevel=9, mtime=0))


def measure_weight(web: Service) -> dict:
    """Fetch the iframe document and what it references (recursively into CSS), sum their gzipped sizes."""
    own = urlsplit(web.url).netloc
    embed = requests.get(web.url + "/embed.js", timeout=10).content
    page_url = form_url(web)
    html = requests.get(page_url, timeout=10)
    parser = Subresources()
    parser.feed(html.text)
    queue = [urljoin(page_url, u) for u in parser.urls]
    files = {page_url: gz_size(html.content)}
    foreign = []
    while queue:
        url = queue.pop(0)
        if url in files or url in foreign:
            continue
        if urlsplit(url).netloc != own:
            foreign.append(url)
            continue
        response = requests.get(url, timeout=10)
        files[url] = gz_size(response.content)
        if "css" in response.headers.get("Content-Type", ""):
            queue += [urljoin(url, u) for u in css_urls(response.text)]
    return {
        "embed_gz": gz_size(embed),
        "frame_files_gz": files,
        "frame_gz": sum(files.values()),
        "foreign_requests": foreign,
    }


# 5: caching -----------------------------------------------------------------------------------------------


def max_age(cache_control: str) -> int | None:
    for part in cache_control.split(","):
        name, _, value = part.strip().partition("=")
        if name.lower() in ("max-age", "s-maxage") and value.isdigit():
            return int(value)
    return None


def caching_facts(url: str) -> dict:
    """One file's caching headers, whether its ETag revalidates (304), and whether it comes compressed."""
    plain = requests.get(url, headers={"Accept-Encoding": "identity"}, timeout=10)
    etag = plain.headers.get("ETag")
    revalidated = etag is not None and requests.get(url, headers={"If-None-Match": etag}, timeout=10).status_code == 304
    packed = requests.get(url, headers={"Accept-Encoding": "gzip, br"}, timeout=10, stream=True)
    packed.close()
    return {
        "url": url,
        "status": plain.status_code,
        "etag": etag,
        "revalidates": revalidated,
        "cache_control": plain.headers.get("Cache-Control", ""),
        "max_age": max_age(plain.headers.get("Cache-Control", "")),
        "content_encoding": packed.headers.get("Content-Encoding"),
    }


def measure_caching(web: Service) -> dict:
    parser = Subresources()
    parser.feed(requests.get(form_url(web), timeout=10).text)
    statics = [urljoin(form_url(web), u) for u in parser.urls if urlsplit(u).path.startswith("/static/")]
    return {"embed": caching_facts(web.url + "/embed.js"), "static": [caching_facts(u) for u in statics]}


def caching_checks(facts: dict) -> list[Check]:
    embed, statics = facts["embed"], facts["static"]
    every = [embed, *statics]
    short = embed["max_age"]
    long_ages = [f["max_age"] or 0 for f in statics]
    return [
        Check(
            "ETag (and 304) on /embed.js and /static/*",
            f"{sum(f['revalidates'] for f in every)}/{len(every)}",
            "all",
            all(f["revalidates"] for f in every),
        ),
        Check(
            "/embed.js Cache-Control max-age",
            "-" if short is None else f"{short} s",
            f"<= {HOUR} s",
            short is not None and 0 < short <= HOUR,
        ),
        Check(
            "versioned /static/* max-age (least)",
            f"{min(long_ages, default=0)} s",
            f">= {DAY} s",
            bool(statics) and min(long_ages) >= DAY,
        ),
        Check(
            "compressed for Accept-Encoding: gzip, br",
            f"{sum(bool(f['content_encoding']) for f in every)}/{len(every)}",
            "all",
            all(f["content_encoding"] in ("gzip", "br") for f in every),
        ),
    ]


# 6: start-up ----------------------------------------------------------------------------------------------


def measure_startup(workdir: Path, databases: Databases, *, times: int) -> list[float]:
    """Each start from nothing running to the first 200 from /healthz. The database exists after the first
    start, as on a restart; ConvertKit is not called while starting, so no sandbox is needed."""
    seconds = []
    database_url = databases.url("startup")
    for _ in range(times):
        with Services(workdir) as services:
            env = app_env(
                workdir, "http://127.0.0.1:9", rate_limit=INTAKE_LIMIT, port=free_port(), database_url=database_url
            )
            _, startup = start_web(services, env, name="startup")
            seconds.append(startup)
    return seconds


# The run --------------------------------------------------------------------------------------------------


def start_stack(services: Services, workdir: Path, databases: Databases | None = None) -> tuple[Service, Service]:
    """The Procfile's web and worker against a slow, rate-limited sandbox, plus the hello baseline; (web, hello).

    The app trusts one proxy hop, as behind the platform's router, and keeps the default per-IP limit: the
    intake figures' POSTs each come from their own X-Forwarded-For address, as visitors do.
    """
    databases = databases or Databases(workdir)
    sandbox = start_sandbox(services, rate_limit=INTAKE_LIMIT, latency=INTAKE_LATENCY)
    env = app_env(workdir, sandbox.url, rate_limit=INTAKE_LIMIT, port=free_port(), database_url=databases.url("app"))
    env |= {"TRUSTED_PROXY_HOPS": "1", "RATE_LIMIT_PER_IP": "10/60"}
    web, _ = start_web(services, env)
    start_worker(services, env)
    # The baselines keep their signups in a database of their own, out of the worker's queue.
    hello, _ = start_web(
        services,
        env | {"PORT": str(free_port()), "DATABASE_URL": databases.url("baseline")},
        app="bench.hello:app",
        name="hello",
        ready_path="/",
    )
    return web, hello


def run(args, workdir: Path, databases: Databases) -> dict:
    log = workdir / "wrk.log"
    results: dict = {
        "config": {k: str(v) for k, v in vars(args).items() if k != "database_url"} | {"database": databases.kind}
    }
    print("start-up …", flush=True)
    results["startup_s"] = measure_startup(workdir / "startup", databases, times=3)
    with Services(workdir) as services:
        web, hello = start_stack(services, workdir, databases)
        print("weight and caching …", flush=True)
        results["weight"] = measure_weight(web)
        results["caching"] = measure_caching(web)
        print("render …", flush=True)
        results["render"] = measure_render(
            hello, web, rounds=args.rounds, duration=args.duration, connections=args.connections, log=log
        )
        print(f"slow clients ({SLOW_CLIENTS} trickling) …", flush=True)
        results["slow_clients"] = measure_slow_clients(
            web, rounds=args.rounds, duration=args.duration, connections=args.connections, log=log
        )
        print("intake …", flush=True)
        results["intake"] = measure_intake(
            web, hello, workdir, rounds=args.rounds, duration=args.duration, connections=args.connections, log=log
        )
    print(f"delivery ({args.delivery_count} signups at {args.delivery_limit}) …", flush=True)
    results["delivery"] = delivery.run(
        count=args.delivery_count,
        limit=args.delivery_limit,
        latency=INTAKE_LATENCY,
        clients=args.connections,
        log_dir=workdir / "delivery",
        database_url=databases.url("delivery"),
    )
    return results


def checks(results: dict, connections: int) -> list[Check]:
    render, intake, weight = results["render"], results["intake"], results["weight"]
    slow = results["slow_clients"]
    dseen = results["delivery"]["sandbox"]
    dlimit = delivery.parse_limit(results["delivery"]["config"]["limit"])
    steady, whole = dseen["backlog_rate_fraction"], dseen["backlog_rate_fraction_whole"]
    startup = median(results["startup_s"])
    bound = "≥ " if intake["lower_bound"] else ""
    return [
        Check(
            "render: form/hello throughput (median of rounds)",
            f"{render['ratio']:.2f} ({render['form']['rps']:.0f}/{render['hello']['rps']:.0f} req/s)",
            f">= {BUDGETS['render_ratio']}",
            render["ratio"] >= BUDGETS["render_ratio"],
        ),
        Check(
            f"render: form p99 at {connections} conns",
            fmt_ms(render["form"]["p99_ms"]),
            f"< {BUDGETS['render_p99_ms']:.0f} ms",
            render["form"]["p99_ms"] < BUDGETS["render_p99_ms"],
        ),
        Check(f"render: hello p99 at {connections} conns (baseline)", fmt_ms(render["hello"]["p99_ms"]), "-", None),
        Check(
            f"slow clients: form p99 with {SLOW_CLIENTS} trickling/without (median of rounds)",
            f"{slow['ratio']:.2f} ({fmt_ms(slow['with']['p99_ms'])}/{fmt_ms(slow['without']['p99_ms'])})",
            f"<= {BUDGETS['slow_p99_ratio']:.0f}",
            slow["ratio"] <= BUDGETS["slow_p99_ratio"],
        ),
        Check(
            "slow clients: form req/s with them/without",
            f"{slow['with']['rps'] / slow['without']['rps']:.2f} "
            f"({slow['with']['rps']:.0f}/{slow['without']['rps']:.0f})",
            "-",
            None,
        ),
        Check("slow clients: wrk errors beside them", str(slow["with"]["errors"]), "0", slow["with"]["errors"] == 0),
        Check(
            "intake: form POST/bare durable POST (median of rounds)",
            f"{bound}{intake['ratio']:.2f} ({bound}{intake['form']['ok_rps']:.0f}/{intake['store']['ok_rps']:.0f}"
            " per s)",
            f">= {BUDGETS['intake_ratio']:.2f}",
            intake["ratio"] >= BUDGETS["intake_ratio"],
        ),
        Check(
            f"intake: form POST p99 at {connections} conns",
            fmt_ms(intake["form"]["p99_ms"]),
            f"< {BUDGETS['intake_p99_ms']:.0f} ms",
            intake["form"]["p99_ms"] < BUDGETS["intake_p99_ms"],
        ),
        Check(
            f"intake: bare durable POST p99 at {connections} conns (baseline)",
            fmt_ms(intake["store"]["p99_ms"]),
            "-",
            None,
        ),
        Check("intake: refused POSTs", str(intake["refused"]), "0", intake["refused"] == 0),
        Check(
            "intake: signups/s against form renders/s (first budget, withdrawn)",
            f"{bound}{intake['form']['ok_rps'] / render['form']['rps']:.2f}",
            "-",
            None,
        ),
        Check(
            "intake: warm-up p99 (window had room: one inline attempt)",
            fmt_ms(intake["warmup"]["latency_ms"]["p99"]),
            "-",
            None,
        ),
        Check(
            f"delivery: steady rate, backlog ({dlimit})",
            "-" if steady is None else f"{steady:.3f}",
            f">= {BUDGETS['delivery_rate']}",
            None if steady is None else steady >= BUDGETS["delivery_rate"],
        ),
        Check("delivery: rate incl. the burst's refill", "-" if whole is None else f"{whole:.3f}", "-", None),
        Check(
            "delivery: most in one window",
            str(dseen["max_window"]),
            f"<= {dlimit.count}",
            dseen["max_window"] <= dlimit.count,
        ),
        Check(
            "delivery: lost / duplicated / 429s",
            f"{dseen['lost']} / {dseen['duplicated']} / {dseen['status_429']}",
            "0 / 0 / 0",
            dseen["lost"] == dseen["duplicated"] == dseen["status_429"] == 0,
        ),
        Check(
            "weight: /embed.js gzipped",
            f"{weight['embed_gz']} B",
            f"<= {BUDGETS['embed_gz']} B",
            weight["embed_gz"] <= BUDGETS["embed_gz"],
        ),
        Check(
            f"weight: iframe document + {len(weight['frame_files_gz']) - 1} files gzipped",
            f"{weight['frame_gz']} B",
            f"<= {BUDGETS['frame_gz']} B",
            weight["frame_gz"] <= BUDGETS["frame_gz"],
        ),
        Check(
            "weight: requests to other hosts", str(len(weight["foreign_requests"])), "0", not weight["foreign_requests"]
        ),
        *caching_checks(results["caching"]),
        Check("start-up to first /healthz 200 (median of 3)", f"{startup:.2f} s", "-", None),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.suite", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="hello/form render rounds (default 3)")
    parser.add_argument("--duration", type=float, default=10, help="seconds per wrk run (default 10)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--delivery-count", type=int, default=100, help="signups in the delivery run (100)")
    parser.add_argument(
        "--delivery-limit",
        type=delivery.parse_limit,
        default=RateLimit(20, 10),
        help="ConvertKit limit for the delivery run (default 20/10)",
    )
    parser.add_argument(
        "--database-url",
        metavar="postgresql://…",
        help="run every part on this PostgreSQL database, in schemas of its own that are dropped "
        "at the end (default: SQLite files, as on one machine)",
    )
    args = parser.parse_args(argv)
    if args.database_url and not args.database_url.startswith("postgresql://"):
        parser.error("--database-url takes a postgresql:// URL; SQLite is the default")
    if not wrk_available():
        print("wrk is not installed (apt-get install wrk); `make bench` installs it when run as root", file=sys.stderr)
        return 2
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-suite-") as tmp, Databases(Path(tmp), args.database_url) as dbs:
        try:
            results = run(args, Path(tmp), dbs)
        except Exception:
            for log in sorted(Path(tmp).rglob("*.log")):
                print(f"--- {log.name} (tail) ---\n{log.read_text(errors='replace')[-2000:]}", file=sys.stderr)
            raise
    table = checks(results, args.connections)
    print(f"\ndatabase: {results['config']['database']}")
    print_table(table)
    results["checks"] = [vars(c) | {"verdict": c.verdict} for c in table]
    results["seconds"] = math.ceil(time.monotonic() - started)
    print(f"\n{results['seconds']} s; wrote {write_json('bench.json', results)}")
    return 1 if any(c.passed is False for c in table) else 0


if __name__ == "__main__":
    sys.exit(main())
