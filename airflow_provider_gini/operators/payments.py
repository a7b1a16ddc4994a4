"""GiniCreatePaymentRequestOperator: a payment request from a document's extractions or from
explicit fields, checked before it is sent, and created once per task instance."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from airflow.sdk import Context

from airflow_provider_gini._compat import AirflowFailException
from airflow_provider_gini.client.api import last_segment
from airflow_provider_gini.client.errors import GiniConfigError, GiniNotFound, shown
from airflow_provider_gini.client.payments import (
    PaymentFieldError,
    PaymentFields,
    normalise_amount,
    normalise_bic,
    normalise_iban,
    payment_fields,
)
from airflow_provider_gini.operators.base import GiniBaseOperator, terminal_errors
from airflow_provider_gini.operators.idempotency import run_began

# Each field and the extractions it is read from, first found wins (pull/manifest.py's labels).
EXTRACTED: dict[str, tuple[str, ...]] = {
    "recipient": ("paymentRecipient",),
    "iban": ("iban",),
    "bic": ("bic",),
    "amount": ("amountToPay",),
    "purpose": ("paymentPurpose", "paymentReference"),
}
REQUIRED = ("recipient", "iban", "amount", "purpose")
# The task state store's key for this task instance's payment request (Airflow 3.3+).
RECORD_KEY = "gini_payment_request"
# How much earlier than the worker's clock says an earlier try sent its request Gini's clock may
# date it: a request created before that is not one of this task's tries.
CLOCK_MARGIN = 300.0
NAMED_CANDIDATES = 20


class GiniCreatePaymentRequestOperator(GiniBaseOperator):
    """Create a Gini payment request and return its id (XCom).

    With ``document_id`` the fields come from that document's extractions (``paymentRecipient``,
    ``iban``, ``bic``, ``amountToPay``, ``paymentPurpose`` or else ``paymentReference``) and the
    request links the document (``sourceDocumentLocation``). ``recipient``, ``iban``, ``bic``,
    ``amount`` and ``purpose`` given here override the extractions (None or empty: not given).
    ``amount`` is ``"12.50:EUR"``, or a number with ``currency``. A BIC the extractions hold that
    is not a BIC is left out with a warning (Gini does not require one); a wrong one given here
    fails.

    Before anything is sent the fields are checked (client/payments.py: the IBAN's length and
    ISO 13616 checksum, a positive amount in cents with an ISO currency, non-empty texts). A
    field missing or wrong fails the task without retries, naming the field and the argument
    that fixes it.

    ``POST /paymentRequests`` is not idempotent, and a second request for one invoice may be
    paid twice. Within a try it is never sent again once it may have reached Gini. Across tries
    (a retry, or the task cleared):

    * **Airflow 3.3+** (its task state store): each try records that it is about to send (with
      the fields), and then the id Gini answered. A later try with the same fields adopts the
      recorded request (if it still exists). With other fields (say, a corrected amount, and the
      task cleared), it fails naming the recorded request while that is open or paid (delete it
      and clear the task, or create the new request in a new task); one gone or invalid is
      replaced. If an earlier try sent the request but got no answer (the connection broke),
      the later try lists the user's payment requests: one with this try's or that try's fields
      (and source document) created since then fails the task, naming it, as it cannot be
      proven to be this task's; none, and it creates the request.
    * **Airflow 3.0-3.2** (no task state store): a later try never adopts. It lists the user's
      payment requests first and fails, naming them, if one with the same fields and source
      document was created since the DAG run's ``run_after`` (which, unlike its start date, a
      clear does not move); otherwise it creates the request. So a retry never makes a
      duplicate that Gini lists, but after any failure that follows a successful POST (the
      worker lost, the XCom not written, the task cleared), it fails rather than carrying on:
      delete the request and clear the task, or take its id from the message.

    Requests are told apart by their fields and, when Gini names it, their source document:
    mapped tasks with equal fields for different documents do not refuse each other.
    """

    template_fields: Sequence[str] = (
        "gini_conn_id",
        "payment_provider",
        "document_id",
        "recipient",
        "iban",
        "bic",
        "amount",
        "currency",
        "purpose",
    )

    def __init__(
        self,
        *,
        payment_provider: str,
        document_id: str | None = None,
        recipient: str | None = None,
        iban: str | None = None,
        bic: str | None = None,
        amount: str | int | float | Decimal | None = None,
        currency: str | None = None,
        purpose: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.payment_provider = payment_provider
        self.document_id = document_id
        self.recipient = recipient
        self.iban = iban
        self.bic = bic
        self.amount = amount
        self.currency = currency
        self.purpose = purpose

    def execute(self, context: Context) -> str:
        with terminal_errors():
            fields = self._fields()
            return self._create(context, fields)

    def _fields(self) -> PaymentFields:
        given: dict[str, Any] = {
            "recipient": self.recipient,
            "iban": self.iban,
            "bic": self.bic,
            "amount": self.amount,
            "purpose": self.purpose,
        }
        origin: dict[str, str] = {}
        if self.document_id:
            from airflow_provider_gini.pull.manifest import flatten

            flat = flatten(self.hook.get_extractions(self.document_id))
            for name, labels in EXTRACTED.items():
                if not _empty(given[name]):
                    continue
                label = next((label for label in labels if flat.get(label)), None)
                if label is not None:
                    given[name], origin[name] = flat[label], label
        missing = [name for name in REQUIRED if _empty(given[name])]
        if missing:
            raise AirflowFailException(
                "Cannot create a payment request: " + "; ".join(map(self._missing, missing))
            )
        if "bic" in origin:
            try:
                normalise_bic(given["bic"])
            except PaymentFieldError:
                self.log.warning(
                    "Leaving out the bic extraction of document %s, %r, which is not a BIC (Gini "
                    "does not require one; pass bic=... to give it)",
                    self.document_id,
                    shown(str(given["bic"]), 40),
                )
                given["bic"] = None
        try:
            return payment_fields(payment_provider=self.payment_provider, currency=self.currency, **given)
        except PaymentFieldError as exc:
            where = (
                f" (read from the {origin[exc.field]!r} extraction of document {self.document_id};"
                f" pass {exc.field}=... to override it)"
                if exc.field in origin
                else ""
            )
            raise AirflowFailException(f"Cannot create a payment request: {exc}{where}") from exc

    def _missing(self, name: str) -> str:
        if self.document_id:
            labels = " or ".join(EXTRACTED[name])
            return f"no {name}: document {self.document_id} has no {labels} extraction, pass {name}=..."
        return f"no {name}: pass {name}=..., or document_id=... to read it from a document's extractions"

    def _create(self, context: Context, fields: PaymentFields) -> str:
        sent = fields.as_kwargs() | {"source_document": self.document_id}
        fingerprint = hashlib.sha256(json.dumps(sent, sort_keys=True).encode()).hexdigest()
        adopted = self._earlier(context, fingerprint, fields)
        if adopted is not None:
            return adopted
        store = context.get("task_state_store")
        # The fields go with the record: a later try with other fields still knows what this
        # one may have created.
        record: dict[str, Any] = {"fingerprint": fingerprint, "fields": sent}
        if store is not None:
            # Before the POST: a try that never learns the answer leaves this for the next.
            store.set(RECORD_KEY, record | {"sent_at": time.time(), "id": None})
        payment_request_id = self.hook.create_payment_request(**sent)
        if store is not None:
            store.set(RECORD_KEY, record | {"sent_at": time.time(), "id": payment_request_id})
        self.log.info(
            "Created payment request %s: %s to %s (%s)",
            payment_request_id,
            fields.amount,
            shown(fields.recipient, 80),
            fields.iban,
        )
        return payment_request_id

    def _earlier(self, context: Context, fingerprint: str, fields: PaymentFields) -> str | None:
        """The request an earlier try of this task instance provably created with these fields,
        or None when this try is to create one; fails when an earlier try may have created one
        that cannot be proven its own, or created one with other fields that is still payable
        (class docstring)."""
        store = context.get("task_state_store")
        kept: Any = store.get(RECORD_KEY) if store is not None else None
        try_number = getattr(context.get("ti"), "try_number", 1)
        if isinstance(kept, dict):
            kept_id = kept.get("id")
            same = kept.get("fingerprint") == fingerprint
            if isinstance(kept_id, str):
                return self._recorded(kept_id, same, try_number)
            # The earlier POST's answer was lost: whatever its fields, Gini may hold its request.
            sent_at = kept.get("sent_at")
            since = float(sent_at) if isinstance(sent_at, (int, float)) else 0.0
            source = self.document_id
            wanted: list[Callable[[dict[str, Any]], bool]] = [lambda item: _same(item, fields, source)]
            if not same:
                earlier: Any = kept.get("fields")
                earlier_fields = _stored_fields(earlier)
                if earlier_fields is not None:
                    earlier_source = earlier.get("source_document")
                    wanted.append(lambda item: _same(item, earlier_fields, earlier_source))
                elif source:  # a record without its fields: at least this document's requests
                    wanted.append(lambda item: _named_source(item) is not None and _same_source(item, source))
            self._refuse_unproven(wanted, since, try_number)
            return None
        if store is None and try_number > 1:
            source = self.document_id
            self._refuse_unproven(
                [lambda item: _same(item, fields, source)], _began_at(context.get("dag_run")), try_number
            )
        return None  # the first try, or (3.3+) no earlier try got as far as sending

    def _recorded(self, kept_id: str, same: bool, try_number: int) -> str | None:
        """The recorded request ``kept_id`` adopted when it has these fields and still exists;
        None when it is gone (or, with other fields, invalid); else fails naming it."""
        try:
            found = self.hook.get_payment_request(kept_id)
        except GiniNotFound:
            self.log.info(
                "Try %d: payment request %s, created by an earlier try, is gone", try_number, kept_id
            )
            return None
        if same:
            self.log.info(
                "Try %d: adopting payment request %s, which an earlier try of this task created "
                "with the same fields (Airflow's task state store)",
                try_number,
                kept_id,
            )
            return kept_id
        status = found.get("status")
        if status == "invalid":
            self.log.info(
                "Try %d: the fields changed since this task created payment request %s, which is "
                "invalid: creating one for the new fields",
                try_number,
                kept_id,
            )
            return None
        raise AirflowFailException(
            f"Try {try_number}: the fields changed since an earlier try of this task created payment "
            f"request {kept_id}, which is {shown(str(status), 20)}. Not creating a second one for the "
            f"same task (both could be paid): delete {kept_id} (DELETE /paymentRequests/{kept_id}) and "
            "clear this task, or create the new request in a new task"
        )

    def _refuse_unproven(
        self, wanted: Sequence[Callable[[dict[str, Any]], bool]], since: float, try_number: int
    ) -> None:
        """Fail if Gini lists a request that any of ``wanted`` matches created since ``since``
        (epoch s)."""
        found = [
            _request_id(item)
            for item in self.hook.list_payment_requests()
            if any(matches(item) for matches in wanted)
            and _created(item, default=since) >= since - CLOCK_MARGIN
        ]
        if not found:
            return
        named = ", ".join(found[:NAMED_CANDIDATES]) + (
            f" and {len(found) - NAMED_CANDIDATES} more" if len(found) > NAMED_CANDIDATES else ""
        )
        raise AirflowFailException(
            f"Try {try_number}: an earlier try of this task may have created this payment request, but "
            f"its answer never arrived, so it cannot be proven which. Gini holds {len(found)} with the same "
            f"fields created since: {named}. Not creating another one (it could be paid twice): use "
            "that id, or delete the unwanted ones and clear this task"
        )


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _normal(check: Any, value: Any) -> Any:
    """``value`` normalised by ``check``, or as it is when it does not pass."""
    try:
        return check(value)
    except GiniConfigError:
        return value


def _same(item: dict[str, Any], fields: PaymentFields, source: str | None) -> bool:
    """Whether Gini's payment request ``item`` has ``fields`` (the bic aside: optional) and, when
    it names a source document, ``source`` (a document id or URL)."""
    return (
        str(item.get("paymentProvider") or "") == fields.payment_provider
        and str(item.get("recipient") or "").strip() == fields.recipient
        and _normal(normalise_iban, item.get("iban")) == fields.iban
        and _normal(normalise_amount, item.get("amount")) == fields.amount
        and str(item.get("purpose") or "").strip() == fields.purpose
        and _same_source(item, source)
    )


def _named_source(item: dict[str, Any]) -> str | None:
    """The source document's URL that ``item`` names (``_links`` or the field), if any."""
    links = item.get("_links")
    named = (links.get("sourceDocumentLocation") if isinstance(links, dict) else None) or item.get(
        "sourceDocumentLocation"
    )
    return named if isinstance(named, str) and named.strip() else None


def _same_source(item: dict[str, Any], source: str | None) -> bool:
    """Whether ``item``'s source document is ``source``. One that names none (or Gini not saying)
    matches any: better a false alarm than a duplicate."""
    named = _named_source(item)
    if named is None:
        return True
    if source is None:
        return False
    if "://" in source:
        return named.rstrip("/") == source.rstrip("/")
    return last_segment(named) == source


def _stored_fields(value: Any) -> PaymentFields | None:
    """The fields an earlier try recorded (``_create``'s record), or None if it has none."""
    if not isinstance(value, dict):
        return None
    texts = [value.get(name) for name in ("payment_provider", "recipient", "iban", "amount", "purpose")]
    if not all(isinstance(text, str) for text in texts):
        return None
    provider, recipient, iban, amount, purpose = map(str, texts)
    bic = value.get("bic")
    return PaymentFields(provider, recipient, iban, amount, purpose, bic if isinstance(bic, str) else None)


def _began_at(dag_run: Any) -> float:
    """run_began's moment in epoch seconds; 0 when none is known (every request counts)."""
    began = run_began(dag_run)
    return 0.0 if began is None else began.timestamp()


def _created(item: dict[str, Any], default: float) -> float:
    """The request's ``createdAt`` in epoch seconds; ``default`` when it has none readable (so it
    counts as a candidate: better a false alarm than a duplicate)."""
    try:
        created = datetime.fromisoformat(str(item.get("createdAt")).replace("Z", "+00:00"))
    except ValueError:
        return default
    # No offset: taken as UTC, which Gini's examples use ("...Z").
    return (created if created.tzinfo else created.replace(tzinfo=timezone.utc)).timestamp()


def _request_id(item: dict[str, Any]) -> str:
    """The request's id: an ``id`` if Gini sends one, else the end of its ``_links._self``."""
    links = item.get("_links")
    own = links.get("_self") if isinstance(links, dict) else None
    return shown(str(item.get("id") or last_segment(own) or "?"), 80)
