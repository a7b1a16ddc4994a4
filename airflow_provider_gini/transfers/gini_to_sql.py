"""GiniManifestToSqlOperator: a pull's key extractions into any SQL database, one row per document."""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, Context

from airflow_provider_gini._compat import AirflowException, BaseHook
from airflow_provider_gini.client.errors import GiniConfigError
from airflow_provider_gini.operators.base import terminal_errors
from airflow_provider_gini.pull.manifest import OUTCOMES
from airflow_provider_gini.transfers.rows import COLUMNS, Loaded, manifest_locations, read_manifests

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook

# Table and schema names go into the SQL text (no driver binds identifiers): plain ones only.
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
SQL_EXTRA = "pip install 'airflow-provider-gini[sql]' (or apache-airflow-providers-common-sql)"


class GiniManifestToSqlOperator(BaseOperator):
    """Load the key extractions of pull manifests into a SQL table, one row per document.

    ``manifest`` is a pull's result (``manifest=pull.output``; a mapped pull's results, one manifest
    per shard or account), a manifest's path or URL, or a list of these; ``manifest_conn_id`` is
    the connection of a remote destination (the pull's ``destination_conn_id``). ``conn_id`` is any
    connection whose hook is a common-sql ``DbApiHook`` (postgres, sqlite, mysql, ...);
    ``hook_params`` go to that hook.

    **One row per document, however often it is loaded.** Rows are upserted on ``document_id``
    (``insert_rows(replace=True)``: ``INSERT ... ON CONFLICT DO UPDATE`` on PostgreSQL, ``REPLACE
    INTO`` on SQLite and MySQL), so a rerun of the load or of the whole DAG leaves one row per
    document, with the values of the newest load. A document in several manifests gets the line of
    the last manifest in the order given (within a manifest, its last line); ``outcomes`` (default:
    all) keeps only lines of those outcomes, e.g. ``("pulled", "skipped")``.

    **Nothing half-loaded.** Every manifest is read and every line checked before anything is
    written: a malformed line fails the task (without retries), naming the manifest and the line,
    and the table stays as it was. The rows are then written in one transaction (``commit_every=0``,
    the default; a positive number commits every so many rows). An amount or creation date that
    does not parse is NULL, with a warning.

    **The table.** With ``create_table`` (default) it is created when missing, with SQLAlchemy on
    the hook's engine, so the types suit the database: ``document_id`` (primary key),
    ``creation_date`` (timestamp with time zone, UTC), ``amount`` (NUMERIC(19, 4), from
    ``"12.50:EUR"``; SQLite keeps it as a REAL), ``currency`` (``EUR``), ``iban``, ``bic``,
    ``recipient``, ``reference``, ``outcome``, ``purpose``, ``due_date`` (as extracted), ``doc_type``,
    ``name``, ``manifest`` (the manifest the row came from) and ``loaded_at``. A table of your own
    needs these columns and a primary key or unique index on ``document_id``.

    Returns (XCom) the number of rows written.
    """

    template_fields: Sequence[str] = ("manifest", "conn_id", "table", "schema", "manifest_conn_id")

    def __init__(
        self,
        *,
        manifest: Any,
        conn_id: str,
        table: str = "gini_extractions",
        schema: str | None = None,
        create_table: bool = True,
        commit_every: int = 0,
        outcomes: Collection[str] | None = None,
        manifest_conn_id: str | None = None,
        hook_params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(commit_every, bool) or not isinstance(commit_every, int) or commit_every < 0:
            raise ValueError("commit_every must be 0 (one transaction) or a positive number of rows")
        if outcomes is not None:
            if isinstance(outcomes, str):
                outcomes = (outcomes,)
            unknown = sorted(set(outcomes) - set(OUTCOMES))
            if unknown:
                raise ValueError(f"outcomes: {unknown} are not outcomes; choose from {', '.join(OUTCOMES)}")
        super().__init__(**kwargs)
        self.manifest = manifest
        self.conn_id = conn_id
        self.table = table
        self.schema = schema
        self.create_table = create_table
        self.commit_every = commit_every
        self.outcomes = None if outcomes is None else frozenset(outcomes)
        self.manifest_conn_id = manifest_conn_id
        self.hook_params = dict(hook_params or {})

    def execute(self, context: Context) -> int:
        with terminal_errors():
            table = qualified_table(self.table, self.schema)
            locations = manifest_locations(self.manifest)
            hook = sql_hook(self.conn_id, self.hook_params)
            loaded = read_manifests(
                locations, self.manifest_conn_id, self.outcomes, datetime.now(timezone.utc)
            )
        self._report(loaded, table)
        if self.create_table:
            ensure_table(hook, self.table, self.schema)
        rows = list(loaded.rows.values())
        if rows:
            hook.insert_rows(
                table,
                rows,
                target_fields=list(COLUMNS),
                # 0 is one transaction. Not passed on as 0: DbApiHook's chunked executemany path
                # (PostgreSQL's) would then insert nothing at all.
                commit_every=self.commit_every or len(rows),
                replace=True,
                replace_index="document_id",
            )
        self.log.info("Loaded %d document row(s) into %s (%s)", len(rows), table, self.conn_id)
        return len(rows)

    def _report(self, loaded: Loaded, table: str) -> None:
        self.log.info(
            "%d manifest(s), %d line(s): %d document(s) to upsert into %s; %d line(s) of a document "
            "a later line replaced, %d of outcomes not asked for",
            loaded.manifests,
            loaded.lines,
            len(loaded.rows),
            table,
            loaded.replaced,
            loaded.filtered,
        )
        if loaded.warnings:
            self.log.warning(
                "%d value(s) did not parse and are NULL (the first ones are logged above)", loaded.warnings
            )


def qualified_table(table: str, schema: str | None) -> str:
    for what, name in (("table", table), ("schema", schema)):
        if name is not None and (not isinstance(name, str) or not IDENTIFIER.fullmatch(name)):
            raise GiniConfigError(
                f"{what} must be a plain SQL name (letters, digits, _; at most 63), got {name!r}"
            )
    return f"{schema}.{table}" if schema else table


def sql_hook(conn_id: str, hook_params: dict[str, Any]) -> DbApiHook:
    """The hook of ``conn_id`` by Airflow's standard way, which must be a common-sql DbApiHook."""
    try:
        from airflow.providers.common.sql.hooks.sql import DbApiHook
    except ImportError as exc:
        raise GiniConfigError(f"GiniManifestToSqlOperator needs common-sql: {SQL_EXTRA}") from exc
    connection = BaseHook.get_connection(conn_id)
    try:
        hook = connection.get_hook(hook_params=hook_params)  # type: ignore[no-untyped-call,unused-ignore]
    except (AirflowException, ImportError) as exc:
        raise GiniConfigError(
            f"Connection {conn_id!r} is of type {connection.conn_type!r}, which has no hook here "
            f"({exc}): use a SQL database's connection (postgres, sqlite, mysql, ...) with its "
            "provider installed"
        ) from exc
    if not isinstance(hook, DbApiHook):
        raise GiniConfigError(
            f"Connection {conn_id!r} is of type {connection.conn_type!r}, whose hook "
            f"{type(hook).__name__} is not a SQL hook (common-sql's DbApiHook): use a SQL "
            "database's connection (postgres, sqlite, mysql, ...)"
        )
    return hook


def ensure_table(hook: DbApiHook, table: str, schema: str | None) -> None:
    """Create the table when it is missing, in the database's own types (SQLAlchemy's DDL for the
    hook's dialect). Idempotent, also when two loads create it at once."""
    import sqlalchemy as sa

    metadata = sa.MetaData()
    sa.Table(
        table,
        metadata,
        sa.Column("document_id", sa.String(128), primary_key=True),  # Gini ids are at most 128 chars
        sa.Column("creation_date", sa.DateTime(timezone=True)),
        sa.Column("amount", sa.Numeric(19, 4)),
        sa.Column("currency", sa.String(3)),
        *(sa.Column(name, sa.Text) for name in ("iban", "bic", "recipient", "reference")),
        sa.Column("outcome", sa.String(16), nullable=False),
        *(sa.Column(name, sa.Text) for name in ("purpose", "due_date", "doc_type", "name", "manifest")),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False),
        schema=schema,
    )
    engine = hook.get_sqlalchemy_engine()
    try:
        metadata.create_all(engine, checkfirst=True)
    except sa.exc.DBAPIError:
        # Another load created it between the check and the CREATE: then it is there.
        if not sa.inspect(engine).has_table(table, schema=schema):
            raise
    finally:
        engine.dispose()
