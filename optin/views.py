"""The routes: the iframe document, the landing page, the script embed, the index and the health check."""

from __future__ import annotations

import logging

from flask import Blueprint, abort, current_app, jsonify, redirect, render_template, request, url_for
from sqlalchemy.exc import DBAPIError, OperationalError
from werkzeug.datastructures import ImmutableMultiDict
from werkzeug.exceptions import (
    BadRequest,
    HTTPException,
    InternalServerError,
    ServiceUnavailable,
    UnsupportedMediaType,
)

from . import health, security
from .intake import FORM_ERRORS, Result
from .pages import PAGES, Page

bp = Blueprint("forms", __name__)
log = logging.getLogger("optin.views")


def services():
    return current_app.extensions["optin"]


def spec_or_404(slug: str):
    spec = services().forms.get(slug)
    if spec is None:
        abort(404)
    return spec


def wants_json() -> bool:
    accept = request.headers.get("Accept", "")
    if "json" not in accept:  # browsers asking for a page: skip the parsing
        return False
    if accept == "application/json":  # what form.js and most API clients send: nothing to weigh
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json" and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]


def submitted_data() -> ImmutableMultiDict:
    """Form posts and JSON posts become the same flat string mapping; anything else is refused plainly."""
    if request.is_json:
        try:
            body = request.get_json(silent=True)
        except RecursionError:  # json gives up on deep nesting this way, not with a ValueError
            log.info("%s: JSON nested too deeply; 400", request.path[:100])
            raise BadRequest("The request body is nested too deeply.") from None
        if not isinstance(body, dict):
            raise BadRequest("The request body must be a JSON object.")
        return ImmutableMultiDict({str(k): v for k, v in body.items() if isinstance(v, str)})
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data", ""):
        return request.form  # already a string mapping: uploaded files land in request.files, never here
    raise UnsupportedMediaType("Send the form as application/x-www-form-urlencoded or application/json.")


def current_page() -> Page | None:
    """The form page this request is for (its thanks page included), for the view and the headers."""
    return ENDPOINT_PAGES.get(request.endpoint or "")


def form_page(slug: str):
    spec = spec_or_404(slug)
    page = current_page()
    assert page is not None  # every route to this view is a page's
    intake = services().intake
    if request.method in ("GET", "HEAD"):  # HEAD is a GET without the body: it never stores anything
        if wants_json():  # for sites that build their own markup and post JSON
            form = intake.blank(spec)
            return jsonify(
                form=spec.slug,
                title=spec.title,
                token=form.token.current_token,
                fields=[
                    {"name": f.name, "label": f.label.text, "required": bool(f.flags.required)}
                    for f in [form.email, *form.extra_fields]
                ],
            )
        # The first view of each page (later ones are answered by pages.CachedPages): cached from then on.
        body = services().pages.render(spec, intake.signer.issue(spec.slug), lambda: intake.blank(spec), page=page)
        return security.page_response(body, spec, embeddable=page.embeddable)

    security.check_post_origin(spec)
    result = intake.submit(spec, submitted_data(), client_ip=request.remote_addr)
    if wants_json():
        return json_result(spec, result)
    if result.ok:
        if spec.redirect_url and not page.embeddable:  # in a frame, the thanks page links on instead
            return redirect(spec.redirect_url, 303)
        return redirect(url_for(f".{page.thanks}", slug=slug), 303)
    return render_template(
        page.template, spec=spec, form=result.form, page=page.name, form_errors=result.errors.get(FORM_ERRORS, [])
    ), result.status


def thanks(slug: str):
    spec = spec_or_404(slug)
    page = current_page()
    assert page is not None  # every route to this view is a page's
    return render_template(page.template, spec=spec, form=None, page=page.name, done=True)


def add_page_routes() -> dict[str, Page]:
    """Each page of pages.PAGES and its thanks page, by the endpoint current_page looks them up with."""
    endpoints = {}
    for page in PAGES:
        bp.add_url_rule(f"{page.prefix}<slug>", page.name, form_page, methods=["GET", "POST"])
        bp.add_url_rule(f"{page.prefix}<slug>/thanks", page.thanks, thanks, methods=["GET"])
        endpoints[f"{bp.name}.{page.name}"] = endpoints[f"{bp.name}.{page.thanks}"] = page
    return endpoints


ENDPOINT_PAGES = add_page_routes()


def json_result(spec, result: Result):
    if result.ok:
        return jsonify(ok=True, message=spec.success_message, redirect=spec.redirect_url)
    return jsonify(ok=False, errors=result.errors, token=result.form.token.current_token), result.status


@bp.get("/f/<slug>/altcha")
def altcha_challenge(slug: str):
    spec = spec_or_404(slug)
    if spec.challenge != "altcha":
        abort(404)
    return jsonify(services().intake.challenges.altcha_challenge()), 200, {"Cache-Control": "no-store"}


@bp.get("/")
def index():
    if not current_app.config.get("SHOW_INDEX"):
        abort(404)
    forms = list(services().forms.values())
    return render_template("index.html", forms=forms)


@bp.get("/healthz")
def healthz():
    """Always JSON, for monitors: a database that cannot be reached is a 503 that says so, not an error page."""
    try:
        report = services().health()
    except (OperationalError, DBAPIError) as exc:
        current_app.logger.error("healthz: database unavailable: %s", type(exc).__name__)
        report = health.unavailable(f"database unavailable: {type(exc).__name__}")
    return jsonify(report), 200 if report["ok"] else 503


def handle_unexpected(exc: Exception):
    """A bug or an outage: log it, tell the visitor plainly, show no internals."""
    if isinstance(exc, HTTPException):
        return handle_error(exc)
    if isinstance(exc, OperationalError):
        current_app.logger.error("database unavailable: %s", type(exc).__name__)
        return handle_error(ServiceUnavailable("We could not save your signup just now. Please try again in a minute."))
    current_app.logger.exception("unexpected error on %s", request.path)
    return handle_error(InternalServerError("Something went wrong on our side. Please try again."))


def handle_error(exc: HTTPException):
    """Errors answer in the caller's language: JSON for JSON clients, a small page for people."""
    if wants_json() or request.is_json:
        return jsonify(ok=False, error=exc.name, message=exc.description), exc.code
    return render_template("error.html", error=exc), exc.code
