"""Optional human checks per form: Cloudflare Turnstile, hCaptcha, or a self-hosted ALTCHA proof of work."""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
from dataclasses import dataclass

import altcha
import requests

log = logging.getLogger("optin.challenges")


@dataclass(frozen=True)
class Provider:
    """One kind of challenge, as the forms file, the settings, the template, the CSP and the check know it."""

    name: str  # forms.toml's `challenge`
    response_field: str  # the form field the widget posts its answer in
    verify_url: str | None = None  # a third party's check; None: verified here (ALTCHA)
    csp_hosts: str = ""  # where the widget loads its script, styles and frames from
    script_url: str | None = None
    widget_class: str | None = None  # the class the provider's script looks for
    secret_variable: str | None = None  # the environment variable with the server-side secret

    @property
    def third_party(self) -> bool:
        """Run by another service: the form needs a site key, and the server a secret."""
        return self.verify_url is not None

    @property
    def verify_url_variable(self) -> str:
        """Points the check elsewhere, for tests."""
        return f"{self.name.upper()}_VERIFY_URL"


PROVIDERS = {
    provider.name: provider
    for provider in (
        Provider(
            "turnstile",
            "cf-turnstile-response",
            verify_url="https://challenges.cloudflare.com/turnstile/v0/siteverify",
            csp_hosts="https://challenges.cloudflare.com",
            script_url="https://challenges.cloudflare.com/turnstile/v0/api.js",
            widget_class="cf-turnstile",
            secret_variable="TURNSTILE_SECRET",
        ),
        Provider(
            "hcaptcha",
            "h-captcha-response",
            verify_url="https://api.hcaptcha.com/siteverify",
            csp_hosts="https://hcaptcha.com https://*.hcaptcha.com",
            script_url="https://js.hcaptcha.com/1/api.js",
            widget_class="h-captcha",
            secret_variable="HCAPTCHA_SECRET",
        ),
        Provider("altcha", "altcha"),
    )
}


ALTCHA_MAX_NUMBER = 50_000  # about a quarter of a second of hashing on a phone; a bot pays it per signup
ALTCHA_LIFETIME = dt.timedelta(minutes=20)


class Challenges:
    def __init__(self, settings, nonces, session: requests.Session | None = None):
        self.settings = settings
        self.nonces = nonces
        self.session = session or requests.Session()

    def verify(self, spec, formdata, client_ip: str | None) -> bool:
        """Server-side verification, always: a widget that only runs in the browser stops no bot."""
        provider = PROVIDERS[spec.challenge]
        answer = (formdata.get(provider.response_field) or "").strip()
        if not answer or len(answer) > 4096:
            return False
        if not provider.third_party:
            return self._verify_altcha(answer)
        return self._verify_remote(provider, answer, client_ip)

    def altcha_challenge(self) -> dict:
        """A signed proof-of-work puzzle: no third party, no cookie, solved by form.js before it posts."""
        # In an options object: the keyword overload altcha declares wants every argument, though each has a default.
        challenge = altcha.create_challenge_v1(
            altcha.ChallengeOptionsV1(
                hmac_key=self.settings.secret_key,
                max_number=ALTCHA_MAX_NUMBER,
                expires=dt.datetime.now(dt.UTC) + ALTCHA_LIFETIME,
            )
        )
        return challenge.to_dict()

    def _verify_altcha(self, answer: str) -> bool:
        # A puzzle handed out just before SECRET_KEY was rotated still verifies with SECRET_KEY_FALLBACKS.
        keys = (self.settings.secret_key, *self.settings.secret_key_fallbacks)
        try:
            if not any(altcha.verify_solution_v1(answer, key, check_expires=True)[0] for key in keys):
                return False
            signature = json.loads(base64.b64decode(answer))["signature"]
        except Exception:  # a malformed payload from a client is a failed check, not a 500
            return False
        # Each solved puzzle counts once, or one solution would sign up any number of addresses.
        return self.nonces.use("altcha:" + str(signature)[:128], ALTCHA_LIFETIME.total_seconds())

    def _verify_remote(self, provider: Provider, answer: str, client_ip: str | None) -> bool:
        kind = provider.name
        secret = self.settings.challenge_secrets.get(kind)
        if not secret:
            log.error("form uses %s but %s is not set; refusing the submission", kind, provider.secret_variable)
            return False
        data = {"secret": secret, "response": answer}
        if client_ip:
            data["remoteip"] = client_ip
        verify_url = self.settings.challenge_verify_urls.get(kind, provider.verify_url)
        try:
            response = self.session.post(verify_url, data=data, timeout=(3.05, 5))
            return bool(response.ok and response.json().get("success") is True)
        except (requests.RequestException, ValueError) as exc:
            log.warning("%s verification failed to answer (%s); refusing the submission", kind, type(exc).__name__)
            return False
