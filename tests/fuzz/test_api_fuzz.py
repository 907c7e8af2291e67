"""Schemathesis against the live server, as each of the five roles: no answer is a 5xx,
and every answer conforms to the OpenAPI document (/openapi.json) the server publishes.

Each operation gets EXAMPLES generated requests per role. Generation is derandomised,
so a failure is the same on every run and on every machine; the failures of all
operations are collected and reported together."""

from __future__ import annotations

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.fuzz.conftest import ROLES, STATS, LiveServer

pytestmark = pytest.mark.fuzz

EXAMPLES = 25
CHECKS = [not_a_server_error, response_schema_conformance]


@pytest.fixture(scope="module")
def api_schema(live_server: LiveServer):  # noqa: ANN201
    return schemathesis.openapi.from_url(f"{live_server.base_url}/openapi.json")


@pytest.mark.parametrize("role", ROLES)
def test_no_5xx_and_every_answer_as_documented(
    live_server: LiveServer, api_schema, role: str
) -> None:  # noqa: ANN001
    with STATS.timed():
        failures = _fuzz_every_operation(live_server, api_schema, role)
    assert not failures, f"{len(failures)} operations failed as {role}:\n\n" + "\n\n".join(failures)


def _fuzz_every_operation(live_server: LiveServer, api_schema, role: str) -> list[str]:  # noqa: ANN001
    failures: list[str] = []
    http = requests.Session()
    for result in api_schema.get_all_operations():
        operation = result.ok()
        headers = live_server.headers(role)
        sent = 0

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def fuzz(case: schemathesis.Case) -> None:
            nonlocal sent
            sent += 1
            # fuzz() runs within this iteration of the loop, so `headers` is this
            # operation's (ruff cannot see that the function does not outlive it).
            response = case.call(
                base_url=live_server.base_url,
                session=http,
                headers=headers,  # noqa: B023
                timeout=60,
            )
            case.validate_response(response, checks=CHECKS, headers=headers)  # noqa: B023

        try:
            fuzz()
        # Every operation's failure is collected, then all are reported together.
        # (Schemathesis raises its failures as an exception group.)
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001
            failures.append(f"{operation.label}: {str(exc).strip()[:3000]}")
        STATS.cases[("openapi", role)] += sent
        STATS.operations[("openapi", role)] += 1
    http.close()
    return failures
