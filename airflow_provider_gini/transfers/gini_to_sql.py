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
    import sqlalchemy as sa
    from airflow.providers.common.sql.hooks.sql import DbApiHook

# Table and schema names go into the SQL text (no driver binds identifiers). SQLAlchemy quotes a
# name that needs it when it creates the table (CREATE TABLE "GiniDocs"), DbApiHook's insert does
# not (INSERT INTO GiniDocs, i.e. ginidocs on PostgreSQL): only names that need no quoting, so
# both mean the same table.
IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")
NAME_RULE = (
    "lower-case letters, digits and _, starting with a letter or _, at most 63 characters, and "
    "no reserved word of the database"
)
# Lines of these outcomes carry no extractions (all null): loaded, they would null the row a
# good pull of the same document wrote.
WITH_EXTRACTIONS = ("pulled", "skipped", "errored")
KEY = ["document_id"]
SQL_EXTRA = "pip install 'airflow-provider-gini[sql]' (or apache-airflow-providers-common-sql)"


class GiniManifestToSqlOperator(BaseOperator):
    """Load the key extractions of pull manifests into a SQL table, one row per document.

    ``manifest`` is a pull's result (``manifest=pull.output``; a mapped pull's results, one manifest
    per shard or account), a manifest's path or URL, or a list of these; ``manifest_conn_id`` is
    the connection of a remote destination (the pull's ``destination_conn_id``). ``conn_id`` is any
    connection whose hook is a common-sql ``DbApiHook``; ``hook_params`` go to that hook.

    **One row per document, however often it is loaded.** Rows are upserted on ``document_id``
    with ``insert_rows(replace=True)``, which common-sql turns into ``INSERT ... ON CONFLICT
    (document_id) DO UPDATE`` on PostgreSQL and into ``REPLACE INTO`` everywhere else: that works
    on SQLite and MySQL/MariaDB; SQL Server's provider brings its own ``MERGE`` dialect (not tested
    here); other databases fail at the insert. Before writing, the table is inspected: without a
    primary key, unique constraint or unique index on ``document_id`` alone (``REPLACE INTO``
    would append duplicates, ``ON CONFLICT`` fails), or without one of the columns, the task fails
    naming the fix and nothing is written. A rerun of the load or of the whole DAG thus leaves one
    row per document, with the values of the newest load. A document in several manifests gets
    the line of the last manifest in the order given (within a manifest, its last line).

    ``outcomes`` keeps only lines of those outcomes; the default, ``("pulled", "skipped",
    "errored")``, leaves out ``failed``, ``pending`` and ``gone`` lines: they carry no extractions,
    and would null the values a good pull of the same document wrote. ``outcomes=None`` loads every
    line.

    **Nothing half-loaded.** Every manifest is read and every line checked before anything is
    written: a malformed line fails the task (without retries), naming the manifest and the line,
    and the table stays as it was. The rows are then written in one transaction (``commit_every=0``,
    the default; a positive number commits every so many rows). An amount or creation date that
    does not parse is NULL, with a warning.

    **The table.** ``table`` and ``schema`` must be names the database uses as written
    (lower-case, not reserved; checked before anything is read or created). With
    ``create_table`` (default) the table is created when missing, with SQLAlchemy on the hook's
    engine, so the types suit the database: ``document_id`` (primary key), ``creation_date``
    (timestamp with time zone, UTC; on SQLite the text ``YYYY-MM-DD HH:MM:SS[.ffffff]`` in UTC,
    which sorts and compares with SQLite's ``datetime()``), ``amount`` (NUMERIC(19, 4), from
    ``"12.50:EUR"``; SQLite keeps it as a REAL), ``currency`` (``EUR``), ``iban``, ``bic``,
    ``recipient``, ``reference``, ``outcome``, ``purpose``, ``due_date`` (as extracted),
    ``doc_type``, ``name``, ``manifest`` (the manifest the row came from) and ``loaded_at``. A
    table of your own needs these columns and a primary key or unique index on ``document_id``.

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
        outcomes: Collection[str] | None = WITH_EXTRACTIONS,
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
            engine = hook.get_sqlalchemy_engine()
        try:
            with terminal_errors():
                check_names(engine, self.table, self.schema)
                loaded = read_manifests(
                    locations, self.manifest_conn_id, self.outcomes, datetime.now(timezone.utc)
                )
            self._report(loaded, table)
            if self.create_table:
                ensure_table(engine, self.table, self.schema)
            with terminal_errors():
                check_table(engine, self.table, self.schema)
            rows = list(loaded.rows.values())
            if engine.dialect.name == "sqlite":
                rows = [tuple(map(sqlite_cell, row)) for row in rows]
        finally:
            engine.dispose()
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
    """``schema.table``, once both are names of the rule (the database's reserved words are
    checked by check_names, once there is an engine)."""
    for what, name in (("table", table), ("schema", schema)):
        if name is not None and (not isinstance(name, str) or not IDENTIFIER.fullmatch(name)):
            raise GiniConfigError(
                f"{what} must be a plain SQL name ({NAME_RULE}), got {name!r}: common-sql's insert "
                "does not quote it, so any other name would not be the table that was created"
            )
    return f"{schema}.{table}" if schema else table


def check_names(engine: sa.engine.Engine, table: str, schema: str | None) -> None:
    """Refuse a name the database's dialect would quote: a reserved word, like ``order``."""
    preparer = engine.dialect.identifier_preparer
    for what, name in (("table", table), ("schema", schema)):
        if name is not None and preparer.quote(name) != name:
            raise GiniConfigError(
                f"{what} {name!r} is reserved in {engine.dialect.name} (it would need quoting, which "
                f"common-sql's insert does not do): use a plain SQL name ({NAME_RULE}), e.g. "
                f"'gini_{name.lower()}'"
            )


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


def ensure_table(engine: sa.engine.Engine, table: str, schema: str | None) -> None:
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
    try:
        metadata.create_all(engine, checkfirst=True)
    except sa.exc.DBAPIError:
        # Another load created it between the check and the CREATE: then it is there.
        if not sa.inspect(engine).has_table(table, schema=schema):
            raise


def check_table(engine: sa.engine.Engine, table: str, schema: str | None) -> None:
    """The table exists, has every column, and something makes ``document_id`` unique: without
    that, create_all(checkfirst=True) having left a table of the user's alone, REPLACE INTO would
    append duplicates (SQLite, MySQL) and ON CONFLICT fail (PostgreSQL)."""
    import sqlalchemy as sa

    inspector = sa.inspect(engine)
    where = f"{schema}.{table}" if schema else table
    if not inspector.has_table(table, schema=schema):
        raise GiniConfigError(
            f"Table {where} does not exist: create it, or let the load do so (create_table=True)"
        )
    found = {column["name"] for column in inspector.get_columns(table, schema=schema)}
    missing = [column for column in COLUMNS if column not in found]
    if missing:
        raise GiniConfigError(
            f"Table {where} has no column(s) {', '.join(missing)}: the load writes "
            f"{', '.join(COLUMNS)}. Add them, or load into a new table (create_table=True makes it)"
        )
    if not unique_document_id(inspector, table, schema):
        raise GiniConfigError(
            f"Table {where} has no primary key, unique constraint or unique index on document_id "
            "alone, so the upsert cannot keep one row per document (REPLACE INTO would add "
            "duplicates, ON CONFLICT fails). Add one, e.g. CREATE UNIQUE INDEX "
            f"{table}_document_id ON {where} (document_id), after removing duplicate rows; or load "
            "into a new table (create_table=True makes it). Nothing was written"
        )


def unique_document_id(inspector: sa.engine.Inspector, table: str, schema: str | None) -> bool:
    if inspector.get_pk_constraint(table, schema=schema).get("constrained_columns") == KEY:
        return True
    try:
        constraints = inspector.get_unique_constraints(table, schema=schema)
    except NotImplementedError:  # a dialect that reflects them as unique indexes only
        constraints = []
    if any(constraint.get("column_names") == KEY for constraint in constraints):
        return True
    return any(
        index.get("unique")
        and index.get("column_names") == KEY
        # A partial index (postgresql_where, sqlite_where) is no conflict target for every row.
        and not any(option.endswith("_where") for option in index.get("dialect_options", {}))
        for index in inspector.get_indexes(table, schema=schema)
    )


def sqlite_cell(value: Any) -> Any:
    """A datetime as SQLite's own form, in UTC: ``YYYY-MM-DD HH:MM:SS`` (``.ffffff`` when there
    are microseconds). common-sql would send ``isoformat()`` ("...T...+00:00"), which neither
    compares with ``datetime()`` (its "T" sorts after the space) nor parses as SQLAlchemy's
    SQLite DATETIME (space-separated, no offset)."""
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).replace(tzinfo=None).isoformat(sep=" ")
    return value
