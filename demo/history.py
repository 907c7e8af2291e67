"""Two weeks of past work for the demo city, made through the product's own code paths.

Older demo reports are dispatched, driven to (GPS pings), and completed with photo and GPS
proof on an earlier day, so a fresh `make demo` shows the whole loop: requests closed as
fixed with their after photos, a supervisors' review queue with doubtful proof in it,
reviews already decided, and CitiStat numbers with something to count. Photos are
synthetic pictures with the EXIF place and time a phone would write.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, tzinfo

import numpy as np
from geoalchemy2.shape import to_shape
from PIL import Image, ImageDraw
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from core import closing
from core.completion import (
    Completer,
    CompletionInput,
    CompletionSettings,
    complete_work_order,
    fixed_clock,
)
from core.field import ingest_positions
from core.lifecycle import Actor
from core.lifecycle.base import SYSTEM
from core.models import Crew, User, WorkOrder
from core.photos import process_photo
from core.storage import Storage
from core.workorders import change_status
from geo.proof import Ping

METRES_PER_DEG_LAT = 111_320.0


@dataclass(frozen=True)
class HistorySummary:
    completed: int
    closed: int
    in_review: int
    reviewed: int

    def __str__(self) -> str:
        return (
            f"{self.completed} jobs done in the past two weeks ({self.closed} closed, "
            f"{self.in_review} waiting for review, {self.reviewed} reviewed)"
        )


def _photo(seed: int, lat: float, lon: float, taken: datetime) -> bytes:
    """A photo-like JPEG (gradient, noise, shapes) with GPS and capture time in its EXIF."""
    rng = np.random.default_rng(seed)
    w, h = 640, 480
    y, x = np.mgrid[0:h, 0:w]
    tilt = rng.uniform(-1, 1, 2)
    base = (x * tilt[0] + y * tilt[1]) / max(w, h) * 120 + 120
    arr = np.stack([base + rng.uniform(-40, 40) for _ in range(3)], axis=-1) + rng.normal(
        0, 10, (h, w, 3)
    )
    img = Image.fromarray(np.clip(arr, 0, 255).astype("uint8"))
    draw = ImageDraw.Draw(img)
    for _ in range(10):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        box = (x0, y0, x0 + int(rng.integers(30, 250)), y0 + int(rng.integers(30, 250)))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(
            box, fill=tuple(int(v) for v in rng.integers(0, 256, 3))
        )

    def dms(value: float) -> tuple[float, float, float]:
        value = abs(value)
        d, m = int(value), int((abs(value) - int(value)) * 60)
        return float(d), float(m), round((value - d - m / 60) * 3600, 3)

    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Demo", "Crew phone"
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = (
        ("N" if lat >= 0 else "S"),
        dms(lat),
        ("E" if lon >= 0 else "W"),
        dms(lon),
    )
    sub = exif.get_ifd(0x8769)
    sub[0x9003] = taken.strftime("%Y:%m:%d %H:%M:%S")
    sub[0x9011] = "+00:00"
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85, exif=exif)
    return buf.getvalue()


def _near(
    lat: float, lon: float, metres: float, rng: random.Random, bearing: float | None = None
) -> tuple[float, float]:
    bearing = rng.uniform(0, 2 * np.pi) if bearing is None else bearing
    dlat = metres * np.cos(bearing) / METRES_PER_DEG_LAT
    dlon = metres * np.sin(bearing) / (METRES_PER_DEG_LAT * np.cos(np.radians(lat)))
    return lat + float(dlat), lon + float(dlon)


def seed_history(
    session: Session,
    storage: Storage,
    *,
    rng: random.Random,
    now: datetime,
    tz: tzinfo,
    share: float = 0.45,
    sample_rate: float = 0.05,
) -> HistorySummary:
    """Complete a share of the reports older than two days, on the days after they came in."""
    crews = session.scalars(select(Crew).order_by(Crew.code)).all()
    users = {u.crew_id: u for u in session.scalars(select(User).where(User.role == "crew"))}
    supervisor = session.scalar(select(User).where(User.role == "supervisor").order_by(User.id))
    orders = session.scalars(
        select(WorkOrder)
        .where(
            WorkOrder.status == "new",
            WorkOrder.location.is_not(None),
            WorkOrder.created_at < now - timedelta(days=2),
        )
        .options(selectinload(WorkOrder.service_type), selectinload(WorkOrder.requests))
        .order_by(WorkOrder.created_at, WorkOrder.id)
    ).all()
    completed = verified = reviewed = 0
    doubtful: list[int] = []
    # The demo's photos are small: the product's default limits. The audit draw is the
    # demo's seeded one, so one seed makes one history.
    settings = CompletionSettings(
        storage=storage, tz=tz, audit_sample_rate=sample_rate, draw=rng.random
    )
    for k, wo in enumerate(orders):
        if rng.random() > share:
            continue
        able = [c for c in crews if wo.skill in c.skills]
        if not able:
            continue
        crew = rng.choice(able)
        user = users[crew.id]
        actor = Actor.user(user.id, user.email)
        if wo.location is None:  # the query above takes placed work only
            continue
        site = to_shape(wo.location)
        # The next working morning after the report, somewhere between 8:00 and 14:00 UTC.
        day = (wo.created_at + timedelta(days=rng.choice([1, 1, 2]))).replace(
            hour=8, minute=0, second=0, microsecond=0
        )
        dispatched = day + timedelta(minutes=rng.randint(0, 360))
        arrived = dispatched + timedelta(minutes=rng.randint(10, 40))
        done = arrived + timedelta(minutes=wo.minutes_on_site + rng.randint(-5, 15))
        if done > now - timedelta(hours=1):
            continue
        change_status(
            session,
            wo,
            "dispatched",
            actor=SYSTEM,
            crew_id=crew.id,
            at=dispatched,
            note="dispatched (demo history)",
        )
        change_status(session, wo, "en_route", actor=actor, at=dispatched + timedelta(minutes=2))
        # The drive in (a ping a minute, closing in along one road), then a ping every five
        # minutes while working at the site.
        bearing = rng.uniform(0, 2 * np.pi)
        track = [
            (
                arrived - timedelta(minutes=10 - m),
                *_near(site.y, site.x, 250.0 * (10 - m) / 10, rng, bearing),
            )
            for m in range(10)
        ]
        track += [
            (arrived + timedelta(minutes=m), *_near(site.y, site.x, rng.uniform(2, 15), rng))
            for m in range(0, int((done - arrived).total_seconds() // 60), 5)
        ]
        ingest_positions(
            session,
            crew.id,
            [Ping(at=at, lat=lat, lon=lon, accuracy_m=8.0) for at, lat, lon in track],
        )
        change_status(session, wo, "on_site", actor=actor, at=arrived)
        # One job in ten has proof that does not add up (a fix far from the site).
        far = rng.random() < 0.1
        fix_lat, fix_lon = _near(
            site.y, site.x, rng.uniform(300, 600) if far else rng.uniform(3, 25), rng
        )
        outcome = "fixed" if rng.random() < 0.92 else rng.choice(["not_found", "no_action_needed"])
        data = CompletionInput(
            outcome=outcome,
            photos=[_photo(10_000 + k, fix_lat, fix_lon, done - timedelta(minutes=1))],
            before_photos=[_photo(20_000 + k, site.y, site.x, arrived + timedelta(minutes=2))],
            lat=fix_lat,
            lon=fix_lon,
            accuracy_m=8.0,
            fix_time=done - timedelta(seconds=30),
            captured_at=done,
            notes=None if outcome == "fixed" else "Nothing to do on arrival.",
        )
        result = complete_work_order(
            session,
            wo,
            data,
            Completer(crew_id=crew.id, user_id=user.id, actor=actor),
            # Sent a minute after the work was done, on the day it was done.
            replace(settings, clock=fixed_clock(done + timedelta(minutes=1))),
        )
        completion = result.completion
        session.flush()
        for photo in result.photos:
            process_photo(session, storage, photo.id)
        completed += 1
        if completion.verdict == closing.NEEDS_REVIEW:
            doubtful.append(completion.id)
    # Supervisors have worked through the older half of the queue.
    for completion_id in doubtful[: len(doubtful) // 2]:
        if supervisor is None:
            break
        sup = Actor.user(supervisor.id, supervisor.email)
        if rng.random() < 0.7:
            closing.verify(
                session,
                completion_id,
                reviewer_id=supervisor.id,
                actor=sup,
                note="checked the photos",
            )
            verified += 1
        else:
            closing.reject(
                session,
                completion_id,
                reviewer_id=supervisor.id,
                actor=sup,
                reason="the after photo does not show this site; go back and photograph the repair",
            )
        reviewed += 1
    in_review = len(doubtful) - reviewed
    closed = completed - len(doubtful) + verified
    session.flush()
    return HistorySummary(
        completed=completed, closed=closed, in_review=in_review, reviewed=reviewed
    )
