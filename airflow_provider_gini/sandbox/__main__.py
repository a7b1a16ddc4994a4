"""``python -m airflow_provider_gini.sandbox`` (also the ``gini-sandbox`` console script)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

from pydantic import ValidationError

from airflow_provider_gini.sandbox.access import TOKEN_ENV, Access, SandboxAccessError, env_token
from airflow_provider_gini.sandbox.config import PROFILES, ApiProfile, SandboxConfig
from airflow_provider_gini.sandbox.faults import FaultRule
from airflow_provider_gini.sandbox.server import base_url_of, connection_dict, serve


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m airflow_provider_gini.sandbox",
        description="Serve the Gini sandbox: Gini's user center and Pay API, emulated locally.",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1); one outside loopback needs --allow-remote",
    )
    p.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080; 0 picks one)")
    p.add_argument(
        "--print-connection",
        action="store_true",
        help="print the AIRFLOW_CONN_GINI_DEFAULT value (JSON) for the demo client and user, then exit",
    )
    p.add_argument("--config", type=Path, help="a JSON file with a full SandboxConfig")
    p.add_argument("--no-seed", action="store_true", help="start with no documents")
    p.add_argument("--seed-start", type=date.fromisoformat, help="first seeded day, YYYY-MM-DD")
    p.add_argument("--seed-days", type=int, help="number of seeded days")
    p.add_argument("--user-token-ttl", type=int, help="expires_in of user tokens (default 3599)")
    p.add_argument("--client-token-ttl", type=int, help="expires_in of client tokens (default 43199)")
    p.add_argument("--processing-delay", type=float, help="seconds uploads stay PENDING (default 0)")
    p.add_argument("--latency", type=float, default=0.0, help="milliseconds added to every request")
    p.add_argument("--jitter", type=float, default=0.0, help="up to this many random extra milliseconds")
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="JSON",
        help='a fault rule, e.g. \'{"kind": "status", "status": 503, "path": "/documents*", "first": 3}\'',
    )
    p.add_argument("--log-level", default="warning", help="uvicorn log level (default warning)")
    safety = p.add_argument_group("access", "who may reach the sandbox (docs/sandbox.md: Access)")
    safety.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a --host outside loopback (127.0.0.0/8, ::1, localhost): the sandbox serves "
        "well-known demo credentials, so only on a trusted network",
    )
    safety.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a Host header name to answer besides loopback ones and the bind address (repeatable; "
        "'*' answers any, turning off the DNS-rebinding check)",
    )
    safety.add_argument(
        "--admin-token",
        help=f"the admin API's token (default: ${TOKEN_ENV}, else a random one printed at start); "
        f"prefer {TOKEN_ENV}, as other users can read a command line",
    )
    api = p.add_argument_group(
        "API profile", "how the sandbox answers where Gini's sources disagree (docs/gini-compat.md)"
    )
    api.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        help="pay-api (default): ?next=<creation date> answering {documents}; "
        "legacy: ?offset= answering {totalCount, documents}",
    )
    api.add_argument("--order", choices=["ascending", "descending"], help="list order (default ascending)")
    api.add_argument(
        "--cursor", choices=["inclusive", "exclusive"], help="pay-api: does next=<ms> include <ms>"
    )
    api.add_argument(
        "--total-count",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="pay-api: answer a totalCount too",
    )
    api.add_argument("--offset-param", choices=["offset", "next"], help="legacy: the offset's parameter")
    api.add_argument("--max-limit", type=int, help="largest limit accepted (default 250)")
    api.add_argument("--page-cap", type=int, help="silently answer at most this many documents a page")
    api.add_argument("--page-images", choices=["named", "sizes"], help="large/medium or 750x900/1280x1810")
    api.add_argument("--error-body", choices=["message", "items"], help="{message} or API v5 {items}")
    api.add_argument(
        "--pending-status", type=int, choices=[404, 409], help="extractions etc. of unfinished documents"
    )
    api.add_argument(
        "--feedback-methods",
        type=lambda v: [m.strip().upper() for m in v.split(",") if m.strip()],
        help="e.g. PUT (POST then answers 405)",
    )
    api.add_argument(
        "--echo-metadata",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="echo upload metadata headers as uploadMetadata in the document JSON (no Gini source: "
        "off by default)",
    )
    return p


# Every profile field is a switch of its own but the listing, which --profile chooses.
API_SWITCHES = tuple(name for name in ApiProfile.model_fields if name != "listing")


def build_config(args: argparse.Namespace) -> SandboxConfig:
    data = json.loads(args.config.read_text()) if args.config else {}
    config = SandboxConfig.model_validate(data)
    updates: dict[str, object] = {}
    if args.no_seed:
        updates["seed"] = False
    if args.seed_start is not None:
        updates["seed_start"] = args.seed_start
    if args.seed_days is not None:
        updates["seed_days"] = args.seed_days
    settings = {
        key: value
        for key, value in (
            ("user_token_ttl", args.user_token_ttl),
            ("client_token_ttl", args.client_token_ttl),
            ("processing_delay", args.processing_delay),
        )
        if value is not None
    }
    if settings:
        updates["settings"] = config.settings.model_copy(update=settings)
    faults = list(config.faults)
    if args.latency or args.jitter:
        faults.append(FaultRule(kind="latency", delay=args.latency / 1000, jitter=args.jitter / 1000))
    faults += [FaultRule.model_validate_json(raw) for raw in args.fault]
    updates["faults"] = faults
    api = config.api.model_dump() | (PROFILES[args.profile] if args.profile else {})
    api |= {key: getattr(args, key) for key in API_SWITCHES if getattr(args, key) is not None}
    updates["api"] = api
    return SandboxConfig.model_validate(config.model_dump() | updates)


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    try:
        config = build_config(args)
    except (ValidationError, ValueError, OSError) as exc:
        p.error(f"invalid sandbox configuration: {exc}")
    given = args.admin_token if args.admin_token is not None else env_token()
    try:
        access = Access.build(given, args.host, args.allowed_host)
    except SandboxAccessError as exc:
        p.error(str(exc))
    if args.print_connection:
        user, client = config.users[0], config.clients[0]
        print(json.dumps(connection_dict(base_url_of(args.host, args.port), user, client)))
        return 0

    # A token the user chose is theirs to know; a generated one is printed, as nobody else knows it.
    shown = (
        access.admin_token
        if given is None
        else ("from --admin-token" if args.admin_token else f"${TOKEN_ENV}")
    )

    def ready(url: str) -> None:
        print(
            f"Gini sandbox serving at {url} (admin API: {url}/__sandbox/, admin token: {shown}, "
            f"spec: {url}/openapi.json)",
            flush=True,
        )

    try:  # the bind is checked before anything is printed: a refusal is all the output
        serve(
            config,
            args.host,
            args.port,
            args.log_level,
            on_ready=ready,
            access=access,
            allow_remote=args.allow_remote,
        )
    except SandboxAccessError as exc:
        p.error(str(exc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
