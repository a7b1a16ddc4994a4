#!/usr/bin/env bash
# The whole test suite from nothing, on the oldest and the newest supported Airflow minor: a venv
# in .venv with nox, Chromium for the browser test, then one nox session per minor (noxfile.py),
# each in its own venv under .nox/. The newest one also runs the gates (ruff, format, mypy).
# Extra arguments go to pytest in every session; NOX_SESSIONS picks other sessions.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
SESSIONS=${NOX_SESSIONS:-"tests-3.0 tests-3.3"}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip nox

# tests/ui drives Debian's Chromium through its chromedriver; tests/executors/test_celery_executor.py
# runs Debian's PostgreSQL and Redis servers on loopback. Without them those tests skip.
need=()
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then need+=(chromium chromium-driver); fi
if ! compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null; then need+=(postgresql); fi
if ! command -v redis-server >/dev/null && [ ! -x /usr/bin/redis-server ]; then need+=(redis-server); fi
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        export DEBIAN_FRONTEND=noninteractive
        # A clean image has no package lists yet; otherwise skip the slow update.
        if ! apt-cache show "${need[@]}" >/dev/null 2>&1; then
            apt-get update -qq
        fi
        # On a host run by systemd Debian's packages also start their default services (5432,
        # 6379); the tests never use those, they start their own on free ports.
        apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    else
        echo "NOTE: ${need[*]} not installed, so tests/ui or the Celery test will skip. As root:" >&2
        echo "      apt-get install --no-install-recommends ${need[*]}" >&2
    fi
fi

# The sessions run side by side: most of a session's time is spent waiting on sandboxes, Airflow
# processes and installs, so two share the 2 cores of a CI machine well. Each line is prefixed
# with its session's name.
pids=()
for session in $SESSIONS; do
    .venv/bin/nox --no-color -s "$session" -- "$@" 2>&1 | sed -u "s/^/[$session] /" &
    pids+=("$!")
done
status=0
for pid in "${pids[@]}"; do
    wait "$pid" || status=1
done
if [ "$status" -ne 0 ]; then
    echo "FAILED: at least one of the sessions $SESSIONS failed (see the lines prefixed with its name)" >&2
fi
exit "$status"
