"""Composite uploads for GiniUploadDocumentOperator: several files (pages) made one document.

Gini's way, as its SDKs do it (gini-mobile-android ``DocumentRepository.createCompositeJson``,
gini-mobile-ios ``PartialDocumentInfo``): each file is uploaded as a partial document
(``application/vnd.gini.v<N>.partial+<subtype>``), then one composite document is created from
their URIs, in order, each with its ``rotationDelta``.

Nothing is uploaded before every file has been read and checked (it exists, is not empty, is
under Gini's 10 MiB, and is a PDF or an image a partial can be): bad input never leaves a
half-made composite behind. Retries never duplicate what they can prove they made
(operators/idempotency.py): a later try first looks for the composite itself, then for each
partial, and uploads only what it cannot prove. The composite POST is marked in the task state
store (Airflow 3.3+) before it is sent, with its partials: if its answer is lost, the next try
finds the composite among the first partial's ``compositeDocuments`` (gini-api.md 2.2) by its
``partialDocuments``, or learns that Gini made none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow.sdk import Context, ObjectStoragePath

from airflow_provider_gini._compat import AirflowFailException
from airflow_provider_gini.client.api import (
    MAX_UPLOAD_BYTES,
    PARTIAL_SUBTYPES,
    GiniAPI,
    last_segment,
    partial_subtype,
)
from airflow_provider_gini.client.errors import GiniConfigError, GiniNotFound, shown
from airflow_provider_gini.operators.idempotency import (
    TAG_CONTENT_SHA256,
    adopt,
    composite_tag,
    partial_part,
    record,
    record_key,
    upload_tag,
)
from airflow_provider_gini.pull.storage import destination_path

# How many problems with the files one error names.
NAMED_PROBLEMS = 10
# Gini processes only the first 10 pages of a document (gini-api.md 2.1, Limits).
GINI_PAGE_LIMIT = 10


@dataclass(frozen=True)
class Page:
    """One file of a composite document, read and checked."""

    name: str
    data: bytes


def source_path(file: str | ObjectStoragePath, conn_id: str | None) -> ObjectStoragePath:
    """A file to upload as an ObjectStoragePath: a local path or a URL (``s3://...``)."""
    return file if isinstance(file, ObjectStoragePath) else destination_path(file, conn_id)


def read_pages(files: Any, conn_id: str | None) -> list[Page]:
    """Every file of ``files`` (a list of paths or ObjectStoragePaths), read and checked; one
    GiniConfigError naming every file that cannot be a partial document, before any upload."""
    if isinstance(files, (str, bytes, ObjectStoragePath)) or not isinstance(files, Sequence):
        raise GiniConfigError(
            f"files must be a list of paths or ObjectStoragePaths, got a {type(files).__name__} "
            f"({shown(str(files), 120)!r}). A template renders to a string: template each item "
            "instead, or render the DAG's templates as native objects (render_template_as_native_obj)."
        )
    if not files:
        raise GiniConfigError("files is empty: a composite document needs at least one file")
    pages, problems = [], []
    for file in files:
        try:
            source = source_path(file, conn_id)
            if not source.is_file():
                problems.append(f"{source}: no such file")
                continue
            data = source.read_bytes()
        except GiniConfigError as exc:
            problems.append(str(exc))
            continue
        except OSError as exc:  # unreadable: permissions, a folder, a store that refuses
            problems.append(f"{shown(str(file), 200)}: cannot be read ({type(exc).__name__}: {exc})")
            continue
        if not data:
            problems.append(f"{source}: the file is empty")
        elif len(data) >= MAX_UPLOAD_BYTES:
            problems.append(f"{source}: {len(data)} bytes; Gini accepts documents under 10 MiB")
        elif partial_subtype(data) is None:
            kinds = ", ".join(sorted(set(PARTIAL_SUBTYPES.values())))
            problems.append(f"{source}: not a file a partial document can be ({kinds}, by its content)")
        else:
            pages.append(Page(source.name, data))
    if problems:
        more = len(problems) - NAMED_PROBLEMS
        raise GiniConfigError(
            f"Nothing uploaded: {len(problems)} of {len(files)} file(s) cannot be part of a composite "
            f"document: {'; '.join(problems[:NAMED_PROBLEMS])}{f' and {more} more' if more > 0 else ''}"
        )
    return pages


def upload_composite(
    hook: GiniAPI,
    context: Context,
    pages: Sequence[Page],
    rotations: Sequence[int],
    *,
    name: str,
    doctype: str | None,
    metadata: Mapping[str, str],
    log: Any,
) -> str:
    """The id of the composite document of ``pages``: adopted when a later try can prove an
    earlier one made it, else created from partials that are each adopted or uploaded."""
    if len(pages) > GINI_PAGE_LIMIT:
        log.warning(
            "Composite document %s has %d files, so at least %d pages: Gini processes only the first %d",
            shown(name, 200),
            len(pages),
            len(pages),
            GINI_PAGE_LIMIT,
        )
    tag = composite_tag(context, [p.data for p in pages], rotations)
    composite = _sent_before(hook, context, tag, log) or adopt(hook, context, name, tag, log)
    if composite is not None:
        return composite
    partials = []
    for index, page in enumerate(pages, start=1):
        page_tag = upload_tag(context, page.data, part=partial_part(index))
        partial = adopt(hook, context, page.name, page_tag, log)
        if partial is None:
            partial = hook.upload_partial_document(
                page.data, filename=page.name, doctype=doctype, metadata={**metadata, **page_tag}
            )
            log.info(
                "Uploaded %s (page %d of %d) to Gini as partial document %s",
                page.name,
                index,
                len(pages),
                partial,
            )
            record(context, partial, page_tag)
        partials.append(partial)
    store = context.get("task_state_store")
    if store is not None:
        # Before the POST: if its answer is lost, the next try knows which partials it named.
        mark: dict[str, Any] = {"document_id": None, "sha256": tag[TAG_CONTENT_SHA256], "partials": partials}
        store.set(record_key(tag), mark)
    composite = hook.create_composite_document(
        partials, rotations, filename=name, doctype=doctype, metadata={**metadata, **tag}
    )
    log.info(
        "Created composite document %s (%s) from %d partial document(s): %s",
        composite,
        name,
        len(partials),
        ", ".join(partials),
    )
    record(context, composite, tag)
    return composite


def _sent_before(hook: GiniAPI, context: Context, tag: Mapping[str, str], log: Any) -> str | None:
    """The composite an earlier try sent the POST for but got no answer to (its mark in the task
    state store, Airflow 3.3+, for the same pages and turns), found among its first partial's
    ``compositeDocuments`` (Gini lists the composites a partial is part of): the one whose
    ``partialDocuments`` are exactly those partials, in order. None when Gini lists none (the
    POST created nothing); fails when the partial is gone and nothing can be proven."""
    store = context.get("task_state_store")
    kept: Any = store.get(record_key(tag)) if store is not None else None
    if not isinstance(kept, dict) or kept.get("document_id") is not None:
        return None
    partials = kept.get("partials")
    if kept.get("sha256") != tag[TAG_CONTENT_SHA256] or not isinstance(partials, list) or not partials:
        return None  # other pages or turns: that composite, if any, is not this one
    try:
        first = hook.get_document(str(partials[0]))
    except GiniNotFound:
        raise AirflowFailException(
            f"An earlier try of this task sent the request to make the composite document of partial "
            f"documents {', '.join(map(str, partials))}, but its answer was lost, and partial document "
            f"{partials[0]} is gone, so whether Gini made the composite cannot be proven. Not making "
            "another one: delete the composite if there is one, and clear this task"
        ) from None
    for listed in first.get("compositeDocuments") or []:
        candidate = last_segment(listed.get("document") if isinstance(listed, dict) else None)
        if candidate is None:
            continue
        try:
            made = hook.get_document(candidate)
        except GiniNotFound:
            continue
        parts = [
            last_segment(p.get("document")) for p in made.get("partialDocuments") or [] if isinstance(p, dict)
        ]
        if parts == partials:
            log.info(
                "Adopting composite document %s: an earlier try of this task asked for it (its "
                "answer was lost), and Gini lists it as made of the same partial documents %s",
                shown(candidate, 80),
                ", ".join(partials),
            )
            record(context, candidate, tag)
            return candidate
    return None


def composite_name(filename: str | None, pages: Sequence[Page]) -> str:
    """The composite's name: ``filename``, else the first file's name with ``-composite`` before
    its suffix, so that it is not mistaken for its first partial."""
    if filename:
        return filename
    stem, dot, suffix = pages[0].name.rpartition(".")
    return f"{stem}-composite.{suffix}" if dot and stem else f"{pages[0].name}-composite"
