"""Pull Gini documents minutes after they arrive, not at the next daily run.

The asset ``gini_new_documents`` is watched by GiniNewDocumentsTrigger in the triggerer: it polls
the account's document list every ``GINI_POLL_INTERVAL`` seconds (60 by default) and fires an
asset event for each batch of documents that became COMPLETED, with their ids. This DAG is
scheduled on that asset, and its pull takes exactly the announced documents from the run's
triggering asset events (``ids_from_asset_events=True``): a run that several events triggered
pulls all of their documents.

The trigger keeps what it has announced in ``<destination>/_events/``, so a restarted triggerer
neither announces old documents again nor misses what arrived meanwhile. A document is announced
again until this DAG has stored it (an asset event can start no run, see pull/arrivals.py), and
the pull skips what is already stored. Runs may overlap: pulls by id share a destination
safely. Documents
created before the trigger first ran are left to a scheduled pull such as ``gini_daily_pull``;
into the same destination, the two never store a document twice.

Like ``gini_daily_pull``, the destination is the deployment's (``GINI_DESTINATION``, else
``~/gini-documents``), read where the DAG is parsed: the trigger runs in the triggerer, which
needs the ``gini_default`` connection and access to the destination too.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

from airflow.sdk import DAG, Asset, AssetWatcher

from airflow_provider_gini.operators.documents import GiniPullDocumentsOperator
from airflow_provider_gini.triggers.arrivals import GiniNewDocumentsTrigger

DESTINATION = os.environ.get("GINI_DESTINATION", str(Path.home() / "gini-documents"))
POLL_INTERVAL = float(os.environ.get("GINI_POLL_INTERVAL", "60"))

new_documents = Asset(
    "gini_new_documents",
    watchers=[
        AssetWatcher(
            name="gini_new_documents_watcher",
            trigger=GiniNewDocumentsTrigger(
                gini_conn_id="gini_default",
                destination=DESTINATION,
                poll_interval=POLL_INTERVAL,
                # Until the pull below has stored it, a document is announced again this often.
                reannounce_after=max(30.0, 5 * POLL_INTERVAL),
            ),
        )
    ],
)

with DAG(
    dag_id="gini_on_new_documents",
    schedule=[new_documents],
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    user_defined_macros={"gini_destination": DESTINATION},
    tags=["gini", "example"],
    doc_md=__doc__,
) as dag:
    GiniPullDocumentsOperator(
        task_id="pull_new_documents",
        destination="{{ gini_destination }}",
        ids_from_asset_events=True,
        max_failed_documents=0,
    )
