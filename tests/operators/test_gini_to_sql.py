"""GiniManifestToSqlOperator: real pulls against the sandbox, loaded into a real SQLite file and a
real PostgreSQL (tests/servers.py), through dag.test(). Asserted with SQL on the database itself:
the rows are the manifest's values, and reruns leave exactly one row per document."""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_gini.sandbox import RunningSandbox
from tests.compat import sdk_exception
from tests.operators.conftest import task_states, xcom
from tests.servers import PostgresCluster, postgres_cluster

UTC = timezone.utc
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TABLE = "gini_extractions"
CONN = "gini_sql"
# The seeded days 2026-01-05 to 2026-01-08: 4 to 7 documents a day, one of them ending in ERROR.
WINDOW = ("2026-01-05T00:00:00+00:00", "2026-01-09T00:00:00+00:00")

PULL_AND_LOAD = """
from datetime import datetime, timezone
from airflow.sdk import DAG
from airflow_provider_gini.operators.documents import GiniPullDocumentsOperator
from airflow_provider_gini.transfers.gini_to_sql import GiniManifestToSqlOperator

with DAG("{dag_id}", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)) as dag:
    pull = GiniPullDocumentsOperator(
        task_id="pull", destination="{{ dag_run.conf['destination'] }}", created_after=AFTER,
        created_before=BEFORE, max_workers=4, poll_interval=0.2, pending_timeout=10,
        hook_params={"backoff_initial": 0.01, "backoff_max": 0.05},
    )
    GiniManifestToSqlOperator(task_id="load", manifest=pull.output, conn_id=CONN, table=TABLE, retries=2)
"""

LOAD_ONLY = """
from datetime import datetime, timezone
from airflow.sdk import DAG
from airflow_provider_gini.transfers.gini_to_sql import GiniManifestToSqlOperator

with DAG("{dag_id}", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)) as dag:
    GiniManifestToSqlOperator(task_id="load", manifest=MANIFEST, conn_id=CONN, table=TABLE, retries=2)
"""

MAPPED = """
from datetime import datetime, timezone
from airflow.sdk import DAG
from airflow_provider_gini.operators.documents import GiniPullDocumentsOperator
from airflow_provider_gini.pull.fanout import shard_window
from airflow_provider_gini.transfers.gini_to_sql import GiniManifestToSqlOperator

with DAG("{dag_id}", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)) as dag:
    shards = GiniPullDocumentsOperator.partial(
        task_id="shard", destination="{{ dag_run.conf['destination'] }}", max_workers=2,
    ).expand_kwargs(shard_window(AFTER, BEFORE, by="day"))
    GiniManifestToSqlOperator(task_id="load", manifest=shards.output, conn_id=CONN, table=TABLE)
"""


def dag_source(template: str, **values: Any) -> str:
    source = template
    for name, value in {
        "AFTER": WINDOW[0],
        "BEFORE": WINDOW[1],
        "CONN": CONN,
        "TABLE": TABLE,
        **values,
    }.items():
        source = source.replace(name, repr(value))
    return source


# --- the databases -------------------------------------------------------------------------------


@dataclass
class Database:
    """A database the operator loads into (through the Airflow connection ``gini_sql``) and the
    tests read with its own driver."""

    kind: str
    connection: dict[str, Any]
    connect: Callable[[], Any]

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with closing(self.connect()) as connection:
            cursor = connection.cursor()
            cursor.execute(sql)
            rows = cursor.fetchall()
            connection.rollback()
            return list(rows)

    def execute(self, sql: str) -> None:
        with closing(self.connect()) as connection:
            connection.cursor().execute(sql)
            connection.commit()

    def counts(self, table: str = TABLE) -> tuple[int, int]:
        [(rows, documents)] = self.query(f"SELECT count(*), count(DISTINCT document_id) FROM {table}")  # noqa: S608 (our table)
        return rows, documents

    def rows(self, table: str = TABLE) -> dict[str, dict[str, Any]]:
        columns = ("document_id", "creation_date", "amount", "currency", "iban", "bic", "recipient")
        columns += ("reference", "outcome", "purpose", "due_date", "doc_type", "name", "manifest")
        found = {}
        for row in self.query(f"SELECT {', '.join(columns)} FROM {table}"):  # noqa: S608
            values = dict(zip(columns, row, strict=True))
            # SQLite hands back the UTC text and a REAL; PostgreSQL a datetime and a Decimal.
            if isinstance(values["creation_date"], str):
                values["creation_date"] = datetime.fromisoformat(values["creation_date"]).replace(tzinfo=UTC)
            if values["amount"] is not None:
                values["amount"] = Decimal(str(values["amount"]))
            found[values["document_id"]] = values
        return found


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresCluster]:
    """One PostgreSQL cluster for the module (it takes seconds to start); a database per test."""
    with postgres_cluster() as cluster:
        yield cluster


def sqlite_database(path: Path) -> Database:
    return Database("sqlite", {"conn_type": "sqlite", "host": str(path)}, lambda: sqlite3.connect(path))


def postgres_database(cluster: PostgresCluster) -> Database:
    import psycopg2

    name = f"gini_{uuid.uuid4().hex[:10]}"
    cluster.create_database(name)
    connection = {
        "conn_type": "postgres",
        "host": "127.0.0.1",
        "port": cluster.port,
        "login": "airflow",
        "schema": name,
    }
    return Database("postgres", connection, lambda: psycopg2.connect(cluster.dsn(name)))


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Database:
    if request.param == "sqlite":
        found = sqlite_database(tmp_path / "analytics.db")
    else:
        found = postgres_database(request.getfixturevalue("pg"))
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN.upper()}", json.dumps(found.connection))
    return found


@pytest.fixture
def sqlite_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Database:
    found = sqlite_database(tmp_path / "analytics.db")
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN.upper()}", json.dumps(found.connection))
    return found


# --- what the manifests say ----------------------------------------------------------------------


def manifest_lines(uri: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(uri.removeprefix("file://")).read_text().splitlines()]


def expected(line: dict[str, Any]) -> dict[str, Any]:
    """The row a manifest line must give, computed here from the line itself."""
    amount, currency = None, None
    if line["amountToPay"]:
        value, currency = line["amountToPay"].split(":")
        amount = Decimal(value)
    return {
        "document_id": line["id"],
        "creation_date": EPOCH + timedelta(milliseconds=line["creationDate"]),
        "amount": amount,
        "currency": currency,
        "iban": line["iban"],
        "bic": line["bic"],
        "recipient": line["paymentRecipient"],
        "reference": line["paymentReference"],
        "outcome": line["outcome"],
        "purpose": line["paymentPurpose"],
        "due_date": line["paymentDueDate"],
        "doc_type": line["docType"],
        "name": line["name"],
    }


def assert_rows_are(database: Database, lines: list[dict[str, Any]], manifest: str) -> None:
    rows = database.rows()
    assert set(rows) == {line["id"] for line in lines}
    for line in lines:
        row = rows[line["id"]]
        assert row.pop("manifest") == manifest
        assert row == expected(line)


# --- the tests -----------------------------------------------------------------------------------


def test_a_pull_loads_one_row_per_document_and_reruns_keep_it_so(
    gini_connection: RunningSandbox, database: Database, dag_file: Callable[..., Any], tmp_path: Path
) -> None:
    destination = tmp_path / "documents"
    dag = dag_file(dag_source(PULL_AND_LOAD))
    first = dag.test(run_conf={"destination": str(destination)})
    assert first.state == "success", task_states(first)
    pulled = xcom(first, "pull")
    lines = manifest_lines(pulled["manifest"])
    truth = gini_connection.documents(
        created_after=int(datetime(2026, 1, 5, tzinfo=UTC).timestamp() * 1000),
        created_before=int(datetime(2026, 1, 9, tzinfo=UTC).timestamp() * 1000),
    )
    assert len(lines) == len(truth) > 10
    assert {line["outcome"] for line in lines} == {"pulled", "errored"}
    assert xcom(first, "load") == len(truth)
    assert database.counts() == (len(truth), len(truth))
    assert_rows_are(database, lines, pulled["manifest"])
    some = next(r for r in database.rows().values() if r["amount"] is not None)
    assert some["currency"] == "EUR"
    assert some["creation_date"].tzinfo is not None

    # A changed extraction (a stored extractions.json replaced, as a pull that fetched it again
    # would) reaches the table with the whole DAG's rerun: the pull skips what is stored, its
    # manifest says so with the stored extractions, and the load upserts.
    changed = next(line["id"] for line in lines if line["outcome"] == "pulled")
    stored = destination / changed / "extractions.json"
    extractions = json.loads(stored.read_text())
    extractions["extractions"]["amountToPay"]["value"] = "1234.56:CHF"
    extractions["extractions"]["paymentRecipient"]["value"] = "Geänderte Empfängerin GmbH"
    stored.write_text(json.dumps(extractions))
    again = dag.test(run_conf={"destination": str(destination)})
    assert again.state == "success", task_states(again)
    rerun = xcom(again, "pull")
    assert rerun["manifest"] != pulled["manifest"]
    assert {line["outcome"] for line in manifest_lines(rerun["manifest"])} == {"skipped"}
    assert database.counts() == (len(truth), len(truth))
    row = database.rows()[changed]
    assert (row["amount"], row["currency"], row["recipient"]) == (
        Decimal("1234.56"),
        "CHF",
        "Geänderte Empfängerin GmbH",
    )
    assert_rows_are(database, manifest_lines(rerun["manifest"]), rerun["manifest"])

    # The load alone, rerun over both manifests at once: still one row per document, each from
    # the last manifest given (here the first pull's again).
    load = dag_file(dag_source(LOAD_ONLY, MANIFEST=[rerun["manifest"], pulled["manifest"]]))
    alone = load.test()
    assert alone.state == "success", task_states(alone)
    assert xcom(alone, "load") == len(truth)
    assert database.counts() == (len(truth), len(truth))
    assert_rows_are(database, lines, pulled["manifest"])


@pytest.fixture
def manifest(gini_connection: RunningSandbox, tmp_path: Path) -> str:
    """A real pull's manifest (three seeded days, the last with an ERROR document), made without
    a DAG run."""
    from airflow_provider_gini.operators.documents import GiniPullDocumentsOperator

    result = GiniPullDocumentsOperator(
        task_id="pull",
        destination=str(tmp_path / "documents"),
        created_after=WINDOW[0],
        created_before="2026-01-08T00:00:00+00:00",
        poll_interval=0.1,
    ).execute({"run_id": f"manual_{uuid.uuid4().hex[:8]}"})  # type: ignore[arg-type]
    return str(result["manifest"])


def edited(source: str, target: Path, change: Callable[[list[dict[str, Any]]], Any]) -> str:
    lines = manifest_lines(source)
    change(lines)
    target.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return target.as_uri()


def load(**kwargs: Any) -> int:
    """The load executed directly, for what its error says."""
    from airflow_provider_gini.transfers.gini_to_sql import GiniManifestToSqlOperator

    operator = GiniManifestToSqlOperator(task_id="load", **{"conn_id": CONN, "table": TABLE, **kwargs})
    return int(operator.execute({}))  # type: ignore[arg-type]


def test_the_last_manifest_wins_whatever_the_database(
    database: Database, manifest: str, tmp_path: Path
) -> None:
    first = manifest_lines(manifest)[0]["id"]

    def cheaper(lines: list[dict[str, Any]]) -> None:
        lines[0]["amountToPay"] = "0.99:USD"

    newer = edited(manifest, tmp_path / "newer.jsonl", cheaper)
    count = len(manifest_lines(manifest))
    assert load(manifest=[manifest, newer]) == count
    assert (database.rows()[first]["amount"], database.rows()[first]["currency"]) == (Decimal("0.99"), "USD")
    assert load(manifest=[newer, manifest]) == count
    assert database.rows()[first] == {**expected(manifest_lines(manifest)[0]), "manifest": manifest}
    assert database.counts() == (count, count)


def test_a_malformed_line_fails_the_load_before_any_row_is_written(
    database: Database, manifest: str, dag_file: Callable[..., Any], tmp_path: Path
) -> None:
    assert load(manifest=manifest) == len(manifest_lines(manifest))
    before = database.rows()

    def cheaper(lines: list[dict[str, Any]]) -> None:
        for line in lines:
            line["amountToPay"] = "0.01:EUR"

    changed = edited(manifest, tmp_path / "changed.jsonl", cheaper)
    good = Path(changed.removeprefix("file://")).read_text().splitlines()
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join([good[0], good[1], '{"id": "cut-short", "outcome": "pul']) + "\n")

    run = dag_file(dag_source(LOAD_ONLY, MANIFEST=[changed, str(broken)])).test()
    assert task_states(run) == {"load": "failed"}
    with pytest.raises(
        sdk_exception("AirflowFailException"), match=re.escape(f"{broken} line 3 is malformed: not JSON")
    ):
        load(manifest=[changed, str(broken)])
    assert database.rows() == before  # nothing of the changed manifest either

    # Into a new table: the manifests are read before the table is created, so there is none.
    with pytest.raises(sdk_exception("AirflowFailException"), match="line 3 is malformed"):
        load(manifest=str(broken), table="fresh")
    with pytest.raises(Exception, match="fresh"):
        database.query("SELECT count(*) FROM fresh")


def test_a_row_the_database_refuses_rolls_the_whole_load_back(
    database: Database, manifest: str, tmp_path: Path
) -> None:
    lines = manifest_lines(manifest)
    head = tmp_path / "head.jsonl"
    head.write_text("".join(json.dumps(line) + "\n" for line in lines[:-1]))
    assert load(manifest=str(head)) == len(lines) - 1
    before = database.rows()
    refused = lines[-1]["id"]
    # The database refuses the manifest's last document, after every other row was sent.
    if database.kind == "sqlite":
        database.execute(
            f"CREATE TRIGGER refuse BEFORE INSERT ON {TABLE} WHEN NEW.document_id = '{refused}' "
            "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        )
    else:
        database.execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT refuse CHECK (document_id <> '{refused}')")

    def cheaper(lines: list[dict[str, Any]]) -> None:
        for line in lines:
            line["amountToPay"] = "0.01:EUR"

    with pytest.raises(Exception, match="refuse"):
        load(manifest=edited(manifest, tmp_path / "changed.jsonl", cheaper))
    assert database.rows() == before


def test_a_table_in_a_schema(database: Database, manifest: str) -> None:
    # SQLite's schemas are its attached databases; "main" is the file itself.
    schema = "main" if database.kind == "sqlite" else "analytics"
    if database.kind == "postgres":
        database.execute("CREATE SCHEMA analytics")
    count = len(manifest_lines(manifest))
    for _ in range(2):
        assert load(manifest=manifest, schema=schema) == count
    assert database.counts(f"{schema}.{TABLE}") == (count, count)


ODD_AMOUNTS = ("1E999999", "NaN:EUR", "Infinity", "-inf:EUR", "١٢:EUR", "1_000:EUR", "12.50:EURO")


def test_unparsable_values_are_null_with_a_warning_and_the_rest_loads(
    sqlite_db: Database, manifest: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def odd(lines: list[dict[str, Any]]) -> None:
        lines[0]["amountToPay"] = "12,50 EUR"
        lines[1]["creationDate"] = "yesterday"
        lines[2]["amountToPay"] = "7"  # a number without a currency is still an amount
        # None of these may raise (Decimal would take most of them, or refuse them with
        # InvalidOperation): each is NULL with a warning, the rest loads.
        for line, odd_amount in zip(lines[3:], ODD_AMOUNTS, strict=False):
            line["amountToPay"] = odd_amount

    path = edited(manifest, tmp_path / "odd.jsonl", odd)
    lines = manifest_lines(path)
    caplog.set_level(logging.WARNING, logger="airflow_provider_gini.transfers")
    assert load(manifest=path) == len(lines)
    rows = sqlite_db.rows()
    assert (rows[lines[0]["id"]]["amount"], rows[lines[0]["id"]]["currency"]) == (None, None)
    assert rows[lines[0]["id"]]["iban"] == lines[0]["iban"]
    assert rows[lines[1]["id"]]["creation_date"] is None
    assert (rows[lines[2]["id"]]["amount"], rows[lines[2]["id"]]["currency"]) == (Decimal(7), None)
    assert len(lines) >= 3 + len(ODD_AMOUNTS)
    for line in lines[3 : 3 + len(ODD_AMOUNTS)]:
        assert (rows[line["id"]]["amount"], rows[line["id"]]["currency"]) == (None, None), line
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert f"document {lines[0]['id']}" in warned
    assert "'12,50 EUR'" in warned
    assert "'yesterday'" in warned


def test_outcomes_choose_the_lines_loaded(sqlite_db: Database, manifest: str) -> None:
    lines = manifest_lines(manifest)
    pulled = [line["id"] for line in lines if line["outcome"] == "pulled"]
    assert 0 < len(pulled) < len(lines)
    assert load(manifest=manifest, outcomes=["errored"]) == len(lines) - len(pulled)
    assert load(manifest={"manifest": manifest}, outcomes=("pulled",)) == len(pulled)
    assert set(sqlite_db.rows()) == {line["id"] for line in lines}


def test_a_connection_that_is_no_sql_database_fails_clearly(
    gini_connection: RunningSandbox,
    sqlite_db: Database,
    manifest: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    fail = sdk_exception("AirflowFailException")
    with pytest.raises(
        fail, match=r"'gini_default' is of type 'gini', whose hook GiniHook is not a SQL hook"
    ):
        load(manifest=manifest, conn_id="gini_default")
    monkeypatch.setenv("AIRFLOW_CONN_NO_SUCH_TYPE", json.dumps({"conn_type": "no_such_db", "host": "x"}))
    with pytest.raises(fail, match=r"'no_such_type' is of type 'no_such_db', which has no hook here"):
        load(manifest=manifest, conn_id="no_such_type")
    with pytest.raises(fail, match="table must be a plain SQL name"):
        load(manifest=manifest, table="x; DROP TABLE y")
    with pytest.raises(fail, match="is a rendered dict or list"):
        load(manifest=str({"manifest": manifest}))
    with pytest.raises(fail, match=r"Manifest file://\S+/missing.jsonl not found"):
        load(manifest=str(tmp_path / "missing.jsonl"))


def test_a_mapped_pulls_results_load_together(
    gini_connection: RunningSandbox, sqlite_db: Database, dag_file: Callable[..., Any], tmp_path: Path
) -> None:
    run = dag_file(dag_source(MAPPED)).test(run_conf={"destination": str(tmp_path / "documents")})
    assert run.state == "success", task_states(run)
    shards = [manifest_lines(xcom(run, "shard", i)["manifest"]) for i in range(4)]
    every = {line["id"] for lines in shards for line in lines}
    assert all(shards)  # one manifest per day, each with documents
    assert xcom(run, "load") == len(every) == sum(map(len, shards)) > 10
    assert sqlite_db.counts() == (len(every), len(every))


def test_the_example_dag(
    gini_connection: RunningSandbox,
    sqlite_db: Database,
    example_dag: Callable[[str], Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GINI_DESTINATION", str(tmp_path / "documents"))
    dag = example_dag("gini_to_sql")
    for day in (6, 7):
        run = dag.test(logical_date=datetime(2026, 1, day, tzinfo=UTC))
        assert run.state == "success", task_states(run)
    everything = gini_connection.documents(
        created_before=int(datetime(2026, 1, 7, tzinfo=UTC).timestamp() * 1000)
    )
    assert sqlite_db.counts() == (len(everything), len(everything))
    assert sqlite_db.query(
        "SELECT count(*) FROM gini_extractions WHERE outcome IN ('pulled', 'skipped') AND amount > 0"
    )[0][0] == len([d for d in everything if d["progress"] == "COMPLETED"])


# --- the table must be one the upsert can keep one row per document in ------------------------

# A table of the user's, with every column the load writes and nothing on document_id; standard
# SQL both databases take.
USER_TABLE = """CREATE TABLE {table} (
    document_id VARCHAR(128), creation_date TIMESTAMP, amount NUMERIC(19, 4), currency VARCHAR(3),
    iban TEXT, bic TEXT, recipient TEXT, reference TEXT, outcome VARCHAR(16), purpose TEXT,
    due_date TEXT, doc_type TEXT, name TEXT, manifest TEXT, loaded_at TIMESTAMP
)"""


def test_a_table_without_a_unique_document_id_is_refused_and_nothing_is_written(
    database: Database, manifest: str
) -> None:
    database.execute(USER_TABLE.format(table=TABLE))
    fail = sdk_exception("AirflowFailException")
    for _ in range(2):  # SQLite's REPLACE INTO would append the rows again each time
        with pytest.raises(fail, match=r"no primary key, unique constraint or unique index on document_id"):
            load(manifest=manifest)
    assert database.counts() == (0, 0)

    # A unique index on document_id only in some rows makes no conflict target for every row.
    database.execute(f"CREATE UNIQUE INDEX partly ON {TABLE} (document_id) WHERE outcome = 'pulled'")
    with pytest.raises(fail, match="CREATE UNIQUE INDEX gini_extractions_document_id"):
        load(manifest=manifest)
    assert database.counts() == (0, 0)

    # With the index the error names, the same table loads, and reloads, one row per document.
    database.execute(f"CREATE UNIQUE INDEX gini_extractions_document_id ON {TABLE} (document_id)")
    count = len(manifest_lines(manifest))
    for _ in range(2):
        assert load(manifest=manifest) == count
    assert database.counts() == (count, count)


def test_a_table_without_the_columns_or_none_at_all_is_refused(database: Database, manifest: str) -> None:
    database.execute("CREATE TABLE partial (document_id VARCHAR(128) PRIMARY KEY, outcome TEXT, extra TEXT)")
    fail = sdk_exception("AirflowFailException")
    with pytest.raises(fail, match=r"Table partial has no column\(s\) creation_date, amount, currency, iban"):
        load(manifest=manifest, table="partial")
    assert database.query("SELECT count(*) FROM partial") == [(0,)]
    with pytest.raises(fail, match=r"Table missing does not exist: create it, or .*create_table=True"):
        load(manifest=manifest, table="missing", create_table=False)


@pytest.mark.parametrize(
    ("names", "refused"),
    [
        ({"table": "GiniDocs"}, r"table must be a plain SQL name \(lower-case letters"),
        ({"table": "order"}, r"table 'order' is reserved in (postgresql|sqlite)"),
        ({"schema": "Analytics"}, r"schema must be a plain SQL name"),
        ({"schema": "user"}, r"schema 'user' is reserved in postgresql"),
    ],
)
def test_names_that_need_quoting_are_refused_before_anything_is_created(
    database: Database, manifest: str, names: dict[str, str], refused: str
) -> None:
    if database.kind == "sqlite" and "schema" in names:
        pytest.skip("SQLite's schemas are attached databases, none here to name")
    if database.kind == "postgres" and "schema" in names:
        database.execute(f'CREATE SCHEMA "{names["schema"]}"')
    with pytest.raises(sdk_exception("AirflowFailException"), match=refused):
        load(manifest=manifest, **names)
    if database.kind == "sqlite":
        assert database.query("SELECT name FROM sqlite_master") == []
    else:
        assert (
            database.query(
                "SELECT table_schema, table_name FROM information_schema.tables "
                "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
            )
            == []
        )


def test_lines_without_extractions_keep_the_values_a_good_pull_wrote(
    database: Database, manifest: str, tmp_path: Path
) -> None:
    lines = manifest_lines(manifest)
    good = next(line for line in lines if line["outcome"] == "pulled" and line["amountToPay"])
    count = len(lines)
    assert load(manifest=manifest) == count

    def failed(lines: list[dict[str, Any]]) -> None:
        # What a pull writes for a document it could not fetch: no extractions.
        for line in lines:
            if line["id"] == good["id"]:
                line.update(outcome="failed", error="HTTP 503", files=[])
                line.update(dict.fromkeys(("amountToPay", "iban", "bic", "paymentRecipient"), None))
                line.update(dict.fromkeys(("paymentReference", "paymentPurpose", "paymentDueDate"), None))
                line.update(docType=None)

    later = edited(manifest, tmp_path / "later.jsonl", failed)
    assert load(manifest=later) == count - 1
    row = database.rows()[good["id"]]
    assert row == {**expected(good), "manifest": manifest}
    assert database.counts() == (count, count)

    # Every line, when asked for: the failed line's nulls then replace the values.
    assert load(manifest=later, outcomes=None) == count
    row = database.rows()[good["id"]]
    assert (row["outcome"], row["amount"], row["iban"], row["manifest"]) == ("failed", None, None, later)


def test_missing_results_of_a_mapped_pull_are_skipped_with_a_warning(
    sqlite_db: Database, manifest: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="airflow_provider_gini.transfers")
    assert load(manifest=[None, {"manifest": manifest}, {"manifest": None}]) == len(manifest_lines(manifest))
    warned = [r.getMessage() for r in caplog.records if "missing (None)" in r.getMessage()]
    assert len(warned) == 1
    assert warned[0].startswith("2 of 3 manifest result(s) are missing (None)")


def test_sqlite_dates_sort_and_compare_as_sqlite_and_sqlalchemy_read_them(
    sqlite_db: Database, manifest: str, tmp_path: Path
) -> None:
    import sqlalchemy as sa

    def dates(lines: list[dict[str, Any]]) -> None:
        # A whole second, and two within the same second: the forms with and without a fraction.
        lines[0]["creationDate"] = 1767571200000  # 2026-01-05 00:00:00
        lines[1]["creationDate"] = 1767571200250
        lines[2]["creationDate"] = 1767571199999

    path = edited(manifest, tmp_path / "dates.jsonl", dates)
    lines = manifest_lines(path)
    assert load(manifest=path) == len(lines)
    by_time = [line["id"] for line in sorted(lines, key=lambda line: line["creationDate"])]
    ordered = sqlite_db.query("SELECT document_id FROM gini_extractions ORDER BY creation_date")
    assert [row[0] for row in ordered] == by_time
    stored = dict(sqlite_db.query("SELECT document_id, creation_date FROM gini_extractions"))
    assert (stored[lines[0]["id"]], stored[lines[1]["id"]], stored[lines[2]["id"]]) == (
        "2026-01-05 00:00:00",
        "2026-01-05 00:00:00.250000",
        "2026-01-04 23:59:59.999000",
    )
    # SQLite's date functions: equal at the whole second, the day's bounds taking what they should.
    [(equal, day, before, recent)] = sqlite_db.query(
        "SELECT sum(creation_date = datetime('2026-01-05')), "
        "sum(creation_date >= datetime('2026-01-05') AND creation_date < datetime('2026-01-05', '+1 day')), "
        "sum(creation_date < datetime('2026-01-05')), "
        "sum(loaded_at > datetime('now', '-1 hour') AND loaded_at < datetime('now', '+1 minute')) "
        "FROM gini_extractions"
    )
    stamps = [EPOCH + timedelta(milliseconds=line["creationDate"]) for line in lines]
    assert equal == 1
    assert day == sum(
        datetime(2026, 1, 5, tzinfo=UTC) <= t < datetime(2026, 1, 6, tzinfo=UTC) for t in stamps
    )
    assert before == sum(t < datetime(2026, 1, 5, tzinfo=UTC) for t in stamps) >= 1
    assert recent == len(lines)  # loaded_at too, in the same form
    # SQLAlchemy's SQLite DATETIME (what the table was created with) reads them back exactly.
    engine = sa.create_engine(f"sqlite:///{sqlite_db.connection['host']}")
    table = sa.Table(
        TABLE, sa.MetaData(), sa.Column("document_id", sa.Text), sa.Column("creation_date", sa.DateTime)
    )
    with engine.connect() as connection:
        read = dict(connection.execute(sa.select(table.c.document_id, table.c.creation_date)).all())
    engine.dispose()
    assert read == {line["id"]: stamp.replace(tzinfo=None) for line, stamp in zip(lines, stamps, strict=True)}
