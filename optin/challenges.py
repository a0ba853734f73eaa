"""Optional human checks per form: Cloudflare Turnstile, hCaptcha, or a self-hosted ALTCHA proof of work."""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging

import altcha
import requests

log = logging.getLogger("optin.challenges")

VERIFY_URLS = {
    "turnstile": "https://challenges.cloudflare.com/turnstile/v0/siteverify",
    "hcaptcha": "https://api.hcaptcha.com/siteverify",
}
RESPONSE_FIELDS = {"turnstile": "cf-turnstile-response", "hcaptcha": "h-captcha-response", "altcha": "altcha"}


ALTCHA_MAX_NUMBER = 50_000  # about a quarter of a second of hashing on a phone; a bot pays it per signup
ALTCHA_LIFETIME = dt.timedelta(minutes=20)


class Challenges:
    def __init__(self, settings, nonces, session: requests.Session | None = None):
        self.settings = settings
        self.nonces = nonces
        self.session = session or requests.Session()
        self.verify_urls = {**VERIFY_URLS, **settings.challenge_verify_urls}
        self.secrets = {"turnstile": settings.turnstile_secret, "hcaptcha": settings.hcaptcha_secret}

    def verify(self, spec, formdata, client_ip: str | None) -> bool:
        """Server-side verification, always: a widget that only runs in the browser stops no bot."""
        answer = (formdata.get(RESPONSE_FIELDS[spec.challenge]) or "").strip()
        if not answer or len(answer) > 4096:
            return False
        if spec.challenge == "altcha":
            return self._verify_altcha(answer)
        return self._verify_remote(spec.challenge, answer, client_ip)

    def altcha_challenge(self) -> dict:
        """A signed proof-of-work puzzle: no third party, no cookie, solved by form.js before it posts."""
        challenge = altcha.create_challenge_v1(
            hmac_key=self.settings.secret_key, max_number=ALTCHA_MAX_NUMBER,
            expires=dt.datetime.now(dt.UTC) + ALTCHA_LIFETIME,
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

    def _verify_remote(self, kind: str, answer: str, client_ip: str | None) -> bool:
        secret = self.secrets.get(kind)
        if not secret:
            log.error("form uses %s but %s_SECRET is not set; refusing the submission", kind, kind.upper())
            return False
        data = {"secret": secret, "response": answer}
        if client_ip:
            data["remoteip"] = client_ip
        try:
            response = self.session.post(self.verify_urls[kind], data=data, timeout=(3.05, 5))
            return bool(response.ok and response.json().get("success") is True)
        except (requests.RequestException, ValueError) as exc:
            log.warning("%s verification failed to answer (%s); refusing the submission", kind, type(exc).__name__)
            return False
