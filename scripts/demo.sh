#!/usr/bin/env bash
# The main job, end to end, on a fresh machine: a venv in .venv, the provider with its sandbox,
# a local AIRFLOW_HOME with SQLite in .demo/, the Gini sandbox, then gini_daily_pull over the
# sandbox's seeded days, and a summary of what was pulled and where it is.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
echo "Installing the provider into .venv (first run: a minute or two) ..."
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[sandbox]'
rm -rf .demo
mkdir -p .demo
export AIRFLOW_HOME="$PWD/.demo/airflow-home"
export AIRFLOW__CORE__DAGS_FOLDER="$PWD/example_dags"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export GINI_DESTINATION="$PWD/.demo/documents"
echo "Creating the Airflow metadata DB (SQLite) in .demo/airflow-home ..."
.venv/bin/airflow db migrate > .demo/airflow-db-migrate.log 2>&1
exec .venv/bin/python scripts/demo.py "$@"
