"""Browser fixtures: one headless Chromium for the session, a fresh context per test, axe-core, and a stand-in
for a customer's website ("host site") on another origin.

Without Chromium, the playwright package or axe-core these tests skip and say why; with OPTIN_REQUIRE_SERVICES=1
(CI) a missing piece is an error instead, so CI cannot go green without running them.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from support import ROOT, skip_or_fail

# Playwright's own browser download does not work everywhere (and CI installs Debian's chromium): always launch
# the system Chromium. --no-sandbox because CI containers run as root; the rest keep the browser off the network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
AXE_PATH = ROOT / "node_modules" / "axe-core" / "axe.min.js"
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
TIMEOUT_MS = 10_000  # generous: the machine may have two cores shared by gunicorn, the sandbox and Chromium


def find_chromium() -> str | None:
    if Path("/usr/bin/chromium").is_file():
        return "/usr/bin/chromium"
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def browser():
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        skip_or_fail("the playwright package is not installed (pip install -e '.[dev]')")
    executable = find_chromium()
    if executable is None:
        skip_or_fail("Chromium is not installed (/usr/bin/chromium or chromium on PATH; `make browser-deps`)")
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def new_context(browser):
    """A factory of fresh browser contexts (own cookies, storage, viewport, JS on/off), all closed afterwards.

    A context is an off-the-record profile: Chromium blocks third-party cookies there, as in Incognito
    (test_embed.py proves it with a probe frame rather than trusting the default)."""
    contexts = []

    def make(**options):
        context = browser.new_context(**options)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_context):
    return new_context().new_page()


# axe-core ----------------------------------------------------------------------------------------------------

RUN_AXE = """async (tags) => {
  const result = await axe.run(document, {runOnly: {type: "tag", values: tags}, resultTypes: ["violations"],
                                          iframes: false});
  return result.violations.map(v => `${v.id} (${v.impact}): ${v.help} -> ` +
    v.nodes.map(n => `${n.target.join(" ")}: ${n.failureSummary}`).join(" | "));
}"""


@pytest.fixture(scope="session")
def axe_source() -> str:
    if not AXE_PATH.is_file():
        skip_or_fail(f"axe-core is not installed (no {AXE_PATH}; `npm ci` or `make browser-deps`)")
    return AXE_PATH.read_text(encoding="utf-8")


@pytest.fixture
def axe(axe_source):
    """axe(page_or_frame) → the WCAG 2.0/2.1/2.2 A and AA violations in that document, as readable strings.

    How axe gets in: the form documents send `Content-Security-Policy: script-src 'self'` (no 'unsafe-inline'),
    so `page.add_script_tag(path=...)` and `frame.add_script_tag(...)`, which insert an inline <script>, are
    refused ("Executing inline script violates ... script-src 'self'"). A `bypass_csp=True` context would let
    them in, but then the audited page no longer runs under the policy visitors get. Evaluating the library's
    source through the DevTools protocol (`evaluate`) is not subject to the page's CSP, needs no special
    context, and works the same in a cross-origin frame inside a host page, so that is what this does.
    axe needs timers: it cannot run in a `java_script_enabled=False` context (the promise never settles), so
    the no-JS states are audited in a context where form.js is blocked instead.
    """

    def check(target) -> list[str]:
        if not target.evaluate("() => typeof window.axe === 'object'"):
            target.evaluate(axe_source)
        return target.evaluate(RUN_AXE, WCAG_TAGS)

    return check


# A stand-in for the customer's website -----------------------------------------------------------------------


class HostSite:
    """Serves given HTML pages from http://127.0.0.1:<free port>, in a thread: another site than the app when
    the app is addressed as http://localhost:<port>."""

    def __init__(self) -> None:
        self.pages: dict[str, tuple[bytes, dict[str, str]]] = {}
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                body, headers = site.pages.get(self.path.split("?", 1)[0], (b"", None))
                self.send_response(200 if headers is not None else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format, *args):  # noqa: A002 (keep pytest's output clean)
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, name="host-site", daemon=True
        )
        self.thread.start()

    def serve(self, html: str, path: str = "/", headers: dict[str, str] | None = None) -> str:
        """Serve `html` at `path`; returns its URL."""
        self.pages[path] = (html.encode(), headers or {})
        return self.origin + path

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def host_site() -> Iterator[HostSite]:
    site = HostSite()
    yield site
    site.close()


@pytest.fixture
def make_host_site() -> Iterator:
    """For tests that need more than one customer site (several origins)."""
    sites: list[HostSite] = []

    def make() -> HostSite:
        sites.append(HostSite())
        return sites[-1]

    yield make
    for site in sites:
        site.close()
