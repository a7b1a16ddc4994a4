"""The sandbox is safe to run: loopback unless told, the admin token, Host checks, no forms.

Every check goes over real HTTP to a sandbox, or runs the CLI as a subprocess.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from airflow_provider_gini.sandbox import DEMO_USER, RunningSandbox, SandboxAccessError, run_sandbox
from airflow_provider_gini.sandbox.access import TOKEN_ENV
from airflow_provider_gini.sandbox.server import serving
from tests.deployment import free_port
from tests.sandbox.helpers import api_headers, token
from tests.sandbox.test_cli import stop

MODULE = [sys.executable, "-m", "airflow_provider_gini.sandbox"]
ADMIN_TOKEN_RE = re.compile(r"admin token: ([^,]+),")
FORM = "application/x-www-form-urlencoded"

# (method, path, JSON body): reads, and the changes a cross-site page would want to make
ADMIN_ROUTES = [
    ("GET", "/__sandbox/counters", None),
    ("GET", "/__sandbox/secrets", None),
    ("GET", "/__sandbox/faults", None),
    ("POST", "/__sandbox/tokens/expire", None),
    ("POST", "/__sandbox/counters/reset", None),
    ("DELETE", "/__sandbox/faults", None),
    ("PATCH", f"/__sandbox/users/{DEMO_USER.email}", {"password": "taken-over"}),
]


@contextmanager
def cli(*args: str, env: dict[str, str] | None = None) -> Iterator[tuple[str, str, subprocess.Popen[str]]]:
    """The sandbox CLI on a free port; yields (base URL, its first stdout line, the process)."""
    port = free_port()
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [*MODULE, "--port", str(port), "--no-seed", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "serving at" in line, proc.communicate(timeout=10)
        yield f"http://127.0.0.1:{port}", line, proc
    finally:
        stop(proc)


def bearer(admin_token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {admin_token}"}


# 1. binding outside loopback


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1"])  # noqa: S104
def test_cli_refuses_a_remote_bind_without_the_flag(host: str) -> None:
    result = subprocess.run(  # noqa: S603 - our own interpreter and module
        [*MODULE, "--host", host, "--port", "0"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert f"refusing to listen on {host!r}" in result.stderr
    assert "add --allow-remote" in result.stderr


def test_cli_warns_on_a_remote_bind_with_the_flag() -> None:
    with cli("--host", "0.0.0.0", "--allow-remote") as (base, line, proc):  # noqa: S104
        assert "serving at http://0.0.0.0:" in line
        admin = bearer(ADMIN_TOKEN_RE.search(line).group(1))  # type: ignore[union-attr]
        assert httpx.get(f"{base}/__sandbox/counters", headers=admin, timeout=10).status_code == 200
        assert httpx.get(f"{base}/__sandbox/counters", timeout=10).status_code == 401
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert "WARNING: the Gini sandbox listens on '0.0.0.0' and is reachable from other machines" in err


def test_programmatic_starts_refuse_a_remote_bind() -> None:
    with pytest.raises(SandboxAccessError, match=r"allow_remote=True"), run_sandbox(host="0.0.0.0"):  # noqa: S104
        pass
    with pytest.raises(SandboxAccessError, match="--allow-remote"), serving(object(), host="0.0.0.0"):  # noqa: S104
        pass


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1"])
def test_loopback_binds_need_no_flag(host: str) -> None:
    with run_sandbox(host=host) as box:
        assert box.counters()["requests"] == 0


# 2. the admin token


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
def test_admin_routes_need_the_token(
    gini_sandbox: RunningSandbox, method: str, path: str, body: dict[str, str] | None
) -> None:
    url = gini_sandbox.base_url + path
    for headers in ({}, bearer("wrong-token"), {"Authorization": f"Basic {gini_sandbox.admin_token}"}):
        refused = httpx.request(method, url, json=body, headers=headers, timeout=10)
        assert refused.status_code == 401, headers
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert refused.json()["error"] == "admin_token_required"
        assert "Authorization: Bearer <token>" in refused.json()["message"]
    right = httpx.request(method, url, json=body, headers=bearer(gini_sandbox.admin_token), timeout=10)
    assert right.status_code in (200, 204), right.text


def test_refused_admin_changes_change_nothing(gini_sandbox: RunningSandbox) -> None:
    access_token = token(gini_sandbox)
    base = gini_sandbox.base_url
    assert httpx.post(f"{base}/__sandbox/tokens/expire", timeout=10).status_code == 401
    response = httpx.patch(f"{base}/__sandbox/users/{DEMO_USER.email}", json={"password": "x"}, timeout=10)
    assert response.status_code == 401
    assert httpx.get(f"{base}/documents", headers=api_headers(access_token), timeout=10).status_code == 200
    token(gini_sandbox)  # the password is unchanged


def test_secrets_without_the_token_reveal_nothing(gini_sandbox: RunningSandbox) -> None:
    token(gini_sandbox)  # an issued access and refresh token
    known = [s for values in gini_sandbox.secrets().values() for s in values]
    assert len(known) >= 4
    for headers in ({}, bearer("guess")):
        response = httpx.get(f"{gini_sandbox.base_url}/__sandbox/secrets", headers=headers, timeout=10)
        assert response.status_code == 401
        assert not [s for s in known if s in response.text]


def test_a_token_in_the_query_or_a_cookie_is_not_read(gini_sandbox: RunningSandbox) -> None:
    url = f"{gini_sandbox.base_url}/__sandbox/secrets"
    admin_token = gini_sandbox.admin_token
    assert admin_token
    for params in ({"token": admin_token}, {"access_token": admin_token}, {"admin_token": admin_token}):
        assert httpx.get(url, params=params, timeout=10).status_code == 401
    for name in ("token", "admin_token", "Authorization"):
        with httpx.Client(cookies={name: admin_token}) as browser:
            assert browser.get(url, timeout=10).status_code == 401


def test_health_needs_no_token_and_tells_only_counts(gini_sandbox: RunningSandbox) -> None:
    response = httpx.get(f"{gini_sandbox.base_url}/__sandbox/health", timeout=10)
    assert response.status_code == 200
    assert set(response.json()) == {"status", "documents", "users"}
    assert httpx.post(f"{gini_sandbox.base_url}/__sandbox/health", timeout=10).status_code == 401


def test_a_given_token_is_used_and_not_printed() -> None:
    chosen = "my-own-sandbox-admin-token"
    with cli(env={TOKEN_ENV: chosen}) as (base, line, _):
        assert chosen not in line
        assert f"admin token: ${TOKEN_ENV}," in line
        assert httpx.get(f"{base}/__sandbox/faults", headers=bearer(chosen), timeout=10).status_code == 200
    with cli("--admin-token", chosen, env={TOKEN_ENV: "overridden"}) as (base, line, _):
        assert chosen not in line
        assert httpx.get(f"{base}/__sandbox/faults", headers=bearer(chosen), timeout=10).status_code == 200
    with run_sandbox(admin_token=chosen) as box:
        assert box.admin_token == chosen
        assert (
            httpx.get(f"{box.base_url}/__sandbox/faults", headers=bearer(chosen), timeout=10).status_code
            == 200
        )


def test_an_empty_token_is_refused() -> None:
    result = subprocess.run(  # noqa: S603 - our own interpreter and module
        [*MODULE, "--admin-token", " ", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "the admin token is empty" in result.stderr
    with pytest.raises(SandboxAccessError, match="admin token is empty"), run_sandbox(admin_token=""):
        pass


def test_generated_tokens_differ() -> None:
    with run_sandbox() as one, run_sandbox() as two:
        assert one.admin_token
        assert two.admin_token
        assert len(one.admin_token) >= 32
        assert one.admin_token != two.admin_token
        assert (
            httpx.get(f"{two.base_url}/__sandbox/faults", headers=bearer(one.admin_token)).status_code == 401
        )


# 3. Host checks against DNS rebinding


def test_a_foreign_host_is_refused_on_every_route(gini_sandbox: RunningSandbox) -> None:
    access_token = token(gini_sandbox)
    gini_sandbox.reset_counters()
    base = gini_sandbox.base_url
    calls = [
        ("GET", "/__sandbox/secrets", bearer(gini_sandbox.admin_token)),
        ("GET", "/__sandbox/health", {}),
        ("GET", "/documents", api_headers(access_token)),
        ("POST", "/oauth/token?grant_type=client_credentials", {}),
        ("GET", "/openapi.json", {}),
    ]
    for host in ("evil.example", "evil.example:8080", "127.0.0.1.evil.example", ""):
        for method, path, headers in calls:
            response = httpx.request(method, base + path, headers={**headers, "Host": host}, timeout=10)
            assert response.status_code == 421, (host, path)
            assert response.json()["error"] == "host_not_allowed"
            assert "--allowed-host" in response.json()["message"]
    assert gini_sandbox.counters()["requests"] == 0  # refused before the emulator saw them


def test_loopback_hosts_are_answered(gini_sandbox: RunningSandbox) -> None:
    port = gini_sandbox.base_url.rsplit(":", 1)[1]
    for host in (f"localhost:{port}", "LOCALHOST", f"127.0.0.1:{port}", "127.1.2.3", f"[::1]:{port}"):
        response = gini_sandbox.admin.get("/counters", headers={"Host": host})
        assert response.status_code == 200, host


def test_allowed_hosts_are_answered() -> None:
    with run_sandbox(allowed_hosts=["sandbox.internal"]) as box:
        assert box.admin.get("/counters", headers={"Host": "sandbox.internal:9000"}).status_code == 200
        assert box.admin.get("/counters", headers={"Host": "other.internal"}).status_code == 421
    with run_sandbox(allowed_hosts=["*"]) as box:
        assert box.admin.get("/counters", headers={"Host": "anything.example"}).status_code == 200


def test_cli_allowed_host() -> None:
    with cli("--allowed-host", "sandbox.internal") as (base, line, _):
        admin = bearer(ADMIN_TOKEN_RE.search(line).group(1))  # type: ignore[union-attr]
        answered = httpx.get(f"{base}/__sandbox/faults", headers={**admin, "Host": "sandbox.internal"})
        assert answered.status_code == 200
        refused = httpx.get(f"{base}/__sandbox/faults", headers={**admin, "Host": "evil.example"})
        assert refused.status_code == 421


# 4. no cross-site forms


@pytest.mark.parametrize("content_type", [FORM, "multipart/form-data; boundary=x", "text/plain"])
def test_a_cross_site_form_post_is_refused(gini_sandbox: RunningSandbox, content_type: str) -> None:
    access_token = token(gini_sandbox)
    url = f"{gini_sandbox.base_url}/__sandbox/tokens/expire"
    # what a form on another site sends: its content type, maybe a cookie, never Authorization
    form = {"Content-Type": content_type, "Origin": "http://evil.example"}
    assert httpx.post(url, headers=form, content=b"", timeout=10).status_code == 401
    # even with the token (which no form can send) a form's content type is refused
    with_token = httpx.post(url, headers={**form, **bearer(gini_sandbox.admin_token)}, content=b"a=b")
    assert with_token.status_code == 415
    assert "application/json" in with_token.json()["message"]
    api = httpx.get(f"{gini_sandbox.base_url}/documents", headers=api_headers(access_token), timeout=10)
    assert api.status_code == 200  # the token was not expired


def test_helpers_still_send_bodiless_and_json_changes(gini_sandbox: RunningSandbox) -> None:
    token(gini_sandbox)
    assert gini_sandbox.expire_tokens() >= 1  # a POST without a body
    gini_sandbox.settings(user_token_ttl=60)  # a PATCH with JSON
    gini_sandbox.reset_counters()
