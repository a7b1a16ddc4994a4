#!/usr/bin/env bash
# The main job, end to end, on a fresh machine: a venv in .venv, the provider with its sandbox,
# a local AIRFLOW_HOME with SQLite in .demo/, the Gini sandbox, then gini_daily_pull over the
# sandbox's seeded days, and a summary of what was pulled and where it is.
#
# --executor celery: the same on a CeleryExecutor deployment instead (PostgreSQL, Redis, the
# scheduler, dag-processor, api-server, triggerer and two Celery workers, on loopback, under
# .demo/celery), then gini_backfill in daily shards, printing which worker ran which shard.
# Needs Debian's postgresql and redis-server (installed with apt when run as root).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
executor=local
while [ $# -gt 0 ]; do
    case "$1" in
        --executor) [ $# -ge 2 ] || { echo "usage: $0 [--executor local|celery]" >&2; exit 2; }
            executor=$2; shift 2 ;;
        --executor=*) executor=${1#*=}; shift ;;
        *) echo "usage: $0 [--executor local|celery]" >&2; exit 2 ;;
    esac
done
case "$executor" in local|celery) ;; *) echo "--executor must be local or celery, not '$executor'" >&2; exit 2 ;; esac
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
echo "Installing the provider into .venv (first run: a minute or two) ..."
.venv/bin/python -m pip install --quiet --upgrade pip
if [ "$executor" = celery ]; then
    need=()
    if ! compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null && ! command -v pg_ctl >/dev/null; then need+=(postgresql); fi
    if ! command -v redis-server >/dev/null; then need+=(redis-server); fi
    if [ ${#need[@]} -gt 0 ]; then
        if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
            export DEBIAN_FRONTEND=noninteractive
            if ! apt-cache show "${need[@]}" >/dev/null 2>&1; then apt-get update -qq; fi
            apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
        else
            echo "The Celery demo needs ${need[*]}. As root: apt-get install --no-install-recommends ${need[*]}" >&2
            exit 1
        fi
    fi
    # pytest: the deployment harness it shares with the tests reports through pytest's outcomes.
    .venv/bin/python -m pip install --quiet -e '.[sandbox,celery]' pytest
else
    .venv/bin/python -m pip install --quiet -e '.[sandbox]'
fi
export GINI_DESTINATION="$PWD/.demo/documents"
rm -rf .demo
mkdir -p .demo
if [ "$executor" = celery ]; then
    exec .venv/bin/python scripts/demo_celery.py
fi
export AIRFLOW_HOME="$PWD/.demo/airflow-home"
export AIRFLOW__CORE__DAGS_FOLDER="$PWD/example_dags"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
echo "Creating the Airflow metadata DB (SQLite) in .demo/airflow-home ..."
.venv/bin/airflow db migrate > .demo/airflow-db-migrate.log 2>&1
exec .venv/bin/python scripts/demo.py
