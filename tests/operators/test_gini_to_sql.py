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
            # SQLite hands back the ISO text and a REAL; PostgreSQL a datetime and a Decimal.
            if isinstance(values["creation_date"], str):
                values["creation_date"] = datetime.fromisoformat(values["creation_date"])
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


def test_unparsable_values_are_null_with_a_warning_and_the_rest_loads(
    sqlite_db: Database, manifest: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def odd(lines: list[dict[str, Any]]) -> None:
        lines[0]["amountToPay"] = "12,50 EUR"
        lines[1]["creationDate"] = "yesterday"
        lines[2]["amountToPay"] = "7"  # a number without a currency is still an amount

    path = edited(manifest, tmp_path / "odd.jsonl", odd)
    lines = manifest_lines(path)
    caplog.set_level(logging.WARNING, logger="airflow_provider_gini.transfers")
    assert load(manifest=path) == len(lines)
    rows = sqlite_db.rows()
    assert (rows[lines[0]["id"]]["amount"], rows[lines[0]["id"]]["currency"]) == (None, None)
    assert rows[lines[0]["id"]]["iban"] == lines[0]["iban"]
    assert rows[lines[1]["id"]]["creation_date"] is None
    assert (rows[lines[2]["id"]]["amount"], rows[lines[2]["id"]]["currency"]) == (Decimal(7), None)
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
