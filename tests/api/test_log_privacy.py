"""A write that fails logs what went wrong, never the resident's details or the request's token.

The failures are real ones, raised by PostgreSQL through the real Open311 endpoint: a
constraint added inside the test's transaction (rolled back with it) refuses the row.
PostgreSQL's own error text names the failing row's values ("Failing row contains ..."),
and SQLAlchemy's names the statement's parameters; neither may reach a log record."""

from __future__ import annotations

import logging
import traceback
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from tests import factories as f

BASE = "/open311/v2"
TOKEN = "tok-Zq8Lr2mWx4Yp9Kb3"
PII = {
    "email": "hidden.resident@example.org",
    "first_name": "Evangelina",
    "last_name": "Quillfeather",
    "phone": "+376 555 0199",
    "device_id": "device-9c1e77",
    "account_id": "acct-55321",
}
DESCRIPTION = "Pothole outside number 12, ask for Evangelina"


@pytest.fixture
def city(db: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    f.service_type(db, attributes=f.full_attributes())
    f.api_key(db)
    db.commit()
    # The token is random; pin it so the test knows which value must not be logged.
    import core.intake

    monkeypatch.setattr(core.intake.secrets, "token_urlsafe", lambda n=None: TOKEN)


def _post(client) -> Any:  # noqa: ANN001
    form = {
        "api_key": f.API_KEY,
        "service_code": "pothole",
        "lat": str(f.LAT),
        "long": str(f.LON),
        "attribute[size]": "small",
        "description": DESCRIPTION,
        **PII,
    }
    return client.post(f"{BASE}/requests.json", data=form)


def _everything_logged(records: list[logging.LogRecord]) -> str:
    """Each record as a handler would write it: message, arguments, exception and its
    chain (the driver's error is the SQLAlchemy error's cause), traceback included."""
    out = []
    for r in records:
        out.append(r.getMessage())
        out.append(repr(r.args))
        if r.exc_info and r.exc_info[1] is not None:
            out.append("".join(traceback.format_exception(r.exc_info[1])))
        if r.exc_text:
            out.append(r.exc_text)
        if r.stack_info:
            out.append(r.stack_info)
    return "\n".join(out)


@pytest.mark.parametrize(
    ("table", "check"),
    [
        # The request's own row: its statement carries the token and the description.
        ("service_requests", "description NOT LIKE '%Evangelina%'"),
        # The contact row: e-mail, names, phone, device and account.
        ("request_contacts", "email <> 'hidden.resident@example.org'"),
    ],
)
def test_a_failing_write_logs_no_personal_data(
    client, city, db: Session, caplog: pytest.LogCaptureFixture, table: str, check: str
) -> None:  # noqa: ANN001
    db.execute(
        text(f"ALTER TABLE {table} ADD CONSTRAINT test_refuses_row CHECK ({check}) NOT VALID")
    )
    with caplog.at_level(logging.DEBUG):
        resp = _post(client)
    assert resp.status_code == 500
    assert resp.get_json() == [{"code": 500, "description": "internal error"}]

    logged = _everything_logged(caplog.records)
    # The failure itself is logged, with what an operator needs to find it.
    assert "test_refuses_row" in logged and "CheckViolation" in logged
    for value in [TOKEN, DESCRIPTION, *PII.values()]:
        assert value not in logged, f"{value!r} was logged"


def test_jobs_take_ids_not_personal_data() -> None:
    """procrastinate logs every job with its arguments ("Job deliver(photo_id=3) ended
    ..."): a job takes ids (it reads the rest from the database), never an address."""
    import inspect

    import workers.tasks  # noqa: F401  (registers the tasks)
    from workers.app import app

    ours = {
        name: task
        for name, task in app.tasks.items()
        if not task.name.startswith(("builtin:", "procrastinate."))
    }
    assert "purge_personal_data" in ours and "process_photo" in ours
    for name, task in ours.items():
        params = [p for p in inspect.signature(task.func).parameters if p != "context"]
        assert all(p.endswith("_id") or p == "timestamp" for p in params), (name, params)
