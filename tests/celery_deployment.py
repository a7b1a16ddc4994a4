"""A CeleryExecutor deployment on loopback: PostgreSQL as the metadata DB, Redis as the broker,
the scheduler, dag-processor, api-server and triggerer, and two Celery workers with hostnames and
queues of their own (``--concurrency 2`` each). Used by tests/executors/test_celery_executor.py
and by the demo (scripts/demo.sh --executor celery)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from tests.deployment import Deployment, airflow_deployment, answers, core_env, free_port
from tests.servers import PostgresCluster, redis_server

# Worker hostname -> the queue it serves besides ``default``.
WORKERS = {"gini-worker-a": "gini_a", "gini-worker-b": "gini_b"}


def celery_env(api_url: str, broker: str, backend: str) -> dict[str, str]:
    return {
        **core_env(api_url),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__PARALLELISM": "8",
        "AIRFLOW__CELERY__BROKER_URL": broker,
        # Given, not derived from sql_alchemy_conn: provider releases changed how they derive it.
        "AIRFLOW__CELERY__RESULT_BACKEND": backend,
        # The default of 1 s bounds the scheduler's publish of a task to Redis; on a loaded
        # machine the first one (which imports the redis client) can take longer
        # (apache/airflow#41359).
        "AIRFLOW__CELERY__OPERATION_TIMEOUT": "30",
        "AIRFLOW__CELERY__SYNC_PARALLELISM": "1",
        # A task's Execution API token is minted when it is queued; one that waits in Redis while
        # the workers start must still hold a valid one (apache/airflow#59637).
        "AIRFLOW__EXECUTION_API__JWT_EXPIRATION_TIME": "3600",
    }


@contextmanager
def celery_deployment(home: Path, pg: PostgresCluster, extra_env: dict[str, str]) -> Iterator[Deployment]:
    database = f"airflow_{uuid.uuid4().hex[:8]}"
    pg.create_database(database)
    try:
        with redis_server(home.parent / "redis") as redis:
            api_port = free_port()
            api_url = f"http://127.0.0.1:{api_port}"
            env = {**celery_env(api_url, redis.url, "db+" + pg.url(database)), **extra_env}
            with airflow_deployment(home, env, postgres=(pg.url(database), pg.dsn(database))) as deployment:
                deployment.extra_logs += [pg.root / "postgres.log", redis.log]
                deployment.start("api-server", "api-server", "--host", "127.0.0.1", "--port", str(api_port))
                deployment.start("dag-processor", "dag-processor")
                deployment.start("scheduler", "scheduler")
                deployment.start("triggerer", "triggerer")
                for hostname, queue in WORKERS.items():
                    deployment.start(
                        hostname,
                        "celery", "worker", "--queues", f"default,{queue}", "--concurrency", "2",
                        "--celery-hostname", f"{hostname}@%h", "--skip-serve-logs",
                        "--without-mingle", "--without-gossip",
                        # task_instance.hostname comes from [core] hostname_callable in the task's
                        # process; both workers share this machine's name, so each says its own.
                        env={
                            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.celery_hostname.worker_hostname",
                            "GINI_CELERY_WORKER": hostname,
                        },
                    )  # fmt: skip
                deployment.wait_for(
                    "answer from the Execution API", answers(f"{api_url}/execution/health"), 300
                )
                deployment.wait_for("both Celery workers on their queues", workers_ready(redis.url), 300)
                yield deployment
    finally:
        # Not over the test's own error: a server that is gone takes the database with it.
        with suppress(Exception):
            pg.drop_database(database)


def workers_ready(broker: str) -> Any:
    from celery import Celery

    app = Celery(broker=broker)

    def check() -> dict[str, list[str]] | None:
        queues = app.control.inspect(timeout=2).active_queues() or {}
        seen = {node.split("@")[0]: sorted(q["name"] for q in found) for node, found in queues.items()}
        expected = {h: sorted(["default", q]) for h, q in WORKERS.items()}
        return seen if seen == expected else None

    return check
