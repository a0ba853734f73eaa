"""Optional human checks per form: Cloudflare Turnstile, hCaptcha, or a self-hosted ALTCHA proof of work."""

from __future__ import annotations

import logging

import requests

log = logging.getLogger("optin.challenges")

VERIFY_URLS = {
    "turnstile": "https://challenges.cloudflare.com/turnstile/v0/siteverify",
    "hcaptcha": "https://api.hcaptcha.com/siteverify",
}
RESPONSE_FIELDS = {"turnstile": "cf-turnstile-response", "hcaptcha": "h-captcha-response", "altcha": "altcha"}


class Challenges:
    def __init__(self, settings, session: requests.Session | None = None):
        self.settings = settings
        self.session = session or requests.Session()
        self.verify_urls = {**VERIFY_URLS, **settings.challenge_verify_urls}
        self.secrets = {"turnstile": settings.turnstile_secret, "hcaptcha": settings.hcaptcha_secret}

    def verify(self, spec, formdata, client_ip: str | None) -> bool:
        """Server-side verification, always: a widget that only runs in the browser stops no bot."""
        answer = (formdata.get(RESPONSE_FIELDS[spec.challenge]) or "").strip()
        if not answer or len(answer) > 4096:
            return False
        return self._verify_remote(spec.challenge, answer, client_ip)

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
