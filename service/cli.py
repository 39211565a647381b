"""`tmws` command line: serve, infra, db, token, route.

Bad input (a malformed setting, an unreachable server) ends in one line on stderr and exit 2,
never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from service.config import ConfigError, Settings


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env()
    if getattr(args, "host", None):
        settings = replace(settings, host=args.host)
    if getattr(args, "port", None) is not None:
        settings = replace(settings, port=args.port)
    if getattr(args, "instance_id", None):
        settings = replace(settings, instance_id=args.instance_id)
    if getattr(args, "state_dir", None):
        settings = replace(settings, state_dir=Path(args.state_dir))
    return settings


def cmd_serve(args: argparse.Namespace) -> int:
    from service.app import run_server

    run_server(_settings(args))
    return 0


def cmd_infra(args: argparse.Namespace) -> int:
    from service.infra.embedded import EmbeddedInfra, read_infra_file

    settings = _settings(args)
    state_dir = settings.state_dir.resolve()
    if args.action == "up":
        infra = EmbeddedInfra.start(state_dir, owner="cli")
        print(f"TMWS_DATABASE_URL={infra.database_url}")
        print(f"TMWS_REDIS_URL={infra.redis_url}")
        return 0
    if read_infra_file(state_dir) is None:
        if args.action == "status":
            print(f"no embedded infrastructure recorded under {state_dir}")
            return 1
        print(f"nothing to stop: no embedded infrastructure recorded under {state_dir}")
        return 0
    infra = EmbeddedInfra.create(state_dir)
    if args.action == "down":
        infra.stop()
        print(f"stopped PostgreSQL and Redis under {state_dir}")
        return 0
    status = infra.status()
    for key, value in status.items():
        print(f"{key}: {value}")
    return 0 if status["postgres"] == status["redis"] == "running" else 1


def cmd_db(args: argparse.Namespace) -> int:
    from service.bootstrap import resolve_urls
    from service.store import migrate

    settings = _settings(args)
    database_url = args.database_url or resolve_urls(settings, start=False)[0]
    if args.action == "migrate":
        report = asyncio.run(
            migrate.migrate(database_url, settings.state_dir.resolve() / "backups")
        )
        print(report)
        return 0
    for row in asyncio.run(migrate.status(database_url)):
        print(json.dumps(row, default=str))
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if not settings.auth_secret:
        raise ConfigError("TMWS_AUTH_SECRET is not set: there is no secret to sign a token with")
    from service.auth import issue_token

    print(
        issue_token(
            settings.auth_secret, args.agent_id, ttl_s=args.ttl, teams=args.team, admin=args.admin
        )
    )
    return 0


#: Sub-commands with their own argument parsers; everything after the name is theirs.
PASS_THROUGH = {
    "route": (
        "service.patterns.route_cli",
        "route queries: --eval (held-out report) or --jsonl FILE [--mode M] [--eval]",
    ),
    "tokens": (
        "service.patterns.tokens_cli",
        "token reduction of executed requests: --database-url URL | --jsonl FILE",
    ),
}


def _pass_through(name: str, argv: Sequence[str]) -> int:
    import importlib

    module = importlib.import_module(PASS_THROUGH[name][0])
    return int(module.main(list(argv)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tmws", description="TMWS pattern execution service")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser(
        "serve", help="run the server (FastAPI + WebSocket MCP + Streamable HTTP)"
    )
    serve.add_argument("--host", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8000; 0 picks a free one)")
    serve.add_argument("--instance-id", help="instance id reported in every response")
    serve.add_argument("--state-dir", help="folder of the embedded servers' data (default .tmws)")
    serve.set_defaults(func=cmd_serve)

    infra = sub.add_parser("infra", help="embedded PostgreSQL + Redis shared by local processes")
    infra.add_argument("action", choices=("up", "down", "status"))
    infra.add_argument("--state-dir", help="folder of the embedded servers' data (default .tmws)")
    infra.set_defaults(func=cmd_infra)

    db = sub.add_parser("db", help="schema migrations")
    db.add_argument("action", choices=("migrate", "status"))
    db.add_argument("--database-url", help="default: TMWS_DATABASE_URL or the embedded server")
    db.add_argument("--state-dir", help="folder of the embedded servers' data (default .tmws)")
    db.set_defaults(func=cmd_db)

    token = sub.add_parser("token", help="issue a signed agent token (needs TMWS_AUTH_SECRET)")
    token.add_argument("agent_id")
    token.add_argument("--ttl", type=int, default=86_400, help="lifetime in seconds")
    token.add_argument(
        "--team", action="append", default=[], help="team namespace the agent may use (repeatable)"
    )
    token.add_argument(
        "--admin", action="store_true", help="admin rights (reload_patterns, invalidate all)"
    )
    token.set_defaults(func=cmd_token)

    for name, (_, help_text) in PASS_THROUGH.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `tmws` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in PASS_THROUGH:
        logging.basicConfig(level=logging.WARNING)
        return _pass_through(argv[0], argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the CLI's top-level boundary: one line, no traceback
        from service.errors import TMWSError
        from service.infra.embedded import InfraError

        if isinstance(exc, ConfigError | InfraError | TMWSError | OSError):
            print(f"tmws: error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
