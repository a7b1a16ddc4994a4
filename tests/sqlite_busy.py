"""SQLite connection arguments for the test deployments (tests/deployment.py), imported by their
components through ``[database] sql_alchemy_connect_args``: the scheduler, the dag-processor,
the api-server and the ``airflow`` CLI share one SQLite file, and SQLite's default five-second
wait for a lock is too short on a loaded 2-core machine ("database is locked")."""

SYNC = {"timeout": 60}
ASYNC = {"timeout": 60}
