"""The hook's document and payment methods against the sandbox."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pytest

from airflow_provider_gini.client import (
    GiniConfigError,
    GiniConflict,
    GiniHTTPError,
    GiniNotFound,
    GiniProcessingError,
    GiniProcessingTimeout,
    GiniRejected,
)
from airflow_provider_gini.hooks.gini import GiniHook
from airflow_provider_gini.sandbox import RunningSandbox, profile
from airflow_provider_gini.sandbox.invoices import iban_de
from tests.profiles import every_profile, in_listing_order

MakeHook = Callable[..., GiniHook]
SAMPLE = Path(__file__).parents[2] / "example_dags" / "sample_documents" / "rechnung-sample-1.pdf"


def ms(year: int, month: int, day: int) -> int:
    return int(datetime(year, month, day, tzinfo=timezone.utc).timestamp() * 1000)


@every_profile
def test_list_documents_is_one_page_as_gini_sent_it(
    gini_connection: RunningSandbox, make_hook: MakeHook
) -> None:
    page = make_hook().list_documents(limit=5)
    truth = [d["id"] for d in gini_connection.documents()]
    assert [d["id"] for d in page["documents"]] == in_listing_order(gini_connection.state.config.api, truth)[
        :5
    ]
    legacy = gini_connection.state.config.api.listing == "legacy"
    assert ("totalCount" in page) is legacy


@every_profile
def test_iter_documents_window_exactly_once(gini_connection: RunningSandbox, make_hook: MakeHook) -> None:
    hook = make_hook()
    start, end = datetime(2026, 1, 6, tzinfo=timezone.utc), datetime(2026, 1, 8, tzinfo=timezone.utc)
    listing = hook.document_listing(start, end, page_size=3)
    got = [d["id"] for d in listing]
    truth = [
        d["id"]
        for d in gini_connection.documents(created_after=ms(2026, 1, 6), created_before=ms(2026, 1, 8))
    ]
    assert got == in_listing_order(gini_connection.state.config.api, truth)
    assert len(got) > 6
    assert listing.stats.documents == len(got)
    everything = [d["id"] for d in hook.iter_documents(page_size=4)]
    assert sorted(everything) == sorted(d["id"] for d in gini_connection.documents())
    assert len(everything) == len(set(everything))
    assert list(hook.iter_documents(ms(2027, 1, 1), None)) == []


@every_profile
def test_a_window_with_nothing_new_costs_two_or_three_requests(
    gini_connection: RunningSandbox, make_hook: MakeHook
) -> None:
    hook = make_hook()
    hook.get_access_token()
    gini_connection.insert_documents(count=150, creationDate=ms(2025, 12, 1), spacingMs=1000)
    gini_connection.reset_counters()
    newest = gini_connection.documents()[0]["creationDate"]
    assert list(hook.iter_documents(created_after=newest + 1000, page_size=100)) == []
    # Oldest first by cursor, the first page is before the window, one cursor jumps to it, and
    # its empty answer is proven by asking again from before the jump (docs/gini-compat.md).
    api = gini_connection.state.config.api
    bound = 3 if (api.listing, api.order) == ("pay-api", "ascending") else 2
    assert gini_connection.counters()["routes"]["GET /documents"] <= bound


@every_profile
def test_iter_documents_sees_each_once_while_documents_arrive_and_go(
    gini_connection: RunningSandbox, make_hook: MakeHook
) -> None:
    hook = make_hook()
    gini_connection.insert_documents(count=40, creationDate=ms(2025, 12, 1), spacingMs=1000)
    before = [d["id"] for d in gini_connection.documents()]
    doomed = set(before[5::9])  # deleted as the listing passes them, or before it gets there
    seen = []
    for doc in hook.iter_documents(page_size=10):
        seen.append(doc["id"])
        if len(seen) % 10 == 0:
            gini_connection.insert_documents(count=2)  # new documents land at the head or the tail
            for victim in list(doomed)[:1]:
                gini_connection.delete_document(victim)
                doomed.discard(victim)
    assert len(seen) == len(set(seen))
    kept = set(before) - set(before[5::9])
    assert kept <= set(seen)


@every_profile
def test_creation_date_ties_at_page_borders(gini_connection: RunningSandbox, make_hook: MakeHook) -> None:
    """Documents sharing a millisecond across the border of pages of 3: none lost, none twice."""
    for at in (ms(2025, 12, 1), ms(2025, 12, 2)):
        gini_connection.insert_documents(count=7, creationDate=at, spacingMs=0)
    truth = [d["id"] for d in gini_connection.documents()]
    got = [d["id"] for d in make_hook().iter_documents(page_size=3)]
    assert sorted(got) == sorted(truth)
    assert len(got) == len(set(got))
    window = [d["id"] for d in make_hook().iter_documents(ms(2025, 12, 1), ms(2025, 12, 2), page_size=3)]
    truth = gini_connection.documents(created_after=ms(2025, 12, 1), created_before=ms(2025, 12, 2))
    assert sorted(window) == sorted(d["id"] for d in truth)
    assert len(window) == 7


@pytest.mark.parametrize(
    "gini_sandbox_profile",
    [
        pytest.param(profile("pay-api", page_cap=25), id="pages-capped-at-25"),
        pytest.param(profile("legacy", page_cap=25, order="descending"), id="legacy-capped"),
        pytest.param(profile("legacy", offset_param="next"), id="legacy-next-as-offset"),
        pytest.param(profile("pay-api", total_count=True), id="pay-api-with-totalCount"),
        pytest.param(profile("pay-api", total_count=True, order="descending"), id="pay-api-desc-totalCount"),
    ],
)
def test_iter_documents_on_the_other_readings_of_the_sources(
    gini_connection: RunningSandbox, make_hook: MakeHook
) -> None:
    gini_connection.insert_documents(count=120, creationDate=ms(2025, 12, 1), spacingMs=500)
    truth = sorted(d["id"] for d in gini_connection.documents())
    assert sorted(d["id"] for d in make_hook().iter_documents(page_size=50)) == truth
    window = [
        d["id"] for d in make_hook().iter_documents(ms(2025, 12, 1), ms(2025, 12, 1) + 30_000, page_size=50)
    ]
    truth = gini_connection.documents(created_after=ms(2025, 12, 1), created_before=ms(2025, 12, 1) + 30_000)
    assert sorted(window) == sorted(d["id"] for d in truth)
    assert len(window) == 60


def test_get_document_layout_pages(gini_connection: RunningSandbox, make_hook: MakeHook) -> None:
    hook = make_hook()
    doc_id = gini_connection.documents()[0]["id"]
    assert hook.get_document(doc_id)["id"] == doc_id
    assert hook.get_layout(doc_id)["pages"][0]["number"] == 1
    assert hook.get_pages(doc_id)[0]["pageNumber"] == 1
    assert hook.get_extractions(doc_id)["extractions"]["iban"]["value"].startswith("DE")
    with pytest.raises(GiniNotFound):
        hook.get_document("00000000-0000-0000-0000-000000000000")
    with pytest.raises(GiniNotFound):
        hook.get_document("../etc")  # ids are quoted: a slash cannot change the path
    assert (
        gini_connection.requests()[-1]["path"] == "/documents/../etc"
    )  # one segment, still under /documents
    with pytest.raises(GiniConfigError):
        hook.get_document("")


@pytest.mark.parametrize("kind", ["path", "bytes", "file"])
def test_upload_forms(gini_connection: RunningSandbox, make_hook: MakeHook, kind: str) -> None:
    hook = make_hook()
    source = {"path": str(SAMPLE), "bytes": SAMPLE.read_bytes(), "file": SAMPLE.open("rb")}[kind]
    doc_id = hook.upload_document(
        source, filename=None if kind != "bytes" else "given.pdf", doctype="Invoice"
    )
    stored = gini_connection.document(doc_id)
    assert stored["name"] == ("given.pdf" if kind == "bytes" else SAMPLE.name)
    assert stored["sourceClassification"] == "NATIVE"
    assert gini_connection.requests()[-1]["contentType"] == "application/pdf"


def test_upload_refuses_bad_input_before_sending(
    gini_connection: RunningSandbox, make_hook: MakeHook, tmp_path: Path
) -> None:
    hook = make_hook()
    gini_connection.reset_counters()
    for bad, message in [
        (tmp_path / "missing.pdf", "no such file"),
        (b"", "empty"),
        (b"%PDF" + b"0" * (10 * 1024 * 1024), "under 10 MiB"),
        (io.StringIO("text"), "binary mode"),
        (12, "Cannot upload a int"),
    ]:
        with pytest.raises(GiniConfigError, match=message):
            hook.upload_document(bad)  # type: ignore[arg-type]
    assert gini_connection.counters()["requests"] == 0


def test_upload_rejected_by_gini(make_hook: MakeHook) -> None:
    with pytest.raises(GiniRejected) as caught:
        make_hook().upload_document(b"PK\x03\x04zip", filename="a.zip")
    assert caught.value.status == 415


def test_download_processed_to_path_and_file(
    gini_connection: RunningSandbox, make_hook: MakeHook, tmp_path: Path
) -> None:
    hook = make_hook()
    doc_id = hook.upload_document(SAMPLE)
    target = tmp_path / "out.pdf"
    assert hook.download_processed(doc_id, target) == SAMPLE.stat().st_size
    assert target.read_bytes() == SAMPLE.read_bytes()
    buffer = io.BytesIO()
    hook.download_processed(doc_id, buffer)
    assert buffer.getvalue() == SAMPLE.read_bytes()
    gini_connection.add_fault("close_mid_body", path="/documents/*/processed", first=1)
    again = tmp_path / "again.pdf"
    hook.download_processed(doc_id, again)  # a broken stream is retried from the start
    assert again.read_bytes() == SAMPLE.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.pdf", "out.pdf"]


def test_composite_document(gini_connection: RunningSandbox, make_hook: MakeHook) -> None:
    hook = make_hook()
    partial = hook.upload_document(SAMPLE.read_bytes(), content_type="application/vnd.gini.v1.partial+pdf")
    composite = hook.create_composite_document([partial])
    stored = gini_connection.document(composite)
    assert stored["sourceClassification"] == "COMPOSITE"
    assert stored["partialDocuments"][0]["document"].endswith(partial)
    with pytest.raises(GiniConfigError):
        hook.create_composite_document([])


def test_wait_for_processing(gini_connection: RunningSandbox, make_hook: MakeHook) -> None:
    hook = make_hook()
    gini_connection.settings(processing_delay=0.6)
    doc_id = hook.upload_document(SAMPLE)
    assert hook.wait_for_processing(doc_id, timeout=10, poll_interval=0.1)["progress"] == "COMPLETED"
    failing = hook.upload_document(SAMPLE, filename="x-gini-error.pdf")
    with pytest.raises(GiniProcessingError) as caught:
        hook.wait_for_processing(failing, timeout=10, poll_interval=0.1)
    assert caught.value.document_id == failing
    gini_connection.settings(processing_delay=3600)
    slow = hook.upload_document(SAMPLE)
    with pytest.raises(GiniProcessingTimeout) as timed_out:
        hook.wait_for_processing(slow, timeout=0.3, poll_interval=0.1)
    assert timed_out.value.document_ids == [slow]


def test_feedback_and_delete(gini_connection: RunningSandbox, make_hook: MakeHook) -> None:
    hook = make_hook()
    doc_id = hook.upload_document(SAMPLE)
    hook.send_feedback(doc_id, {"amountToPay": {"value": "12.50:EUR"}}, {"lineItems": []})
    assert (
        gini_connection.document(doc_id)["feedback"][0]["extractions"]["amountToPay"]["value"] == "12.50:EUR"
    )
    with pytest.raises(GiniRejected) as caught:
        hook.send_feedback(doc_id, {"iban": {"value": "DE00000", "entity": "iban"}})
    assert caught.value.status == 422
    hook.delete_document(doc_id)
    with pytest.raises(GiniNotFound):
        hook.delete_document(doc_id)


def test_feedback_goes_as_post_as_gini_sdks_send_it(
    gini_connection: RunningSandbox, make_hook: MakeHook
) -> None:
    hook = make_hook()
    doc_id = gini_connection.documents()[0]["id"]
    hook.get_access_token()
    gini_connection.reset_counters()
    hook.send_feedback(doc_id, {"amountToPay": {"value": "12.50:EUR"}})
    assert gini_connection.counters()["routes"] == {"POST /documents/{document_id}/extractions/feedback": 1}


@pytest.mark.parametrize("gini_sandbox_profile", [profile(feedback_methods=["PUT"])])
def test_feedback_turns_to_put_where_post_is_not_allowed(
    gini_connection: RunningSandbox, make_hook: MakeHook
) -> None:
    """The Pay API docs show PUT: a server that answers POST with 405 gets PUT, once per hook."""
    hook = make_hook()
    first, second = (d["id"] for d in gini_connection.documents()[:2])
    hook.get_access_token()
    gini_connection.reset_counters()
    hook.send_feedback(first, {"amountToPay": {"value": "12.50:EUR"}})
    hook.send_feedback(second, {"amountToPay": {"value": "1.00:EUR"}})
    assert gini_connection.counters()["routes"] == {
        "POST /documents/{document_id}/extractions/feedback": 1,
        "PUT /documents/{document_id}/extractions/feedback": 2,
    }
    assert (
        gini_connection.document(second)["feedback"][0]["extractions"]["amountToPay"]["value"] == "1.00:EUR"
    )


def test_feedback_post_is_not_sent_again_after_a_failure(
    gini_connection: RunningSandbox, make_hook: MakeHook
) -> None:
    """A POST creates a feedback record each time (gini-pay-api-lib-ios eca35546): one that
    may have reached Gini is not repeated."""
    hook = make_hook()
    doc_id = gini_connection.documents()[0]["id"]
    hook.get_access_token()
    gini_connection.add_fault(
        "status", status=503, method="POST", path="/documents/*/extractions/feedback", first=1
    )
    gini_connection.reset_counters()
    with pytest.raises(GiniHTTPError) as caught:
        hook.send_feedback(doc_id, {"amountToPay": {"value": "12.50:EUR"}})
    assert caught.value.status == 503
    assert gini_connection.counters()["routes"] == {"POST /documents/{document_id}/extractions/feedback": 1}


def test_extractions_of_an_error_document_say_it_failed(
    gini_connection: RunningSandbox, make_hook: MakeHook
) -> None:
    (doc_id,) = gini_connection.insert_documents(outcome="ERROR")
    gini_connection.add_fault("status", status=404, path=f"/documents/{doc_id}/extractions")
    with pytest.raises(GiniProcessingError, match=f"could not process document {doc_id}"):
        make_hook().get_extractions(doc_id)


@pytest.mark.parametrize("gini_sandbox_profile", [profile(error_body="items")])
def test_api_v5_error_bodies_reach_the_exception(
    gini_connection: RunningSandbox, make_hook: MakeHook
) -> None:
    """{"items": [{"code", "message"}], "requestId"}, with no top-level message (gini-mobile-ios
    notFoundError.json): status, code, message and request id all reach the caller."""
    missing = "00000000-0000-0000-0000-000000000000"
    with pytest.raises(GiniNotFound) as caught:
        make_hook().get_document(missing)
    error = caught.value
    assert error.status == 404
    assert error.codes == ("2501",)
    assert missing in str(error)
    assert "code 2501" in str(error)
    assert error.request_id == gini_connection.requests()[-1]["requestId"]


@pytest.mark.parametrize(
    "gini_sandbox_profile", [profile(), profile(pending_status=409)], ids=["404-as-documented", "409"]
)
def test_extractions_of_an_unfinished_document_say_so(
    gini_connection: RunningSandbox, make_hook: MakeHook
) -> None:
    hook = make_hook()
    (doc_id,) = gini_connection.insert_documents(readyIn=60)
    with pytest.raises(
        GiniConflict, match=f"Document {doc_id} is PENDING: its extractions are available once"
    ):
        hook.get_extractions(doc_id)
    gini_connection.delete_document(doc_id)
    with pytest.raises(GiniNotFound):
        hook.get_extractions(doc_id)


def test_an_undocumented_progress_is_waited_for_like_pending(
    gini_connection: RunningSandbox, make_hook: MakeHook, caplog: pytest.LogCaptureFixture
) -> None:
    """gini-sdk-android maps a progress it does not know (its fixture: QUEUED) to UNKNOWN, and
    Gini's other clients poll on until COMPLETED or ERROR: so does this one, and says so."""
    hook = make_hook()
    (doc_id,) = gini_connection.insert_documents(readyIn=3600, pendingProgress="QUEUED")
    assert hook.get_document(doc_id)["progress"] == "QUEUED"
    with pytest.raises(GiniProcessingTimeout, match="still QUEUED"):
        hook.wait_for_processing(doc_id, timeout=0.3, poll_interval=0.1)
    assert "progress 'QUEUED', which Gini does not document" in caplog.text
    gini_connection.advance_clock(3601)  # the sandbox's clock: no race with a busy machine
    assert hook.wait_for_processing(doc_id, timeout=20, poll_interval=0.1)["progress"] == "COMPLETED"


def test_payment_requests(gini_connection: RunningSandbox, make_hook: MakeHook) -> None:
    hook = make_hook()
    doc_id = gini_connection.documents()[0]["id"]
    request_id = hook.create_payment_request(
        payment_provider="b09ef70a-490f-11eb-952e-9bc6f4646c57",
        recipient="Elektro Krause KG",
        iban=iban_de("10070000", 4711),
        amount="120.00:EUR",
        purpose="RE-2026-1",
        bic="DEUTDEBBXXX",
        source_document=doc_id,
    )
    stored = hook.get_payment_request(request_id)
    assert stored["status"] == "open"
    assert stored["_links"]["sourceDocumentLocation"].endswith(doc_id)


def test_one_hook_serves_many_threads(gini_connection: RunningSandbox, make_hook: MakeHook) -> None:
    hook = make_hook(pool_size=8)
    ids = [d["id"] for d in gini_connection.documents()][:16]
    results: dict[str, str] = {}

    def fetch(doc_id: str) -> None:
        results[doc_id] = hook.get_document(doc_id)["id"]

    threads = [threading.Thread(target=fetch, args=(i,)) for i in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {i: i for i in ids}
    assert gini_connection.counters()["grants"] == {"password": 1}
