"""Blank forms are the same for every visitor but for the token: render each once, then splice the token in.

Rendering the form through Jinja and WTForms costs about a millisecond; splicing costs microseconds, and the
iframe document is fetched on every page view of every site that embeds it.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import current_app, render_template

PLACEHOLDER = "optin-token-placeholder-5f1d"


class BlankPages:
    def __init__(self):
        self._parts: dict[tuple, tuple[str, str]] = {}

    def render(self, template: str, spec, token: str, blank_form: Callable, **context) -> str:
        key = (template, spec.slug, *sorted(context.items()))
        parts = self._parts.get(key)
        if parts is None:
            form = blank_form()
            form.token.current_token = PLACEHOLDER
            before, found, after = render_template(template, spec=spec, form=form, **context).partition(PLACEHOLDER)
            if not found or PLACEHOLDER in after:
                raise RuntimeError(f"{template} must show the form's token exactly once")
            parts = (before, after)
            if not current_app.jinja_env.auto_reload:  # in development, edits to templates show at once
                self._parts[key] = parts
        return parts[0] + token + parts[1]
