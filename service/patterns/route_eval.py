"""Labelled routing sets and the figures that judge a router on them.

The sets live in `configs/eval/` (see its README): design families (training data and the
leave-one-family-out estimate of `scripts/train_router.py`) and held-out families that no
training or tuning has seen. Everything here is pure: a report is computed from the expected and
predicted route of each query, so the CLI, the training script, the tests and the
token-reduction experiment all count the same way.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from service.patterns.registry import PatternRegistry
from service.patterns.route_model import PROJECT_ROOT, ROUTES

EVAL_DIR = PROJECT_ROOT / "configs" / "eval"
DESIGN_PATH = EVAL_DIR / "router_families.jsonl"
LEGACY_PATH = EVAL_DIR / "routing_eval.jsonl"
HELDOUT_PATH = EVAL_DIR / "router_heldout.jsonl"
#: Issue 13's acceptance on the held-out families.
TARGET_ACCURACY = 0.90
TARGET_PER_ROUTE = 0.85
#: The catalogue's own exemplars: always training rows, never a test family.
CATALOGUE_FAMILY = "catalogue"


def load_labelled(path: Path) -> list[dict[str, Any]]:
    """Rows of one JSONL set; a row without `family` gets one from its split (legacy set)."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        row = json.loads(line)
        if row.get("route") not in ROUTES or not str(row.get("query", "")).strip():
            raise ValueError(f"{path}:{number}: needs a query and a route in {ROUTES}")
        row.setdefault("family", f"legacy_{row.get('split', 'all')}")
        rows.append(row)
    return rows


def design_rows() -> list[dict[str, Any]]:
    """Everything the router may be trained and tuned on."""
    return load_labelled(DESIGN_PATH) + load_labelled(LEGACY_PATH)


def heldout_rows() -> list[dict[str, Any]]:
    """The untouched held-out families."""
    return load_labelled(HELDOUT_PATH)


def training_rows(registry: PatternRegistry) -> list[dict[str, Any]]:
    """Design families, the legacy set, and the catalogue's exemplars (always in training)."""
    rows = design_rows()
    for pattern in registry.patterns:
        rows += [
            {"query": q, "route": pattern.type, "family": CATALOGUE_FAMILY}
            for q in pattern.exemplars
        ]
    rows += [
        {"query": q, "route": "llm", "family": CATALOGUE_FAMILY} for q in registry.llm_exemplars
    ]
    return rows


def data_digest(rows: Sequence[dict[str, Any]], registry: PatternRegistry) -> str:
    """What a model was trained on: labelled rows, exemplars and triggers (not budgets, TTLs)."""
    h = hashlib.sha256()
    for row in rows:
        h.update(f"{row['query']}\t{row['route']}\t{row['family']}\n".encode())
    for pattern in registry.patterns:
        h.update(f"{pattern.name}:{pattern.type}\n".encode())
        for trigger in pattern.triggers:
            h.update(trigger.pattern.encode() + b"\n")
    return h.hexdigest()


def evaluate(
    expected: Sequence[str],
    predicted: Sequence[str | None],
    families: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Accuracy overall and per route, precision/recall per route, confusion, per family.

    A prediction of None (a query that was never answered) counts as wrong: missing evidence
    must not raise the figure.
    """
    if len(expected) != len(predicted):
        raise ValueError("expected and predicted differ in length")
    pairs = list(zip(expected, predicted, strict=True))
    correct = [e == p for e, p in pairs]
    confusion = {e: dict.fromkeys([*ROUTES, "other"], 0) for e in ROUTES}
    for e, p in pairs:
        confusion[e][p if p in ROUTES else "other"] += 1
    per_route: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        truth = sum(1 for e in expected if e == route)
        chosen = sum(1 for p in predicted if p == route)
        hit = confusion[route][route]
        per_route[route] = {
            "n": truth,
            "correct": hit,
            "recall": _ratio(hit, truth),
            "precision": _ratio(hit, chosen),
        }
    report: dict[str, Any] = {
        "n": len(pairs),
        "correct": sum(correct),
        "accuracy": _ratio(sum(correct), len(pairs)),
        "per_route": per_route,
        "confusion": confusion,
    }
    if families is not None:
        by_family: dict[str, list[bool]] = {}
        for family, ok in zip(families, correct, strict=True):
            by_family.setdefault(family, []).append(ok)
        report["per_family"] = {
            f: {"n": len(v), "accuracy": _ratio(sum(v), len(v))}
            for f, v in sorted(by_family.items())
        }
    return report


def worst_route(report: dict[str, Any]) -> tuple[str, float | None]:
    """The route with the lowest recall (its per-route accuracy)."""
    rates = [(r, v["recall"]) for r, v in report["per_route"].items() if v["n"]]
    if not rates:
        return "", None
    return min(rates, key=lambda rv: rv[1] if rv[1] is not None else -1.0)


def meets_target(report: dict[str, Any]) -> bool:
    """Issue 13's bar: >= 0.90 overall and >= 0.85 on every route."""
    _, worst = worst_route(report)
    accuracy = report["accuracy"]
    return (
        accuracy is not None
        and accuracy >= TARGET_ACCURACY
        and worst is not None
        and worst >= TARGET_PER_ROUTE
    )


def score_heldout(keys: Iterable[str | None], routes: Iterable[str | None]) -> dict[str, Any]:
    """The held-out report from (query, route answered) pairs, e.g. an experiment's rows.

    Every held-out query counts once: one with no answer in the pairs counts as wrong, so a run
    that lost rows cannot score better than one that kept them.
    """
    answered: dict[str, str | None] = {}
    for key, route in zip(keys, routes, strict=True):
        if key is not None and key not in answered:
            answered[key] = route
    rows = heldout_rows()
    report = evaluate(
        [r["route"] for r in rows],
        [answered.get(r["query"]) for r in rows],
        [r["family"] for r in rows],
    )
    report["answered"] = sum(1 for r in rows if r["query"] in answered)
    return report


def format_report(report: dict[str, Any], title: str) -> str:
    """A human-readable report: overall, per route (accuracy, precision), confusion matrix."""
    lines = [f"{title}: accuracy {_pct(report['accuracy'])} ({report['correct']}/{report['n']})"]
    lines.append(f"  {'route':<15} {'n':>4} {'accuracy':>9} {'precision':>10}")
    for route, v in report["per_route"].items():
        lines.append(f"  {route:<15} {v['n']:>4} {_pct(v['recall']):>9} {_pct(v['precision']):>10}")
    lines.append("  confusion (rows: expected, columns: routed to)")
    columns = [*ROUTES, "other"]
    lines.append("  " + " " * 15 + "".join(f"{c[:6]:>8}" for c in columns))
    for expected, row in report["confusion"].items():
        lines.append(f"  {expected:<15}" + "".join(f"{row[c]:>8}" for c in columns))
    if "per_family" in report:
        worst = sorted(report["per_family"].items(), key=lambda kv: kv[1]["accuracy"] or 0.0)
        text = ", ".join(f"{f} {_pct(v['accuracy'])}" for f, v in worst)
        lines.append(f"  per family (worst first): {text}")
    return "\n".join(lines)


def errors(
    queries: Sequence[str], expected: Sequence[str], predicted: Sequence[str | None]
) -> Counter[str]:
    """How often each expected->predicted mistake happened."""
    return Counter(
        f"{e}->{p}" for q, e, p in zip(queries, expected, predicted, strict=True) if e != p
    )


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"
