"""The composition root: settings → forms → storage → ConvertKit client → delivery → routes.

`gunicorn app:app` and `flask --app app …` find the app here; importing this module builds nothing until then.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import Flask, request
from flask.sessions import SecureCookieSessionInterface
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

import convertkit
from optin import cli, health, pseudonyms, security, views
from optin.challenges import Challenges
from optin.db import Database
from optin.delivery import Delivery
from optin.forms import form_class
from optin.formspec import FormSpec, load_forms
from optin.frontdoor import PROBLEM, FrontDoor
from optin.intake import Intake
from optin.limiter import RedisWindows, SqlWindows, Windows
from optin.nonces import Nonces, RedisNonces, SqlNonces
from optin.pages import BlankPages, CachedPages
from optin.pauses import Pauses
from optin.settings import Settings
from optin.signups import Signups
from optin.static import register_static
from optin.tokens import TokenSigner


@dataclass
class Services:
    """Everything a request or a command needs, built once per process."""

    settings: Settings
    forms: dict[str, FormSpec]
    db: Database
    signups: Signups
    delivery: Delivery
    intake: Intake
    pages: BlankPages

    def health(self) -> dict:
        return health.report(db=self.db, signups=self.signups, delivery=self.delivery)


def create_app(config: Mapping[str, str] | None = None) -> Flask:
    """Tests pass a mapping of environment variables; production reads os.environ."""
    settings = Settings.from_env(os.environ if config is None else config)
    pseudonyms.configure(settings.secret_key)
    configure_logging()
    app = Flask(__name__)
    app.session_interface = NoSessions()
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SECRET_KEY_FALLBACKS=list(settings.secret_key_fallbacks),
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        MAX_FORM_MEMORY_SIZE=settings.max_body_bytes,
        SHOW_INDEX=settings.show_index,
        WTF_CSRF_ENABLED=True,
    )
    app.extensions["optin"] = build_services(settings)
    register_middleware(app, settings)
    register_blueprints(app)
    register_errorhandlers(app)
    cli.init_app(app)
    return app


def build_services(settings: Settings) -> Services:
    forms = load_forms(settings.forms_file)
    db = Database(settings.database_url)
    if db.is_sqlite:
        db.migrate()  # one machine, no release phase: keep the file's schema current
    else:
        db.check_schema()
    windows: Windows
    nonces: Nonces
    if settings.redis_url:
        import redis

        client = redis.Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
        windows, nonces = RedisWindows(client), RedisNonces(client)
    else:
        windows, nonces = SqlWindows(db), SqlNonces(db)
    signups = Signups(db)
    api = api_client(settings)
    pauses = Pauses(db, first_check_after=settings.pause_check_seconds)
    delivery = Delivery(settings=settings, signups=signups, windows=windows, pauses=pauses, client=api, clock=time.time)
    signer = TokenSigner(
        settings.secret_key,
        fallbacks=settings.secret_key_fallbacks,
        min_age=settings.min_fill_seconds,
        max_age=settings.token_max_age,
    )
    intake = Intake(
        settings=settings,
        form_classes={slug: form_class(spec) for slug, spec in forms.items()},
        signer=signer,
        nonces=nonces,
        windows=windows,
        signups=signups,
        delivery=delivery,
        challenges=Challenges(settings, nonces),
    )
    return Services(
        settings=settings, forms=forms, db=db, signups=signups, delivery=delivery, intake=intake, pages=BlankPages()
    )


def api_client(settings: Settings) -> convertkit.Client | convertkit.ClientV4:
    """The client of the configured API version; v4 needs no secret (its key may read subscribers)."""
    if settings.api_version == "v4":
        return convertkit.ClientV4(settings.api_key, base_url=settings.api_url, timeout=settings.api_timeout)
    return convertkit.Client(
        settings.api_key, api_secret=settings.api_secret, base_url=settings.api_url, timeout=settings.api_timeout
    )


def configure_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


class NoSessions(SecureCookieSessionInterface):
    """Nothing here uses a session (tokens travel in the form), so no request opens or signs one."""

    def open_session(self, app, request):
        return None


def register_middleware(app: Flask, settings: Settings) -> None:
    if settings.trusted_proxy_hops:
        hops = settings.trusted_proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)
    register_static(app)
    services = app.extensions["optin"]
    app.wsgi_app = CachedPages(app.wsgi_app, pages=services.pages, forms=services.forms, signer=services.intake.signer)
    redirect_hosts = frozenset(
        urlsplit(spec.redirect_url).netloc.lower() for spec in services.forms.values() if spec.redirect_url
    )
    app.wsgi_app = FrontDoor(app.wsgi_app, max_body_bytes=settings.max_body_bytes, redirect_hosts=redirect_hosts)
    app.wsgi_app = security.StrictTransport(app.wsgi_app, trusted_hops=settings.trusted_proxy_hops)

    @app.before_request
    def refuse_unreadable_body():
        problem = request.environ.get(PROBLEM)
        if problem is not None:
            raise problem

    @app.after_request
    def headers(response):
        if isinstance(response, security.PreparedResponse):  # a form document: its headers are complete
            return response
        slug = (request.view_args or {}).get("slug")
        spec = app.extensions["optin"].forms.get(slug) if slug else None
        page = views.current_page()
        return security.set_headers(response, spec=spec, embeddable=page is not None and page.embeddable)


def register_blueprints(app: Flask) -> None:
    app.register_blueprint(views.bp)


def register_errorhandlers(app: Flask) -> None:
    app.register_error_handler(HTTPException, views.handle_error)
    app.register_error_handler(Exception, views.handle_unexpected)


def __getattr__(name: str):
    """`app` is built on first use, so tests can import create_app without a production environment."""
    if name == "app":
        globals()["app"] = created = create_app()
        return created
    raise AttributeError(name)
