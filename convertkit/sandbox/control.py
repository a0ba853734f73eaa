"""The /_sandbox/ endpoints: what arrived, which faults wait, the config, and a reset."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict

from flask import Blueprint, Response, request

from .state import Fault, json_answer, sandbox_state

control = Blueprint("sandbox_control", __name__, url_prefix="/_sandbox")


@control.get("/")
def summary() -> Response:
    """What a developer running `make run` wants to see: did my signups arrive, and how often."""
    state = sandbox_state()
    signups = state.signup_list()
    with state.lock:
        statuses = Counter(str(entry["status"]) for entry in state.log)
        faults = [asdict(fault) for fault in state.faults]
        total = len(state.log)
        in_flight = state.in_flight
    return json_answer(
        {
            "api_url": request.host_url + "v3/",
            "api_v4_url": request.host_url + "v4/",
            "config": state.config(),
            "requests": total,
            "in_flight": in_flight,
            "statuses": dict(statuses),
            "subscriptions": sum(s["count"] for s in signups),
            "duplicates": sum(s["count"] - 1 for s in signups),
            "subscribers": signups,
            "faults": faults,
        }
    )


@control.get("/requests")
def list_requests() -> Response:
    needle = request.args.get("path_contains")
    state = sandbox_state()
    with state.lock:
        entries = [dict(e) for e in state.log if needle is None or needle in e["path"]]
    return json_answer(entries)


@control.delete("/requests")
def clear_requests() -> Response:
    state = sandbox_state()
    with state.lock:
        state.log.clear()
        state.arrivals.clear()
    return Response(status=204)


@control.get("/faults")
def list_faults() -> Response:
    with sandbox_state().lock:
        return json_answer([asdict(fault) for fault in sandbox_state().faults])


@control.post("/faults")
def add_faults() -> Response:
    specs = (request.get_json(silent=True) or {}).get("faults")
    try:
        if not isinstance(specs, list):
            raise ValueError('send {"faults": [...]}')
        faults = [Fault.parse(spec) for spec in specs]
    except (TypeError, ValueError) as exc:
        return json_answer({"error": str(exc)}, 400)
    state = sandbox_state()
    with state.lock:
        state.faults += faults
        pending = len(state.faults)
    return json_answer({"queued": len(faults), "pending": pending}, 201)


@control.delete("/faults")
def clear_faults() -> Response:
    with sandbox_state().lock:
        sandbox_state().faults.clear()
    return Response(status=204)


@control.get("/config")
def get_config() -> Response:
    return json_answer(sandbox_state().config())


@control.post("/config")
def set_config() -> Response:
    changes = request.get_json(silent=True)
    try:
        if not isinstance(changes, dict):
            raise ValueError("send a JSON object")
        sandbox_state().configure(changes)
    except (TypeError, ValueError) as exc:
        return json_answer({"error": str(exc)}, 400)
    return json_answer(sandbox_state().config())


@control.get("/subscribers")
def list_signups() -> Response:
    return json_answer(sandbox_state().signup_list())


@control.post("/reset")
def reset() -> Response:
    sandbox_state().reset()
    return Response(status=204)
