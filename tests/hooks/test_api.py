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
    GiniNotFound,
    GiniProcessingError,
    GiniProcessingTimeout,
    GiniRejected,
)
from airflow_provider_gini.hooks.gini import GiniHook
from airflow_provider_gini.sandbox import RunningSandbox
from airflow_provider_gini.sandbox.invoices import iban_de

MakeHook = Callable[..., GiniHook]
SAMPLE = Path(__file__).parents[2] / "example_dags" / "sample_documents" / "rechnung-sample-1.pdf"


def ms(year: int, month: int, day: int) -> int:
    return int(datetime(year, month, day, tzinfo=timezone.utc).timestamp() * 1000)


def test_list_documents_is_one_page(gini_connection: RunningSandbox, make_hook: MakeHook) -> None:
    page = make_hook().list_documents(limit=5, offset=2)
    truth = gini_connection.documents()
    assert [d["id"] for d in page["documents"]] == [d["id"] for d in truth[2:7]]
    assert page["totalCount"] == len(truth)


def test_iter_documents_window(gini_connection: RunningSandbox, make_hook: MakeHook) -> None:
    hook = make_hook()
    start, end = datetime(2026, 1, 6, tzinfo=timezone.utc), datetime(2026, 1, 8, tzinfo=timezone.utc)
    got = [d["id"] for d in hook.iter_documents(start, end, page_size=3)]
    truth = [
        d["id"]
        for d in gini_connection.documents(created_after=ms(2026, 1, 6), created_before=ms(2026, 1, 8))
    ]
    assert got == truth
    assert len(got) > 6
    assert [d["id"] for d in hook.iter_documents(page_size=250)] == [
        d["id"] for d in gini_connection.documents()
    ]
    assert list(hook.iter_documents(ms(2027, 1, 1), None)) == []


def test_iter_documents_stops_paging_at_the_window(
    gini_connection: RunningSandbox, make_hook: MakeHook
) -> None:
    hook = make_hook()
    hook.get_access_token()
    gini_connection.reset_counters()
    newest = gini_connection.documents()[0]["creationDate"]
    assert list(hook.iter_documents(created_after=newest + 1, page_size=100)) == []
    assert gini_connection.counters()["routes"] == {"GET /documents": 1}


def test_iter_documents_sees_each_once_while_documents_arrive(
    gini_connection: RunningSandbox, make_hook: MakeHook
) -> None:
    hook = make_hook()
    before = [d["id"] for d in gini_connection.documents()]
    seen = []
    for doc in hook.iter_documents(page_size=4):
        seen.append(doc["id"])
        if len(seen) % 4 == 0:
            gini_connection.insert_documents(count=3)  # new documents land at the head of the list
    assert seen == before


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
