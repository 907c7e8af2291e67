"""Scenario 2, the crew app on a phone: a crew signs in at 390×844 with the phone's GPS,
goes offline (every request aborted, the service worker's too), completes a stop with a
photo, closes the app, opens it again, and comes back online: the completion reaches
StreetLoop exactly once, with its photo's EXIF intact. Also: an action StreetLoop refuses
on replay is shown and kept until the crew acts; an expired sign-in keeps the outbox; the
changes feed tells the crew what the office did to their route.

Each test makes its own crew, user, service type and depot (the live database is shared
by the whole browser stage), with a skill no other test's work has."""

from __future__ import annotations

import hashlib
import io
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from PIL import Image
from playwright.sync_api import expect
from sqlalchemy import select

from core.comments import NewComment, add_comment
from core.intake import Contact
from core.lifecycle import Actor
from core.models import Completion, MediaLink, Photo, Shift, WorkOrder
from core.workorders import change_status
from dispatch.build import Scope
from dispatch.plans import PlanRequest, publish_plan, request_plan, run_plan
from geo.travel import StraightLineProvider
from tests import factories as f
from tests.browser.pages import (
    PHONE,
    TIME_ZONE,
    LiveServer,
    accessible,
    launch_persistent,
    shot,
    sign_in,
)
from tests.factories.photos import photo as exif_photo

# A failed fetch is logged by chromium as a console error: these tests cut the network
# and provoke refusals on purpose.
OFFLINE_NOISE = r"Failed to load resource"


def _crew(
    live: LiveServer, code: str, *, lon: float = f.LON, lat: float = f.LAT, shift: bool = False
) -> dict[str, Any]:
    """A crew of its own (own skill, depot, service type and user) with one stop for it."""
    with live.sessions() as s:
        depot = f.depot(s, f"{code}-yard")
        st = f.service_type(s, f"{code}-pothole", skill=f"{code}-asphalt", proof_max_distance_m=75)
        crew = f.crew(s, code, skills=[f"{code}-asphalt"])
        crew.depot_id = depot.id
        user = f.user(s, f"{code}@crew-app.test", "crew", crew=crew)
        if shift:
            now = datetime.now(UTC)
            # Under way since an hour ago, but never since yesterday: a plan of today counts
            # the shifts that start today (at 00:30 the shift starts at midnight).
            midnight = datetime.now(ZoneInfo(TIME_ZONE)).replace(
                hour=0, minute=0, second=0, microsecond=0
            )
            s.add(
                Shift(
                    crew_id=crew.id,
                    starts_at=max(now - timedelta(hours=1), midnight),
                    ends_at=now + timedelta(hours=8),
                    start_depot_id=depot.id,
                    end_depot_id=depot.id,
                )
            )
        wo = f.report(
            s,
            st.code,
            lon=lon,
            lat=lat,
            description="Deep hole <b>by the bus stop</b>",
            address_string="Avinguda Meritxell 12",
        ).work_order
        s.commit()
        return {
            "code": code,
            "email": user.email,
            "crew_id": crew.id,
            "wo_id": wo.id,
            "service": st.code,
            "depot": depot.code,
        }


def _resident_photo(live: LiveServer, wo_id: int) -> None:
    """A resident's photo on the stop, as the photo job leaves it (a ready public copy)."""
    with live.sessions() as s:
        wo = s.get(WorkOrder, wo_id)
        (req,) = wo.requests
        raw = io.BytesIO()
        Image.new("RGB", (320, 240), (120, 90, 60)).save(raw, "JPEG")
        data = raw.getvalue()
        stem = f"public/photos/crew-app-{wo_id}"
        for key in (f"{stem}.jpg", f"{stem}-thumb.jpg"):
            path = Path(live.settings.media_dir) / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        s.add(
            Photo(
                kind="report",
                state="ready",
                service_request_id=req.id,
                sha256=hashlib.sha256(data).hexdigest(),
                content_type="image/jpeg",
                byte_size=len(data),
                width=320,
                height=240,
                original_key=f"originals/crew-app-{wo_id}",
                public_key=f"{stem}.jpg",
                thumbnail_key=f"{stem}-thumb.jpg",
            )
        )
        s.commit()


def _publish_today(live: LiveServer, depot: str) -> None:
    """Plan and publish today for the crews of `depot` only, as the dispatcher would."""
    tz = live.settings.tz
    with live.sessions() as s:
        plan = request_plan(
            s, PlanRequest(datetime.now(tz).date(), Scope(depot=depot), 2), actor=f.SYSTEM, tz=tz
        )
        s.commit()
        plan_id = plan.id
    run_plan(live.sessions, plan_id, travel=StraightLineProvider(), tz=tz)
    with live.sessions() as s:
        plan = s.get(type(plan), plan_id)
        assert plan.status == "ready", (plan.status, plan.error if hasattr(plan, "error") else None)
        publish_plan(s, plan, actor=f.SYSTEM, tz=tz)
        s.commit()


def _dispatch(
    live: LiveServer, wo_id: int, crew_id: int | None, target: str = "dispatched"
) -> None:
    with live.sessions() as s:
        wo = s.get(WorkOrder, wo_id)
        change_status(
            s, wo, target, actor=f.SYSTEM, **({"crew_id": crew_id} if crew_id is not None else {})
        )
        s.commit()


def _offline(context: Any) -> Any:
    """Every request aborted, the service worker's included (set_offline alone does not
    reach them), and the browser told it is offline."""

    def cut(route: Any) -> None:
        route.abort("internetdisconnected")

    context.route("**/*", cut)
    context.set_offline(True)
    return cut


def _online(context: Any, cut: Any) -> None:
    context.unroute("**/*", cut)
    context.set_offline(False)


def _photo_file(tmp_path: Path, lat: float, lon: float) -> Path:
    # Taken now, where the stop is: its EXIF place and time pass the checks.
    path = tmp_path / "after.jpg"
    path.write_bytes(
        exif_photo(7, lat=lat, lon=lon, taken=datetime.now(UTC) + timedelta(seconds=2))
    )
    return path


def test_crew_completes_a_stop_offline_and_it_arrives_once_after_a_restart(
    playwright_driver, live: LiveServer, tmp_path: Path
) -> None:  # noqa: ANN001
    job = _crew(live, "crewapp-1", shift=True)
    _resident_photo(live, job["wo_id"])
    _publish_today(live, job["depot"])
    geo = {"latitude": f.LAT, "longitude": f.LON + 0.0001, "accuracy": 6}
    options = {"viewport": PHONE, "geolocation": geo, "permissions": ["geolocation"]}
    profile = tmp_path / "phone"

    context, watch = launch_persistent(playwright_driver, live, profile, **options)
    watch.expect(OFFLINE_NOISE)
    page = context.pages[0] if context.pages else context.new_page()
    page.goto("/crew/")
    page.get_by_label("E-mail").wait_for()
    accessible(page, "crew sign-in")
    shot(page, "crew-sign-in-phone")
    sign_in(page, job["email"])
    stop_link = page.locator(f"#stop-{job['wo_id']}")
    stop_link.wait_for()
    # Today's route from the published plan: the stop has its ETA, in the city's time.
    assert (
        "Expected" in stop_link.inner_text() and "Avinguda Meritxell 12" in stop_link.inner_text()
    )
    page.get_by_text("ready for offline").wait_for(timeout=30_000)
    accessible(page, "crew route list")
    shot(page, "crew-route-list-phone")

    page.get_by_role("link", name="Map", exact=True).click()
    page.locator(".stop-pin").first.wait_for()
    accessible(page, "crew route map")
    shot(page, "crew-route-map-phone")

    stop_link = page.locator(f"#stop-{job['wo_id']}")
    stop_link.click()
    page.get_by_role("heading", name="Avinguda Meritxell 12").wait_for()
    # The resident's words are text, not HTML; the navigate link is for the phone's map app.
    assert page.get_by_text("Deep hole <b>by the bus stop</b>").is_visible()
    assert page.get_by_role("link", name="Navigate").get_attribute("href").startswith("geo:")
    page.get_by_role("img", name="Resident's photo 1").wait_for()
    page.wait_for_function("document.querySelector('.photos img').naturalWidth > 0")
    accessible(page, "crew stop")
    shot(page, "crew-stop-phone")
    page.get_by_role("heading", name="What residents said").scroll_into_view_if_needed()
    shot(page, "crew-stop-residents-phone")
    page.get_by_role("button", name="On my way").click()
    _until(page, lambda: _status(live, job["wo_id"]) == "en_route", "en_route on the server")
    page.locator(".stop-status").get_by_text("On my way", exact=True).wait_for()

    # -- offline: nothing reaches the server --
    cut = _offline(context)
    page.goto("/crew/#/list")  # the app itself now comes from the service worker's copy
    page.reload()
    page.get_by_text("Offline: showing the copy on this phone").wait_for()
    page.locator(f"#stop-{job['wo_id']}").click()
    page.get_by_role("img", name="Resident's photo 1").wait_for()
    page.wait_for_function(
        "document.querySelector('.photos img').naturalWidth > 0"
    )  # the photo, from the phone
    page.get_by_role("link", name="Complete…").click()
    page.get_by_label("Photos of the finished work").set_input_files(
        str(_photo_file(tmp_path, f.LAT, f.LON))
    )
    page.get_by_text("Position found, within 6 m").wait_for()
    page.get_by_label("Outcome").select_option("fixed")
    page.get_by_label("Notes (optional)").fill("Filled and rolled")
    # A sync in the background (here asked for) leaves a form being filled in alone.
    page.get_by_role("button", name="Refresh").click()
    page.wait_for_timeout(500)
    assert page.get_by_label("Notes (optional)").input_value() == "Filled and rolled"
    assert page.evaluate("document.getElementById('photos').files.length") == 1
    accessible(page, "crew completion form")
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, "crew-completion-form-phone")
    page.get_by_role("button", name="Send completion").click()
    page.get_by_text("Saved on this phone.").wait_for()
    page.get_by_role("link", name="1 waiting to send").wait_for()
    page.get_by_role("link", name="1 waiting to send").click()
    page.get_by_text("Completion: Avinguda Meritxell 12").wait_for()
    accessible(page, "crew queue waiting")
    shot(page, "crew-queue-waiting-phone")
    assert live.received("POST", f"/api/v1/work-orders/{job['wo_id']}/completion") == []

    # -- the app is closed and the phone restarted, still offline --
    context.close()
    watch.check()
    context, watch = launch_persistent(playwright_driver, live, profile, **options)
    watch.expect(OFFLINE_NOISE)
    cut = _offline(context)
    page = context.pages[0] if context.pages else context.new_page()
    page.goto("/crew/#/queue")
    page.get_by_role("link", name="1 waiting to send").wait_for()
    page.get_by_text("Completion: Avinguda Meritxell 12").wait_for()
    assert live.received("POST", f"/api/v1/work-orders/{job['wo_id']}/completion") == []

    # -- the network is back --
    _online(context, cut)
    page.get_by_role("link", name="All sent").wait_for(timeout=30_000)
    rows = _until(page, lambda: _completions(live, job["wo_id"]), "the completion row")
    (completion,) = rows
    checks = {c["name"]: c["passed"] for c in completion.checks}
    assert checks["exif_location"] is True and checks["exif_time"] is True, completion.checks
    assert completion.notes == "Filled and rolled" and completion.outcome == "fixed"
    page.goto(f"/crew/#/result/{job['wo_id']}")
    page.get_by_text("The photo was taken at the site").wait_for()
    page.get_by_text("Up to date at").wait_for()
    assert page.locator(".check.passed", has_text="The photo was taken at the site").count() == 1
    accessible(page, "crew proof result")
    shot(page, "crew-proof-result-phone")
    # Sent once, whatever the retries: one row, one POST that reached the server.
    assert len(_completions(live, job["wo_id"])) == 1
    assert len(live.received("POST", f"/api/v1/work-orders/{job['wo_id']}/completion")) == 1
    token = page.evaluate("""() => new Promise((ok) => { const r = indexedDB.open('streetloop-crew');
        r.onsuccess = () => {
            const g = r.result.transaction('kv').objectStore('kv').get('token');
            g.onsuccess = () => ok(g.result.access_token);
        }; })""")
    assert token and token not in page.url and all(token not in p for _, p in live.requests)
    context.close()
    watch.check()


def _until(page: Any, predicate: Any, what: str, timeout_s: float = 30) -> Any:
    """wait_for, with the browser's events handled while waiting: every request of these
    pages passes through a Python route handler (the outside-request guard), and the sync
    Playwright API runs handlers only inside its own calls, so a plain sleep would hold
    the very request being waited for."""
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        page.wait_for_timeout(200)
    return value


def _status(live: LiveServer, wo_id: int) -> str:
    with live.sessions() as s:
        return s.scalar(select(WorkOrder.status).where(WorkOrder.id == wo_id))


def _completions(live: LiveServer, wo_id: int) -> list[Completion]:
    with live.sessions() as s:
        rows = s.scalars(select(Completion).where(Completion.work_order_id == wo_id)).all()
        s.expunge_all()
        return list(rows)


@pytest.fixture
def phone(browser_context) -> Any:  # noqa: ANN001
    context, watch = browser_context(
        PHONE,
        geolocation={"latitude": f.LAT, "longitude": f.LON, "accuracy": 8},
        permissions=["geolocation"],
    )
    watch.expect(OFFLINE_NOISE)
    return context


def _open_stop(phone: Any, live: LiveServer, job: dict[str, Any]) -> Any:
    """The crew's stop dispatched to it, and the crew signed in on the phone looking at it."""
    _dispatch(live, job["wo_id"], job["crew_id"])
    page = phone.new_page()
    page.goto("/crew/")
    sign_in(page, job["email"])
    page.locator(f"#stop-{job['wo_id']}").click()
    return page


def _at_the_stop(phone: Any, live: LiveServer, code: str) -> tuple[dict[str, Any], Any]:
    """A crew of its own, at its stop (`_open_stop`)."""
    job = _crew(live, code)
    return job, _open_stop(phone, live, job)


def test_a_refused_replay_is_shown_and_kept_until_the_crew_discards_it(
    phone, live: LiveServer
) -> None:  # noqa: ANN001
    job, page = _at_the_stop(phone, live, "crewapp-2")
    cut = _offline(phone)
    page.get_by_role("button", name="On site").click()
    page.get_by_role("link", name="1 waiting to send").wait_for()
    # Meanwhile the office cancels the job: the phone's "on site" cannot apply any more.
    _dispatch(live, job["wo_id"], None, "cancelled")
    _online(phone, cut)
    page.get_by_role("link", name="1 refused: look").wait_for(timeout=30_000)
    # The changes feed tells the crew, in words.
    page.get_by_text("Avinguda Meritxell 12 was cancelled: no need to go.").wait_for()
    page.get_by_role("link", name="1 refused: look").click()
    refusal = page.locator(".queue-item.refused")
    refusal.get_by_text(re.compile(r"Refused by StreetLoop: .*cancelled")).wait_for()
    accessible(page, "crew queue refused")
    shot(page, "crew-queue-refused-phone")
    # Kept across a restart of the app, and a retry is refused again, not dropped.
    page.reload()
    page.locator(".queue-item.refused").wait_for()
    page.get_by_role("button", name="Try again").click()
    events = f"/api/v1/work-orders/{job['wo_id']}/events"
    _until(page, lambda: len(live.received("POST", events)) == 2, "the retry to reach the server")
    expect(page.locator(".queue-item.refused")).to_have_count(1)
    page.get_by_role("link", name="1 refused: look").wait_for()
    # Discarding asks first; "Keep it" keeps it.
    page.get_by_role("button", name="Discard…").click()
    page.get_by_role("dialog").get_by_text("Discard this action?").wait_for()
    accessible(page, "crew discard dialog")
    page.get_by_role("button", name="Keep it").click()
    expect(page.get_by_role("dialog")).to_have_count(0)
    expect(page.locator(".queue-item.refused")).to_have_count(1)
    page.get_by_role("button", name="Discard…").click()
    page.get_by_role("button", name="Discard it").click()
    page.get_by_text("Everything you did has been sent.").wait_for()
    page.get_by_role("link", name="All sent").wait_for()


def test_an_expired_sign_in_keeps_the_queue_and_sends_it_after_signing_in_again(
    phone, live: LiveServer
) -> None:  # noqa: ANN001
    job, page = _at_the_stop(phone, live, "crewapp-3")
    cut = _offline(phone)
    page.get_by_role("button", name="On my way").click()
    page.get_by_role("link", name="1 waiting to send").wait_for()
    # The token expires while the phone is offline (here: the phone holds one the server no longer knows).
    page.evaluate("""() => new Promise((ok) => { const r = indexedDB.open('streetloop-crew');
        r.onsuccess = () => { const s = r.result.transaction('kv', 'readwrite').objectStore('kv');
          s.put({access_token: 'expired-token', expires_at: 0}, 'token').onsuccess = () => ok(); }; })""")
    page.reload()
    page.get_by_role("link", name="1 waiting to send").wait_for()
    _online(phone, cut)  # the browser's "online" makes the app sync (its timer would too)
    page.get_by_text(
        "Your sign-in has expired. Sign in again: the 1 action kept on this phone is sent then."
    ).wait_for(timeout=30_000)
    accessible(page, "crew signed out with a queue")
    shot(page, "crew-sign-in-again-phone")
    assert _status(live, job["wo_id"]) == "dispatched"
    sign_in(page, job["email"])
    page.get_by_role("link", name="All sent").wait_for(timeout=30_000)
    _until(page, lambda: _status(live, job["wo_id"]) == "en_route", "the kept event to arrive")


def test_unable_asks_for_a_reason_from_the_apis_list(phone, live: LiveServer) -> None:  # noqa: ANN001
    job, page = _at_the_stop(phone, live, "crewapp-6")
    page.get_by_role("button", name="Unable to do it…").click()
    page.get_by_role("button", name="Send: unable").click()
    page.get_by_text("Choose a reason first.").wait_for()
    page.get_by_label("Why not?").select_option(label="Blocked by a vehicle")
    accessible(page, "crew unable")
    page.get_by_role("button", name="Send: unable").click()
    _until(page, lambda: _status(live, job["wo_id"]) == "unable", "unable on the server")
    with live.sessions() as s:
        assert s.get(WorkOrder, job["wo_id"]).unable_reason == "blocked_by_vehicle"
    page.locator(".stop-status").get_by_text("Unable", exact=True).wait_for()


def test_the_stop_shows_residents_comments_as_text_and_never_who_wrote_them(
    phone, live: LiveServer
) -> None:  # noqa: ANN001
    job = _crew(live, "crewapp-7")
    with live.sessions() as s:
        key = f.api_key(s, "crewapp-7-key", name="FixMyStreet")
        (req,) = s.get(WorkOrder, job["wo_id"]).requests
        for n, text in enumerate(
            ["Still there <img src=x onerror=alert(1)>", "Deeper after the rain"]
        ):
            add_comment(
                s,
                NewComment(
                    service_request_id=req.public_id,
                    client_update_id=str(n),
                    text=text,
                    commenter=Contact(first_name="Marta", email="marta@example.org"),
                ),
                api_key_id=key.id,
                actor=Actor.client("FixMyStreet"),
                reopen_within=timedelta(days=30),
            )
        s.commit()
    page = _open_stop(phone, live, job)
    page.get_by_role("heading", name="Residents' comments").wait_for()
    expect(page.locator("ul.comments li q")).to_have_text(
        ["Still there <img src=x onerror=alert(1)>", "Deeper after the rain"]
    )
    expect(page.locator("ul.comments img")).to_have_count(0)
    assert "Marta" not in page.content() and "marta@example.org" not in page.content()
    accessible(page, "crew stop with comments")


def test_the_changes_feed_tells_the_crew_of_a_reassigned_and_an_added_stop(
    phone, live: LiveServer
) -> None:  # noqa: ANN001
    job = _crew(live, "crewapp-4")
    other = _crew(live, "crewapp-5")
    _dispatch(live, job["wo_id"], job["crew_id"])
    with live.sessions() as s:
        added = f.report(
            s, job["service"], lon=f.LON + 0.002, lat=f.LAT, address_string="Carrer Major 3"
        ).work_order.id
        s.commit()
    page = phone.new_page()
    page.goto("/crew/")
    sign_in(page, job["email"])
    page.locator(f"#stop-{job['wo_id']}").wait_for()
    _dispatch(live, job["wo_id"], None, "new")
    _dispatch(live, job["wo_id"], other["crew_id"])
    _dispatch(live, added, job["crew_id"])
    page.get_by_role("button", name="Refresh").click()
    page.get_by_text(
        "Avinguda Meritxell 12 was reassigned: it is no longer on your route."
    ).wait_for()
    page.get_by_text("New stop on your route: Carrer Major 3.").wait_for()
    page.locator(f"#stop-{added}").wait_for()
    expect(page.locator(f"#stop-{job['wo_id']}")).to_have_count(0)
    accessible(page, "crew change notices")
    shot(page, "crew-change-notices-phone")
    page.get_by_role("button", name="Dismiss").first.click()
    expect(page.locator(".notice")).to_have_count(1)
    page.reload()
    page.locator(f"#stop-{added}").wait_for()
    expect(page.locator(".notice")).to_have_count(1)  # kept on the phone until dismissed


def test_the_app_is_installable_and_its_service_worker_stores_files_that_exist(
    live: LiveServer,
) -> None:
    """A shell entry that 404s makes the worker's install fail, and the app then never opens
    offline: every file sw.js stores must be served, with the type a browser accepts."""
    client = live.app.test_client()
    with client.get("/crew/manifest.webmanifest") as answer:
        assert answer.status_code == 200 and answer.headers["Content-Type"].startswith(
            "application/manifest+json"
        )
        manifest = answer.get_json(force=True)
    assert (
        manifest["scope"] == "/crew/"
        and manifest["display"] == "standalone"
        and manifest["start_url"].startswith("/crew/")
    )
    assert {i["sizes"] for i in manifest["icons"]} >= {"192x192", "512x512"}
    for icon in manifest["icons"]:
        with client.get(icon["src"]) as answer:
            assert answer.status_code == 200 and answer.headers["Content-Type"] == "image/png", icon
    sw = (Path(__file__).resolve().parents[2] / "screens/static/crew/sw.js").read_text()
    shell = re.findall(r'^\s+"(/[^"]*)",$', sw.split("const SHELL = [")[1].split("];")[0], re.M)
    assert "/crew/" in shell and "/crew/app.js" in shell and len(shell) > 10
    for url in shell:
        with client.get(url) as answer:
            assert answer.status_code == 200, url
            if url.endswith(".js"):
                assert answer.headers["Content-Type"].startswith("text/javascript"), url
    # Every module the app imports is in the shell: an import missing offline stops the whole app.
    crew = Path(__file__).resolve().parents[2] / "screens/static/crew"
    for module in crew.glob("*.js"):
        for imported in re.findall(r'from "([^"]+)"', module.read_text()):
            path = imported if imported.startswith("/") else f"/crew/{imported.removeprefix('./')}"
            assert path in shell, f"{module.name} imports {imported}, which sw.js does not store"


def test_photos_sent_as_links_are_offered_as_links_that_open_on_their_site(
    phone, live: LiveServer
) -> None:  # noqa: ANN001
    job = _crew(live, "crewapp-8")
    _resident_photo(live, job["wo_id"])
    linked = "https://fixmystreet.example.ad/photo/1.full.jpeg"
    with live.sessions() as s:
        (req,) = s.get(WorkOrder, job["wo_id"]).requests
        # As FixMyStreet sends them (media_url), and one no client could send any more
        # (Open311 refuses it): the app must not offer it even so.
        s.add_all(
            [
                MediaLink(service_request_id=req.id, position=0, url=linked),
                MediaLink(service_request_id=req.id, position=1, url="javascript:alert(1)"),
            ]
        )
        s.commit()
    page = _open_stop(phone, live, job)
    page.get_by_role("img", name="Resident's photo 1").wait_for()
    link = page.get_by_role("link", name="Photo 2 sent as a link (needs network)")
    expect(link).to_have_attribute("href", linked)
    expect(link).to_have_attribute("target", "_blank")
    expect(link).to_have_attribute("rel", "noopener noreferrer")
    expect(page.locator(".photo-links a")).to_have_count(1)
    accessible(page, "crew photo links")
