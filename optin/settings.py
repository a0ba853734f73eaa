"""Environment → validated settings, read in one place so a bad deploy fails at boot with a clear message."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from convertkit.client import DEFAULT_BASE_URL as V3_URL
from convertkit.v4 import DEFAULT_BASE_URL as V4_URL

from .challenges import PROVIDERS

API_URLS = {"v3": V3_URL, "v4": V4_URL}
DEFAULT_API_URL = V3_URL


class ConfigError(RuntimeError):
    """A missing or bad environment variable; the message names it and never echoes a secret."""


@dataclass(frozen=True)
class RateLimit:
    """N requests per S seconds."""

    count: int
    seconds: float

    @classmethod
    def parse(cls, text: str, *, name: str) -> RateLimit:
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*", text or "")
        if not match or int(match[1]) < 1 or float(match[2]) <= 0:
            raise ConfigError(f"{name} must look like N/S (N requests per S seconds), e.g. 120/60")
        return cls(int(match[1]), float(match[2]))

    def __str__(self) -> str:
        return f"{self.count}/{self.seconds:g}"

    @property
    def per_second(self) -> float:
        return self.count / self.seconds


@dataclass(frozen=True)
class Settings:
    secret_key: str
    api_key: str
    # Older keys, newest first: what they signed still verifies until it expires (a key rotation).
    secret_key_fallbacks: tuple[str, ...] = field(default=(), repr=False)
    api_secret: str | None = field(default=None, repr=False)
    api_url: str = DEFAULT_API_URL
    api_version: str = "v3"
    forms_file: Path = Path("forms.toml")
    database_url: str = "sqlite:///instance/signups.sqlite3"
    redis_url: str | None = None
    rate_limit: RateLimit = RateLimit(120, 60)
    trusted_proxy_hops: int = 1
    api_timeout: float = 5.0
    retry_budget_hours: float = 72.0
    retry_base_seconds: float = 10.0
    check_hours: float = 1.0
    pause_check_seconds: float = 60.0
    lease_seconds: float | None = None
    ip_limit: RateLimit = RateLimit(10, 60)
    email_limit: RateLimit = RateLimit(5, 86400)
    min_fill_seconds: float = 2.0
    token_max_age: float = 6 * 3600
    max_body_bytes: int = 16 * 1024
    request_read_seconds: float = 10.0
    show_index: bool = False
    challenge_verify_urls: Mapping[str, str] = field(default_factory=dict)  # by challenges.PROVIDERS name
    challenge_secrets: Mapping[str, str] = field(default_factory=dict, repr=False)  # by name, those set

    def __repr__(self) -> str:  # the dataclass repr would print secrets
        return f"Settings(api_url={self.api_url!r}, database_url=<hidden>, forms_file={str(self.forms_file)!r})"

    @classmethod
    def database_url_from(cls, env: Mapping[str, str]) -> str:
        database_url = (env.get("DATABASE_URL") or cls.database_url).strip()
        if database_url.startswith("postgres://"):  # Heroku's spelling
            database_url = "postgresql://" + database_url[len("postgres://") :]
        if not database_url.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:")):
            raise ConfigError("DATABASE_URL must be a sqlite:/// or postgresql:// URL")
        return database_url

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Each variable not set takes the field's default above (`cls.<field>`), so defaults live in one place."""
        env = os.environ if env is None else env

        def required(name: str) -> str:
            value = (env.get(name) or "").strip()
            if not value:
                raise ConfigError(f"{name} is not set: the server refuses to start without it (see .env.example)")
            return value

        def number(name: str, default: float, *, minimum: float = 0) -> float:
            raw = env.get(name)
            if raw is None or raw.strip() == "":
                return default
            try:
                value = float(raw)
            except ValueError:
                raise ConfigError(f"{name} must be a number, got {raw!r}") from None
            if value < minimum:
                raise ConfigError(f"{name} must be at least {minimum:g}, got {raw!r}")
            return value

        def limit(name: str, default: RateLimit) -> RateLimit:
            raw = env.get(name)
            return default if not raw else RateLimit.parse(raw, name=name)

        api_version = (env.get("CONVERTKIT_API_VERSION") or cls.api_version).strip().lower()
        if api_version not in API_URLS:
            raise ConfigError("CONVERTKIT_API_VERSION must be v3 or v4")
        api_url = (env.get("CONVERTKIT_API_URL") or API_URLS[api_version]).strip()
        if not re.match(r"https?://[^/\s]+", api_url):
            raise ConfigError(f"CONVERTKIT_API_URL must be an http(s) URL, e.g. {API_URLS[api_version]}")
        if not api_url.endswith("/"):
            api_url += "/"

        database_url = cls.database_url_from(env)

        redis_url = (env.get("REDIS_URL") or "").strip() or None
        if redis_url and not redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError("REDIS_URL must be a redis:// or rediss:// URL")

        third_parties = [provider for provider in PROVIDERS.values() if provider.third_party]
        verify_urls = {p.name: env[p.verify_url_variable] for p in third_parties if env.get(p.verify_url_variable)}
        challenge_secrets = {
            p.name: env[p.secret_variable] for p in third_parties if p.secret_variable and env.get(p.secret_variable)
        }

        return cls(
            secret_key=required("SECRET_KEY"),
            secret_key_fallbacks=tuple(
                key for key in (k.strip() for k in (env.get("SECRET_KEY_FALLBACKS") or "").split(",")) if key
            ),
            api_key=required("CONVERTKIT_API_KEY"),
            api_secret=(env.get("CONVERTKIT_API_SECRET") or "").strip() or None,
            api_url=api_url,
            api_version=api_version,
            forms_file=Path(env.get("FORMS_FILE") or cls.forms_file),
            database_url=database_url,
            redis_url=redis_url,
            rate_limit=limit("CONVERTKIT_RATE_LIMIT", cls.rate_limit),
            trusted_proxy_hops=int(number("TRUSTED_PROXY_HOPS", cls.trusted_proxy_hops)),
            api_timeout=number("CONVERTKIT_TIMEOUT", cls.api_timeout, minimum=0.1),
            retry_budget_hours=number("DELIVERY_RETRY_HOURS", cls.retry_budget_hours, minimum=0.0001),
            retry_base_seconds=number("DELIVERY_RETRY_BASE_SECONDS", cls.retry_base_seconds, minimum=0.01),
            check_hours=number("DELIVERY_CHECK_HOURS", cls.check_hours, minimum=0.0001),
            pause_check_seconds=number("DELIVERY_PAUSE_CHECK_SECONDS", cls.pause_check_seconds, minimum=0.1),
            lease_seconds=number("DELIVERY_LEASE_SECONDS", cls.lease_seconds or 0) or None,  # 0 too: the default
            ip_limit=limit("RATE_LIMIT_PER_IP", cls.ip_limit),
            email_limit=limit("RATE_LIMIT_PER_EMAIL", cls.email_limit),
            min_fill_seconds=number("MIN_FILL_SECONDS", cls.min_fill_seconds),
            token_max_age=number("TOKEN_MAX_AGE", cls.token_max_age, minimum=1),
            max_body_bytes=int(number("MAX_BODY_BYTES", cls.max_body_bytes, minimum=1024)),
            request_read_seconds=number("REQUEST_READ_SECONDS", cls.request_read_seconds, minimum=1),
            show_index=(env.get("SHOW_INDEX") or "").strip().lower() in {"1", "true", "yes", "on"},
            challenge_verify_urls=verify_urls,
            challenge_secrets=challenge_secrets,
        )
