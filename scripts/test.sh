#!/usr/bin/env bash
# The whole test suite from nothing: a venv in .venv, the package with its test
# extras, Chromium for the browser test, then lint, format and type gates, then pytest.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'

# tests/ui drives Debian's Chromium through its chromedriver; without them it skips.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        export DEBIAN_FRONTEND=noninteractive
        # A clean image has no package lists yet; otherwise skip the slow update.
        if ! apt-cache show chromium chromium-driver >/dev/null 2>&1; then
            apt-get update -qq
        fi
        apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
    else
        echo "NOTE: Chromium not installed, so tests/ui will skip. Install it as root with:" >&2
        echo "      apt-get install --no-install-recommends chromium chromium-driver" >&2
    fi
fi

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
