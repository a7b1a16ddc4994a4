"""The sandbox's Pay API payment requests and providers over real HTTP."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest

from airflow_provider_gini.sandbox import OTHER_USER, RunningSandbox
from airflow_provider_gini.sandbox.invoices import iban_de
from airflow_provider_gini.sandbox.payments import PROVIDERS
from tests.sandbox.helpers import API_JSON, api_headers, client_token, token

BANK, SPARKASSE = sorted(PROVIDERS, key=lambda pid: PROVIDERS[pid])
IBAN = iban_de("10070000", 1234567)
OTHER_IBAN = iban_de("37040044", 532013000)


def payment_body(**change: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "paymentProvider": BANK,
        "recipient": "Sandbox Stadtwerke GmbH",
        "iban": IBAN,
        "bic": "COBADEFFXXX",
        "amount": "335.50:EUR",
        "purpose": "Rechnung 2026-0042",
    }
    for key, value in change.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    return body


def resolve_body(**change: Any) -> dict[str, Any]:
    body = payment_body(**change)
    body.pop("paymentProvider", None)
    return body


class PayApi:
    """One user's view of the Pay API."""

    def __init__(self, sandbox: RunningSandbox, access_token: str) -> None:
        self.base_url = sandbox.base_url
        self.headers = api_headers(access_token)

    def post(self, path: str, body: Any, **headers: str) -> httpx.Response:
        return httpx.post(f"{self.base_url}{path}", json=body, headers={**self.headers, **headers})

    def get(self, path: str, **headers: str) -> httpx.Response:
        return httpx.get(f"{self.base_url}{path}", headers={**self.headers, **headers})

    def delete(self, path: str) -> httpx.Response:
        return httpx.delete(f"{self.base_url}{path}", headers=self.headers)

    def create(self, **change: Any) -> str:
        response = self.post("/paymentRequests", payment_body(**change))
        assert response.status_code == 201, response.text
        location = response.headers["location"]
        prefix = f"{self.base_url}/paymentRequests/"
        assert location.startswith(prefix)
        return location[len(prefix) :]


@pytest.fixture
def api(gini_sandbox: RunningSandbox) -> PayApi:
    return PayApi(gini_sandbox, token(gini_sandbox))


@pytest.fixture
def other_api(gini_sandbox: RunningSandbox) -> PayApi:
    return PayApi(gini_sandbox, token(gini_sandbox, OTHER_USER))


def assert_api_error(response: httpx.Response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"message", "requestId"}
    assert body["requestId"] == response.headers["x-request-id"]
    for word in words:
        assert word in body["message"]


def assert_iso_utc(value: str) -> None:
    assert value.endswith("Z")
    assert datetime.fromisoformat(value.replace("Z", "+00:00")).utcoffset() is not None


# create and read


def test_create_returns_201_with_location_and_no_body(api: PayApi) -> None:
    response = api.post("/paymentRequests", payment_body())
    assert response.status_code == 201, response.text
    assert response.content == b""
    assert uuid.UUID(response.headers["x-request-id"])
    location = response.headers["location"]
    assert location.startswith(f"{api.base_url}/paymentRequests/")
    assert uuid.UUID(location.rsplit("/", 1)[1])


def test_get_payment_request(api: PayApi) -> None:
    request_id = api.create()
    response = api.get(f"/paymentRequests/{request_id}")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == API_JSON
    body = response.json()
    url = f"{api.base_url}/paymentRequests/{request_id}"
    expected = payment_body()
    for key in ("paymentProvider", "recipient", "iban", "bic", "amount", "purpose"):
        assert body[key] == expected[key]
    assert body["status"] == "open"
    assert "requesterUri" not in body
    assert_iso_utc(body["createdAt"])
    assert body["_links"] == {
        "paymentProvider": f"{api.base_url}/paymentProviders/{BANK}",
        "payment": f"{url}/payment",
        "_self": url,
    }


def test_get_keeps_optional_fields_optional(api: PayApi) -> None:
    document = f"{api.base_url}/documents/{uuid.uuid4()}"
    request_id = api.create(bic=None, sourceDocumentLocation=document, paymentProvider=SPARKASSE)
    body = api.get(f"/paymentRequests/{request_id}").json()
    assert "bic" not in body
    assert body["paymentProvider"] == SPARKASSE
    assert body["_links"]["sourceDocumentLocation"] == document


def test_get_accepts_generic_json(api: PayApi) -> None:
    request_id = api.create()
    response = api.get(f"/paymentRequests/{request_id}", Accept="application/json")
    assert response.status_code == 200
    assert response.headers["content-type"] == API_JSON


def test_unsupported_accept_is_406(api: PayApi) -> None:
    request_id = api.create()
    assert_api_error(api.get(f"/paymentRequests/{request_id}", Accept="text/html"), 406)
    assert_api_error(api.get("/paymentRequests", Accept="application/vnd.gini.v9+json"), 406)


def test_get_unknown_payment_request_is_404(api: PayApi) -> None:
    assert_api_error(api.get(f"/paymentRequests/{uuid.uuid4()}"), 404, "not found")


def test_list_payment_requests(api: PayApi, other_api: PayApi) -> None:
    assert api.get("/paymentRequests").json() == []  # a bare array, as every Gini SDK decodes it
    first = api.create()
    second = api.create(amount="1.00:EUR", purpose="Zweite")
    other_api.create()
    response = api.get("/paymentRequests")
    assert response.status_code == 200
    assert response.headers["content-type"] == API_JSON
    body = response.json()
    assert len(body) == 2
    by_url = {pr["_links"]["_self"]: pr for pr in body}
    assert set(by_url) == {f"{api.base_url}/paymentRequests/{i}" for i in (first, second)}
    assert by_url[f"{api.base_url}/paymentRequests/{second}"]["amount"] == "1.00:EUR"
    assert len(other_api.get("/paymentRequests").json()) == 1


def test_delete_payment_request(api: PayApi) -> None:
    request_id = api.create()
    response = api.delete(f"/paymentRequests/{request_id}")
    assert response.status_code == 204
    assert response.content == b""
    assert response.headers["x-request-id"]
    assert_api_error(api.get(f"/paymentRequests/{request_id}"), 404)
    assert api.get("/paymentRequests").json() == []
    assert_api_error(api.delete(f"/paymentRequests/{request_id}"), 404)


# resolve (pay)


def test_resolve_pays_the_request(api: PayApi) -> None:
    request_id = api.create()
    url = f"{api.base_url}/paymentRequests/{request_id}"
    response = api.post(f"/paymentRequests/{request_id}/payment", resolve_body())
    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == API_JSON
    body = response.json()
    assert body["status"] == "paid"
    assert body["requesterUri"] == f"{url}/payment"
    assert body["_links"]["_self"] == url

    again = api.get(f"/paymentRequests/{request_id}").json()
    assert again["status"] == "paid"
    listed = api.get("/paymentRequests").json()
    assert [pr["status"] for pr in listed] == ["paid"]


def test_get_payment_after_resolving(api: PayApi) -> None:
    request_id = api.create()
    url = f"{api.base_url}/paymentRequests/{request_id}"
    # The payer may correct the details: the payment records what was paid.
    paid = resolve_body(amount="300.00:EUR", iban=OTHER_IBAN, bic=None)
    assert api.post(f"/paymentRequests/{request_id}/payment", paid).status_code == 201
    response = api.get(f"/paymentRequests/{request_id}/payment")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == API_JSON
    body = response.json()
    assert body["amount"] == "300.00:EUR"
    assert body["iban"] == OTHER_IBAN
    assert "bic" not in body
    assert body["recipient"] == paid["recipient"]
    assert body["purpose"] == paid["purpose"]
    assert_iso_utc(body["paidAt"])
    assert body["_links"] == {"paymentRequest": url, "_self": f"{url}/payment"}
    # The request itself keeps what was asked for.
    assert api.get(f"/paymentRequests/{request_id}").json()["amount"] == "335.50:EUR"


def test_get_payment_before_resolving_is_404(api: PayApi) -> None:
    request_id = api.create()
    assert_api_error(api.get(f"/paymentRequests/{request_id}/payment"), 404, "not been paid")


def test_paying_twice_is_409(api: PayApi) -> None:
    request_id = api.create()
    assert api.post(f"/paymentRequests/{request_id}/payment", resolve_body()).status_code == 201
    response = api.post(f"/paymentRequests/{request_id}/payment", resolve_body(amount="1.00:EUR"))
    assert_api_error(response, 409, "paid")
    assert api.get(f"/paymentRequests/{request_id}/payment").json()["amount"] == "335.50:EUR"


def test_resolve_unknown_request_is_404(api: PayApi) -> None:
    assert_api_error(api.post(f"/paymentRequests/{uuid.uuid4()}/payment", resolve_body()), 404)


@pytest.mark.parametrize(
    ("change", "word"),
    [
        ({"recipient": None}, "recipient"),
        ({"amount": ""}, "amount"),
        ({"iban": "DE00100700000001234567"}, "iban"),
        ({"amount": "12,50:EUR"}, "amount"),
        ({"bic": "not a bic"}, "bic"),
    ],
)
def test_resolve_validates_the_payment(api: PayApi, change: dict[str, Any], word: str) -> None:
    request_id = api.create()
    response = api.post(f"/paymentRequests/{request_id}/payment", resolve_body(**change))
    assert_api_error(response, 400, "Validation", word)
    assert api.get(f"/paymentRequests/{request_id}").json()["status"] == "open"


# validation on create


@pytest.mark.parametrize("field", ["paymentProvider", "recipient", "iban", "amount", "purpose"])
def test_create_without_a_required_field_is_400(api: PayApi, field: str) -> None:
    response = api.post("/paymentRequests", payment_body(**{field: None}))
    assert_api_error(response, 400, "Validation", "missing", field)


def test_create_reports_every_missing_field(api: PayApi) -> None:
    response = api.post("/paymentRequests", {"paymentProvider": BANK, "iban": IBAN})
    assert_api_error(response, 400, "recipient", "amount", "purpose")


@pytest.mark.parametrize(
    "iban",
    [
        "DE00100700000001234567",  # wrong check digits
        IBAN[:-1] + str((int(IBAN[-1]) + 1) % 10),  # one digit changed
        "DE161007",  # too short
        "1234100700000001234567",  # no country code
        "DE16-1007-0000-0001-2345-67",
    ],
)
def test_create_with_invalid_iban_is_400(api: PayApi, iban: str) -> None:
    assert_api_error(api.post("/paymentRequests", payment_body(iban=iban)), 400, "iban")


def test_iban_with_spaces_and_lower_case_is_valid(api: PayApi) -> None:
    spaced = " ".join(IBAN[i : i + 4] for i in range(0, len(IBAN), 4)).lower()
    assert api.post("/paymentRequests", payment_body(iban=spaced)).status_code == 201


@pytest.mark.parametrize(
    "amount", ["335.50", "335,50:EUR", "335.505:EUR", "EUR:335.50", "abc:EUR", "1.00:eur"]
)
def test_create_with_bad_amount_is_400(api: PayApi, amount: str) -> None:
    assert_api_error(api.post("/paymentRequests", payment_body(amount=amount)), 400, "amount")


@pytest.mark.parametrize("amount", ["335:EUR", "335.5:EUR", "0.01:EUR", "1000000.00:CHF"])
def test_create_with_good_amount_is_201(api: PayApi, amount: str) -> None:
    assert api.post("/paymentRequests", payment_body(amount=amount)).status_code == 201


def test_create_with_non_string_amount_is_400(api: PayApi) -> None:
    assert_api_error(api.post("/paymentRequests", payment_body(amount=335.5)), 400, "amount")


def test_create_with_unknown_provider_is_400(api: PayApi) -> None:
    response = api.post("/paymentRequests", payment_body(paymentProvider=str(uuid.uuid4())))
    assert_api_error(response, 400, "paymentProvider")
    assert api.get("/paymentRequests").json() == []


def test_create_with_invalid_bic_is_400(api: PayApi) -> None:
    assert_api_error(api.post("/paymentRequests", payment_body(bic="COBA")), 400, "bic")


@pytest.mark.parametrize("content", [b"not json", b"[1, 2]", b""])
def test_create_with_a_body_that_is_not_a_json_object_is_400(api: PayApi, content: bytes) -> None:
    response = httpx.post(
        f"{api.base_url}/paymentRequests",
        content=content,
        headers={**api.headers, "Content-Type": API_JSON},
    )
    assert_api_error(response, 400, "Validation")


# ownership and authentication


def test_another_user_cannot_see_or_touch_a_request(api: PayApi, other_api: PayApi) -> None:
    request_id = api.create()
    path = f"/paymentRequests/{request_id}"
    assert_api_error(other_api.get(path), 404)
    assert_api_error(other_api.get(f"{path}/payment"), 404)
    assert_api_error(other_api.post(f"{path}/payment", resolve_body()), 404)
    assert_api_error(other_api.delete(path), 404)
    assert other_api.get("/paymentRequests").json() == []
    # Still there and still open for its owner.
    assert api.get(path).json()["status"] == "open"


def test_payment_requests_need_a_user_token(gini_sandbox: RunningSandbox, api: PayApi) -> None:
    request_id = api.create()
    base = f"{gini_sandbox.base_url}/paymentRequests"
    response = httpx.get(f"{base}/{request_id}", headers={"Accept": API_JSON})
    assert_api_error(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")
    response = httpx.post(base, json=payment_body(), headers=api_headers(str(uuid.uuid4())))
    assert_api_error(response, 401)
    assert "invalid_token" in response.headers["www-authenticate"]
    response = httpx.get(base, headers=api_headers(client_token(gini_sandbox)))
    assert_api_error(response, 403)
    assert "insufficient_scope" in response.headers["www-authenticate"]


def test_expired_token_cannot_resolve(gini_sandbox: RunningSandbox, api: PayApi) -> None:
    request_id = api.create()
    gini_sandbox.expire_tokens()
    response = api.post(f"/paymentRequests/{request_id}/payment", resolve_body())
    assert_api_error(response, 401)
    fresh = PayApi(gini_sandbox, token(gini_sandbox))
    assert fresh.get(f"/paymentRequests/{request_id}").json()["status"] == "open"


def test_payment_routes_are_counted(gini_sandbox: RunningSandbox, api: PayApi) -> None:
    gini_sandbox.reset_counters()
    request_id = api.create()
    api.post(f"/paymentRequests/{request_id}/payment", resolve_body())
    api.post(f"/paymentRequests/{request_id}/payment", resolve_body())
    routes = gini_sandbox.counters()["routes"]
    assert routes["POST /paymentRequests"] == 1
    assert routes["POST /paymentRequests/{request_id}/payment"] == 2
    assert gini_sandbox.counters()["statuses"] == {"201": 2, "409": 1}


# payment providers


def test_list_payment_providers(api: PayApi) -> None:
    response = api.get("/paymentProviders")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == API_JSON
    body = response.json()
    assert isinstance(body, list)
    assert {p["id"]: p["name"] for p in body} == PROVIDERS
    for provider in body:
        assert provider["iconLocation"] == f"{api.base_url}/paymentProviders/{provider['id']}/icon"


def test_payment_provider_link_resolves(api: PayApi) -> None:
    request_id = api.create(paymentProvider=SPARKASSE)
    link = api.get(f"/paymentRequests/{request_id}").json()["_links"]["paymentProvider"]
    response = httpx.get(link, headers=api.headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == API_JSON
    assert response.json()["id"] == SPARKASSE
    assert response.json()["name"] == PROVIDERS[SPARKASSE]


def test_unknown_payment_provider_is_404(api: PayApi) -> None:
    assert_api_error(api.get(f"/paymentProviders/{uuid.uuid4()}"), 404)


def test_payment_providers_need_a_user_token(gini_sandbox: RunningSandbox) -> None:
    response = httpx.get(f"{gini_sandbox.base_url}/paymentProviders", headers={"Accept": API_JSON})
    assert_api_error(response, 401)
