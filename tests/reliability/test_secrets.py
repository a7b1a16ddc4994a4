"""No secret anywhere: DAG runs that go through many tokens, fail in typed ways and upload, all at
DEBUG; then every task log, rendered template field, XCom value, audit-log extra and exception
text is searched for the user's password, the client secret, a made-up wrong password and every
access and refresh token the sandbox issued. (Every other test of this suite gets the same search
from the ``evidence`` fixture; this one also proves the search is not vacuous.)"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_gini._compat import AirflowFailException
from airflow_provider_gini.client.errors import GiniInvalidUserCredentials, GiniRetryError
from airflow_provider_gini.sandbox import DEMO_CLIENT, DEMO_USER, RunningSandbox
from tests.reliability.conftest import Evidence, PullRun, database_texts, task_log_files
from tests.reliability.helpers import (
    AIRFLOW_MASK_SECRET_LINE,
    Watcher,
    day,
    route_count,
    sandbox_secrets,
    search,
    tokens_in_urls,
)
from tests.reliability.test_uploads import UPLOAD_DAG

pytestmark = pytest.mark.timeout(120)  # a hang fails the case instead of stalling the suite

WRONG_PASSWORD = "wrong-password-9f3e1a"
EXTRACTIONS = "GET /documents/{document_id}/extractions"


def test_no_secret_in_logs_rendered_fields_xcom_or_errors(
    gini_connection: RunningSandbox,
    pull_dag: Callable[..., Any],
    run_pull: Callable[..., PullRun],
    dag_file: Callable[..., Any],
    evidence: Evidence,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # 1. A pull through many tokens: short-lived ones refreshed ahead of expiry, a 401 (a fresh
    #    token and a replay), then refresh tokens revoked and access tokens expired mid-run.
    #    (6 s tokens: refreshed after 3 s, the 3 s left absorb a loaded machine's stalls; with 2 s
    #    ones a replay after a 401 met an expired token again.)
    gini_connection.settings(user_token_ttl=6)
    gini_connection.add_fault("latency", path="/documents/*/extractions", delay=0.5)
    gini_connection.add_fault("status", status=401, path="/documents/*/extractions", first=1)
    watcher = Watcher(
        gini_connection,
        route_count(EXTRACTIONS, 4),
        lambda s: (s.revoke_refresh_tokens(), s.expire_tokens()),
    )
    watcher.start()
    many_tokens = run_pull(pull_dag(max_workers=2), tmp_path / "a", day(6), day(8))
    watcher.finish()
    assert many_tokens.state == "success", many_tokens.errors
    gini_connection.clear_faults()
    gini_connection.settings(user_token_ttl=3599)

    # 2. A pull refused for a wrong password, 3. one that gives up on a 503 outage.
    wrong = gini_connection.connection()
    wrong["password"] = WRONG_PASSWORD
    monkeypatch.setenv("AIRFLOW_CONN_GINI_WRONG", json.dumps(wrong))
    refused = run_pull(pull_dag(gini_conn_id="gini_wrong"), tmp_path / "b", day(6), day(8))
    gini_connection.add_fault("status", status=503, path="/documents")
    outage = run_pull(pull_dag(hook_params={"max_attempts": 2}), tmp_path / "c", day(6), day(8))
    gini_connection.clear_faults()
    # The refused password ends the task without retries; its cause is the typed error.
    assert [type(e) for e in refused.errors + outage.errors] == [AirflowFailException, GiniRetryError]
    assert isinstance(refused.errors[0].__cause__, GiniInvalidUserCredentials)

    # 4. An upload that meets a 401 and a reset after Gini stored it (so a retried task).
    gini_connection.add_fault("status", status=401, path="/documents", method="POST", first=1)
    gini_connection.add_fault("reset", path="/documents", method="POST", first=1, after_handler=True)
    upload = dag_file(
        UPLOAD_DAG.replace("RETRY_DELAY", "0").replace(
            "HOOK_PARAMS", repr({"backoff_initial": 0.01, "backoff_max": 0.05})
        )
    ).test()
    assert upload.state == "success"

    # Everything the runs produced.
    out, err = capfd.readouterr()
    texts = {
        "task and Airflow logs (stdout)": out,
        "stderr": err,
        "log records": caplog.text + "\n".join(f"{r.msg!s} {r.args!r}" for r in caplog.records),
        **database_texts(),
        **task_log_files(),
        **evidence.exception_texts(),
    }
    evidence.texts.update({f"secrets test: {k}": v for k, v in texts.items()})  # searched again at teardown
    secrets = sandbox_secrets(gini_connection)
    secrets["made-up wrong password"] = [WRONG_PASSWORD]
    tokens = secrets["issued_tokens"]
    assert DEMO_USER.password in secrets["passwords"]
    assert DEMO_CLIENT.client_secret in secrets["client_secrets"]
    assert len(tokens) >= 10  # access and refresh tokens of several grants

    # What was searched is what it should be: DEBUG task logs, rendered fields and XComs of these
    # runs, and the typed errors' texts.
    assert "[debug" in out
    assert "Pulling Gini documents created in" in out  # the operator's own task log lines
    rendered = [v for k, v in texts.items() if k.startswith("rendered fields") and str(tmp_path) in v]
    assert len(rendered) >= 3
    assert any(k.startswith("xcom") and "manifest" in v for k, v in texts.items())
    assert len(evidence.task_errors()) >= 2

    leaks, excluded = search(texts, secrets)
    assert leaks == [], [(leak.where, leak.kind, leak.line) for leak in leaks][:10]

    # Not vacuous: the only lines holding secrets are Airflow's own MaskSecret DEBUG lines, and
    # they show that every token the hook received was registered with the secrets masker.
    assert excluded > 0
    mask_lines = [line for line in out.splitlines() if AIRFLOW_MASK_SECRET_LINE.search(line)]
    unregistered = [t for t in tokens if not any(t in line for line in mask_lines)]
    assert unregistered == []
    assert tokens_in_urls(gini_connection, tokens) == []
