"""`tmws route [--jsonl FILE] [--mode balanced] [--eval [--check]]`: route queries offline.

`tmws route --eval` routes the held-out families (configs/eval/router_heldout.jsonl) and prints
accuracy overall and per route, per-route precision, the confusion matrix and per-family
accuracy, plus the leave-one-family-out figure recorded when the model was trained; `--check`
exits 1 unless issue 13's bar holds (>= 0.90 overall, >= 0.85 per route).

With `--jsonl FILE` it reads `{"query": ...}` lines (`-` for stdin) and writes one JSON line per
query; a line that is not such an object yields a JSON line with an `error` and the run
continues. With `--eval` too, lines carry the expected `route`, and the summary (accuracy overall,
per route, per `split`; the full report) goes to stderr as JSON.
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
from service.patterns import route_eval
from service.patterns.registry import PatternConfigError, PatternRegistry
from service.patterns.route_model import DEFAULT_MODEL_PATH, RouteModel, RouteModelError
from service.patterns.router import DEFAULT_THRESHOLD, MODES, HybridRouter

ROUTES: tuple[str, ...] = ("infrastructure", "memory", "hybrid", "llm")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tmws route", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--jsonl",
        default=None,
        help='file of {"query": ...} lines, or - for stdin (default with --eval: the held-out set)',
    )
    parser.add_argument("--mode", choices=MODES, default="balanced")
    parser.add_argument(
        "--eval", action="store_true", help="lines carry the expected route; report accuracy"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="with --eval on the held-out set: exit 1 unless >= 0.90 overall and >= 0.85 per route",
    )
    parser.add_argument(
        "--patterns", type=Path, default=None, help="catalogue (default: TMWS_PATTERNS_PATH)"
    )
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_PATH, help="route model (.npz)")
    parser.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help="one threshold for every route (default: the model's calibrated ones)",
    )
    args = parser.parse_args(argv)
    if args.jsonl is None and not args.eval:
        parser.error("give --jsonl FILE, or --eval for the held-out set")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code (2 with one line for a bad model or file)."""
    args = parse_args(argv)
    try:
        return _run(args)
    except (RouteModelError, PatternConfigError, OSError) as exc:
        sys.stderr.write(f"tmws route: {exc}\n")
        return 2


def _run(args: argparse.Namespace) -> int:
    patterns = args.patterns or Settings.from_env().patterns_path
    if args.jsonl is None:
        return _eval_heldout(args, patterns)
    if args.jsonl == "-":
        lines = sys.stdin.read().splitlines()
    else:
        lines = Path(args.jsonl).read_text(encoding="utf-8").splitlines()
    results = asyncio.run(route_lines(lines, patterns, args.mode, args.threshold, args.model))
    _write(results, sys.stdout)
    if args.eval:
        summary = accuracy(results)
        sys.stderr.write(json.dumps(summary, indent=2) + "\n")
    return 0


def _eval_heldout(args: argparse.Namespace, patterns: Path) -> int:
    """Route the held-out families and print the report (and the training-time LOFO figure)."""
    rows = route_eval.heldout_rows()
    lines = [json.dumps(row) for row in rows]
    results = asyncio.run(route_lines(lines, patterns, args.mode, args.threshold, args.model))
    report = route_eval.evaluate(
        [r["expected"] for r in results],
        [r["route"] for r in results],
        [r["family"] for r in rows],
    )
    title = f"held-out families ({route_eval.HELDOUT_PATH.name}, mode {args.mode})"
    print(route_eval.format_report(report, title))
    meta = RouteModel.load(args.model).meta
    lofo = meta.get("lofo", {})
    if lofo:
        per_route = ", ".join(f"{r} {route_eval._pct(v)}" for r, v in lofo["per_route"].items())
        print(
            f"leave-one-family-out on the design set (at training): "
            f"{route_eval._pct(lofo['accuracy'])} ({per_route})"
        )
    verdict = route_eval.meets_target(report)
    print(
        f"target >= {route_eval.TARGET_ACCURACY:.0%} overall and >= "
        f"{route_eval.TARGET_PER_ROUTE:.0%} per route: {'met' if verdict else 'NOT met'}"
    )
    return 1 if args.check and not verdict else 0


async def route_lines(
    lines: Iterable[str],
    patterns: Path,
    mode: str,
    threshold: float | None = DEFAULT_THRESHOLD,
    model: Path = DEFAULT_MODEL_PATH,
) -> list[dict[str, Any]]:
    """Route every query line; malformed lines become `{"line": n, "error": ...}`."""
    registry = PatternRegistry.load(patterns)
    router = await HybridRouter.build(registry, Embedder(), threshold=threshold, model=model)
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
        for key in ("split", "family"):
            if key in item:
                row[key] = item[key]
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
    summary["report"] = route_eval.evaluate(
        [r["expected"] for r in labelled], [r["route"] for r in labelled]
    )
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
