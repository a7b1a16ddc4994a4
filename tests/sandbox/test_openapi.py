"""The sandbox's own OpenAPI spec, fuzzed with schemathesis over real HTTP: no 5xx for any request."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from airflow_provider_gini.sandbox import DEMO_CLIENT, DEMO_USER, RunningSandbox, run_sandbox


@pytest.fixture(scope="module")
def fuzzed_sandbox() -> Iterator[RunningSandbox]:
    with run_sandbox() as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def user_token(fuzzed_sandbox: RunningSandbox) -> str:
    response = httpx.post(
        f"{fuzzed_sandbox.base_url}/oauth/token?grant_type=password",
        auth=(DEMO_CLIENT.client_id, DEMO_CLIENT.client_secret),
        data={"username": DEMO_USER.email, "password": DEMO_USER.password},
    )
    return str(response.json()["access_token"])


def test_spec_is_served_and_lists_the_routes(fuzzed_sandbox: RunningSandbox) -> None:
    spec = httpx.get(f"{fuzzed_sandbox.base_url}/openapi.json").json()
    paths = set(spec["paths"])
    for path in (
        "/oauth/token",
        "/oauth/check_token",
        "/api/users",
        "/documents",
        "/documents/{document_id}",
        "/documents/{document_id}/extractions",
        "/documents/{document_id}/extractions/feedback",
        "/documents/{document_id}/layout",
        "/documents/{document_id}/pages",
        "/documents/{document_id}/pages/{page}/{size}",
        "/documents/{document_id}/processed",
        "/paymentRequests",
        "/paymentRequests/{request_id}/payment",
        "/__sandbox/faults",
    ):
        assert path in paths, path
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert spec["paths"]["/documents"]["get"]["security"] == [{"bearer": []}]


def test_no_server_error_for_any_request(fuzzed_sandbox: RunningSandbox, user_token: str) -> None:
    # schemathesis' lazy pytest integration does not work on pytest 9, so drive its strategies directly.
    spec = schemathesis.openapi.from_url(f"{fuzzed_sandbox.base_url}/openapi.json")
    # The admin API changes the sandbox itself (faults, clock); fuzzing it would fault the other calls.
    operations = [op.ok() for op in spec.exclude(path_regex="^/__sandbox").get_all_operations()]
    assert len(operations) >= 20
    server_errors: list[str] = []
    calls = 0

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=12, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def exercise(case: Any) -> None:
            nonlocal calls
            response = case.call(headers={"Authorization": f"Bearer {user_token}"}, timeout=10)
            calls += 1
            if response.status_code >= 500:
                server_errors.append(
                    f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:200]}"
                )

        exercise()
    assert calls >= 10 * len(operations) // 2
    assert server_errors == []
