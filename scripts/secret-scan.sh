#!/usr/bin/env bash
# Secret scan of the tracked tree with detect-secrets (Yelp's scanner, from PyPI). Every finding
# must be in .secrets.baseline, labelled a false positive ("is_secret": false) by a person who
# looked at it: test fixtures' made-up passwords, commit ids in recorded shapes. A new finding,
# or one labelled real, fails the scan; its file, line and kind are printed, never the value.
# To label a new false positive: scripts/secret-scan.sh --update, then set "is_secret": false
# on the new entry in .secrets.baseline after checking it (or add `pragma: allowlist secret`
# as a comment on the line).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet 'detect-secrets==1.5.0'
if [ "${1:-}" = "--update" ]; then
    target=.secrets.baseline
else
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    target="$work/baseline.json"
    cp .secrets.baseline "$target"
fi
# With --baseline, detect-secrets scans the files git tracks and keeps the labels of the
# findings it already knows (matched by file and hashed value, not line number).
.venv/bin/detect-secrets scan --baseline "$target"
.venv/bin/python - "$target" <<'PY'
import json
import sys

results = json.load(open(sys.argv[1]))["results"]
found = [
    f"{name}:{item['line_number']}: {item['type']}"
    for name, items in sorted(results.items())
    for item in items
    if item.get("is_secret") is not False
]
if found:
    print("Secret scan: findings not labelled as false positives in .secrets.baseline:", *found, sep="\n  ")
    sys.exit(1)
print(f"Secret scan: clean ({sum(map(len, results.values()))} known false positives)")
PY
