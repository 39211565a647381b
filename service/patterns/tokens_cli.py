"""`tmws tokens [--database-url URL] [--jsonl FILE] [--since-minutes N]`: token reduction from
executed requests (the `pattern_executions` learning record, or history rows as JSON lines)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from service.patterns.tokens import report_json

_QUERY = """
SELECT pattern_type, route, success, cache_hit, tokens_used, tokens_baseline
FROM pattern_executions
WHERE $1::float8 IS NULL OR created_at > now() - make_interval(secs => $1 * 60)
"""


async def rows_from_database(url: str, since_minutes: float | None = None) -> list[dict[str, Any]]:
    """Every learning-record row (optionally only recent ones) as dicts."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return [dict(r) for r in await conn.fetch(_QUERY, since_minutes)]
    finally:
        await conn.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Print the token report as JSON; exit code 0."""
    parser = argparse.ArgumentParser(prog="tmws tokens", description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--database-url", help="PostgreSQL holding pattern_executions")
    source.add_argument("--jsonl", type=Path, help="rows with tokens_used, tokens_baseline, ...")
    parser.add_argument("--since-minutes", type=float, default=None)
    args = parser.parse_args(argv)
    if args.jsonl is not None:
        lines = args.jsonl.read_text(encoding="utf-8").splitlines()
        rows = [json.loads(line) for line in lines if line.strip()]
    else:
        rows = asyncio.run(rows_from_database(args.database_url, args.since_minutes))
    sys.stdout.write(report_json(rows) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
