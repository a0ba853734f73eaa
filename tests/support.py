"""Helpers shared by test files (fixtures stay in conftest.py)."""

from conftest import wait_until


def fast_env(env, **extra):
    """Retries and pause checks scaled from minutes to fractions of a second."""
    return {**env, "CONVERTKIT_TIMEOUT": "0.5", "DELIVERY_RETRY_BASE_SECONDS": "0.05",
            "DELIVERY_PAUSE_CHECK_SECONDS": "0.3", "CONVERTKIT_RATE_LIMIT": "100/1", **extra}


def record(services, n, form="simple", prefix="person", *, with_tags=False):
    """Signups as the web stored them, before any attempt: the queue the worker must drain."""
    spec = services.forms[form]
    return [services.signups.record(form_slug=form, convertkit_form_id=spec.convertkit_form_id,
                                    email=f"{prefix}{i}@example.com", first_name=None, fields={},
                                    tags=spec.tags if with_tags else (), ip_hash=None) for i in range(n)]


def delivered_emails(ck):
    return [r["json"]["email"] for r in ck.requests(path_contains="/subscribe") if r["status"] == 200
            and r["path"].endswith("/subscribe")]


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
    return {**env, "CONVERTKIT_API_VERSION": "v4", "CONVERTKIT_API_KEY": ck.v4_api_key,
            "CONVERTKIT_API_SECRET": "", "CONVERTKIT_API_URL": ck.api_v4_url, **extra}
