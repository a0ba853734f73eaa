"""ConvertKit's v3 API as the notes record it: key or secret in the body or the query, `{"error", "message"}` bodies."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, request

from .state import (
    ACCOUNT_EMAIL,
    ACCOUNT_NAME,
    BAD_JSON,
    INVALID_EMAIL,
    NOT_FOUND,
    NOT_PRESENT,
    NOT_VALID,
    TAG_NOT_FOUND,
    State,
    json_answer,
    plausible_email,
    sandbox_state,
)

api = Blueprint("sandbox_api", __name__, url_prefix="/v3")


@api.post("/forms/<int:form_id>/subscribe")
def subscribe_to_form(form_id: int) -> Response:
    return _subscribe("form", form_id)


@api.post("/tags/<int:tag_id>/subscribe")
def subscribe_to_tag(tag_id: int) -> Response:
    return _subscribe("tag", tag_id)


def _subscribe(kind: str, target: int) -> Response:
    if g.malformed:
        return json_answer(BAD_JSON, 400)
    denied = _denied()
    if denied:
        return denied
    state = sandbox_state()
    payload = g.payload or {}
    email, first_name = payload.get("email"), payload.get("first_name")
    fields, raw_tags = payload.get("fields") or {}, payload.get("tags") or []
    with state.lock:
        if target not in (state.forms if kind == "form" else state.tags):
            return json_answer(NOT_FOUND, 404)
        if not plausible_email(email):
            return json_answer(INVALID_EMAIL, 422)
        if not isinstance(fields, dict) or not isinstance(first_name, str | None):
            return json_answer({"error": "Error updating subscriber", "message": "Invalid parameters"}, 422)
        if not isinstance(raw_tags, list) or not all(str(t).isdigit() for t in raw_tags):
            return json_answer(TAG_NOT_FOUND, 422)
        tags = [int(t) for t in raw_tags]
        if any(tag not in state.tags for tag in tags):
            return json_answer(TAG_NOT_FOUND, 422)
        subscription = state.subscribe(kind, target, email, first_name, fields, tags)
    return json_answer({"subscription": subscription})


@api.get("/forms")
def list_forms() -> Response:
    denied = _denied()
    if denied:
        return denied
    state = sandbox_state()
    with state.lock:
        forms = [_form_json(state, form_id) for form_id in state.forms]
    return json_answer({"forms": forms})


def _form_json(state: State, form_id: int) -> dict[str, Any]:
    name = state.forms[form_id].name
    return {
        **state.form_json(form_id),
        "title": name,
        "description": "",
        "sign_up_button_text": "Subscribe",
        "success_message": "Success! Now check your email to confirm your subscription.",
    }


@api.get("/tags")
def list_tags() -> Response:
    denied = _denied()
    if denied:
        return denied
    with sandbox_state().lock:
        return json_answer({"tags": sandbox_state().tag_list()})


@api.get("/custom_fields")
def list_custom_fields() -> Response:
    denied = _denied()
    if denied:
        return denied
    with sandbox_state().lock:
        return json_answer({"custom_fields": sandbox_state().custom_field_list()})


@api.get("/account")
def account() -> Response:
    denied = _denied(secret_only=True)
    if denied:
        return denied
    return json_answer(
        {
            "name": ACCOUNT_NAME,
            "plan_type": "creator",
            "primary_email_address": ACCOUNT_EMAIL,
        }
    )


@api.get("/subscribers")
def list_subscribers() -> Response:
    denied = _denied(secret_only=True)
    if denied:
        return denied
    wanted = (request.args.get("email_address") or "").lower()
    with sandbox_state().lock:
        found = [
            {**subscriber, "fields": dict(subscriber["fields"])}
            for key, subscriber in sandbox_state().subscribers.items()
            if not wanted or key == wanted
        ]
    return json_answer({"total_subscribers": len(found), "page": 1, "total_pages": 1, "subscribers": found})


SUBSCRIPTIONS_PER_PAGE = 50


@api.get("/forms/<int:form_id>/subscriptions")
def list_form_subscriptions(form_id: int) -> Response:
    denied = _denied(secret_only=True)
    if denied:
        return denied
    state = sandbox_state()
    try:
        page = max(1, int(request.args.get("page") or 1))
    except ValueError:
        page = 1
    with state.lock:
        if form_id not in state.forms:
            return json_answer(NOT_FOUND, 404)
        found = [dict(s) for s in state.subscriptions.get(form_id, [])]
    if request.args.get("sort_order") == "desc":
        found.reverse()
    pages = max(1, -(-len(found) // SUBSCRIPTIONS_PER_PAGE))
    start = (page - 1) * SUBSCRIPTIONS_PER_PAGE
    return json_answer(
        {
            "total_subscriptions": len(found),
            "page": page,
            "total_pages": pages,
            "subscriptions": found[start : start + SUBSCRIPTIONS_PER_PAGE],
        }
    )


def supplied(name: str) -> str | None:
    for source in (g.get("payload") or {}, request.args):
        value = source.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def _denied(*, secret_only: bool = False) -> Response | None:
    state = sandbox_state()
    key, secret = supplied("api_key"), supplied("api_secret")
    with state.lock:
        if secret is not None and secret == state.api_secret:
            return None
        if not secret_only and key is not None and key == state.api_key:
            return None
    return json_answer(NOT_PRESENT if key is None and secret is None else NOT_VALID, 401)


def credential() -> str:
    """The credential whose rate-limit bucket this call spends: the key when both are given."""
    return supplied("api_key") or supplied("api_secret") or ""
