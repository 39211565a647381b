"""`tmws route --jsonl FILE [--mode balanced] [--eval]`: route queries offline, one JSON line each.

Reads `{"query": ...}` lines (`-` for stdin); a line that is not such an object yields a JSON
line with an `error` for that line and the run continues. With `--eval`, lines also carry the
expected `route`, and accuracy (overall, per route, per `split` when present) goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

from service.config import Settings
from service.embedding import Embedder
from service.patterns.registry import PatternRegistry
from service.patterns.router import DEFAULT_THRESHOLD, MODES, HybridRouter

ROUTES: tuple[str, ...] = ("infrastructure", "memory", "hybrid", "llm")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tmws route", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--jsonl", required=True, help='file of {"query": ...} lines, or - for stdin'
    )
    parser.add_argument("--mode", choices=MODES, default="balanced")
    parser.add_argument(
        "--eval", action="store_true", help="lines carry the expected route; report accuracy"
    )
    parser.add_argument(
        "--patterns", type=Path, default=None, help="catalogue (default: TMWS_PATTERNS_PATH)"
    )
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = parse_args(argv)
    patterns = args.patterns or Settings.from_env().patterns_path
    if args.jsonl == "-":
        lines = sys.stdin.read().splitlines()
    else:
        lines = Path(args.jsonl).read_text(encoding="utf-8").splitlines()
    results = asyncio.run(route_lines(lines, patterns, args.mode, args.threshold))
    _write(results, sys.stdout)
    if args.eval:
        summary = accuracy(results)
        sys.stderr.write(json.dumps(summary, indent=2) + "\n")
    return 0


async def route_lines(
    lines: Iterable[str], patterns: Path, mode: str, threshold: float = DEFAULT_THRESHOLD
) -> list[dict[str, Any]]:
    """Route every query line; malformed lines become `{"line": n, "error": ...}`."""
    registry = PatternRegistry.load(patterns)
    router = await HybridRouter.build(registry, Embedder(), threshold=threshold)
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        item, error = _parse(line)
        if error is not None:
            rows.append({"line": number, "error": error})
            continue
        decision = await router.route(item["query"], mode)
        row: dict[str, Any] = {
            "query": item["query"],
            "route": decision.route,
            "pattern_name": decision.pattern_name,
            "pattern_type": decision.pattern_type,
            "confidence": decision.confidence,
            "matched_by": decision.matched_by,
        }
        if "route" in item:
            row["expected"] = item["route"]
            row["correct"] = item["route"] == decision.route
        if "split" in item:
            row["split"] = item["split"]
        rows.append(row)
    return rows


def _parse(line: str) -> tuple[dict[str, Any], str | None]:
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        return {}, f"not JSON: {exc.msg} at column {exc.colno}"
    if not isinstance(item, dict):
        return {}, "line must be a JSON object"
    query = item.get("query")
    if not isinstance(query, str) or not query.strip():
        return {}, "missing or empty string field 'query'"
    expected = item.get("route")
    if expected is not None and expected not in ROUTES:
        return {}, f"field 'route' must be one of {', '.join(ROUTES)}"
    return item, None


def accuracy(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy overall, per expected route and per split, plus the confusion counts."""
    labelled = [r for r in rows if "expected" in r]
    summary: dict[str, Any] = {"labelled": len(labelled), "accuracy": _rate(labelled)}
    summary["per_route"] = {
        route: _rate([r for r in labelled if r["expected"] == route]) for route in ROUTES
    }
    splits = sorted({r["split"] for r in labelled if "split" in r})
    if splits:
        summary["per_split"] = {
            s: _rate([r for r in labelled if r.get("split") == s]) for s in splits
        }
    confusion = Counter(f"{r['expected']}->{r['route']}" for r in labelled if not r["correct"])
    summary["errors"] = dict(confusion.most_common())
    return summary


def _rate(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    correct = sum(1 for r in rows if r["correct"])
    return {
        "n": len(rows),
        "correct": correct,
        "accuracy": round(correct / len(rows), 4) if rows else None,
    }


def _write(rows: Iterable[dict[str, Any]], out: TextIO) -> None:
    for row in rows:
        out.write(json.dumps(row, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
