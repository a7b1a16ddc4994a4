from tests.operators.conftest import dag_file  # noqa: F401  (DAG runs through the replay)
