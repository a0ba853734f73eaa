"""Issue 4, points 11-13: the form is accessible, works with and without JavaScript and by keyboard alone, fits
small screens and zoom, can be embedded only where allowed, and keeps bots away from ConvertKit.

Real browser, real gunicorn, the ConvertKit sandbox behind it."""

from __future__ import annotations

import pytest
from support import FORMS_TOML, host_page

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips (or, in CI, fails) and says why
    expect = None

pytestmark = pytest.mark.browser

EMAIL_INVALID = "Please enter a valid email address, like name@example.com."
COMPANY_MISSING = "Please fill in company."
SUCCESS = "Thanks! Check your inbox."  # the launch form's success_message


@pytest.fixture
def web(gunicorn, env):
    return gunicorn(env, workers=1)


def signups(ck) -> list[str]:
    return [r["json"]["email"] for r in ck.requests(path_contains="subscribe")]


def without_form_js(page):
    """The page as a visitor gets it when form.js does not run (blocked, failed, old browser): the server path."""
    page.route("**/static/form.js*", lambda route: route.abort())
    return page


def fields(page):
    return page.get_by_label("Email address"), page.get_by_label("First name"), page.get_by_label("Company")


# axe-core ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["f", "p"], ids=["frame", "landing"])
def test_axe_finds_no_violations_in_any_state_of_the_form(web, ck, new_context, axe, kind):
    url = f"{web.url}/{kind}/launch"
    page = new_context().new_page()
    page.goto(url)
    assert axe(page) == [], "the blank form"

    email, _, company = fields(page)
    email.fill("ann.example.com")
    page.get_by_role("button").click()
    expect(company).to_have_attribute("aria-invalid", "true")
    assert axe(page) == [], "errors beside the fields (in place, with JavaScript)"

    page.locator("[name=token]").evaluate("el => { el.value = 'tampered' }")
    page.get_by_role("button").click()
    expect(page.get_by_role("alert")).to_have_text("This form could not be verified. Please submit it again.")
    assert axe(page) == [], "a form-level error in the summary"

    email.fill("ann@example.com")
    company.fill("Acme")
    page.get_by_role("button").click()
    expect(page.get_by_role("status")).to_have_text(SUCCESS)
    assert axe(page) == [], "the success message (in place)"

    page = without_form_js(new_context().new_page())
    page.goto(url)
    email, _, company = fields(page)
    email.fill("ann.example.com")
    page.get_by_role("button").click()
    expect(company).to_have_attribute("aria-invalid", "true")
    assert axe(page) == [], "errors rendered by the server"

    email.fill("bob@example.com")
    company.fill("Acme")
    page.get_by_role("button").click()
    expect(page).to_have_url(f"{url}/thanks")
    expect(page.get_by_role("status")).to_have_text(SUCCESS)
    assert axe(page) == [], "the success page rendered by the server"
    assert signups(ck) == ["ann@example.com", "bob@example.com"]


# Progressive enhancement -------------------------------------------------------------------------------------


def test_with_javascript_the_form_submits_in_place_and_guides_the_visitor(web, ck, page):
    page.goto(f"{web.url}/f/launch")
    page.evaluate("() => { window.stillTheSamePage = true }")
    email, first_name, company = fields(page)
    button, status = page.get_by_role("button", name="Notify me"), page.get_by_role("status")

    # The live region is in the accessibility tree before anything is announced in it: a region that appears
    # together with its message is not announced by screen readers.
    expect(status).to_be_attached()
    expect(status).to_be_empty()
    for box in (email, first_name, company):  # nothing is invalid before the visitor has tried
        assert box.get_attribute("aria-invalid") is None and box.get_attribute("aria-describedby") is None
        expect(box).to_have_accessible_description("")

    email.fill("ann.example.com")
    first_name.fill("Ann")
    button.click()
    expect(email).to_have_attribute("aria-invalid", "true")
    expect(email).to_have_accessible_description(EMAIL_INVALID)
    expect(company).to_have_attribute("aria-invalid", "true")
    expect(company).to_have_accessible_description(COMPANY_MISSING)
    expect(page.locator("#email ~ .optin-error")).to_have_text(EMAIL_INVALID)  # right under its field
    expect(page.locator("#company ~ .optin-error")).to_have_text(COMPANY_MISSING)
    expect(email).to_be_focused()
    assert first_name.get_attribute("aria-invalid") is None
    expect(email).to_have_value("ann.example.com")  # nothing the visitor typed is lost
    expect(first_name).to_have_value("Ann")

    email.fill("ann@example.com")
    button.click()
    expect(company).to_be_focused()  # now the first invalid field
    expect(email).not_to_have_attribute("aria-invalid", "true")
    expect(email).to_have_accessible_description("")
    expect(page.locator("#email ~ .optin-error")).to_be_hidden()

    ck.configure(latency=1)  # a slow ConvertKit: the visitor can see the form is busy
    company.fill("Acme")
    button.click()
    expect(button).to_be_disabled()
    expect(button).to_have_attribute("aria-busy", "true")
    expect(status).to_have_text(SUCCESS)
    expect(page.locator("form")).to_have_count(0)

    assert page.evaluate("() => window.stillTheSamePage") is True, "the page was reloaded"
    assert page.url == f"{web.url}/f/launch"
    assert signups(ck) == ["ann@example.com"]


def test_without_javascript_the_server_gives_the_same_errors_and_success(web, ck, new_context):
    page = new_context(java_script_enabled=False).new_page()
    page.goto(f"{web.url}/f/launch")
    email, first_name, company = fields(page)

    email.fill("ann.example.com")
    first_name.fill("Ann")
    page.get_by_role("button", name="Notify me").click()
    expect(email).to_have_accessible_description(EMAIL_INVALID)
    expect(company).to_have_accessible_description(COMPANY_MISSING)
    expect(email).to_have_attribute("aria-invalid", "true")
    expect(company).to_have_attribute("aria-invalid", "true")
    assert first_name.get_attribute("aria-invalid") is None
    expect(page.locator("#email ~ .optin-error")).to_have_text(EMAIL_INVALID)
    expect(email).to_have_value("ann.example.com")
    expect(first_name).to_have_value("Ann")
    assert signups(ck) == []

    email.fill("ann@example.com")
    company.fill("Acme")
    page.get_by_role("button", name="Notify me").click()
    expect(page).to_have_url(f"{web.url}/f/launch/thanks")
    expect(page.get_by_role("status")).to_have_text(SUCCESS)
    assert signups(ck) == ["ann@example.com"]


# Keyboard ----------------------------------------------------------------------------------------------------

FOCUSED = """() => {
  const el = document.activeElement, style = getComputedStyle(el);
  return {name: el.name || el.tagName.toLowerCase(),
          ring: style.outlineStyle !== "none" && parseFloat(style.outlineWidth) >= 2};
}"""


def test_a_keyboard_only_signup(web, ck, page):
    page.goto(f"{web.url}/f/launch")
    order = []
    for _ in range(6):
        page.keyboard.press("Tab")
        order.append(page.evaluate(FOCUSED))
    names = [f["name"] for f in order]
    assert names[:4] == ["email", "first_name", "company", "button"]
    assert "hp" not in names  # the honeypot is never reached by Tab
    assert all(f["ring"] for f in order[:4]), f"a focused control shows no focus ring: {order}"

    page.reload()
    page.keyboard.press("Tab")
    expect(page.get_by_label("Email address")).to_be_focused()
    page.keyboard.type("ann@example.com")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")  # company left empty, on to the button
    expect(page.get_by_role("button")).to_be_focused()
    page.keyboard.press("Space")
    expect(page.get_by_label("Company")).to_be_focused()  # straight to the field that needs fixing
    expect(page.get_by_label("Company")).to_have_accessible_description(COMPANY_MISSING)

    page.keyboard.type("Acme")
    page.keyboard.press("Tab")
    expect(page.get_by_role("button")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_have_text(SUCCESS)
    assert signups(ck) == ["ann@example.com"]


# Small screens and zoom --------------------------------------------------------------------------------------

OVERFLOW = """() => {
  const html = document.documentElement, width = html.clientWidth;
  const cut = [...document.querySelectorAll("h1, p, label, input:not([name=hp]), button")]
    .filter(el => el.getBoundingClientRect().right > width + 0.5 ||
                  (el.tagName !== "INPUT" && el.scrollWidth > el.clientWidth + 1))
    .map(el => el.outerHTML.slice(0, 80));
  return {scrollWidth: html.scrollWidth, clientWidth: width, cut};
}"""


def assert_fits_width(page, what: str) -> None:
    seen = page.evaluate(OVERFLOW)
    assert seen["scrollWidth"] <= seen["clientWidth"], f"{what}: horizontal scrolling: {seen}"
    assert seen["cut"] == [], f"{what}: content wider than the screen: {seen}"


# Chromium's page zoom shrinks the CSS-pixel viewport and raises the device pixel ratio: a 1280×800 window at
# 200% lays the page out at 640×400 CSS px with 2 device pixels per CSS px, which is what the second case is.
@pytest.mark.parametrize(
    ("viewport", "scale"),
    [({"width": 320, "height": 640}, 1), ({"width": 640, "height": 400}, 2)],
    ids=["320px-wide", "200%-zoom"],
)
def test_usable_on_a_narrow_screen_and_at_200_percent_zoom(web, ck, new_context, viewport, scale):
    page = new_context(viewport=viewport, device_scale_factor=scale).new_page()
    for number, kind in enumerate(("f", "p")):
        page.goto(f"{web.url}/{kind}/launch")
        assert_fits_width(page, f"/{kind}/launch")
        email, _, company = fields(page)
        email.fill("a.very.long.address.without.an.at.sign.example.com")
        page.get_by_role("button").click()
        expect(company).to_have_accessible_description(COMPANY_MISSING)
        assert_fits_width(page, f"/{kind}/launch with errors")
        email.fill(f"visitor{number}@example.com")
        company.fill("Acme")
        page.get_by_role("button").click()
        expect(page.get_by_role("status")).to_have_text(SUCCESS)
        assert_fits_width(page, f"/{kind}/launch after signing up")
    assert signups(ck) == ["visitor0@example.com", "visitor1@example.com"]


# Embedding ---------------------------------------------------------------------------------------------------


def test_script_embeds_have_a_title_that_names_the_form(web, host_site, page):
    app = web.url.replace("127.0.0.1", "localhost")
    page.goto(
        host_site.serve(
            host_page(
                f'<script src="{app}/embed.js" data-form="launch" data-title="Launch updates" async></script>'
                f'<script src="{app}/embed.js" data-form="simple" async></script>'
            )
        )
    )
    frames = page.locator("iframe.optin-embed")
    expect(frames).to_have_count(2)
    expect(frames.nth(0)).to_have_accessible_name("Launch updates")  # the site's own words win
    expect(frames.nth(1)).to_have_accessible_name("Simple")  # else the form's title, not a generic one
    expect(frames.nth(1).content_frame.get_by_role("heading", name="Simple")).to_be_visible()


def test_a_form_limited_to_some_sites_is_refused_by_the_browser_elsewhere(
    gunicorn, env, tmp_path, make_host_site, new_context
):
    allowed, other = make_host_site(), make_host_site()
    forms = tmp_path / "limited.toml"
    forms.write_text(
        FORMS_TOML
        + f"""
[forms.partner]
convertkit_form_id = 4246
title = "Partner offers"
allowed_origins = ["{allowed.origin}"]
"""
    )
    web = gunicorn({**env, "FORMS_FILE": str(forms)}, workers=1)
    app = web.url.replace("127.0.0.1", "localhost")
    embed = host_page(
        f'<iframe id="partner" title="Partner offers" src="{app}/f/partner"></iframe>'
        f'<iframe id="open" title="Newsletter" src="{app}/f/simple"></iframe>'
    )

    for site, welcome in ((allowed, True), (other, False)):
        page = new_context().new_page()
        console = []
        page.on("console", lambda message, seen=console: seen.append(message.text))
        page.goto(site.serve(embed))  # returns after the load event: every frame has loaded or failed
        # Control: this site can embed forms that are open to everyone.
        expect(page.frame_locator("#open").get_by_role("heading", name="Simple")).to_be_visible()
        partner = page.frame_locator("#partner")
        if welcome:
            expect(partner.get_by_role("heading", name="Partner offers")).to_be_visible()
            expect(partner.get_by_label("Email address")).to_be_editable()
        else:
            expect(partner.get_by_role("heading", name="Partner offers")).to_have_count(0)
            expect(partner.get_by_label("Email address")).to_have_count(0)
            assert any("frame-ancestors" in text for text in console), console


# Bots --------------------------------------------------------------------------------------------------------


def test_a_filled_in_honeypot_looks_like_success_to_the_bot_but_reaches_nobody(web, ck, page):
    page.goto(f"{web.url}/f/launch")
    page.locator("[name=hp]").evaluate("el => { el.value = 'https://spam.example/' }")  # bots fill every input
    email, _, company = fields(page)
    email.fill("bot@example.com")
    company.fill("Spam Inc")
    page.get_by_role("button").click()
    expect(page.get_by_role("status")).to_have_text(SUCCESS)
    assert signups(ck) == []


def test_a_replayed_form_token_is_refused(web, ck, page):
    page.goto(f"{web.url}/f/simple")
    token = page.locator("[name=token]").input_value()
    page.get_by_label("Email address").fill("ann@example.com")
    page.get_by_role("button").click()
    expect(page.get_by_role("status")).to_have_text("Thanks! Check your inbox to confirm your subscription.")

    page.goto(f"{web.url}/f/simple")
    page.locator("[name=token]").evaluate("(el, token) => { el.value = token }", token)
    page.get_by_label("Email address").fill("bot@example.com")
    page.get_by_role("button").click()
    summary = page.get_by_role("alert")
    expect(summary).to_have_text("This form was already submitted. Please submit it again.")
    expect(summary).to_be_focused()
    assert signups(ck) == ["ann@example.com"]


def test_a_form_sent_faster_than_a_person_can_fill_it_is_refused(gunicorn, env, ck, page):
    web = gunicorn({**env, "MIN_FILL_SECONDS": "3600"}, workers=1)
    page.goto(f"{web.url}/f/simple")
    page.get_by_label("Email address").fill("bot@example.com")
    page.get_by_role("button").click()
    expect(page.get_by_role("alert")).to_have_text("That was quick! Please check your details and submit again.")
    assert signups(ck) == []


@pytest.mark.parametrize("kind", ["f", "p"], ids=["frame", "landing"])
def test_people_cannot_see_or_hear_the_honeypot(web, new_context, kind):
    """A person who filled it in would be dropped as a bot without knowing: it must not be perceivable."""
    for viewport in ({"width": 1280, "height": 800}, {"width": 320, "height": 640}):
        page = new_context(viewport=viewport).new_page()
        page.goto(f"{web.url}/{kind}/launch")
        honeypot = page.locator("[name=hp]")
        expect(honeypot).to_be_attached()
        expect(honeypot).not_to_be_in_viewport()
        expect(page.get_by_text("Leave this field empty")).not_to_be_in_viewport()
        assert page.get_by_role("textbox", name="Leave this field empty").count() == 0, "screen readers skip it"
        assert page.get_by_role("textbox").count() == 3
