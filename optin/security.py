"""Who may embed and post: frame-ancestors from allowed_origins, the Origin check, CORS, and the usual headers."""

from __future__ import annotations

import functools
from urllib.parse import urlsplit

from flask import Response, abort, request

from .formspec import FormSpec


def request_origin() -> str | None:
    """The posting page's origin: Origin when the browser sends it, else the Referer's scheme and host."""
    origin = request.headers.get("Origin")
    if origin and origin != "null":
        return origin.rstrip("/").lower()
    referer = request.headers.get("Referer")
    if referer:
        parts = urlsplit(referer)
        if parts.scheme in ("http", "https") and parts.netloc:
            return f"{parts.scheme}://{parts.netloc}".lower()
    return None


def own_origin() -> str:
    return request.host_url.rstrip("/").lower()


def check_post_origin(spec: FormSpec) -> None:
    """A form limited to some sites accepts posts only from them (and from its own pages)."""
    if spec.allowed_origins is None:
        return
    origin = request_origin()
    # The iframe document posts to its own origin; where it may be embedded is enforced by frame-ancestors.
    if origin == own_origin() or spec.allows_origin(origin):
        return
    abort(403, "This form cannot be submitted from this site.")


@functools.lru_cache(maxsize=1024)
def form_csp(spec: FormSpec | None, *, embeddable: bool) -> str:
    provider = spec.challenge_provider if spec else None
    hosts = provider.csp_hosts if provider else ""
    form_action = "'self'"
    if spec and spec.redirect_url:
        parts = urlsplit(spec.redirect_url)
        form_action += f" {parts.scheme}://{parts.netloc}"
    if not embeddable:
        ancestors = "'none'"
    elif spec is None or spec.allowed_origins is None:
        ancestors = "*"
    else:
        ancestors = " ".join(spec.allowed_origins)
    extra = f" {hosts}" if hosts else ""
    frames = "'self'" + extra
    return (
        f"default-src 'none'; script-src 'self'{extra}; style-src 'self'{extra}; img-src 'self' data:; "
        f"connect-src 'self'{extra}; frame-src {frames}; "
        f"form-action {form_action}; base-uri 'none'; frame-ancestors {ancestors}"
    )


def cors_headers(spec: FormSpec | None) -> dict[str, str]:
    """JSON posts from an allowed site may read the answer; no credentials, and nothing for other sites."""
    origin = request.headers.get("Origin")
    if not origin or spec is None or origin.rstrip("/").lower() == own_origin():
        return {}
    if spec.allowed_origins is None or spec.allows_origin(origin):
        return {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": "POST, GET, OPTIONS",
            "Access-Control-Allow-Headers": "Content-Type, Accept",
            "Access-Control-Max-Age": "600",
            "Vary": "Origin",
        }
    return {}


BASE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    # Pages and answers carry single-use tokens: no browser or CDN may hand one to a second visitor.
    "Cache-Control": "no-store",
}


class PreparedResponse(Response):
    """A response whose headers were all set when it was made (see page_response): nothing to add after."""


@functools.lru_cache(maxsize=1024)
def page_headers(spec: FormSpec, *, embeddable: bool) -> tuple[tuple[str, str], ...]:
    """Every header of a form document, worked out once per form: the document is served on every page view."""
    return (
        ("Content-Type", "text/html; charset=utf-8"),
        *BASE_HEADERS.items(),
        ("Content-Security-Policy", form_csp(spec, embeddable=embeddable)),
    )


def page_response(body: str, spec: FormSpec, *, embeddable: bool) -> Response:
    """A form document for a GET: the same headers set_headers would give it, without the per-request work.
    CORS headers are for posts and JSON, so a page needs none."""
    return PreparedResponse(body, headers=page_headers(spec, embeddable=embeddable))


def set_headers(response, *, spec: FormSpec | None = None, embeddable: bool = False):
    for name, value in BASE_HEADERS.items():
        response.headers.setdefault(name, value)
    if response.mimetype == "text/html":
        response.headers["Content-Security-Policy"] = form_csp(spec, embeddable=embeddable)
    for name, value in cors_headers(spec).items():
        response.headers[name] = value
    return response


# HTTPS only, from the first visit on: browsers that saw this header refuse plain http to this host for a year
# (a token or an address typed into a form can't then be read or changed on the way). Not includeSubDomains:
# other hosts under this name are not this app's to decide.
HSTS = ("Strict-Transport-Security", "max-age=31536000")


class StrictTransport:
    """WSGI middleware, the outermost layer: HSTS on every response to a request that came over HTTPS, the
    ones answered in front of Flask (CachedPages, static files) included, and never on plain http."""

    def __init__(self, app, *, trusted_hops: int):
        self.app = app
        self.trusted_hops = trusted_hops

    def __call__(self, environ, start_response):
        if not self.came_over_https(environ):
            return self.app(environ, start_response)

        def start(status, headers, exc_info=None):
            if not any(name.lower() == "strict-transport-security" for name, _ in headers):
                headers = [*headers, HSTS]
            return start_response(status, headers, exc_info)

        return self.app(environ, start)

    def came_over_https(self, environ) -> bool:
        """The scheme ProxyFix (which sits inside, in front of Flask only) works out: X-Forwarded-Proto as the
        trusted proxy set it, TRUSTED_PROXY_HOPS entries from the right; else the connection's own scheme."""
        forwarded = environ.get("HTTP_X_FORWARDED_PROTO")
        if self.trusted_hops and forwarded:
            values = [value.strip() for value in forwarded.split(",")]
            if len(values) >= self.trusted_hops:
                return values[-self.trusted_hops].lower() == "https"
        return environ.get("wsgi.url_scheme") == "https"
