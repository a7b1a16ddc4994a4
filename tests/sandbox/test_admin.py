"""The admin API under /__sandbox/, driven through RunningSandbox over real HTTP."""

from __future__ import annotations

import time

import httpx
import pytest
import requests

from airflow_provider_gini.sandbox import DEMO_CLIENT, DEMO_USER, RunningSandbox
from tests.sandbox.helpers import api_headers, token, token_response

DOC_ROUTE = "GET /documents/{document_id}"


def _api(sandbox: RunningSandbox, access_token: str) -> httpx.Client:
    return httpx.Client(base_url=sandbox.base_url, headers=api_headers(access_token), timeout=10)


def _refresh(sandbox: RunningSandbox, refresh_token: str) -> httpx.Response:
    return httpx.post(
        f"{sandbox.base_url}/oauth/token",
        params={"grant_type": "refresh_token"},
        data={"refresh_token": refresh_token},
        auth=(DEMO_CLIENT.client_id, DEMO_CLIENT.client_secret),
    )


# counters


def test_counters_per_route_template_and_grant(gini_sandbox: RunningSandbox) -> None:
    ids = [d["id"] for d in gini_sandbox.documents()[:2]]
    assert gini_sandbox.counters()["requests"] == 0
    with _api(gini_sandbox, token(gini_sandbox)) as api:
        assert api.get("/documents").status_code == 200
        for doc_id in ids:
            assert api.get(f"/documents/{doc_id}").status_code == 200
        assert api.get("/documents/no-such-document").status_code == 404
    counters = gini_sandbox.counters()
    assert counters["requests"] == 5
    assert counters["routes"] == {
        "POST /oauth/token": 1,
        "GET /documents": 1,
        DOC_ROUTE: 3,
    }
    assert counters["statuses"] == {"200": 4, "404": 1}
    assert counters["grants"] == {"password": 1}
    assert counters["grants_issued"] == {"password": 1}
    assert counters["grant_errors"] == {}


def test_counters_grant_errors(gini_sandbox: RunningSandbox) -> None:
    response = httpx.post(
        f"{gini_sandbox.base_url}/oauth/token",
        params={"grant_type": "password"},
        data={"username": DEMO_USER.email, "password": "wrong"},
        auth=(DEMO_CLIENT.client_id, DEMO_CLIENT.client_secret),
    )
    assert response.status_code == 400
    token(gini_sandbox)
    counters = gini_sandbox.counters()
    assert counters["grants"] == {"password": 2}
    assert counters["grants_issued"] == {"password": 1}
    assert counters["grant_errors"] == {"password:invalid_grant": 1}
    assert counters["statuses"] == {"400": 1, "200": 1}


def test_faulted_requests_count_under_their_route_template(gini_sandbox: RunningSandbox) -> None:
    doc_id = gini_sandbox.documents()[0]["id"]
    with _api(gini_sandbox, token(gini_sandbox)) as api:
        gini_sandbox.add_fault("status", status=503, first=2, path="/documents/*")
        assert [api.get(f"/documents/{doc_id}").status_code for _ in range(3)] == [503, 503, 200]
    counters = gini_sandbox.counters()
    assert counters["routes"].get(DOC_ROUTE) == 3
    assert counters["statuses"] == {"200": 2, "503": 2}  # with the token grant
    assert all(doc_id not in route for route in counters["routes"])


def test_fault_matched_and_fired_counts(gini_sandbox: RunningSandbox) -> None:
    with _api(gini_sandbox, token(gini_sandbox)) as api:
        every = gini_sandbox.add_fault("status", status=500, every=2, path="/documents")
        latency = gini_sandbox.add_fault("latency", delay=0.01, method="GET")
        never = gini_sandbox.add_fault("status", status=500, path="/nowhere")
        statuses = [api.get("/documents").status_code for _ in range(5)]
    assert statuses == [200, 500, 200, 500, 200]
    faults = gini_sandbox.counters()["faults"]
    assert faults[every["id"]] == {"kind": "status", "matched": 5, "fired": 2}
    assert faults[latency["id"]] == {"kind": "latency", "matched": 5, "fired": 5}
    assert faults[never["id"]] == {"kind": "status", "matched": 0, "fired": 0}


def test_reset_counters(gini_sandbox: RunningSandbox) -> None:
    with _api(gini_sandbox, token(gini_sandbox)) as api:
        api.get("/documents")
        assert gini_sandbox.counters()["requests"] == 2
        assert len(gini_sandbox.requests()) == 2
        gini_sandbox.reset_counters()
        counters = gini_sandbox.counters()
        assert counters["requests"] == 0
        assert counters["routes"] == counters["statuses"] == counters["grants"] == {}
        assert gini_sandbox.requests() == []
        api.get("/documents")
    assert gini_sandbox.counters()["routes"] == {"GET /documents": 1}


def test_admin_requests_are_not_counted(gini_sandbox: RunningSandbox) -> None:
    gini_sandbox.add_fault("status", status=503)  # would hit every API request, never admin ones
    doc_id = gini_sandbox.documents()[0]["id"]
    gini_sandbox.document(doc_id)
    gini_sandbox.settings(processing_delay=0)
    gini_sandbox.advance_clock(1)
    gini_sandbox.secrets()
    gini_sandbox.insert_documents(count=1)
    assert httpx.get(f"{gini_sandbox.base_url}/__sandbox/health").status_code == 200
    gini_sandbox.requests()
    counters = gini_sandbox.counters()
    assert counters["requests"] == 0
    assert counters["routes"] == {}
    assert gini_sandbox.requests() == []
    assert next(iter(counters["faults"].values()))["matched"] == 0


# the request log


def test_request_log_entries(gini_sandbox: RunningSandbox) -> None:
    grant = httpx.post(
        f"{gini_sandbox.base_url}/oauth/token",
        params={"grant_type": "password"},
        data={"username": DEMO_USER.email, "password": DEMO_USER.password},
        auth=(DEMO_CLIENT.client_id, DEMO_CLIENT.client_secret),
    )
    assert grant.status_code == 200
    with _api(gini_sandbox, grant.json()["access_token"]) as api:
        listing = api.get("/documents", params={"limit": 3, "offset": 1})
    log = gini_sandbox.requests()
    assert len(log) == 2
    first, second = log
    assert first["method"] == "POST"
    assert first["path"] == "/oauth/token"
    assert first["query"] == "grant_type=password"
    assert first["route"] == "/oauth/token"
    assert first["status"] == 200
    assert first["requestId"] == grant.headers["x-request-id"]
    assert first["grantType"] == "password"
    assert first["clientId"] == DEMO_CLIENT.client_id
    assert first["authScheme"] == "Basic"
    assert second["method"] == "GET"
    assert second["path"] == "/documents"
    assert second["query"] == "limit=3&offset=1"
    assert second["status"] == 200
    assert second["requestId"] == listing.headers["x-request-id"]
    assert second["grantType"] is None
    assert second["authScheme"] == "Bearer"
    assert second["userAgent"].startswith("python-httpx/")
    assert second["faults"] == []
    assert first["time"] <= second["time"]
    assert first["requestId"] != second["requestId"]


def test_request_log_limit(gini_sandbox: RunningSandbox) -> None:
    with _api(gini_sandbox, token(gini_sandbox)) as api:
        ids = [api.get("/documents").headers["x-request-id"] for _ in range(3)]
    assert [e["requestId"] for e in gini_sandbox.requests(limit=2)] == ids[-2:]


# settings, clock and tokens


def test_settings_user_token_ttl(gini_sandbox: RunningSandbox) -> None:
    assert token_response(gini_sandbox)["expires_in"] == 3599
    settings = gini_sandbox.settings(user_token_ttl=5)
    assert settings["user_token_ttl"] == 5
    assert gini_sandbox.admin.get("/settings").json()["user_token_ttl"] == 5
    assert token_response(gini_sandbox)["expires_in"] == 5


def test_settings_rejects_invalid(gini_sandbox: RunningSandbox) -> None:
    with pytest.raises(httpx.HTTPStatusError):
        gini_sandbox.settings(user_token_ttl=0)
    assert gini_sandbox.admin.get("/settings").json()["user_token_ttl"] == 3599


def test_advance_clock_expires_token(gini_sandbox: RunningSandbox) -> None:
    gini_sandbox.settings(user_token_ttl=60)
    with _api(gini_sandbox, token(gini_sandbox)) as api:
        assert api.get("/documents").status_code == 200
        gini_sandbox.advance_clock(30)
        assert api.get("/documents").status_code == 200
        gini_sandbox.advance_clock(31)
        response = api.get("/documents")
    assert response.status_code == 401
    assert "invalid_token" in response.headers["www-authenticate"]
    assert set(response.json()) == {"message", "requestId"}


def test_expire_tokens(gini_sandbox: RunningSandbox) -> None:
    first, second = token(gini_sandbox), token(gini_sandbox)
    assert gini_sandbox.expire_tokens() == 2
    for access_token in (first, second):
        with _api(gini_sandbox, access_token) as api:
            assert api.get("/documents").status_code == 401
    assert gini_sandbox.expire_tokens() == 0
    with _api(gini_sandbox, token(gini_sandbox)) as api:
        assert api.get("/documents").status_code == 200


def test_revoke_refresh_tokens(gini_sandbox: RunningSandbox) -> None:
    first = token_response(gini_sandbox)
    refreshed = _refresh(gini_sandbox, first["refresh_token"])
    assert refreshed.status_code == 200
    second = refreshed.json()["refresh_token"]
    assert gini_sandbox.revoke_refresh_tokens() >= 1
    assert gini_sandbox.revoke_refresh_tokens() == 0  # none left active
    response = _refresh(gini_sandbox, second)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert "revoked" in response.json()["error_description"]
    assert gini_sandbox.counters()["grant_errors"] == {"refresh_token:invalid_grant": 1}
    # access tokens are left alone
    with _api(gini_sandbox, refreshed.json()["access_token"]) as api:
        assert api.get("/documents").status_code == 200


def test_secrets_lists_issued_tokens(gini_sandbox: RunningSandbox) -> None:
    assert gini_sandbox.secrets()["issued_tokens"] == []
    body = token_response(gini_sandbox)
    secrets = gini_sandbox.secrets()
    assert set(secrets["issued_tokens"]) == {body["access_token"], body["refresh_token"]}
    assert DEMO_CLIENT.client_secret in secrets["client_secrets"]
    assert DEMO_USER.password in secrets["passwords"]


# documents


def test_insert_documents_pending_then_ready(gini_sandbox: RunningSandbox) -> None:
    gini_sandbox.clear_faults()
    created = int(time.time() * 1000) + 86_400_000  # tomorrow: newest of all
    ids = gini_sandbox.insert_documents(count=3, creationDate=created, readyIn=30, name="inserted.pdf")
    assert len(ids) == 3
    with _api(gini_sandbox, token(gini_sandbox)) as api:
        listing = api.get("/documents", params={"limit": 3, "next": created}).json()
        newest = listing["documents"]
        assert [d["id"] for d in newest] == ids
        assert [d["creationDate"] for d in newest] == [created, created + 1000, created + 2000]
        assert {d["progress"] for d in newest} == {"PENDING"}
        assert {d["name"] for d in newest} == {"inserted.pdf"}
        assert api.get(f"/documents/{ids[0]}/extractions").status_code == 404
        gini_sandbox.advance_clock(31)
        assert api.get(f"/documents/{ids[0]}").json()["progress"] == "COMPLETED"
        assert api.get(f"/documents/{ids[0]}/extractions").status_code == 200
    window = gini_sandbox.documents(created_after=created)
    assert [d["id"] for d in window] == ids[::-1]


def test_change_document_outcome(gini_sandbox: RunningSandbox) -> None:
    (doc_id,) = gini_sandbox.insert_documents(count=1)
    with _api(gini_sandbox, token(gini_sandbox)) as api:
        assert api.get(f"/documents/{doc_id}").json()["progress"] == "COMPLETED"
        changed = gini_sandbox.change_document(doc_id, outcome="ERROR")
        assert changed["progress"] == "ERROR"
        assert api.get(f"/documents/{doc_id}").json()["progress"] == "ERROR"
        assert api.get(f"/documents/{doc_id}/layout").status_code == 404
        gini_sandbox.change_document(doc_id, readyIn=60)
        assert api.get(f"/documents/{doc_id}").json()["progress"] == "PENDING"


def test_delete_document(gini_sandbox: RunningSandbox) -> None:
    doc_id = gini_sandbox.documents()[0]["id"]
    count = len(gini_sandbox.documents())
    with _api(gini_sandbox, token(gini_sandbox)) as api:
        assert api.get(f"/documents/{doc_id}").status_code == 200
        gini_sandbox.delete_document(doc_id)
        response = api.get(f"/documents/{doc_id}")
        assert response.status_code == 404
        listed = api.get("/documents", params={"limit": 250}).json()["documents"]
        assert doc_id not in {d["id"] for d in listed}
        assert len(listed) == count - 1
    assert len(gini_sandbox.documents()) == count - 1
    with pytest.raises(httpx.HTTPStatusError) as excinfo:
        gini_sandbox.delete_document(doc_id)
    assert excinfo.value.response.status_code == 404


def test_admin_document_unknown_owner(gini_sandbox: RunningSandbox) -> None:
    with pytest.raises(httpx.HTTPStatusError) as excinfo:
        gini_sandbox.documents(owner="nobody@example.test")
    assert excinfo.value.response.status_code == 404


# fault rules


def test_remove_single_fault_rule(gini_sandbox: RunningSandbox) -> None:
    keep = gini_sandbox.add_fault("status", status=502, method="DELETE")
    drop = gini_sandbox.add_fault("status", status=503, path="/documents")
    assert [r["id"] for r in gini_sandbox.admin.get("/faults").json()] == [keep["id"], drop["id"]]
    url = f"{gini_sandbox.base_url}/documents"
    headers = api_headers(token(gini_sandbox))
    assert requests.get(url, headers=headers, timeout=10).status_code == 503
    response = gini_sandbox.admin.delete(f"/faults/{drop['id']}")
    assert response.status_code == 204
    assert [r["id"] for r in gini_sandbox.admin.get("/faults").json()] == [keep["id"]]
    assert requests.get(url, headers=headers, timeout=10).status_code == 200
    response = gini_sandbox.admin.delete(f"/faults/{drop['id']}")
    assert response.status_code == 404
    assert "message" in response.json()


def test_remove_unknown_fault_rule(gini_sandbox: RunningSandbox) -> None:
    response = gini_sandbox.admin.delete("/faults/no-such-rule")
    assert response.status_code == 404


def test_fault_rule_ids_and_replacement(gini_sandbox: RunningSandbox) -> None:
    first = gini_sandbox.add_fault("status", status=500)
    second = gini_sandbox.add_fault("latency", delay=0.01)
    assert first["id"] != second["id"]
    named = gini_sandbox.add_fault("status", id="mine", status=502)
    assert named["id"] == "mine"
    gini_sandbox.add_fault("status", id="mine", status=504)
    rules = gini_sandbox.admin.get("/faults").json()
    assert [r["id"] for r in rules] == [first["id"], second["id"], "mine"]
    assert rules[-1]["status"] == 504
    gini_sandbox.clear_faults()
    assert gini_sandbox.admin.get("/faults").json() == []


def test_invalid_fault_rule_is_rejected(gini_sandbox: RunningSandbox) -> None:
    for rule in ({"kind": "explode"}, {"kind": "status", "status": 42}, {"kind": "status", "every": 0}):
        response = gini_sandbox.admin.post("/faults", json=rule)
        assert response.status_code == 400, rule  # the sandbox answers validation errors with 400
        assert "message" in response.json()
    assert gini_sandbox.admin.get("/faults").json() == []
