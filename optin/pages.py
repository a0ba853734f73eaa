"""Blank forms are the same for every visitor but for the token: render each once, then splice the token in.

Rendering the form through Jinja and WTForms costs about a millisecond; splicing costs microseconds, and the
iframe document is fetched on every page view of every site that embeds it. Once a page has been rendered,
`CachedPages` answers later GETs for it in front of Flask, the way WhiteNoise answers for static files.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from flask import current_app, render_template

from . import security
from .tokens import TokenSigner

PLACEHOLDER = "optin-token-placeholder-5f1d"
FORM_TEMPLATE = "form.html"  # the iframe document and the landing page differ only by `page`


@dataclass(frozen=True)
class Page:
    """One kind of form page. The routes (views.py), the page cache (CachedPages) and the security headers
    all read this table, so a page's URL and whether other sites may frame it are written once."""

    name: str  # the view's endpoint, and `page` in the template
    prefix: str  # the URL before the slug: `{prefix}<slug>`, and `{prefix}<slug>/thanks` after a post
    embeddable: bool  # framed on other sites (frame-ancestors from allowed_origins), or never framed
    template: str = FORM_TEMPLATE

    @property
    def thanks(self) -> str:
        """The endpoint of the page shown after a post without JavaScript, framed like the form it follows."""
        return f"{self.name}_thanks"


PAGES = (
    Page("frame", "/f/", embeddable=True),  # the iframe document
    Page("landing", "/p/", embeddable=False),  # the hosted landing page
)
PAGE_PREFIXES = {page.prefix: page for page in PAGES}


class BlankPages:
    def __init__(self):
        self._parts: dict[tuple[str, str], tuple[str, str]] = {}

    def render(self, spec, token: str, blank_form: Callable, *, page: Page) -> str:
        parts = self._parts.get((spec.slug, page.name))
        if parts is None:
            form = blank_form()
            form.token.current_token = PLACEHOLDER
            html = render_template(page.template, spec=spec, form=form, page=page.name)
            before, found, after = html.partition(PLACEHOLDER)
            if not found or PLACEHOLDER in after:
                raise RuntimeError(f"{page.template} must show the form's token exactly once")
            parts = (before, after)
            if not current_app.jinja_env.auto_reload:  # in development, edits to templates show at once
                self._parts[(spec.slug, page.name)] = parts
        return parts[0] + token + parts[1]

    def cached(self, slug: str, page: Page) -> tuple[str, str] | None:
        return self._parts.get((slug, page.name))


class CachedPages:
    """WSGI middleware: a browser's GET of a form document already rendered is answered without Flask.

    The answer is the one the Flask view gives (views.form_page): the cached page with a fresh token and the
    headers of security.page_response. Anything else (JSON, HEAD, posts, a page not rendered yet, unknown
    forms) goes on to Flask, so there is one place that decides what a page says.
    """

    def __init__(self, app, *, pages: BlankPages, forms: Mapping, signer: TokenSigner):
        self.app = app
        self.pages = pages
        self.forms = forms
        self.signer = signer

    def __call__(self, environ, start_response):
        if environ.get("REQUEST_METHOD") == "GET" and "json" not in environ.get("HTTP_ACCEPT", ""):
            path = environ.get("PATH_INFO", "")
            page = PAGE_PREFIXES.get(path[: path.find("/", 1) + 1])  # "/f/launch" → "/f/"; "/healthz" → ""
            if page is not None:
                slug = path[len(page.prefix) :]
                parts = self.pages.cached(slug, page)
                if parts is not None:
                    spec = self.forms[slug]
                    body = (parts[0] + self.signer.issue(slug) + parts[1]).encode()
                    headers = [
                        *security.page_headers(spec, embeddable=page.embeddable),
                        ("Content-Length", str(len(body))),
                    ]
                    start_response("200 OK", headers)
                    return [body]
        return self.app(environ, start_response)
