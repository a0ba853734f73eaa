"""Issue 2: a visitor on someone else's site signs up through the embedded form, in a real browser that blocks
third-party cookies, against the app under real gunicorn and the ConvertKit sandbox.

The customer's page is served from http://127.0.0.1:<port>; the app is addressed as http://localhost:<port>,
another site, so the form documents are third-party frames, exactly as on a customer's website.
"""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from support import host_page

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips (or, in CI, fails) and says why
    expect = None

pytestmark = pytest.mark.browser

# Time between keystrokes, like a person typing. MIN_FILL_SECONDS is 0.5 here: a form filled in faster than
# that is refused as a bot, and the visitor types at least 0.5 s after each fresh token.
KEYSTROKE_MS = 60

# Third-party cookies: Chromium has no command-line switch that blocks them (--block-third-party-cookies does
# not exist; --test-third-party-cookie-phaseout does not override the profile's setting). The setting is the
# profile preference "Block third-party cookies" (profile.cookie_controls_mode = 1), and Playwright's contexts
# are off-the-record profiles where it is on, as in Incognito (Chromium reports such cookies as blocked for
# "UserPreferences"). Rather than trust that default, the page carries a probe: a third-party frame that tries
# to store a cookie both ways (header and script) and says whether it could. In a profile that allows
# third-party cookies it says "stored", so a change of default fails this test instead of weakening it.
COOKIE_PROBE = """<!doctype html><html lang="en"><head><title>probe</title></head><body><p id="result"></p>
<script>
document.cookie = "probe_js=1; SameSite=None; Secure; Path=/";
document.getElementById("result").textContent = /probe_/.test(document.cookie) ? "stored" : "blocked";
</script></body></html>"""

FITS = """() => {
  const html = document.documentElement;
  const content = Math.ceil(html.getBoundingClientRect().height);
  return html.scrollHeight <= window.innerHeight && Math.abs(content - window.innerHeight) <= 2
    && html.scrollWidth <= window.innerWidth;
}"""
SIZES = """() => ({content: Math.ceil(document.documentElement.getBoundingClientRect().height),
  scrollHeight: document.documentElement.scrollHeight, frameHeight: window.innerHeight,
  scrollWidth: document.documentElement.scrollWidth, frameWidth: window.innerWidth})"""


def assert_frame_fits(iframe) -> None:
    """The <iframe> is as tall as the document inside it: nothing cut off (the embed has no scroll bars) and
    no empty band below. Waits for the height message to arrive and be applied.

    The frame is scrolled into view first, as the visitor would: Chromium does not update the layout of a
    cross-origin frame that is off screen, so its own idea of its size can lag behind the host's."""
    iframe.scroll_into_view_if_needed()
    frame = iframe.element_handle().content_frame()
    try:
        frame.wait_for_function(FITS, polling=100)
    except Exception as exc:
        raise AssertionError(f"the iframe does not fit its document: {frame.evaluate(SIZES)}") from exc
    element_height = iframe.evaluate("el => el.clientHeight")
    assert element_height == frame.evaluate("() => window.innerHeight")
    assert abs(element_height - frame.evaluate("() => document.documentElement.scrollHeight")) <= 2


def sign_up(iframe, email: str, extra: dict[str, str] | None = None, *, check_height: bool) -> None:
    """A visitor first gets the address wrong, reads the errors, corrects it and signs up; all inside the frame."""
    form = iframe.content_frame
    email_box = form.get_by_label("Email address")
    email_box.press_sequentially(email.replace("@", " at "), delay=KEYSTROKE_MS)
    form.get_by_role("button").click()
    expect(email_box).to_have_attribute("aria-invalid", "true")
    expect(form.get_by_text("Please enter a valid email address, like name@example.com.")).to_be_visible()
    if check_height:
        assert_frame_fits(iframe)

    email_box.clear()
    email_box.press_sequentially(email, delay=KEYSTROKE_MS)
    for label, value in (extra or {}).items():
        form.get_by_label(label).press_sequentially(value, delay=KEYSTROKE_MS)
    form.get_by_role("button").click()
    expect(form.get_by_role("status")).to_have_text(
        "Thanks! Check your inbox." if extra else "Thanks! Check your inbox to confirm your subscription."
    )
    expect(form.get_by_role("textbox")).to_have_count(0)
    if check_height:
        assert_frame_fits(iframe)


def test_a_visitor_signs_up_through_iframe_and_script_embeds_on_another_site_without_cookies(
    gunicorn, env, ck, host_site, new_context
):
    web = gunicorn({**env, "MIN_FILL_SECONDS": "0.5"})
    app = web.url.replace("127.0.0.1", "localhost")  # same server, another site than the customer's page
    probe = host_site.serve(COOKIE_PROBE, "/probe", {"Set-Cookie": "probe_header=1; SameSite=None; Secure; Path=/"})
    url = host_site.serve(
        host_page(
            f'<iframe id="probe" title="cookie probe" src="{probe.replace("127.0.0.1", "localhost")}"></iframe>'
            f"<h2>Plain iframe</h2>"
            f'<iframe id="plain" src="{app}/f/simple" title="Newsletter" height="340"'
            f' style="border:0;width:100%;max-width:480px"></iframe>'
            f"<h2>Script embeds</h2>"
            f'<script src="{app}/embed.js" data-form="launch" data-title="Launch updates" async></script>'
            f"<p>Some of the customer's text between two forms.</p>"
            f'<script src="{app}/embed.js" data-form="simple" async></script>'
        )
    )

    context = new_context()
    responses = []
    context.on("response", lambda response: responses.append(response))
    page = context.new_page()
    page.goto(url)

    # Precondition, checked rather than assumed: this browser refuses third-party cookies.
    expect(page.frame_locator("#probe").locator("#result")).to_have_text("blocked")
    assert not [c for c in context.cookies() if c["name"].startswith("probe_")]

    # Two script tags on one page: two self-sizing frames, each right after its own script.
    embeds = page.locator("iframe.optin-embed")
    expect(embeds).to_have_count(2)
    launch, simple = embeds.nth(0), embeds.nth(1)
    # The host page's address rides in the fragment, which never reaches a server: form.js reads it.
    after = re.escape(f"#ref={quote(url, safe='')}")
    expect(page.locator("script[data-form=launch] + iframe")).to_have_attribute(
        "src", re.compile(re.escape(f"{app}/f/launch") + after)
    )
    expect(page.locator("script[data-form=simple] + iframe")).to_have_attribute(
        "src", re.compile(re.escape(f"{app}/f/simple") + after)
    )
    expect(launch.content_frame.get_by_role("heading")).to_have_text("Get launch updates")
    expect(simple.content_frame.get_by_role("heading")).to_have_text("Simple")
    assert_frame_fits(launch)
    assert_frame_fits(simple)

    sign_up(launch, "ann@example.com", {"Company": "Acme"}, check_height=True)
    sign_up(simple, "bob@example.com", check_height=True)
    sign_up(page.locator("#plain"), "cy@example.com", check_height=False)  # a plain iframe cannot resize
    expect(page).to_have_url(url)  # the visitor never left the customer's page

    sent = [(r["path"], r["json"]["email"]) for r in ck.requests(path_contains="subscribe")]
    assert sorted(sent) == [
        ("/v3/forms/4242/subscribe", "ann@example.com"),
        ("/v3/forms/4243/subscribe", "bob@example.com"),
        ("/v3/forms/4243/subscribe", "cy@example.com"),
    ]

    # The app needs no cookie and sets none, in any of its answers (the browser would have dropped them anyway).
    from_app = [r for r in responses if r.url.startswith(app)]
    assert {r.request.method for r in from_app} == {"GET", "POST"}
    assert [r.url for r in from_app if "set-cookie" in r.all_headers()] == []
    assert [c for c in context.cookies() if not c["name"].startswith("probe_")] == []


def test_on_v4_a_422_from_kit_shows_in_the_form_and_the_page_is_sent_as_referrer(
    gunicorn, env, ck, host_site, new_context, make_app
):
    from support import v4_env

    settings = {**v4_env(env, ck), "MIN_FILL_SECONDS": "0.5"}
    web = gunicorn(settings)
    app = web.url.replace("127.0.0.1", "localhost")
    url = (
        host_site.serve(host_page(f'<script src="{app}/embed.js" data-form="simple" async></script>'), "/launch")
        + "?utm_source=newsletter"
    )
    page = new_context().new_page()
    page.goto(url)
    form = page.locator("iframe.optin-embed").content_frame
    email_box = form.get_by_label("Email address")
    email_box.press_sequentially("invalid.person@example.com", delay=KEYSTROKE_MS)  # Kit refuses it
    form.get_by_role("button").click()
    expect(email_box).to_have_attribute("aria-invalid", "true")
    expect(form.locator("#email-error")).to_have_text("Email address is invalid")  # Kit's words, v4's body
    email_box.clear()
    email_box.press_sequentially("dee@example.com", delay=KEYSTROKE_MS)
    form.get_by_role("button").click()
    expect(form.get_by_role("status")).to_have_text("Thanks! Check your inbox to confirm your subscription.")
    [refused, taken] = [r for r in ck.requests(path_contains="/v4/subscribers") if r["method"] == "POST"]
    assert refused["status"] == 422 and taken["json"]["email_address"] == "dee@example.com"
    stored = {s.email: s for s in make_app(**settings).extensions["optin"].signups.find()}
    assert stored["dee@example.com"].referrer == url  # the customer's page, with its UTM parameters
