"""Throughput and p99 latency against concurrency, for the render path and the intake path: docs/performance.png.

    .venv/bin/python -m bench.chart [--duration 5] [--output docs/performance.png]

The stack is the suite's (bench/suite.py: gunicorn as the Procfile runs it, the worker, a sandbox answering in
300 ms at ConvertKit's 120/60). One wrk run per point, so read the shape, not the third digit: the machine is
shared. bench/hello.py's two routes are drawn as the ceilings: GET / for render, POST / (store the address,
answer) for intake.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import uuid
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: write the file only
import matplotlib.pyplot as plt  # noqa: E402

from bench.common import ROOT, Services, fetch_tokens, form_url, run_wrk, write_json  # noqa: E402
from bench.suite import fill_window, start_stack  # noqa: E402

CONCURRENCY = (1, 4, 16, 32, 64)


def render_curve(url: str, duration: float) -> list[dict]:
    return [run_wrk(url, connections=c, duration=duration) for c in CONCURRENCY]


def store_curve(url: str, duration: float) -> list[dict]:
    return [
        run_wrk(url, connections=c, duration=duration, args=("store", f"s{uuid.uuid4().hex[:6]}")) for c in CONCURRENCY
    ]


def intake_curve(url: str, workdir: Path, duration: float, ceiling_rps: list[float]) -> list[dict]:
    """Fresh tokens for every point (each is good for one signup), sized from the bare durable POST's rate at
    that point, which the form's POST does not reach."""
    points = []
    for connections, rps in zip(CONCURRENCY, ceiling_rps, strict=True):
        tokens = workdir / f"tokens-{connections}.txt"
        tokens.write_text("\n".join(fetch_tokens(url, int(rps * duration) + 200)) + "\n")
        points.append(
            run_wrk(
                url,
                connections=connections,
                duration=duration,
                args=("post", str(tokens), str(min(2, connections)), f"c{uuid.uuid4().hex[:6]}"),
            )
        )
        print(f"  intake at {connections}: {points[-1]['ok_rps']:.0f}/s", flush=True)
    return points


def draw(curves: dict[str, list[dict]], output: Path) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    styles = {
        "hello (baseline)": "k:",
        "render GET /f/<slug>": "o-",
        "bare durable POST (baseline)": "k--",
        "intake POST (ConvertKit 300 ms)": "s-",
    }
    for name, points in curves.items():
        rate = [p["ok_rps"] if "intake" in name else p["rps"] for p in points]
        left.plot(CONCURRENCY, rate, styles[name], label=name)
        right.plot(CONCURRENCY, [p["latency_ms"]["p99"] for p in points], styles[name], label=name)
    left.set(title="Throughput", xlabel="concurrent connections", ylabel="requests/s (intake: signups/s)")
    right.set(title="p99 latency", xlabel="concurrent connections", ylabel="ms", yscale="log")
    right.axhline(25, color="tab:blue", lw=0.8, ls="--")
    right.axhline(100, color="tab:orange", lw=0.8, ls="--")
    right.text(1, 25, " render budget", va="bottom", fontsize=8, color="tab:blue")
    right.text(1, 100, " intake budget", va="bottom", fontsize=8, color="tab:orange")
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(CONCURRENCY, [str(c) for c in CONCURRENCY])
        ax.grid(alpha=0.3)
    left.legend(fontsize=8)
    fig.suptitle("convertkit-optin under wrk on this machine (2 cores, shared), gunicorn.conf.py defaults", fontsize=10)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chart", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5, help="seconds per point (default 5)")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "performance.png")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-chart-") as tmp, Services(Path(tmp)) as services:
        web, hello = start_stack(services, Path(tmp))
        print("render and hello …", flush=True)
        curves = {
            "hello (baseline)": render_curve(hello.url + "/", args.duration),
            "render GET /f/<slug>": render_curve(form_url(web), args.duration),
        }
        print("bare durable POST and intake …", flush=True)
        curves["bare durable POST (baseline)"] = store_curve(hello.url + "/", args.duration)
        fill_window(web, Path(tmp), connections=32)
        curves["intake POST (ConvertKit 300 ms)"] = intake_curve(
            form_url(web), Path(tmp), args.duration, [p["rps"] for p in curves["bare durable POST (baseline)"]]
        )
    draw(curves, args.output)
    write_json("chart.json", {"concurrency": CONCURRENCY, "curves": curves})
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
