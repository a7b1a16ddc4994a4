"""Pull each day's Gini documents, then load their key extractions into a SQL table.

``load_extractions`` upserts one row per document into the table ``gini_extractions`` (created
when missing): document id, creation date, amount and currency, IBAN, BIC, recipient, reference,
the pull's outcome, and a few more (see GiniManifestToSqlOperator). Reruns, catch-up and a
document pulled again update its row, never add one; a document a later pull could not fetch
(``failed``) keeps the values of its last good pull.

The database is the Airflow connection ``gini_sql`` (or the one ``GINI_SQL_CONN_ID`` names), of
any SQL type: a SQLite file needs nothing but a path,

    export AIRFLOW_CONN_GINI_SQL='{"conn_type": "sqlite", "host": "/path/to/gini.db"}'

and PostgreSQL, MySQL, ... work the same (``pip install 'airflow-provider-gini[sql]'`` brings the
SQLite and PostgreSQL providers). Then, for example::

    sqlite3 /path/to/gini.db "SELECT recipient, currency, sum(amount) FROM gini_extractions
                              WHERE outcome IN ('pulled', 'skipped') GROUP BY 1, 2"

Documents land in ``GINI_DESTINATION`` (``~/gini-documents`` without it), read where the DAG is
parsed, as in gini_daily_pull.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

from airflow.sdk import DAG

from airflow_provider_gini.operators.documents import GiniPullDocumentsOperator
from airflow_provider_gini.transfers.gini_to_sql import GiniManifestToSqlOperator

DESTINATION = os.environ.get("GINI_DESTINATION", str(Path.home() / "gini-documents"))
SQL_CONN_ID = os.environ.get("GINI_SQL_CONN_ID", "gini_sql")

with DAG(
    dag_id="gini_to_sql",
    schedule="@daily",
    start_date=datetime(2026, 1, 5, tzinfo=timezone.utc),
    catchup=True,
    max_active_runs=1,
    # A macro, as in gini_daily_pull: set where the DAG is parsed, out of any run's conf.
    user_defined_macros={"gini_destination": DESTINATION},
    tags=["gini", "example", "sql"],
    doc_md=__doc__,
) as dag:
    pull = GiniPullDocumentsOperator(
        task_id="pull_documents",
        destination="{{ gini_destination }}",
        full_history=True,
        max_workers=8,
    )
    # The pull's result names its manifest; a mapped pull's results (one per shard or account)
    # work the same way.
    GiniManifestToSqlOperator(
        task_id="load_extractions",
        manifest=pull.output,
        conn_id=SQL_CONN_ID,
        table="gini_extractions",
    )
