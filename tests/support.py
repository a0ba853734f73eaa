"""Helpers and constants shared by test files and conftest.py. Test files import them from here, never from
conftest.py or from one another; fixtures stay in conftest.py."""

import os
import re
import socket
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SECRET_KEY = "test-secret-key-that-is-long-enough"
API_KEY = "ck_test_key_4f9a8b7c6d5e"
API_SECRET = "ck_test_secret_1a2b3c4d5e6f"
POSTGRES_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
REQUIRE = os.environ.get("OPTIN_REQUIRE_SERVICES") == "1"

FORMS_TOML = """
[forms.launch]
convertkit_form_id = 4242
title = "Get launch updates"
description = "One email when we ship."
button = "Notify me"
success_message = "Thanks! Check your inbox."
tags = [101, 102]

[[forms.launch.fields]]
name = "first_name"
label = "First name"

[[forms.launch.fields]]
name = "company"
label = "Company"
required = true

[forms.simple]
convertkit_form_id = 4243
title = "Simple"

[forms.redirecting]
convertkit_form_id = 4244
title = "Redirecting"
redirect_url = "https://example.com/thanks"

[forms.ghost]
convertkit_form_id = 999999
title = "Form that ConvertKit does not have"
"""


def skip_or_fail(reason: str):
    if REQUIRE:
        pytest.fail(f"{reason} (OPTIN_REQUIRE_SERVICES=1: CI must run this test)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def extract_token(html: str) -> str:
    return re.search(r'name="token" type="hidden" value="([^"]+)"', html)[1]


def wait_until(predicate, timeout: float, message: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(message)


def host_page(body: str, title: str = "A customer's website") -> str:
    """A minimal, valid page of the customer's site around some embed code."""
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f'<link rel="icon" href="data:,"></head><body><h1>{title}</h1>{body}</body></html>'
    )


def fast_env(env, **extra):
    """Retries and pause checks scaled from minutes to fractions of a second."""
    return {
        **env,
        "CONVERTKIT_TIMEOUT": "0.5",
        "DELIVERY_RETRY_BASE_SECONDS": "0.05",
        "DELIVERY_PAUSE_CHECK_SECONDS": "0.3",
        "CONVERTKIT_RATE_LIMIT": "100/1",
        **extra,
    }


def record(services, n, form="simple", prefix="person", *, with_tags=False):
    """Signups as the web stored them, before any attempt: the queue the worker must drain."""
    spec = services.forms[form]
    return [
        services.signups.record(
            form_slug=form,
            convertkit_form_id=spec.convertkit_form_id,
            email=f"{prefix}{i}@example.com",
            first_name=None,
            fields={},
            tags=spec.tags if with_tags else (),
            ip_hash=None,
        )
        for i in range(n)
    ]


def delivered_emails(ck):
    return [
        r["json"]["email"]
        for r in ck.requests(path_contains="/subscribe")
        if r["status"] == 200 and r["path"].endswith("/subscribe")
    ]


def subscriptions(ck, prefix=""):
    """How many times ConvertKit subscribed each address to a form: the sandbox's own count."""
    return {s["email"]: s["count"] for s in ck.subscribers() if s["form_id"] and s["email"].startswith(prefix)}


def wait_all_finished(services, timeout=60):
    def done():
        statuses = [s.status for s in services.signups.find()]
        return statuses and all(s != "pending" for s in statuses)

    wait_until(done, timeout, f"still pending: {services.signups.counts()}")


def v4_env(env, ck, **extra):
    """The same app on Kit's v4 API: its own key, no secret."""
    return {
        **env,
        "CONVERTKIT_API_VERSION": "v4",
        "CONVERTKIT_API_KEY": ck.v4_api_key,
        "CONVERTKIT_API_SECRET": "",
        "CONVERTKIT_API_URL": ck.api_v4_url,
        **extra,
    }
