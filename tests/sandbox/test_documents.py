"""The sandbox's document API over real HTTP."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator

import httpx
import pytest

from airflow_provider_gini.sandbox import (
    DEMO_CLIENT,
    DEMO_USER,
    OTHER_USER,
    RunningSandbox,
    UserSpec,
    profile,
)
from airflow_provider_gini.sandbox.invoices import iban_de

V1 = "application/vnd.gini.v1+json"
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def login(sandbox: RunningSandbox, user: UserSpec = DEMO_USER) -> str:
    response = httpx.post(
        f"{sandbox.base_url}/oauth/token?grant_type=password",
        auth=(DEMO_CLIENT.client_id, DEMO_CLIENT.client_secret),
        data={"username": user.email, "password": user.password},
        headers={"Accept": "application/json"},
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


@pytest.fixture
def api(gini_sandbox: RunningSandbox) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {login(gini_sandbox)}", "Accept": V1}
    with httpx.Client(base_url=gini_sandbox.base_url, headers=headers) as client:
        yield client


def upload(
    api: httpx.Client, body: bytes = PDF, media: str = "application/pdf", **params: str
) -> httpx.Response:
    return api.post("/documents", content=body, headers={"Content-Type": media}, params=params)


def doc_id(response: httpx.Response) -> str:
    assert response.status_code == 201, response.text
    return response.headers["Location"].rsplit("/", 1)[1]


def test_bearer_scheme_is_case_insensitive(gini_sandbox: RunningSandbox) -> None:
    token = login(gini_sandbox)
    for scheme in ("Bearer", "bearer", "BEARER"):
        response = httpx.get(
            f"{gini_sandbox.base_url}/documents", headers={"Authorization": f"{scheme} {token}"}
        )
        assert response.status_code == 200, scheme


@pytest.mark.parametrize(
    ("authorization", "challenge"),
    [
        (None, 'Bearer realm="Gini API"'),
        ("Bearer 00000000-0000-0000-0000-000000000000", 'error="invalid_token"'),
        ("Basic Zm9vOmJhcg==", 'Bearer realm="Gini API"'),
    ],
)
def test_unauthenticated_requests_get_401_with_challenge(
    gini_sandbox: RunningSandbox, authorization: str | None, challenge: str
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = httpx.get(f"{gini_sandbox.base_url}/documents", headers=headers)
    assert response.status_code == 401
    assert challenge in response.headers["WWW-Authenticate"]
    body = response.json()
    assert set(body) == {"message", "requestId"}
    assert body["requestId"] == response.headers["X-Request-Id"]


def test_expired_token_gets_invalid_token(gini_sandbox: RunningSandbox) -> None:
    token = login(gini_sandbox)
    gini_sandbox.advance_clock(3600)
    response = httpx.get(f"{gini_sandbox.base_url}/documents", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_client_token_cannot_read_documents(gini_sandbox: RunningSandbox) -> None:
    token = httpx.get(
        f"{gini_sandbox.base_url}/oauth/token?grant_type=client_credentials",
        auth=(DEMO_CLIENT.client_id, DEMO_CLIENT.client_secret),
    ).json()["access_token"]
    response = httpx.get(f"{gini_sandbox.base_url}/documents", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403


@pytest.mark.parametrize("accept", ["application/xml", "text/html", "application/vnd.gini.v9+json"])
def test_unsupported_accept_is_406(api: httpx.Client, accept: str) -> None:
    response = api.get("/documents", headers={"Accept": accept})
    assert response.status_code == 406
    assert "application/vnd.gini.v1+json" in response.json()["message"]


@pytest.mark.parametrize("accept", [V1, "application/json", "*/*", "application/xml, application/json;q=0.5"])
def test_supported_accept_answers_vendor_json(api: httpx.Client, accept: str) -> None:
    response = api.get("/documents", headers={"Accept": accept})
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith(V1)


def test_every_response_has_a_request_id(api: httpx.Client) -> None:
    responses = [
        api.get("/documents"),
        api.get("/documents/nope"),
        api.get("/no-such-route"),
        upload(api, b"x"),
    ]
    ids = [r.headers["X-Request-Id"] for r in responses]
    assert all(uuid.UUID(i) for i in ids)
    assert len(set(ids)) == len(ids)
    assert [r.status_code for r in responses] == [200, 404, 404, 400]
    assert all(r.json()["requestId"] == r.headers["X-Request-Id"] for r in responses[1:])


def test_raw_upload_answers_201_with_absolute_location(
    api: httpx.Client, gini_sandbox: RunningSandbox
) -> None:
    response = upload(api, filename="rechnung.pdf", doctype="Invoice")
    location = response.headers["Location"]
    assert location.startswith(f"{gini_sandbox.base_url}/documents/")
    doc = api.get(location).json()
    assert doc["name"] == "rechnung.pdf"
    assert doc["progress"] == "COMPLETED"
    assert doc["sourceClassification"] == "NATIVE"
    assert doc["_links"]["document"] == location
    for link in ("extractions", "layout", "processed"):
        assert doc["_links"][link] == f"{location}/{link}"
    assert api.get(f"{location}/processed", headers={"Accept": "application/octet-stream"}).content == PDF


def test_multipart_upload_takes_the_part_filename(api: httpx.Client) -> None:
    response = api.post("/documents", files={"file": ("scan.png", io.BytesIO(PNG), "image/png")})
    doc = api.get(f"/documents/{doc_id(response)}").json()
    assert doc["name"] == "scan.png"
    assert doc["sourceClassification"] == "SCANNED"


def test_multipart_without_file_field_is_400(api: httpx.Client) -> None:
    response = api.post("/documents", files={"other": ("a.pdf", io.BytesIO(PDF), "application/pdf")})
    assert response.status_code == 400
    assert "'file'" in response.json()["message"]


def test_octet_stream_is_sniffed(api: httpx.Client) -> None:
    response = upload(api, PNG, "application/octet-stream")
    assert api.get(f"/documents/{doc_id(response)}").json()["sourceClassification"] == "SCANNED"
    assert upload(api, b"PK\x03\x04zipzip", "application/octet-stream").status_code == 415


@pytest.mark.parametrize(
    ("body", "media", "status"),
    [
        (b"not a pdf", "application/pdf", 400),
        (b"", "application/pdf", 400),
        (b"<xml/>", "application/xml", 415),
        (b"\xff\xfe\xfa", "text/plain", 400),
        (PDF, "application/vnd.gini.v1.partial+docx", 415),
        (PDF, "application/vnd.gini.v7.partial+pdf", 415),
    ],
)
def test_bad_uploads(api: httpx.Client, body: bytes, media: str, status: int) -> None:
    response = upload(api, body, media)
    assert response.status_code == status
    assert response.json()["message"]


def test_upload_over_10_mib_is_413(api: httpx.Client) -> None:
    response = upload(api, PDF + b"0" * (10 * 1024 * 1024))
    assert response.status_code == 413


def test_text_upload_limit_is_512_kib(api: httpx.Client) -> None:
    assert upload(api, "Rechnung über 12,00 EUR".encode(), "text/plain").status_code == 201
    assert upload(api, b"a" * (512 * 1024 + 1), "text/plain").status_code == 413


def test_partials_and_composite(api: httpx.Client) -> None:
    first = upload(api, PDF, "application/vnd.gini.v1.partial+pdf").headers["Location"]
    second = upload(api, PNG, "application/vnd.gini.v1.partial+png").headers["Location"]
    composite_body = {"partialDocuments": [{"document": first, "rotationDelta": 0}, {"document": second}]}
    response = api.post(
        "/documents",
        content=json.dumps(composite_body),
        headers={"Content-Type": "application/vnd.gini.v1.composite+json"},
    )
    composite = api.get(response.headers["Location"]).json()
    assert composite["sourceClassification"] == "COMPOSITE"
    assert composite["pageCount"] == 2
    assert [p["document"] for p in composite["partialDocuments"]] == [first, second]
    assert api.get(first).json()["compositeDocuments"] == [{"document": response.headers["Location"]}]


def test_qr_partial(api: httpx.Client) -> None:
    iban = iban_de("10070000", 42)
    qr = {
        "qrcode": "bank://singlepaymentsepa?x",
        "paymentdata": {"iban": iban, "paymentRecipient": "Elektro Krause KG"},
    }
    response = upload(api, json.dumps(qr).encode(), "application/vnd.gini.v1.partial+qr+json")
    extractions = api.get(f"/documents/{doc_id(response)}/extractions").json()["extractions"]
    assert extractions["iban"]["value"] == iban
    missing = upload(api, b'{"qrcode": "x"}', "application/vnd.gini.v1.partial+qr+json")
    assert missing.status_code == 400


def test_composite_of_someone_elses_partial_is_400(gini_sandbox: RunningSandbox, api: httpx.Client) -> None:
    partial = upload(api, PDF, "application/vnd.gini.v1.partial+pdf").headers["Location"]
    other = {"Authorization": f"Bearer {login(gini_sandbox, OTHER_USER)}", "Accept": V1}
    response = httpx.post(
        f"{gini_sandbox.base_url}/documents",
        content=json.dumps({"partialDocuments": [{"document": partial}]}),
        headers={**other, "Content-Type": "application/vnd.gini.v1.composite+json"},
    )
    assert response.status_code == 400
    not_partial = upload(api).headers["Location"]
    response = api.post(
        "/documents",
        content=json.dumps({"partialDocuments": [{"document": not_partial}]}),
        headers={"Content-Type": "application/vnd.gini.v1.composite+json"},
    )
    assert response.status_code == 400


def ids(page: dict[str, object]) -> list[str]:
    return [d["id"] for d in page["documents"]]  # type: ignore[attr-defined,index]


def oldest_first(gini_sandbox: RunningSandbox) -> list[str]:
    return [d["id"] for d in reversed(gini_sandbox.documents())]


@pytest.mark.parametrize("gini_sandbox_profile", ["pay-api"])
def test_pay_api_profile_pages_by_creation_date_and_answers_documents_only(
    api: httpx.Client, gini_sandbox: RunningSandbox
) -> None:
    """The Pay API docs: ?limit=&next=<creation date>, a body of only 'documents'; the order
    (undocumented) ascending, as in every recorded list; the cursor includes its millisecond."""
    everything = oldest_first(gini_sandbox)
    first = api.get("/documents", params={"limit": 5}).json()
    assert set(first) == {"documents"}
    assert ids(first) == everything[:5]
    last = first["documents"][-1]["creationDate"]
    second = api.get("/documents", params={"limit": 5, "next": last}).json()
    assert ids(second) == everything[4:9]  # from the cursor's own millisecond on
    assert ids(api.get("/documents", params={"limit": 5, "offset": 5}).json()) == everything[:5]  # ignored


@pytest.mark.parametrize(
    ("gini_sandbox_profile", "order", "inclusive"),
    [
        (profile("pay-api", order="descending"), "descending", True),
        (profile("pay-api", cursor="exclusive"), "ascending", False),
        (profile("pay-api", order="descending", cursor="exclusive"), "descending", False),
    ],
)
def test_pay_api_order_and_cursor_switches(
    api: httpx.Client, gini_sandbox: RunningSandbox, order: str, inclusive: bool
) -> None:
    everything = oldest_first(gini_sandbox)
    everything = everything if order == "ascending" else everything[::-1]
    first = api.get("/documents", params={"limit": 5}).json()
    assert ids(first) == everything[:5]
    second = api.get("/documents", params={"limit": 5, "next": first["documents"][-1]["creationDate"]}).json()
    assert ids(second) == (everything[4:9] if inclusive else everything[5:10])


@pytest.mark.parametrize(
    "gini_sandbox_profile",
    ["legacy", profile("legacy", order="descending"), profile("legacy", offset_param="next")],
)
def test_legacy_profile_pages_by_offset_with_a_total(
    api: httpx.Client, gini_sandbox: RunningSandbox, gini_sandbox_profile: object
) -> None:
    """gini-sdk-ios documents.json: {totalCount, documents}, paged with ?limit=&offset= (gini-api-ruby
    sends the offset as next)."""
    api_profile = gini_sandbox.state.config.api
    everything = oldest_first(gini_sandbox)
    everything = everything if api_profile.order == "ascending" else everything[::-1]
    param = api_profile.offset_param
    first = api.get("/documents", params={"limit": 5}).json()
    second = api.get("/documents", params={"limit": 5, param: 5}).json()
    assert list(first) == ["totalCount", "documents"]
    assert first["totalCount"] == second["totalCount"] == len(everything)
    assert ids(first) + ids(second) == everything[:10]
    assert api.get("/documents", params={"limit": 5, param: 10_000}).json()["documents"] == []
    other = "next" if param == "offset" else "offset"
    assert ids(api.get("/documents", params={"limit": 5, other: 5}).json()) == everything[:5]  # ignored


@pytest.mark.parametrize("gini_sandbox_profile", [profile("pay-api", total_count=True, page_cap=3)])
def test_total_count_and_page_cap_switches(api: httpx.Client, gini_sandbox: RunningSandbox) -> None:
    page = api.get("/documents", params={"limit": 10}).json()
    assert page["totalCount"] == len(gini_sandbox.documents())
    assert len(page["documents"]) == 3


@pytest.mark.parametrize(
    "params", [{"limit": 0}, {"limit": 251}, {"offset": -1}, {"limit": "x"}, {"next": -5}]
)
def test_listing_rejects_bad_parameters(api: httpx.Client, params: dict[str, object]) -> None:
    response = api.get("/documents", params=params)
    assert response.status_code == 400
    assert "requestId" in response.json()


def test_creation_dates_may_repeat(api: httpx.Client, gini_sandbox: RunningSandbox) -> None:
    """Nothing in Gini's sources says creation dates are unique: documents of one millisecond
    keep it, in id order, and an inclusive cursor at that millisecond lists all of them."""
    first = gini_sandbox.insert_documents(count=3, creationDate=1767600000000, spacingMs=0)
    second = gini_sandbox.insert_documents(count=3, creationDate=1767600000000, spacingMs=0)
    listed = api.get("/documents", params={"limit": 10, "next": 1767600000000}).json()["documents"]
    assert [d["creationDate"] for d in listed[:6]] == [1767600000000] * 6
    assert [d["id"] for d in listed[:6]] == sorted(first + second)


def test_processing_goes_pending_then_completed(api: httpx.Client, gini_sandbox: RunningSandbox) -> None:
    gini_sandbox.settings(processing_delay=30)
    location = upload(api).headers["Location"]
    assert api.get(location).json()["progress"] == "PENDING"
    for resource in ("extractions", "layout", "pages", "processed"):
        response = api.get(f"{location}/{resource}", headers={"Accept": "*/*"})
        assert response.status_code == 404, resource  # the only status Gini documents there
        assert "PENDING" in response.json()["message"]
    gini_sandbox.advance_clock(31)
    assert api.get(location).json()["progress"] == "COMPLETED"
    assert api.get(f"{location}/extractions").status_code == 200


def test_marked_document_ends_in_error(api: httpx.Client, gini_sandbox: RunningSandbox) -> None:
    location = upload(api, filename="broken-gini-error.pdf").headers["Location"]
    assert api.get(location).json()["progress"] == "ERROR"
    assert api.get(f"{location}/extractions").json()["extractions"] == {}
    assert api.get(f"{location}/layout").status_code == 404


def test_extractions_shape(api: httpx.Client, gini_sandbox: RunningSandbox) -> None:
    invoices = [
        d
        for d in gini_sandbox.documents()
        if d["name"].startswith("rechnung") and d["progress"] == "COMPLETED"
    ]
    body = api.get(f"/documents/{invoices[0]['id']}/extractions").json()
    extractions = body["extractions"]
    for label in ("amountToPay", "iban", "bic", "paymentRecipient", "paymentReference"):
        assert isinstance(extractions[label]["value"], str), label
        assert extractions[label]["entity"]
    assert extractions["amountToPay"]["value"].endswith(":EUR")
    pool = extractions["amountToPay"]["candidates"]
    assert isinstance(pool, str)
    assert extractions["amountToPay"]["value"] in [c["value"] for c in body["candidates"][pool]]
    box = extractions["iban"]["box"]
    assert set(box) == {"page", "left", "top", "width", "height"}
    items = body["compoundExtractions"]["lineItems"]
    assert items
    assert all(item["grossPrice"]["value"].endswith(":EUR") for item in items)


def test_uploading_a_sandbox_pdf_extracts_what_it_prints(
    api: httpx.Client, gini_sandbox: RunningSandbox
) -> None:
    seeded = next(d for d in gini_sandbox.documents() if d["name"].endswith(".pdf"))
    original = api.get(f"/documents/{seeded['id']}/extractions").json()
    data = api.get(f"/documents/{seeded['id']}/processed", headers={"Accept": "application/pdf"}).content
    copy = doc_id(upload(api, data))
    assert api.get(f"/documents/{copy}/extractions").json()["extractions"] == original["extractions"]


def test_layout_pages_and_page_images(api: httpx.Client) -> None:
    location = upload(api).headers["Location"]
    layout = api.get(f"{location}/layout").json()
    words = [
        w["text"]
        for line in layout["pages"][0]["textZones"][0]["paragraphs"][0]["lines"]
        for w in line["wds"]
    ]
    assert "IBAN:" in words
    # Every page has regions, as gini-mobile-android's layout model requires.
    assert all(set(r) == {"l", "t", "w", "h", "type"} for r in layout["pages"][0]["regions"])
    pages = api.get(f"{location}/pages").json()
    assert pages[0]["pageNumber"] == 1
    assert set(pages[0]["images"]) == {"large", "medium"}  # the Pay API docs' keys
    for size in ("750x900", "1280x1810", "large"):  # every documented key is served
        assert api.get(f"{location}/pages/1/{size}", headers={"Accept": "image/png"}).status_code == 200
    image_url = pages[0]["images"]["medium"]
    image = api.get(image_url, headers={"Accept": "image/*"})
    assert image.headers["Content-Type"] == "image/png"
    assert image.content.startswith(b"\x89PNG")
    assert api.get(image_url, headers={"Accept": V1}).status_code == 406
    assert api.get(f"{location}/pages/2/750x900", headers={"Accept": "image/png"}).status_code == 404
    assert api.get(f"{location}/pages/1/10x10", headers={"Accept": "image/png"}).status_code == 404


@pytest.mark.parametrize("gini_sandbox_profile", ["legacy"])
def test_legacy_profile_page_images_are_sizes(api: httpx.Client) -> None:
    location = upload(api).headers["Location"]
    assert set(api.get(location).json()["pages"][0]["images"]) == {"750x900", "1280x1810"}


@pytest.mark.parametrize(
    "gini_sandbox_profile", [profile(pending_status=409, error_body="items", feedback_methods=["PUT"])]
)
def test_switches_for_unfinished_documents_error_bodies_and_feedback(
    api: httpx.Client, gini_sandbox: RunningSandbox
) -> None:
    gini_sandbox.settings(processing_delay=30)
    location = upload(api).headers["Location"]
    pending = api.get(f"{location}/extractions")
    assert pending.status_code == 409
    body = pending.json()
    assert set(body) == {"items", "requestId"}  # API v5: no top-level message
    assert body["items"][0]["code"]
    assert "PENDING" in body["items"][0]["message"]
    assert api.get(f"/documents/{uuid.uuid4()}").json()["items"][0]["code"] == "2501"
    gini_sandbox.advance_clock(31)
    good = {"extractions": {"amountToPay": {"value": "1.00:EUR"}}}
    refused = api.post(f"{location}/extractions/feedback", json=good, headers={"Content-Type": V1})
    assert refused.status_code == 405
    assert refused.headers["Allow"] == "PUT"
    assert (
        api.put(f"{location}/extractions/feedback", json=good, headers={"Content-Type": V1}).status_code
        == 204
    )


def test_unfinished_progress_can_be_a_value_gini_does_not_document(
    api: httpx.Client, gini_sandbox: RunningSandbox
) -> None:
    (queued,) = gini_sandbox.insert_documents(readyIn=30, pendingProgress="QUEUED")
    assert api.get(f"/documents/{queued}").json()["progress"] == "QUEUED"
    gini_sandbox.advance_clock(31)
    assert api.get(f"/documents/{queued}").json()["progress"] == "COMPLETED"


def test_processed_honours_accept(api: httpx.Client) -> None:
    location = upload(api).headers["Location"]
    assert api.get(f"{location}/processed", headers={"Accept": "application/pdf"}).content == PDF
    assert api.get(f"{location}/processed", headers={"Accept": "text/html"}).status_code == 406


@pytest.mark.parametrize("method", ["PUT", "POST"])
def test_feedback_is_accepted_and_recorded(
    api: httpx.Client, gini_sandbox: RunningSandbox, method: str
) -> None:
    document = doc_id(upload(api))
    feedback = {
        "extractions": {
            "iban": {"value": iban_de("10050000", 99), "entity": "iban"},
            "amountToPay": {"value": "12.50:EUR", "entity": "amount"},
        },
        "compoundExtractions": {"lineItems": [{"grossPrice": {"value": "12.50:EUR", "entity": "amount"}}]},
    }
    response = api.request(
        method, f"/documents/{document}/extractions/feedback", json=feedback, headers={"Content-Type": V1}
    )
    assert response.status_code == 204
    assert gini_sandbox.document(document)["feedback"] == [feedback]


@pytest.mark.parametrize(
    ("extractions", "status"),
    [
        ({"iban": {"value": "DE00123456780000000000", "entity": "iban"}}, 422),
        ({"amountToPay": {"value": "twelve euros"}}, 422),
        ({"paymentDueDate": {"value": "31.01.2026", "entity": "date"}}, 422),
        ({"bic": {"value": "nope", "entity": "bic"}}, 422),
        ({"iban": {"value": 42}}, 400),
        ({"iban": "DE..."}, 400),
    ],
)
def test_invalid_feedback(api: httpx.Client, extractions: dict[str, object], status: int) -> None:
    document = doc_id(upload(api))
    response = api.put(
        f"/documents/{document}/extractions/feedback",
        json={"extractions": extractions},
        headers={"Content-Type": V1},
    )
    assert response.status_code == status
    assert response.json()["message"]


def test_feedback_errors(api: httpx.Client) -> None:
    document = doc_id(upload(api))
    good = {"extractions": {"amountToPay": {"value": "1.00:EUR"}}}
    missing = api.put(
        f"/documents/{uuid.uuid4()}/extractions/feedback", json=good, headers={"Content-Type": V1}
    )
    assert missing.status_code == 404
    wrong_type = api.put(
        f"/documents/{document}/extractions/feedback", content=b"x", headers={"Content-Type": "text/plain"}
    )
    assert wrong_type.status_code == 406  # the Pay API docs: request headers not set correctly
    legacy = api.put(f"/documents/{document}/extractions/feedback", json={"feedback": good["extractions"]})
    assert legacy.status_code == 204


METADATA = {"X-Document-Metadata-Airflow-Run-Id": "manual__1%20a", "x-document-metadata-BranchId": "7"}


@pytest.mark.parametrize(
    "gini_sandbox_profile",
    [profile("pay-api"), profile("pay-api", echo_metadata=True)],
    ids=["off (default)", "echo_metadata"],
)
def test_upload_metadata_echo_switch(api: httpx.Client, gini_sandbox: RunningSandbox) -> None:
    """Upload metadata headers are always kept (the admin API shows them as received); the
    document JSON carries them only with the echo_metadata switch, as uploadMetadata with
    lower-case names without the prefix: no Gini source shows Gini returning them."""
    echo = gini_sandbox.state.config.api.echo_metadata
    response = api.post("/documents", content=PDF, headers={"Content-Type": "application/pdf", **METADATA})
    document_id = doc_id(response)
    got = api.get(f"/documents/{document_id}").json()
    listed = [
        d for d in api.get("/documents", params={"limit": 250}).json()["documents"] if d["id"] == document_id
    ]
    assert gini_sandbox.document(document_id)["metadata"] == {k.lower(): v for k, v in METADATA.items()}
    if echo:
        expected = {"airflow-run-id": "manual__1%20a", "branchid": "7"}
        assert got["uploadMetadata"] == listed[0]["uploadMetadata"] == expected
        assert gini_sandbox.documents()[0]["uploadMetadata"] == expected
    else:
        assert "uploadMetadata" not in got
        assert "uploadMetadata" not in listed[0]


def test_delete(api: httpx.Client) -> None:
    location = upload(api).headers["Location"]
    assert api.delete(location).status_code == 204
    assert api.get(location).status_code == 404
    assert api.delete(location).status_code == 404


def test_users_see_only_their_own_documents(gini_sandbox: RunningSandbox, api: httpx.Client) -> None:
    mine = {d["id"] for d in gini_sandbox.documents(DEMO_USER.email)}
    theirs = {d["id"] for d in gini_sandbox.documents(OTHER_USER.email)}
    assert mine
    assert theirs
    assert not mine & theirs
    listed = {d["id"] for d in api.get("/documents", params={"limit": 250}).json()["documents"]}
    assert listed == mine
    foreign = next(iter(theirs))
    assert api.get(f"/documents/{foreign}").status_code == 404
    assert api.delete(f"/documents/{foreign}").status_code == 404
    assert api.get(f"/documents/{foreign}/extractions").status_code == 404
