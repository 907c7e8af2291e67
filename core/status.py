"""The status vocabulary: every state a request, a work order, a completion, a route plan
and an account can be in, the named groups the code asks about, and what residents read
for each request status.

Everything that compares a status imports it from here, CitiStat's SQL included
(`sql_list`), and `core.models` builds its CHECK constraints from these enums: a status
added here needs its migration and nothing else spelled twice (tests/core/test_migrations.py
compares the models with the migrations, tests/core/test_status.py the database with these
enums). A status is a `StrEnum` member, that is a plain string: the database stores it,
JSON carries it and a comparison with a column's value needs no conversion.

Groups are tuples, so their order is fixed: some are shown as they are (the OpenAPI
document's enums, the choices a crew's phone offers).

`WORDING` is the one table of what a resident reads: the status page's words (written
for residents, and the base of the table), which e-mails, the intake desk and Open311's
notes use too, and how Open311 and FixMyStreet are told the status.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

# -- service requests: what the resident reported ----------------------------------------


class RequestStatus(StrEnum):
    """A request's `detailed_status` (Open311's `status` is open or closed, see `WORDING`)."""

    RECEIVED = "received"
    ACKNOWLEDGED = "acknowledged"
    SCHEDULED = "scheduled"
    IN_PROGRESS = "in_progress"
    REOPENED = "reopened"
    FIXED = "fixed"
    DUPLICATE = "duplicate"
    NOT_FOUND = "not_found"
    NO_ACTION_NEEDED = "no_action_needed"
    REFERRED = "referred"
    CANCELLED = "cancelled"


_R = RequestStatus
REQUEST_STATUSES: tuple[RequestStatus, ...] = tuple(RequestStatus)
REQUEST_OPEN_STATUSES = (_R.RECEIVED, _R.ACKNOWLEDGED, _R.SCHEDULED, _R.IN_PROGRESS, _R.REOPENED)
REQUEST_CLOSED_STATUSES = tuple(s for s in RequestStatus if s not in REQUEST_OPEN_STATUSES)
# Taken up by the city and not closed: on the way to a crew, or with one.
REQUEST_WORKING = (_R.ACKNOWLEDGED, _R.SCHEDULED, _R.IN_PROGRESS)
# In a crew's hands: on a published route, or being worked on (the status page says so).
REQUEST_WITH_A_CREW = (_R.SCHEDULED, _R.IN_PROGRESS)
# The ways a request closes other than `fixed` (which needs a verified completion).
REQUEST_OTHER_OUTCOMES = tuple(s for s in REQUEST_CLOSED_STATUSES if s is not _R.FIXED)


# -- work orders: one problem on the street for one crew visit ---------------------------


class WorkOrderStatus(StrEnum):
    NEW = "new"
    PLANNED = "planned"
    DISPATCHED = "dispatched"
    EN_ROUTE = "en_route"
    ON_SITE = "on_site"
    COMPLETED = "completed"
    VERIFIED = "verified"
    REJECTED = "rejected"
    UNABLE = "unable"
    CLOSED = "closed"
    CANCELLED = "cancelled"


_W = WorkOrderStatus
WORK_ORDER_STATUSES: tuple[WorkOrderStatus, ...] = tuple(WorkOrderStatus)
# Waiting for a plan: never dispatched yet, or only in an unpublished draft.
PLANNABLE = (_W.NEW, _W.PLANNED)
# On a crew's route: the crew has it, and may complete it from any of these (dispatched or
# en_route say the crew got there without the phone telling us).
ON_A_ROUTE = (_W.DISPATCHED, _W.EN_ROUTE, _W.ON_SITE)
COMPLETABLE = ON_A_ROUTE
# On a crew's route and not reached yet: the stops a crew's times are projected for.
NOT_REACHED = (_W.DISPATCHED, _W.EN_ROUTE)
# The crew has set off for it or is there: it stays first on the crew's route.
UNDER_WAY = (_W.EN_ROUTE, _W.ON_SITE)
# The steps a crew's phone reports on its way (a completion is reported with its proof).
CREW_STEPS = (_W.EN_ROUTE, _W.ON_SITE, _W.UNABLE)
# The crew has finished its visit: its proof waits for a verdict, or stands.
VISITED = (_W.COMPLETED, _W.VERIFIED)
# What a crew's published route still shows: what it has, and what it did today.
SHOWN_ON_ROUTE = (*ON_A_ROUTE, _W.COMPLETED, _W.VERIFIED, _W.UNABLE)
# Waiting for, or in, a crew visit (not completed, not closed): a new report at the place
# joins one of these, and a dispatcher can make one must-do.
JOINABLE = (*PLANNABLE, *ON_A_ROUTE, _W.UNABLE, _W.REJECTED)
# Finished, by a crew or the office: drops out of a re-plan.
DONE = (_W.COMPLETED, _W.VERIFIED, _W.CLOSED, _W.CANCELLED)
# What a supervisor may close with an outcome without a completion: no crew has claimed it.
CLOSABLE_WITHOUT_COMPLETION = (_W.NEW, _W.PLANNED, _W.DISPATCHED, _W.EN_ROUTE, _W.UNABLE)
# Ended for its crew without the crew finishing it.
CALLED_OFF = (_W.CLOSED, _W.CANCELLED)
# Its requests were closed by the work (verified proof, or a supervisor's outcome): only a
# resident's new report reopens it.
SETTLED = (_W.VERIFIED, _W.CLOSED)
# Reached only through their own flows (a crew's completion with proof, a supervisor's
# review), never by a status change from the office.
NOT_SET_BY_STAFF = (_W.COMPLETED, _W.VERIFIED, _W.REJECTED, _W.CLOSED)


# -- completions: a crew's claim that the work is done ------------------------------------


class Verdict(StrEnum):
    """A completion's state: what the proof checks said, then what a supervisor decided."""

    AUTO_VERIFIED = "auto_verified"
    NEEDS_REVIEW = "needs_review"
    VERIFIED = "verified"
    REJECTED = "rejected"


VERDICTS: tuple[Verdict, ...] = tuple(Verdict)
# Proof that stands: it closes the work.
PROVEN = (Verdict.AUTO_VERIFIED, Verdict.VERIFIED)
# Not proof: waiting for a supervisor, or rejected by one.
UNPROVEN = (Verdict.NEEDS_REVIEW, Verdict.REJECTED)


class CompletionOutcome(StrEnum):
    """What the crew says it found and did."""

    FIXED = "fixed"
    NOT_FOUND = "not_found"
    NO_ACTION_NEEDED = "no_action_needed"
    REFERRED = "referred"
    NEEDS_OTHER_CREW = "needs_other_crew"


COMPLETION_OUTCOMES: tuple[CompletionOutcome, ...] = tuple(CompletionOutcome)
# A supervisor may close work with one of these instead of `fixed` (which needs proof).
CLOSE_OUTCOMES = (_R.NOT_FOUND, _R.NO_ACTION_NEEDED, _R.REFERRED, _R.DUPLICATE)


# -- route plans --------------------------------------------------------------------------


class PlanStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    READY = "ready"
    FAILED = "failed"
    PUBLISHED = "published"
    SUPERSEDED = "superseded"


PLAN_STATUSES: tuple[PlanStatus, ...] = tuple(PlanStatus)
# A solve waiting for a worker or under way.
PLAN_SOLVING = (PlanStatus.QUEUED, PlanStatus.RUNNING)
# Solved and still current: editable by hand, superseded when another version is published.
PLAN_CURRENT = (PlanStatus.READY, PlanStatus.PUBLISHED)
# Published now or once (`published_at` tells a superseded draft from a superseded plan).
PLAN_PUBLISHED_OR_SUPERSEDED = (PlanStatus.PUBLISHED, PlanStatus.SUPERSEDED)


class PlanPartStatus(StrEnum):
    """One part of a split plan, solved by a job of its own (`dispatch.parts`): queued for
    a worker, running on one, done (its result stored), failed (its tries used up), or
    cancelled (its plan was failed, or built again, before it ran)."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


PLAN_PART_STATUSES: tuple[PlanPartStatus, ...] = tuple(PlanPartStatus)


# -- accounts and client apps -------------------------------------------------------------


class UserStatus(StrEnum):
    """A user's state in the audit trail; the column is `users.active`."""

    ACTIVE = "active"
    INACTIVE = "inactive"


class ApiKeyStatus(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"


class WebhookStatus(StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"


USER_STATUSES: tuple[UserStatus, ...] = tuple(UserStatus)
API_KEY_STATUSES: tuple[ApiKeyStatus, ...] = tuple(ApiKeyStatus)
WEBHOOK_STATUSES: tuple[WebhookStatus, ...] = tuple(WebhookStatus)


# -- what a resident reads ----------------------------------------------------------------


@dataclass(frozen=True)
class Wording:
    """One request status as residents and their apps are told it."""

    status: RequestStatus
    # The status in a resident's words: the status page, the e-mails' "Status:" line, what
    # the intake desk reads a caller.
    words: str
    # FixMyStreet's extended status, sent as `status` in Open311's service request updates
    # (its Open311 client lowercases it and maps e.g. FIXED to "fixed - council"). A plain
    # CLOSED would not do for closings that are not fixes: a FixMyStreet body without
    # extended statuses reads CLOSED as fixed.
    fixmystreet: str
    # The public note the request gets when it enters this status and nothing more precise
    # is said (its `status_notes`, the timeline, Open311's update description); None where
    # the note always says more (who reopened it, which crew step).
    note: str | None = None

    @property
    def open311(self) -> Literal["open", "closed"]:
        """GeoReport v2's two-valued `status`."""
        return open311_status(self.status)


# Keyed by the status's value too (members are strings), so a column's value looks it up.
WORDING: Mapping[str, Wording] = {
    w.status: w
    for w in (
        Wording(_R.RECEIVED, "Received", "OPEN"),
        Wording(
            _R.ACKNOWLEDGED,
            "Accepted, waiting to be planned",
            "OPEN",
            "Back in the queue to be scheduled again.",
        ),
        Wording(
            _R.SCHEDULED, "Scheduled", "ACTION_SCHEDULED", "Scheduled: a crew has been assigned."
        ),
        Wording(_R.IN_PROGRESS, "In progress", "IN_PROGRESS", "A crew is working on it."),
        Wording(_R.REOPENED, "Reopened", "OPEN"),
        Wording(_R.FIXED, "Fixed", "FIXED", "Fixed. The crew's work was checked and confirmed."),
        Wording(
            _R.DUPLICATE,
            "Closed: already reported",
            "DUPLICATE",
            "Closed: this is the same problem as an earlier report, which is being handled.",
        ),
        Wording(
            _R.NOT_FOUND,
            "Closed: the crew could not find the problem",
            "NO_FURTHER_ACTION",
            "Closed: a crew went to the location and could not find the problem.",
        ),
        Wording(
            _R.NO_ACTION_NEEDED,
            "Closed: no action needed",
            "NO_FURTHER_ACTION",
            "Closed: a crew inspected the location and no action was needed.",
        ),
        # Passed to the organisation that owns the asset (a utility, a private owner).
        Wording(
            _R.REFERRED,
            "Passed to the organisation responsible",
            "NOT_COUNCILS_RESPONSIBILITY",
            "Closed here: this is the responsibility of another agency or owner, and it has been referred to them.",
        ),
        Wording(_R.CANCELLED, "Cancelled", "NO_FURTHER_ACTION", "Cancelled by the city."),
    )
}
# Each status's words alone, for lookups and listings.
STATUS_WORDS: Mapping[str, str] = {status: w.words for status, w in WORDING.items()}
# The request's public note when a crew sets off: it is in progress from then on.
ON_THE_WAY_NOTE = "A crew is on the way."


def words_for(status: str) -> str:
    """What a resident reads for a request status (the status itself if it is none, which
    happens for an audit event's target that is not a request status)."""
    wording = WORDING.get(status)
    return wording.words if wording is not None else status


def open311_status(detailed_status: str) -> Literal["open", "closed"]:
    """GeoReport v2's two-valued `status` of a detailed status."""
    return "closed" if detailed_status in REQUEST_CLOSED_STATUSES else "open"


def note_for(status: RequestStatus) -> str:
    """The public note for entering `status`; only for statuses that have one."""
    note = WORDING[status].note
    if note is None:
        raise KeyError(f"{status} has no note of its own: say what happened")
    return note


# -- the vocabulary in SQL ----------------------------------------------------------------

_WORD = re.compile(r"[a-z_]+")


def sql_list(values: Iterable[str]) -> str:
    """A group as an SQL literal list (`'a', 'b'`), for CHECK constraints, partial indexes
    and raw SQL: the one place the vocabulary is spelled as SQL. A literal rather than a
    bound array, so that the planner can match a partial index's predicate (the
    `ix_completions_unproven` one, say) and a constraint reads as it always did. Only our
    own words go in; anything else is refused rather than quoted."""
    words = list(values)
    for word in words:
        if not _WORD.fullmatch(word):
            raise ValueError(f"{word!r} is not a status word")
    return ", ".join(f"'{w}'" for w in words)
