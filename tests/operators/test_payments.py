"""Payment requests: GiniCreatePaymentRequestOperator (from extractions, from explicit fields,
checked before any POST, created once across tries), GiniPaymentRequestSensor (poke and
deferred) and GiniPaymentRequestTrigger, and the example DAG, against the sandbox over HTTP."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_gini.client.errors import GiniTransportError
from airflow_provider_gini.hooks.gini import GiniHook
from airflow_provider_gini.sandbox import RunningSandbox
from airflow_provider_gini.triggers.payments import GiniPaymentRequestTrigger
from tests.compat import AIRFLOW_V_3_3_PLUS, sdk_exception
from tests.operators.conftest import task_states, xcom

pytestmark = pytest.mark.timeout(120)

BANK = "b09ef70a-490f-11eb-952e-9bc6f4646c57"  # a payment provider of the sandbox
IBAN = "DE89370400440532013000"
FAST = {"backoff_initial": 0.01, "backoff_max": 0.05}
HEADER = """
from datetime import datetime, timezone
from airflow.sdk import DAG
from airflow_provider_gini.operators.payments import GiniCreatePaymentRequestOperator
from airflow_provider_gini.sensors.payments import GiniPaymentRequestSensor

FAST = {"backoff_initial": 0.01, "backoff_max": 0.05}
"""
DAG_LINE = (
    'with DAG("{dag_id}", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)) as dag:\n'
)


# Under dag.test() on Airflow 3.0 a task's log (its failure among it) does not reach pytest's
# capture, so what a failed task said is read from its log on 3.3 only; the tests that call the
# operator directly check the same messages on every version.
TASK_LOGS = AIRFLOW_V_3_3_PLUS


def said(capfd: pytest.CaptureFixture[str], *messages: str) -> None:
    """Each of ``messages`` is in the task logs so far (on the versions that capture them)."""
    out = capfd.readouterr().out
    if TASK_LOGS:
        for message in messages:
            assert message in out


def dag_source(body: str) -> str:
    return HEADER + DAG_LINE + "".join(f"    {line}\n" for line in body.strip().splitlines())


def payment_requests(sandbox: RunningSandbox) -> list[dict[str, Any]]:
    """The sandbox's truth: every payment request with its body and status (admin API)."""
    response = sandbox.admin.get("/paymentRequests")
    response.raise_for_status()
    return list(response.json())


def posts(sandbox: RunningSandbox) -> int:
    """POST /paymentRequests requests that reached the sandbox, from its request log."""
    return sum(1 for r in sandbox.requests() if r["method"] == "POST" and r["path"] == "/paymentRequests")


def try_number(run: Any, task_id: str) -> int:
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = (
            session.query(TaskInstance).filter_by(dag_id=run.dag_id, run_id=run.run_id, task_id=task_id).one()
        )
        return int(ti.try_number)


@pytest.fixture
def hook(gini_connection: RunningSandbox) -> Iterator[GiniHook]:
    made = GiniHook("gini_default", **FAST)
    yield made
    made.close()


@pytest.fixture
def invoice(gini_connection: RunningSandbox) -> tuple[str, dict[str, str]]:
    """A processed invoice and its extractions' values, as the sandbox holds them."""
    [document_id] = gini_connection.insert_documents(doctype="Invoice")
    found = gini_connection.document(document_id)["extractions"]["extractions"]
    return document_id, {label: item["value"] for label, item in found.items()}


def test_from_extractions_and_from_explicit_fields(
    gini_connection: RunningSandbox, dag_file: Callable[..., Any], invoice: tuple[str, dict[str, str]]
) -> None:
    document_id, found = invoice
    dag = dag_file(
        dag_source(f"""
GiniCreatePaymentRequestOperator(task_id="extracted", document_id="{document_id}", payment_provider="{BANK}", hook_params=FAST)
GiniCreatePaymentRequestOperator(
    task_id="overridden", document_id="{document_id}", payment_provider="{BANK}", amount="{{{{ 40 + 2 }}}}.5",
    currency="EUR", purpose="Kundennummer 4711", hook_params=FAST)
GiniCreatePaymentRequestOperator(
    task_id="explicit", payment_provider="{BANK}", recipient="Stadtwerke Nord", iban="DE89 3704 0044 0532 0130 00",
    bic="cobadeffxxx", amount=12.5, currency="eur", purpose="RE-2026-1", hook_params=FAST)
""")
    )
    run = dag.test()
    assert run.state == "success", task_states(run)
    stored = {pr["id"]: pr for pr in payment_requests(gini_connection)}
    assert len(stored) == 3
    extracted = stored[xcom(run, "extracted")]["body"]
    assert extracted == {
        "paymentProvider": BANK,
        "recipient": found["paymentRecipient"],
        "iban": found["iban"],
        "bic": found["bic"],
        "amount": found["amountToPay"],
        "purpose": found["paymentPurpose"],
        "sourceDocumentLocation": f"{gini_connection.base_url}/documents/{document_id}",
    }
    overridden = stored[xcom(run, "overridden")]["body"]
    assert overridden == {**extracted, "amount": "42.50:EUR", "purpose": "Kundennummer 4711"}
    assert stored[xcom(run, "explicit")]["body"] == {
        "paymentProvider": BANK,
        "recipient": "Stadtwerke Nord",
        "iban": IBAN,
        "bic": "COBADEFFXXX",
        "amount": "12.50:EUR",
        "purpose": "RE-2026-1",
    }
    assert all(pr["status"] == "open" for pr in stored.values())


def test_wrong_or_missing_fields_fail_before_any_post(
    gini_connection: RunningSandbox, dag_file: Callable[..., Any], capfd: pytest.CaptureFixture[str]
) -> None:
    fields = (
        f'payment_provider="{BANK}", recipient="Stadtwerke Nord", purpose="RE-1", retries=2, retry_delay=0'
    )
    dag = dag_file(
        dag_source(f"""
GiniCreatePaymentRequestOperator(task_id="checksum", {fields}, iban="DE88370400440532013000", amount="1.00:EUR")
GiniCreatePaymentRequestOperator(task_id="amount", {fields}, iban="{IBAN}", amount="12,50:EUR")
GiniCreatePaymentRequestOperator(
    task_id="recipient", payment_provider="{BANK}", purpose="RE-1", iban="{IBAN}", amount="1:EUR", retries=2, retry_delay=0)
""")
    )
    gini_connection.reset_counters()
    run = dag.test()
    assert run.state == "failed"
    assert task_states(run) == {"checksum": "failed", "amount": "failed", "recipient": "failed"}
    # AirflowFailException: no retries, as another try cannot fix the arguments.
    assert [try_number(run, t) for t in ("checksum", "amount", "recipient")] == [1, 1, 1]
    assert posts(gini_connection) == 0
    assert payment_requests(gini_connection) == []
    said(
        capfd,
        "iban 'DE88370400440532013000' fails the IBAN checksum",
        "amount '12,50:EUR' is not an amount: write it as '12.50:EUR'",
        "no recipient: pass recipient=..., or document_id=...",
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"iban": "DE88370400440532013000"}, "iban 'DE88370400440532013000' fails the IBAN checksum"),
        ({"amount": "12,50:EUR"}, "amount '12,50:EUR' is not an amount: write it as '12.50:EUR'"),
        ({"amount": 12.5}, "amount '12.5' has no currency: write '12.50:EUR' or pass currency='EUR'"),
        ({"recipient": None}, "no recipient: pass recipient=..., or document_id=... to read it"),
        ({"recipient": "  ", "purpose": None}, "no recipient: pass recipient=...,"),
    ],
)
def test_messages_name_the_field_and_the_fix(
    gini_connection: RunningSandbox, fields: dict[str, Any], message: str
) -> None:
    from airflow_provider_gini.operators.payments import GiniCreatePaymentRequestOperator

    arguments = {"recipient": "Stadtwerke Nord", "iban": IBAN, "amount": "1.00:EUR", "purpose": "RE-1"}
    operator = GiniCreatePaymentRequestOperator(
        task_id="create", payment_provider=BANK, hook_params=FAST, **{**arguments, **fields}
    )
    with pytest.raises(sdk_exception("AirflowFailException")) as caught:
        operator.execute({})
    assert str(caught.value).startswith("Cannot create a payment request: ")
    assert message in str(caught.value)
    assert posts(gini_connection) == 0


def test_missing_extraction_names_the_argument(
    gini_connection: RunningSandbox, dag_file: Callable[..., Any], capfd: pytest.CaptureFixture[str]
) -> None:
    # A document Gini could not process has no extractions at all.
    [document_id] = gini_connection.insert_documents(outcome="ERROR")
    dag = dag_file(
        dag_source(f"""
GiniCreatePaymentRequestOperator(task_id="create", document_id="{document_id}", payment_provider="{BANK}", iban="{IBAN}")
""")
    )
    run = dag.test()
    assert task_states(run) == {"create": "failed"}
    assert try_number(run, "create") == 1
    assert posts(gini_connection) == 0
    # The ERROR document's extractions are empty (the sandbox answers 200 with none).
    said(
        capfd, f"no recipient: document {document_id} has no paymentRecipient extraction, pass recipient=..."
    )


CLEARED_DAG = f"""
from datetime import datetime, timezone
from airflow.sdk import DAG, task
from airflow_provider_gini.operators.payments import GiniCreatePaymentRequestOperator

with DAG("{{dag_id}}", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)) as dag:
    create = GiniCreatePaymentRequestOperator(
        task_id="create", payment_provider="{BANK}", recipient="Stadtwerke Nord", iban="{IBAN}",
        amount="99.00:EUR", purpose="RE-2026-7", hook_params={FAST!r})

    @task
    def clear_create(first_id, **context):
        # What a user does with the UI's Clear: run the create task again in this DAG run.
        from airflow.models.taskinstance import TaskInstance, clear_task_instances
        from airflow.utils.session import create_session

        ti = context["ti"]
        with create_session() as session:
            tis = session.query(TaskInstance).filter_by(dag_id=ti.dag_id, run_id=ti.run_id, task_id="create").all()
            clear_task_instances(tis, session)
        return first_id

    clear_create(create.output)
"""


def test_a_cleared_task_does_not_create_a_second_request(
    gini_connection: RunningSandbox, dag_file: Callable[..., Any], capfd: pytest.CaptureFixture[str]
) -> None:
    """The create task succeeds, then is cleared and runs again. On Airflow 3.3+ its record in
    the task state store proves the request its own: it adopts it. Before 3.3 it cannot prove
    it, and fails naming the request rather than creating a second one."""
    run = dag_file(CLEARED_DAG).test()
    [request] = payment_requests(gini_connection)
    assert posts(gini_connection) == 1
    assert try_number(run, "create") == 2
    assert xcom(run, "clear_create") == request["id"]
    if AIRFLOW_V_3_3_PLUS:
        assert run.state == "success", task_states(run)
        assert xcom(run, "create") == request["id"]
        said(capfd, f"adopting payment request {request['id']}")
    else:
        assert task_states(run)["create"] == "failed"
        said(capfd, f"created since: {request['id']}")


@pytest.mark.parametrize(
    ("after_handler", "created"),
    [(True, 1), (False, 2)],
    ids=["reset after Gini stored it", "reset before Gini handled it"],
)
def test_a_retry_after_a_lost_answer_never_duplicates(
    gini_connection: RunningSandbox,
    dag_file: Callable[..., Any],
    capfd: pytest.CaptureFixture[str],
    after_handler: bool,
    created: int,
) -> None:
    """The connection breaks during the POST, so the first try cannot know whether Gini created
    the request. Its retry lists the user's requests: one with the same fields since the first
    try sent is not provably its own, so it fails naming it (no second request); none, and it
    creates the request."""
    gini_connection.add_fault(
        "reset", path="/paymentRequests", method="POST", first=1, after_handler=after_handler
    )
    dag = dag_file(
        dag_source(f"""
GiniCreatePaymentRequestOperator(
    task_id="create", payment_provider="{BANK}", recipient="Stadtwerke Nord", iban="{IBAN}", amount="5:EUR",
    purpose="RE-9", retries=2, retry_delay=0, hook_params=FAST)
""")
    )
    run = dag.test()
    stored = payment_requests(gini_connection)
    assert posts(gini_connection) == created
    assert len(stored) == 1  # never a duplicate
    assert try_number(run, "create") == 2
    if after_handler:
        assert task_states(run) == {"create": "failed"}
        said(capfd, f"Gini holds 1 with the same fields created since: {stored[0]['id']}")
    else:
        assert run.state == "success"
        assert xcom(run, "create") == stored[0]["id"]


def test_without_the_task_state_store_a_later_try_refuses_what_it_cannot_prove(
    gini_connection: RunningSandbox, hook: GiniHook
) -> None:
    """Airflow 3.0-3.2 have no task state store: a later try lists the user's requests, fails
    naming one with the same fields created since the DAG run started, and otherwise creates.
    Called directly with the context such a try gets (no ``task_state_store``), on every version."""
    from airflow_provider_gini.operators.payments import GiniCreatePaymentRequestOperator

    def operator(**fields: Any) -> Any:
        arguments = {"recipient": "Stadtwerke Nord", "iban": IBAN, "amount": "7.00:EUR", "purpose": "RE-3"}
        return GiniCreatePaymentRequestOperator(
            task_id="create", payment_provider=BANK, hook_params=FAST, **{**arguments, **fields}
        )

    started = datetime.now(timezone.utc)
    earlier = new_request(hook)  # what the first try created before its answer was lost
    # The run finished and was cleared an hour later: Airflow reset its start_date to then, but
    # not its run_after.
    cleared = SimpleNamespace(run_after=started, start_date=started + timedelta(hours=1))
    later_try = {"ti": SimpleNamespace(try_number=2), "dag_run": cleared}
    with pytest.raises(sdk_exception("AirflowFailException"), match=f"created since: {earlier}"):
        operator().execute(later_try)
    assert posts(gini_connection) == 1
    # The same fields but a request from before this DAG run: not one of this task's tries.
    next_day = {**later_try, "dag_run": SimpleNamespace(run_after=started + timedelta(hours=1))}
    created = operator().execute(next_day)
    # Other fields: no request of an earlier try can be this one.
    other = operator(amount="8.00:EUR").execute(later_try)
    assert len({earlier, created, other}) == 3
    assert posts(gini_connection) == 3


FINISHED_RUN_DAG = f"""
from datetime import datetime, timedelta, timezone
from airflow.sdk import DAG, task
from airflow_provider_gini.operators.payments import GiniCreatePaymentRequestOperator

with DAG("{{dag_id}}", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)) as dag:
    create = GiniCreatePaymentRequestOperator(
        task_id="create", payment_provider="{BANK}", recipient="Stadtwerke Nord", iban="{IBAN}",
        amount="99.00:EUR", purpose="RE-2026-8", hook_params={FAST!r})

    @task
    def fail_then_clear(first_id, **context):
        # The run fails (a downstream task failed); an hour later the user clears the create
        # task of the finished run, and the scheduler starts the run again.
        from airflow.models.dagrun import DagRun
        from airflow.models.taskinstance import TaskInstance, clear_task_instances
        from airflow.utils.session import create_session
        from airflow.utils.state import DagRunState

        ti = context["ti"]
        with create_session() as session:
            run = session.query(DagRun).filter_by(dag_id=ti.dag_id, run_id=ti.run_id).one()
            run.state = DagRunState.FAILED
            session.flush()
            tis = session.query(TaskInstance).filter_by(dag_id=ti.dag_id, run_id=ti.run_id, task_id="create").all()
            clear_task_instances(tis, session)  # a finished run: start_date reset, state QUEUED
            assert run.start_date is None
            run.state = DagRunState.RUNNING
            run.start_date = datetime.now(timezone.utc) + timedelta(hours=1)
        return first_id

    fail_then_clear(create.output)
"""


def test_clearing_a_finished_run_does_not_create_a_second_request(
    gini_connection: RunningSandbox, dag_file: Callable[..., Any], capfd: pytest.CaptureFixture[str]
) -> None:
    """Clearing a task of a finished run resets the run's start date to when it runs again (an
    hour later here): a later try must not take that as the start of its run, or an earlier
    try's request falls outside what it checks. 3.3+ adopts (task state store); 3.0-3.2 fail
    naming the request (its run_after, which a clear does not move). Under dag.test() on 3.0
    the retried task still sees the run's first start_date, so there this is a guard of the
    whole flow; the direct test below shows the bound itself."""
    run = dag_file(FINISHED_RUN_DAG).test()
    [request] = payment_requests(gini_connection)
    assert posts(gini_connection) == 1
    assert try_number(run, "create") == 2
    assert xcom(run, "fail_then_clear") == request["id"]
    if AIRFLOW_V_3_3_PLUS:
        assert task_states(run)["create"] == "success"
        assert xcom(run, "create") == request["id"]
    else:
        assert task_states(run)["create"] == "failed"
        said(capfd, f"created since: {request['id']}")


class Store:
    """Airflow 3.3's task state store as a task sees it (get/set per key), kept across the
    calls of one test: the tries of one task instance."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        return self.values.get(key)

    def set(self, key: str, value: Any) -> None:
        self.values[key] = value


def create_operator(**fields: Any) -> Any:
    from airflow_provider_gini.operators.payments import GiniCreatePaymentRequestOperator

    arguments = {"recipient": "Stadtwerke Nord", "iban": IBAN, "amount": "7.00:EUR", "purpose": "RE-3"}
    return GiniCreatePaymentRequestOperator(
        task_id="create", payment_provider=BANK, hook_params=FAST, **{**arguments, **fields}
    )


def tries(store: Store) -> Iterator[dict[str, Any]]:
    """The contexts of a task instance's tries 1, 2, ... with the task state store."""
    number = 0
    while True:
        number += 1
        yield {"ti": SimpleNamespace(try_number=number), "task_state_store": store}


def test_other_fields_on_a_later_try_never_make_a_second_payable_request(
    gini_connection: RunningSandbox, hook: GiniHook
) -> None:
    """With the task state store (3.3+): a later try whose fields changed (say, the amount) fails
    naming the earlier try's request while that is open or paid; once it is invalid or gone, it
    creates the new one. Called directly with a store as Airflow gives it, on every version."""
    store = Store()
    contexts = tries(store)
    first = create_operator().execute(next(contexts))
    fail = sdk_exception("AirflowFailException")
    with pytest.raises(
        fail,
        match=f"fields changed since an earlier try of this task created payment request {first}, which is open",
    ):
        create_operator(amount="8.00:EUR").execute(next(contexts))
    pay(hook, first)
    with pytest.raises(fail, match=f"{first}, which is paid"):
        create_operator(amount="8.00:EUR").execute(next(contexts))
    assert posts(gini_connection) == 1
    other = new_request(hook)
    hook.delete_payment_request(other)
    store.values["gini_payment_request"]["id"] = other  # a request since deleted
    replaced = create_operator(amount="8.00:EUR").execute(next(contexts))
    assert posts(gini_connection) == 3
    assert replaced not in (first, other)


def test_a_lost_answer_is_checked_even_when_the_fields_changed(
    gini_connection: RunningSandbox, hook: GiniHook
) -> None:
    """The first try's POST reached Gini but its answer was lost (the record holds no id), and
    the next try has other fields: it still lists the user's requests and fails naming the one
    with the first try's fields, instead of creating a second."""
    gini_connection.add_fault("reset", path="/paymentRequests", method="POST", first=1, after_handler=True)
    contexts = tries(Store())
    with pytest.raises(GiniTransportError):  # the broken connection: retryable, no result
        create_operator().execute(next(contexts))
    [lost] = payment_requests(gini_connection)
    with pytest.raises(sdk_exception("AirflowFailException"), match=f"created since: {lost['id']}"):
        create_operator(amount="8.00:EUR").execute(next(contexts))
    assert len(payment_requests(gini_connection)) == 1


def test_requests_for_other_documents_are_not_refused(
    gini_connection: RunningSandbox, hook: GiniHook
) -> None:
    """Mapped tasks for two documents with equal fields: a later try of the second is not
    refused by the first's request, which names another source document."""
    first_document, second_document = gini_connection.insert_documents(doctype="Invoice", count=2)
    later_try = {
        "ti": SimpleNamespace(try_number=2),
        "dag_run": SimpleNamespace(run_after=datetime.now(timezone.utc)),
    }
    first = create_operator(document_id=first_document).execute({})
    second = create_operator(document_id=second_document).execute(later_try)
    assert first != second
    # The same document: the first's request may be this try's own, so it is refused.
    with pytest.raises(sdk_exception("AirflowFailException"), match=f"created since: {first}"):
        create_operator(document_id=first_document).execute(later_try)
    assert posts(gini_connection) == 2


SENSOR_DAG = """
GiniPaymentRequestSensor(
    task_id="wait", payment_request_id="REQUEST", MODE, poke_interval=0.2, timeout=TIMEOUT, hook_params=FAST)
"""


def later(seconds: float, action: Callable[[], Any]) -> threading.Timer:
    timer = threading.Timer(seconds, action)
    timer.start()
    return timer


def new_request(hook: GiniHook) -> str:
    return hook.create_payment_request(
        payment_provider=BANK, recipient="Stadtwerke Nord", iban=IBAN, amount="7.00:EUR", purpose="RE-3"
    )


def pay(hook: GiniHook, request_id: str) -> None:
    hook.resolve_payment_request(
        request_id, recipient="Stadtwerke Nord", iban=IBAN, amount="7.00:EUR", purpose="RE-3"
    )


def invalidate(sandbox: RunningSandbox, request_id: str) -> None:
    sandbox.admin.patch(f"/paymentRequests/{request_id}", json={"status": "invalid"}).raise_for_status()


MODES = pytest.mark.parametrize("mode", ['mode="poke"', "deferrable=True"])


@MODES
def test_sensor_succeeds_once_paid(
    gini_connection: RunningSandbox, dag_file: Callable[..., Any], hook: GiniHook, mode: str
) -> None:
    request_id = new_request(hook)
    dag = dag_file(
        dag_source(SENSOR_DAG.replace("REQUEST", request_id).replace("MODE", mode).replace("TIMEOUT", "30"))
    )
    timer = later(1.0, lambda: pay(hook, request_id))  # the payer's bank, while the sensor waits
    run = dag.test()
    timer.join()
    assert run.state == "success", task_states(run)
    result = xcom(run, "wait")
    assert (result["id"], result["status"], result["amount"]) == (request_id, "paid", "7.00:EUR")
    secrets = [s for values in gini_connection.secrets().values() for s in values]
    assert not [s for s in secrets if s in repr(result)]


@MODES
def test_sensor_fails_when_invalid(
    gini_connection: RunningSandbox,
    dag_file: Callable[..., Any],
    hook: GiniHook,
    mode: str,
    capfd: pytest.CaptureFixture[str],
) -> None:
    request_id = new_request(hook)
    dag = dag_file(
        dag_source(
            SENSOR_DAG.replace("REQUEST", request_id).replace("MODE", mode).replace("TIMEOUT", "30")
        ).replace("timeout=30,", "timeout=30, retries=2, retry_delay=0,")
    )
    timer = later(1.0, lambda: invalidate(gini_connection, request_id))
    run = dag.test()
    timer.join()
    assert task_states(run) == {"wait": "failed"}
    assert try_number(run, "wait") == 1  # not retried: it will not become paid
    said(capfd, f"Payment request {request_id} is invalid")


@MODES
def test_sensor_times_out_clearly(
    gini_connection: RunningSandbox,
    dag_file: Callable[..., Any],
    hook: GiniHook,
    mode: str,
    capfd: pytest.CaptureFixture[str],
) -> None:
    request_id = new_request(hook)
    dag = dag_file(
        dag_source(SENSOR_DAG.replace("REQUEST", request_id).replace("MODE", mode).replace("TIMEOUT", "1"))
    )
    run = dag.test()
    assert task_states(run) == {"wait": "failed"}
    said(capfd, f"Payment request {request_id} was still open")


def events(trigger: GiniPaymentRequestTrigger) -> list[dict[str, Any]]:
    async def collect() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    return asyncio.run(collect())


def test_trigger_serializes_to_plain_values_and_round_trips() -> None:
    trigger = GiniPaymentRequestTrigger(
        payment_request_id="p1",
        gini_conn_id="c",
        poll_interval=2,
        timeout=600,
        hook_params={"read_timeout": 5},
    )
    path, kwargs = trigger.serialize()
    assert path == "airflow_provider_gini.triggers.payments.GiniPaymentRequestTrigger"
    assert kwargs == {
        "payment_request_id": "p1",
        "gini_conn_id": "c",
        "poll_interval": 2.0,
        "timeout": 600.0,
        "end_time": None,
        "hook_params": {"read_timeout": 5},
    }
    assert GiniPaymentRequestTrigger(**kwargs).serialize() == (path, kwargs)


def test_trigger_events(gini_connection: RunningSandbox, hook: GiniHook) -> None:
    paid, invalid, open_ = new_request(hook), new_request(hook), new_request(hook)
    pay(hook, paid)
    invalidate(gini_connection, invalid)
    [success] = events(GiniPaymentRequestTrigger(payment_request_id=paid, poll_interval=0.1))
    assert (success["status"], success["payment_status"]) == ("success", "paid")
    assert success["payment_request"]["id"] == paid
    assert success["payment_request"]["status"] == "paid"
    [failed] = events(GiniPaymentRequestTrigger(payment_request_id=invalid, poll_interval=0.1))
    assert (failed["status"], failed["payment_status"], failed["payment_request"]) == (
        "failed",
        "invalid",
        None,
    )
    [timeout] = events(GiniPaymentRequestTrigger(payment_request_id=open_, poll_interval=0.1, timeout=0.3))
    assert (timeout["status"], timeout["payment_status"]) == ("timeout", "open")
    assert timeout["message"] == f"Payment request {open_} was still open"
    [missing] = events(GiniPaymentRequestTrigger(payment_request_id="no-such-request", poll_interval=0.1))
    assert (missing["status"], missing["terminal"]) == ("error", True)  # 404: no retries
    assert "404" in missing["message"]


def test_sandbox_marks_only_open_requests_invalid(gini_connection: RunningSandbox, hook: GiniHook) -> None:
    request_id = new_request(hook)
    pay(hook, request_id)
    # A paid request stays paid; the switch answers 409, as paying twice does.
    answer = gini_connection.admin.patch(f"/paymentRequests/{request_id}", json={"status": "invalid"})
    assert answer.status_code == 409
    assert (
        gini_connection.admin.patch(f"/paymentRequests/{request_id}", json={"status": "paid"}).status_code
        == 400
    )
    assert gini_connection.admin.patch("/paymentRequests/nope", json={"status": "invalid"}).status_code == 404


def test_example_dag(gini_connection: RunningSandbox, example_dag: Callable[[str], Any]) -> None:
    run = example_dag("gini_payment_request").test()
    assert run.state == "success", task_states(run)
    document_id, request_id = xcom(run, "upload"), xcom(run, "create_payment_request")
    [stored] = payment_requests(gini_connection)
    assert (stored["id"], stored["status"]) == (request_id, "paid")
    found = gini_connection.document(document_id)["extractions"]["extractions"]
    assert stored["body"]["amount"] == found["amountToPay"]["value"]
    assert stored["body"]["iban"] == found["iban"]["value"]
    assert xcom(run, "wait_until_paid")["status"] == "paid"


def test_example_dag_pays_only_a_local_sandbox(
    gini_connection: RunningSandbox, example_dag: Callable[[str], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The example's stand-in payer: unset, it pays only when the connection's API is on this
    machine (never at Gini); false, never. With it off the request stays open (the wait task
    is marked successful so the run ends)."""
    import json
    import runpy

    dag = example_dag("gini_payment_request")
    on_loopback = runpy.run_path(dag.fileloc)["on_loopback"]
    assert on_loopback(GiniHook("gini_default"))
    real = {**gini_connection.connection(), "host": "https://pay-api.gini.net"}
    real["extra"] = {**real["extra"], "user_center_url": "https://user.gini.net"}
    monkeypatch.setenv("AIRFLOW_CONN_GINI_REAL", json.dumps(real))
    assert not on_loopback(GiniHook("gini_real"))
    assert dag.params["sandbox_payer"] is None
    run = dag.test(run_conf={"sandbox_payer": False}, mark_success_pattern="wait_until_paid")
    assert run.state == "success", task_states(run)
    [stored] = payment_requests(gini_connection)
    assert stored["status"] == "open"
