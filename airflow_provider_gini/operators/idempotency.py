"""Which document a later try of an upload task may take as its own, and which it must not.

A name alone proves nothing: mapped uploads of two ``scan.pdf``, or a file changed before the
task was cleared, share it. So an upload is adopted only on proof that the same task instance
uploaded the same content:

1. **Airflow's task state store** (Airflow 3.3+, ``context["task_state_store"]``, kept per task
   instance across its tries and clears): each upload records its document id and the content's
   sha256 there as soon as Gini answers. A later try with the same content adopts that id (if
   the document still exists); with other content it uploads. Exact, and works against Gini.
2. **The upload's tag**, sent as Gini metadata headers (``X-Document-Metadata-<name>``): the DAG
   id, run id, task id, map index and the content's sha256, and for the parts of a composite
   document which part it is (``Airflow-Part``: ``partial-<k>``, ``composite``). A document
   whose JSON returns exactly this tag (every tag name, and no other) is adopted. Gini is not
   known to return upload metadata (its SDK docs call it "intended to be used for reporting");
   the sandbox does with its ``echo_metadata`` switch. This covers what (1) cannot: Airflow
   3.0-3.2, and a try killed after Gini stored the upload but before its answer arrived.

Otherwise a later try uploads again, and warns naming the same-name documents of the run it
could not prove to be its own: if an earlier try's upload reached Gini, one of them is a
duplicate.

A composite document is proven part by part: its partials (page k of this task instance: the
tag with ``partial-<k>`` and page k's sha256) and the composite itself, whose sha256 is that of
its pages' sha256s and rotations. So a later try adopts what it can prove and uploads the rest.

User metadata (the operator's ``metadata``) travels beside the tag and can neither break nor
forge it: names starting with ``Airflow-`` and ``Content-Sha256`` are reserved (ignoring case,
``_`` taken for ``-``), and only reserved names are read back as the tag.
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

from airflow.sdk import Context

from airflow_provider_gini.client.api import check_metadata
from airflow_provider_gini.client.errors import GiniConfigError, GiniNotFound, shown

TAG_DAG_ID = "Airflow-Dag-Id"
TAG_RUN_ID = "Airflow-Run-Id"
TAG_TASK_ID = "Airflow-Task-Id"
TAG_MAP_INDEX = "Airflow-Map-Index"
TAG_CONTENT_SHA256 = "Content-Sha256"
UPLOAD_TAG = (TAG_DAG_ID, TAG_RUN_ID, TAG_TASK_ID, TAG_MAP_INDEX, TAG_CONTENT_SHA256)
# Which part of a composite document an upload is: "partial-<k>" (k from 1, in page order) or
# "composite". A plain upload has none.
TAG_PART = "Airflow-Part"
COMPOSITE_PART = "composite"
# Metadata names the tag owns, ignoring case: every Airflow-* name (the tag's, and room for more)
# and Content-Sha256. User metadata may not use them.
RESERVED_PREFIX = "airflow-"
RESERVED_NAMES = frozenset({TAG_CONTENT_SHA256.lower()})
# Where a document's JSON would carry its upload metadata: the sandbox's shape under its
# echo_metadata switch ({name: value}, names lower-case without the header prefix), not Gini's:
# no Gini source shows the metadata read back (docs/gini-compat.md).
ECHOED_METADATA = "uploadMetadata"
# Longest tag value sent. Gini documents no limit; an overlong one is cut and ends in a hash of
# the whole, so two long values that share a beginning still differ.
TAG_VALUE_LIMIT = 200
# How many unprovable same-name documents a retry's warning names.
NAMED_CANDIDATES = 20
# The task state store's key for this task instance's upload.
RECORD_KEY = "gini_upload"
# Printable ASCII but "%" (the escape itself) and space stay as they are in a tag value.
_SAFE = "".join(c for c in string.printable if "!" <= c <= "~" and c != "%")


def upload_tag(context: Context, data: bytes, part: str | None = None) -> dict[str, str]:
    """The idempotency tag of an upload of ``data`` by the task instance of ``context`` (as
    ``part`` of a composite document, see partial_part): Gini metadata names to ASCII values.
    Values Airflow does not give (no task instance: the operator executed by hand) are left out,
    and such a tag never adopts a document."""
    return _tag(context, hashlib.sha256(data).hexdigest(), part)


def partial_part(index: int) -> str:
    """The ``Airflow-Part`` of the ``index``-th partial (from 1) of a composite document."""
    return f"partial-{index}"


def composite_tag(context: Context, pages: Sequence[bytes], rotations: Sequence[int]) -> dict[str, str]:
    """The tag of a composite document of ``pages`` turned by ``rotations``: its Content-Sha256
    is the sha256 of one line ``<page sha256> <rotation>`` per page, in order, the rotation
    normalised to 0-359 as Gini gets it (-90 and 270 are one turn), so the same pages in the
    same order and turns make the same composite, whichever partials hold them."""
    lines = "".join(
        f"{hashlib.sha256(page).hexdigest()} {rotation % 360}\n"
        for page, rotation in zip(pages, rotations, strict=True)
    )
    return _tag(context, hashlib.sha256(lines.encode("ascii")).hexdigest(), COMPOSITE_PART)


def _tag(context: Context, sha256: str, part: str | None) -> dict[str, str]:
    ti = context.get("ti")
    dag_run = context.get("dag_run")
    map_index = getattr(ti, "map_index", None)
    values = {
        TAG_DAG_ID: getattr(ti, "dag_id", None) or getattr(dag_run, "dag_id", None),
        TAG_RUN_ID: getattr(ti, "run_id", None) or context.get("run_id"),
        TAG_TASK_ID: getattr(ti, "task_id", None),
        TAG_MAP_INDEX: None if ti is None else str(-1 if map_index is None else map_index),
        TAG_CONTENT_SHA256: sha256,
        TAG_PART: part,
    }
    return {key: tag_value(str(value)) for key, value in values.items() if value is not None}


def run_began(dag_run: Any) -> datetime | None:
    """A moment no try of this DAG run can precede, to look for what earlier tries made: its
    ``run_after``, which no clear moves (clearing a finished run resets its ``start_date`` to
    when it runs again, which would hide the earlier tries' work), else the earliest of
    ``logical_date`` and ``start_date``; None when none is known."""
    run_after = getattr(dag_run, "run_after", None)
    if isinstance(run_after, datetime):
        return run_after
    moments = [getattr(dag_run, name, None) for name in ("logical_date", "start_date")]
    return min((m for m in moments if isinstance(m, datetime)), default=None)


def is_reserved(name: str) -> bool:
    """Whether a metadata name belongs to the tag, ignoring case and taking ``_`` for ``-``
    (servers and proxies that map headers to variables read them alike)."""
    folded = name.lower().replace("_", "-")
    return folded.startswith(RESERVED_PREFIX) or folded in RESERVED_NAMES


def user_metadata(metadata: Mapping[str, Any] | None) -> dict[str, str]:
    """The operator's ``metadata`` checked for Gini (client.api.check_metadata: HTTP-token names,
    printable ASCII values sent unchanged) and for the tag: a reserved name is refused, naming
    it and the reserved names, so metadata cannot break or forge the upload's proof."""
    checked = check_metadata(metadata)
    taken = sorted(name for name in checked if is_reserved(name))
    if taken:
        raise GiniConfigError(
            f"Document metadata may not use the name(s) {', '.join(map(repr, taken))}: names starting "
            f"with 'Airflow-' and {TAG_CONTENT_SHA256!r} are reserved, ignoring case and '_' for '-', "
            f"for the upload's idempotency tag ({', '.join((*UPLOAD_TAG, TAG_PART))}). Rename them."
        )
    return checked


def record_key(tag: Mapping[str, str]) -> str:
    """The task state store's key for the upload that carries ``tag``: one per part."""
    return f"{RECORD_KEY}.{tag[TAG_PART]}" if TAG_PART in tag else RECORD_KEY


def tag_of(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The tag in a document's echoed metadata: its reserved names, lower-case."""
    return {str(key).lower(): value for key, value in metadata.items() if is_reserved(str(key))}


def tag_value(value: str) -> str:
    """``value`` as a header value Gini takes (ASCII only): printable ASCII but ``%`` as it is,
    anything else percent-encoded as UTF-8 (so distinct values stay distinct); longer than
    TAG_VALUE_LIMIT, cut between characters and ended with ``~`` and 16 hex digits of the whole
    value's sha256."""
    # surrogatepass: a path or id decoded with surrogateescape still gets a value, not an error.
    pieces = [quote(c, safe=_SAFE, errors="surrogatepass") for c in value]
    encoded = "".join(pieces)
    if len(encoded) <= TAG_VALUE_LIMIT:
        return encoded
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    budget, kept = TAG_VALUE_LIMIT - len(digest) - 1, 0
    cut = []
    for piece in pieces:  # whole characters only: never half an escape or half a UTF-8 sequence
        if kept + len(piece) > budget:
            break
        cut.append(piece)
        kept += len(piece)
    return f"{''.join(cut)}~{digest}"


def record(context: Context, document_id: str, tag: Mapping[str, str]) -> None:
    """Keep what this try uploaded in Airflow's task state store (Airflow 3.3+), for later tries."""
    store = context.get("task_state_store")
    if store is not None and TAG_CONTENT_SHA256 in tag:
        store.set(record_key(tag), {"document_id": document_id, "sha256": tag[TAG_CONTENT_SHA256]})


def adopt(hook: Any, context: Context, name: str, tag: Mapping[str, str], log: Any) -> str | None:
    """On a later try (a retry, or the task cleared): the document an earlier try of this task
    instance uploaded with the same content, if that can be proven (module docstring); else None."""
    ti = context.get("ti")
    try_number = getattr(ti, "try_number", 1)
    store = context.get("task_state_store")
    kept = store.get(record_key(tag)) if store is not None else None
    if isinstance(kept, dict) and isinstance(kept.get("document_id"), str):
        # This task instance's own record of its last upload decides: no search by name.
        return _recorded(hook, kept, tag, try_number, log)
    if ti is None or try_number <= 1 or not set(UPLOAD_TAG) <= set(tag):
        return None
    since = run_began(context.get("dag_run"))
    if since is None:
        return None
    wanted = {key.lower(): value for key, value in tag.items()}
    sha = TAG_CONTENT_SHA256.lower()
    unproven: list[str] = []
    for doc in hook.iter_documents(created_after=since):
        if doc.get("name") != name:
            continue
        doc_id = str(doc.get("id"))
        echoed = doc.get(ECHOED_METADATA)
        if not isinstance(echoed, dict):
            unproven.append(doc_id)
            continue
        # Only the tag's names, all of them: a plain upload's tag never matches a partial's (which
        # has one name more), and user metadata (never a reserved name) plays no part.
        seen = tag_of(echoed)
        if seen == wanted:
            log.info(
                "Try %d: adopting document %s, uploaded by an earlier try of this task with the "
                "same content (sha256 %s)",
                try_number,
                shown(doc_id, 80),
                tag[TAG_CONTENT_SHA256],
            )
            return doc_id
        # Its tag differs: another task instance's upload (say, a sibling mapped task's file of
        # the same name), or this task's upload of other content (the file changed).
        if seen.keys() == wanted.keys() and all(seen[key] == wanted[key] for key in wanted if key != sha):
            log.info(
                "Not adopting document %s: an earlier try of this task uploaded other content "
                "(sha256 %s, now %s)",
                shown(doc_id, 80),
                shown(str(seen.get(sha)), 80),
                tag[TAG_CONTENT_SHA256],
            )
    if unproven:
        listed = ", ".join(shown(i, 80) for i in unproven[:NAMED_CANDIDATES])
        more = len(unproven) - NAMED_CANDIDATES
        log.warning(
            "Try %d: Gini did not return the upload tag of the %d document(s) named %s created "
            "since this DAG run started, so none can be proven to be this task's earlier upload; "
            "uploading again. If an earlier try's upload reached Gini, one of these is a "
            "duplicate: %s%s",
            try_number,
            len(unproven),
            shown(name, 200),
            listed,
            f" and {more} more" if more > 0 else "",
        )
    return None


def _recorded(
    hook: Any, kept: dict[str, Any], tag: Mapping[str, str], try_number: int, log: Any
) -> str | None:
    """The document an earlier try recorded in the task state store, if it holds the same
    content and still exists."""
    document_id = str(kept["document_id"])
    if kept.get("sha256") != tag.get(TAG_CONTENT_SHA256):
        log.info(
            "Try %d: the file changed since this task uploaded document %s (sha256 %s, now %s): uploading it",
            try_number,
            shown(document_id, 80),
            shown(str(kept.get("sha256")), 80),
            tag.get(TAG_CONTENT_SHA256),
        )
        return None
    try:
        hook.get_document(document_id)
    except GiniNotFound:
        log.info(
            "Try %d: document %s, uploaded by an earlier try, is gone: uploading again",
            try_number,
            document_id,
        )
        return None
    log.info(
        "Try %d: adopting document %s, which an earlier try of this task uploaded with the same "
        "content (Airflow's task state store)",
        try_number,
        shown(document_id, 80),
    )
    return document_id
