"""The screens' shell: served by StreetLoop itself under a strict CSP, with no inline script
and no HTML built from strings; the console signs in and out."""

from __future__ import annotations

import re

from screens import STATIC
from tests.browser.pages import DESKTOP, LiveServer, accessible, shot, sign_in


def test_no_inline_script_and_no_html_from_strings() -> None:
    for page in STATIC.rglob("*.html"):
        text = page.read_text()
        # Scripts only by src (the CSP would refuse the others anyway), no inline handlers or styles.
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), f"{page}: inline <script>"
        assert not re.search(r"\son[a-z]+=", text), f"{page}: inline event handler"
        assert not re.search(r"\sstyle=", text), f"{page}: inline style"
    ours = [p for p in STATIC.rglob("*.js") if "vendor" not in p.parts]
    assert ours
    for module in ours:
        text = module.read_text()
        for banned in (
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
        ):
            assert banned not in text, (
                f"{module}: {banned} (build the page with dom.js's h(), as text)"
            )
        # Leaflet renders a string given to these as HTML: they must be given an element.
        for call in re.finditer(
            r"\.(bindTooltip|bindPopup|setContent|setTooltipContent|setPopupContent)\(\s*(?!h\()",
            text,
        ):
            raise AssertionError(
                f"{module}: {call.group(1)}() with a string is parsed as HTML; pass h(...)"
            )
        if re.search(r"divIcon\(\{[^}]*\bhtml:\s*(['\"`])", text):
            raise AssertionError(
                f"{module}: L.divIcon with an html string; pass an element built with h()"
            )


def test_screens_carry_a_csp_without_inline_scripts(live: LiveServer) -> None:
    client = live.app.test_client()
    for path in ("/console/", "/assets/shared/api.js"):
        with client.get(path) as answer:
            assert answer.status_code == 200, path
            csp = answer.headers["Content-Security-Policy"]
            assert (
                "script-src 'self'" in csp
                and "unsafe-inline" not in csp
                and "unsafe-eval" not in csp
            )
            assert answer.headers["X-Content-Type-Options"] == "nosniff"
    with client.get("/assets/shared/api.js") as answer:
        assert answer.headers["Content-Type"].startswith("text/javascript")
    with client.get("/console") as answer:
        assert answer.status_code == 308
    with client.get("/assets/../../api/__init__.py") as answer:
        assert answer.status_code == 404


def test_console_signs_in_and_out(browser_context, live: LiveServer) -> None:  # noqa: ANN001
    context, watch = browser_context(DESKTOP)
    watch.expect(r"status of 401 .*/api/v1/auth/token")
    page = context.new_page()
    page.goto("/console/")
    accessible(page, "console sign-in")
    shot(page, "console-sign-in-desktop")
    sign_in(page, live.city["users"]["dispatcher"], "wrong")
    page.get_by_text("Wrong e-mail or password.").wait_for()
    sign_in(page, live.city["users"]["dispatcher"])
    page.get_by_text("(dispatcher)").wait_for()
    token = page.evaluate("sessionStorage.getItem('streetloop.console.token')")
    assert token and token not in page.url
    page.get_by_role("button", name="Sign out").click()
    # The sign-in form's heading: a desk may have an e-mail field of its own (the intake desk's caller).
    page.get_by_role("heading", name="Sign in to the console").wait_for()
    assert page.evaluate("sessionStorage.getItem('streetloop.console.token')") is None
