"""The review desk (end-to-end scenarios 3 and 4): a supervisor judges a crew's doubtful
proof from the evidence (both sides' photos, the map, every check with its number and
limit, the timeline), decides from the keyboard, and the resident's status page then
shows the fix with the crew's after photo.

The jobs are made as in production, through the live server: a resident's Open311 report
with a photo, a dispatch, the crew's GPS track, and the crew's completion with a photo
from ~250 m off the site (so the distance check fails and it waits for review). The
`worker` makes the photos' public copies. Everything here is this module's own: a service
type, a crew, its phone user and a supervisor."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from core.field import Ping, ingest_positions
from core.models import Completion, Crew, Photo, Review, ServiceRequest, StatusEvent, WorkOrder
from core.workorders import change_status
from tests import factories as f
from tests.api.uploads import multipart
from tests.browser.pages import (
    DESKTOP,
    TIME_ZONE,
    LiveServer,
    accessible,
    shot,
    sign_in,
    wait_for,
)
from tests.factories.photos import photo

TYPE = "review-pothole"
# One crew per test: a crew's GPS track is its own, whatever job it is read for.
CREWS = ("review-crew-1", "review-crew-2")
SUPERVISOR = "review-sup@example.org"
API_KEY = "review-desk-open311-key"


@dataclass
class Job:
    completion_id: int
    work_order_id: int
    public_id: str
    address: str


@pytest.fixture(scope="module")
def review_city(live: LiveServer) -> dict[str, str]:
    """This module's own type (no duplicate joining: every report is a job of its own),
    crew, users and Open311 client, beside the seeded city."""
    with live.sessions() as s:
        f.service_type(
            s,
            TYPE,
            name="Road hole",
            skill="asphalt",
            proof_max_distance_m=75,
            duplicate_radius_m=0,
        )
        f.user(s, SUPERVISOR, "supervisor")
        f.api_key(s, API_KEY, name="review desk tests")
        tokens = {}
        for code in CREWS:
            crew = f.crew(s, code, skills=["asphalt"])
            tokens[code] = f.token_for(s, f.user(s, f"{code}@example.org", "crew", crew=crew))[
                "Authorization"
            ]
        s.commit()
    return tokens


def make_job(
    live: LiveServer,
    city: dict[str, str],
    n: int,
    *,
    crew_code: str,
    description: str,
    track: bool = True,
) -> Job:
    """A needs_review completion `n` × 120 m east of central Andorra la Vella; with `track`,
    the crew's phone sent its GPS fixes while it drove up to the site."""
    client = live.app.test_client()
    lon, lat = f.offset(f.LON, f.LAT, 120 * n)[0], f.LAT
    now = datetime.now(UTC).replace(microsecond=0)
    report = client.post(
        "/open311/v2/requests.json",
        **multipart(
            {
                "api_key": API_KEY,
                "service_code": TYPE,
                "lat": str(lat),
                "long": str(lon),
                "address_string": f"Av. Meritxell {100 + n}",
                "description": description,
                "media": (io.BytesIO(photo(900 + n)), "report.jpg", "image/jpeg"),
            }
        ),
    )
    assert report.status_code == 201, report.data
    public_id = report.get_json()[0]["service_request_id"]
    with live.sessions() as s:
        req = s.scalar(select(ServiceRequest).where(ServiceRequest.public_id == public_id))
        crew = s.scalar(select(Crew).where(Crew.code == crew_code))
        wo = req.work_order
        change_status(
            s, wo, "dispatched", actor=f.SYSTEM, crew_id=crew.id, at=now - timedelta(minutes=50)
        )
        if track:
            # The crew drives up from the south over 20 minutes; a fix every minute.
            ingest_positions(
                s,
                crew.id,
                [
                    Ping(
                        at=now - timedelta(minutes=20 - k),
                        lat=lat - 0.0002 * (20 - k),
                        lon=lon,
                        accuracy_m=8,
                    )
                    for k in range(20)
                ],
            )
        s.commit()
        wo_id, address = wo.id, req.address
    # The crew says "fixed" from ~250 m east of the site: the distance check fails.
    far = lon + 0.003
    done = client.post(
        f"/api/v1/work-orders/{wo_id}/completion",
        **multipart(
            {
                "lat": str(lat),
                "lon": str(far),
                "accuracy_m": "6",
                "fix_time": (now - timedelta(seconds=40)).isoformat(),
                "captured_at": (now - timedelta(seconds=30)).isoformat(),
                "outcome": "fixed",
                "notes": "Filled & rolled <ok>",
                "photos": [
                    (
                        io.BytesIO(
                            photo(950 + n, lat=lat, lon=lon, taken=now - timedelta(minutes=1))
                        ),
                        "after.jpg",
                    )
                ],
                "before_photos": [],
            }
        ),
        headers={"Authorization": city[crew_code], "Idempotency-Key": f"review-{public_id}"},
    )
    assert done.status_code == 201, done.data
    assert (
        done.get_json()["verdict"] == "needs_review"
        and "distance_failed" in done.get_json()["reasons"]
    )
    return Job(done.get_json()["id"], wo_id, public_id, address)


def photos_ready(live: LiveServer, job: Job) -> bool:
    with live.sessions() as s:
        states = s.scalars(
            select(Photo.state).where(
                (Photo.completion_id == job.completion_id)
                | Photo.service_request_id.in_(
                    select(ServiceRequest.id).where(ServiceRequest.public_id == job.public_id)
                )
            )
        ).all()
        return len(states) == 2 and all(st == "ready" for st in states)


def city_time(at: datetime) -> str:
    """A time as the console shows it: in the city's zone (the browser runs in UTC)."""
    return at.astimezone(ZoneInfo(TIME_ZONE)).strftime("%H:%M")


def test_supervisor_verifies_from_the_keyboard_and_the_status_page_shows_the_fix(
    browser_context, live: LiveServer, worker, review_city
) -> None:  # noqa: ANN001
    job = make_job(
        live,
        review_city,
        1,
        crew_code=CREWS[0],
        description="Deep hole <img src=x onerror=alert(1)> by the kiosk",
    )
    try:
        wait_for(lambda: photos_ready(live, job), timeout_s=90, what="the photos' public copies")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the worker's log:\n{worker.log()}") from None
    context, watch = browser_context(DESKTOP)
    page = context.new_page()
    page.goto(f"/console/#/review/{job.completion_id}")
    sign_in(page, SUPERVISOR)
    title = page.locator("#review-detail-title")
    title.wait_for()
    assert title.inner_text() == f"Road hole at {job.address}"
    assert page.locator(f"#review-item-{job.completion_id}").get_attribute("aria-current") == "true"

    # Both sides' photos, side by side, loaded (public copies).
    resident = page.locator("#review-photos-residents img")
    crew = page.locator("#review-photos-crew img")
    resident.wait_for()
    page.wait_for_function(
        "() => [...document.querySelectorAll('.review-photo img')].every((i) => i.complete && i.naturalWidth > 0)"
    )
    rb, cb = resident.bounding_box(), crew.bounding_box()
    assert abs(rb["y"] - cb["y"]) < 2 and cb["x"] >= rb["x"] + rb["width"]
    assert resident.get_attribute("src").startswith("/media/public/")
    # The resident's words are text, not HTML.
    assert "<img src=x onerror=alert(1)>" in page.locator(".review-report-text").inner_text()
    # Every check with its number and its limit.
    distance = page.locator('tr[data-check="distance"]')
    cells = distance.locator("td").all_inner_texts()
    assert (
        cells[0] == "failed"
        and re.fullmatch(r"2[3-5]\d\.\d m", cells[1])
        and cells[2] == "at most 75 m"
    ), cells
    assert page.locator('tr[data-check="reuse"] td').nth(2).inner_text() == "more than 6 bits"
    # The server's details name instants in UTC ISO form; the desk shows them in the city's zone
    # and locale (en-GB: "Wed 2 Dec, 03:19").
    teleport = page.locator('tr[data-check="teleport"] td').nth(3).inner_text()
    assert "+00:00" not in teleport and re.search(
        r" at \w{3} \d{1,2} \w{3}, \d\d:\d\d\)$", teleport
    ), teleport
    # The map: the site, the fix with its accuracy circle, the track of the 20 fixes.
    legend = page.locator("#review-legend").inner_text()
    assert "Fix accuracy, ±6 m" in legend and "Crew's track, 20 GPS fixes" in legend
    assert page.locator("#review-map path.leaflet-interactive, #review-map path").count() >= 4
    # The timeline, in the city's zone.
    with live.sessions() as s:
        completed = s.scalar(
            select(StatusEvent.at).where(
                StatusEvent.entity == "work_order",
                StatusEvent.entity_id == job.work_order_id,
                StatusEvent.to_status == "completed",
            )
        )
    assert city_time(completed) in page.locator("#review-timeline-list").inner_text()
    accessible(page, "review desk, an item open")
    shot(page, "console-review-desktop")

    # The original on demand, from a blob URL: no token in any URL.
    page.locator("#review-photos-crew .review-original").click()
    dialog = page.locator("#review-original-dialog")
    dialog.wait_for()
    page.wait_for_function("() => document.querySelector('.review-original-img').naturalWidth > 0")
    assert page.locator(".review-original-img").get_attribute("src").startswith("blob:")
    accessible(page, "review desk, an original photo")
    page.keyboard.press("Escape")
    dialog.wait_for(state="detached")
    token = page.evaluate("sessionStorage.getItem('streetloop.console.token')")
    assert token and not any(token in path for _, path in live.requests)
    assert any(p.endswith("/original") for p in live.received("GET", "/api/v1/photos/"))

    # The keys do nothing while typing: "v", "c", "j" in the reason stay text.
    page.locator(f"#review-item-{job.completion_id}").focus()
    page.keyboard.press("r")
    reason = page.locator("#review-reason")
    assert reason.evaluate("(el) => el === document.activeElement")
    page.keyboard.type("verify? close? just kidding")
    assert (
        reason.input_value() == "verify? close? just kidding"
        and page.locator("#review-confirm").inner_text() == "Reject this completion"
    )
    page.keyboard.press("Escape")
    assert page.locator("#review-panel form").count() == 0
    assert page.locator("#review-reject").evaluate("(el) => el === document.activeElement")

    # V opens the verification, Enter confirms it.
    page.keyboard.press("v")
    confirm = page.locator("#review-confirm")
    assert confirm.inner_text() == "Verify this completion" and confirm.evaluate(
        "(el) => el === document.activeElement"
    )
    accessible(page, "review desk, verifying")
    page.keyboard.press("Enter")
    page.get_by_text(f"Verified: work order {job.work_order_id} is closed").wait_for()
    page.locator(f"#review-item-{job.completion_id}").wait_for(state="detached")

    with live.sessions() as s:
        c = s.get(Completion, job.completion_id)
        assert c.verdict == "verified"
        assert [
            (r.decision, r.reviewer.email)
            for r in s.scalars(select(Review).where(Review.completion_id == c.id))
        ] == [("verify", SUPERVISOR)]
        assert s.get(WorkOrder, job.work_order_id).status == "verified"
        assert (
            s.scalar(
                select(ServiceRequest.detailed_status).where(
                    ServiceRequest.public_id == job.public_id
                )
            )
            == "fixed"
        )
    # The next item, or the empty queue, is shown.
    page.locator("#review-detail-title, #review-empty").first.wait_for()
    accessible(page, "review desk, after the decision")

    # Scenario 4: the resident's page shows the fix, with the crew's after photo.
    page.goto(f"/status/{job.public_id}")
    assert page.locator("#status").inner_text() == "Fixed"
    assert (
        page.locator("#status-notes").inner_text()
        == "Fixed. The crew's work was checked and confirmed."
    )
    after = page.locator("figure.after img")
    after.wait_for()
    page.wait_for_function("() => document.querySelector('figure.after img').naturalWidth > 0")
    assert (
        "Deep hole <img src=x onerror=alert(1)> by the kiosk"
        in page.locator("#description").inner_text()
    )
    accessible(page, "status page, fixed")
    shot(page, "status-page-fixed-desktop")

    # A link to a decided completion says who decided it, and offers no decision.
    page.goto(f"/console/#/review/{job.completion_id}")
    page.get_by_text("Already decided: verified.").wait_for()
    assert (
        page.get_by_text(f"Verified by {SUPERVISOR}").count() == 1
        and page.locator("#review-verify").count() == 0
    )
    watch.check()


def test_supervisor_moves_in_the_queue_rejects_with_a_reason_and_closes_with_an_outcome(
    browser_context, live: LiveServer, worker, review_city
) -> None:  # noqa: ANN001
    # The crew's track is of its drive to the first job; the second is read against it.
    first = make_job(live, review_city, 2, crew_code=CREWS[1], description="Hole in the cycle lane")
    second = make_job(
        live, review_city, 3, crew_code=CREWS[1], description="Broken kerb", track=False
    )
    context, _ = browser_context(DESKTOP)
    page = context.new_page()
    page.goto("/console/#/review")
    sign_in(page, SUPERVISOR)
    page.locator("#review-filter-crew").select_option(CREWS[1])
    page.wait_for_function(
        f"() => document.querySelectorAll('#review-queue button').length === 2 && "
        f"document.querySelector('#review-item-{first.completion_id}')"
    )
    # Oldest first, and the oldest is open.
    ids = page.locator("#review-queue button").evaluate_all("(bs) => bs.map((b) => b.id)")
    assert ids == [f"review-item-{first.completion_id}", f"review-item-{second.completion_id}"]
    page.locator("#review-detail-title").get_by_text(first.address).wait_for()

    page.locator(f"#review-item-{first.completion_id}").focus()
    page.keyboard.press("j")
    page.locator("#review-detail-title").get_by_text(second.address).wait_for()
    assert (
        page.locator(f"#review-item-{second.completion_id}").get_attribute("aria-current") == "true"
    )
    page.keyboard.press("k")
    page.locator("#review-detail-title").get_by_text(first.address).wait_for()

    # Reject: a reason is needed; Ctrl+Enter sends.
    page.keyboard.press("r")
    page.keyboard.press("Control+Enter")
    page.get_by_text("Write the reason the crew can act on.").wait_for()
    accessible(page, "review desk, rejecting without a reason")
    page.locator("#review-reason").fill(
        "The photo shows the next street: go back and fill the hole at no. 102."
    )
    shot(page, "console-review-reject-desktop")
    page.keyboard.press("Control+Enter")
    page.get_by_text(f"Rejected: work order {first.work_order_id} is back in the pool.").wait_for()
    # The next item is shown.
    page.locator("#review-detail-title").get_by_text(second.address).wait_for()
    with live.sessions() as s:
        assert s.get(Completion, first.completion_id).verdict == "rejected"
        assert s.scalar(
            select(Review.reason).where(Review.completion_id == first.completion_id)
        ) == ("The photo shows the next street: go back and fill the hole at no. 102.")
        assert s.get(WorkOrder, first.work_order_id).status == "new"

    # Close with an outcome, by mouse.
    page.locator("#review-close").click()
    page.locator("#review-outcome").select_option("referred")
    page.locator("#review-status-notes").fill(
        "This kerb belongs to the national road authority; we passed it on."
    )
    accessible(page, "review desk, closing with an outcome")
    page.get_by_role("button", name="Close the work").click()
    page.locator("#review-empty").wait_for()
    assert (
        page.locator("#review-empty").inner_text() == "Nothing waits for review with these filters."
    )
    with live.sessions() as s:
        req = s.scalar(select(ServiceRequest).where(ServiceRequest.public_id == second.public_id))
        assert (req.detailed_status, req.status_notes) == (
            "referred",
            "This kerb belongs to the national road authority; we passed it on.",
        )
        assert s.get(WorkOrder, second.work_order_id).status == "closed"
    accessible(page, "review desk, empty queue")
    shot(page, "console-review-empty-desktop")


def test_a_decision_someone_else_took_first_is_refused_in_words(
    browser_context, live: LiveServer, review_city
) -> None:  # noqa: ANN001
    job = make_job(
        live, review_city, 4, crew_code=CREWS[0], description="Sunken drain cover", track=False
    )
    context, watch = browser_context(DESKTOP)
    watch.expect(r"status of 409 .*/api/v1/completions/\d+/review")
    page = context.new_page()
    page.goto(f"/console/#/review/{job.completion_id}")
    sign_in(page, SUPERVISOR)
    page.locator("#review-detail-title").get_by_text(job.address).wait_for()
    # Another supervisor rejects it meanwhile, through the API.
    with live.sessions() as s:
        other = f.token_for(s, f.user(s, "review-sup-2@example.org", "supervisor"))
        s.commit()
    answer = live.app.test_client().post(
        f"/api/v1/completions/{job.completion_id}/review",
        json={"decision": "reject", "reason": "wrong street"},
        headers=other,
    )
    assert answer.status_code == 200, answer.data
    page.keyboard.press("v")
    page.keyboard.press("Enter")
    page.get_by_text(
        f"Refused: completion {job.completion_id} was already decided: rejected"
    ).wait_for()
    page.locator(f"#review-item-{job.completion_id}").wait_for(state="detached")
    with live.sessions() as s:
        assert [
            r.decision
            for r in s.scalars(select(Review).where(Review.completion_id == job.completion_id))
        ] == ["reject"]
    accessible(page, "review desk, a refused decision")
