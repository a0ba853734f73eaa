"""The self-hosted ALTCHA challenge in a real browser: form.js solves the proof of work, the server verifies it."""

from __future__ import annotations

import pytest

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips (or, in CI, fails) and says why
    expect = None

pytestmark = pytest.mark.browser

FORMS = """
[forms.guarded]
convertkit_form_id = 4243
title = "Guarded"
challenge = "altcha"
"""


def test_a_person_with_javascript_passes_the_proof_of_work(gunicorn, env, ck, page, tmp_path):
    forms = tmp_path / "guarded.toml"
    forms.write_text(FORMS)
    web = gunicorn({**env, "FORMS_FILE": str(forms)})
    page.goto(f"{web.url}/f/guarded")
    page.get_by_label("Email address").fill("person@example.com")
    page.get_by_role("button").click()
    expect(page.get_by_role("status")).to_have_text("Thanks! Check your inbox to confirm your subscription.")
    sent = [r["json"]["email"] for r in ck.requests(path_contains="/subscribe")]
    assert sent == ["person@example.com"]


def test_without_javascript_the_form_says_it_needs_it_and_sends_nothing(gunicorn, env, ck, new_context, tmp_path):
    forms = tmp_path / "guarded.toml"
    forms.write_text(FORMS)
    web = gunicorn({**env, "FORMS_FILE": str(forms)})
    page = new_context(java_script_enabled=False).new_page()
    page.goto(f"{web.url}/f/guarded")
    expect(page.get_by_text("This form needs JavaScript")).to_be_visible()
    page.get_by_label("Email address").fill("script-less@example.com")
    page.get_by_role("button").click()
    expect(page.get_by_text("Please complete the verification")).to_be_visible()
    assert ck.requests(path_contains="/subscribe") == []
