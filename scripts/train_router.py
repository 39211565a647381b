"""Train the router's learned route decision and estimate it leave-one-family-out.

Training data: the design families of configs/eval/router_families.jsonl, the first labelled set
(configs/eval/routing_eval.jsonl, two more families) and the catalogue's own exemplars. The
held-out families (configs/eval/router_heldout.jsonl) are never read here: `tmws route --eval`
scores them once the model is written.

1. Every query is embedded once (real MiniLM) and run through the catalogue's regex triggers.
2. Hyper-parameters (L2 strength, weight of the word features) are chosen by grouped k-fold over
   families; the figure printed for the choice is leave-one-family-out over the design set, with
   the router's exact decision rule (regex fast path, then the model, then thresholds).
3. Per-route thresholds for the LLM fallback are calibrated on the out-of-family probabilities.
4. The final model is fitted on all design rows and written with its report as metadata.

    python scripts/train_router.py                 # ~30 min on 2 busy cores
    python scripts/train_router.py --grid none     # DEFAULT_PARAMS only (the grid's last pick), ~8 min
"""

import os

# One BLAS thread: the fits are small, and threads fighting over 2 shared cores are 10x slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import hashlib
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from service.config import DEFAULT_PATTERNS_PATH
from service.patterns import route_eval
from service.patterns.registry import PatternRegistry
from service.patterns.route_model import (
    DEFAULT_MODEL_PATH,
    EMBEDDING_DIM,
    ROUTES,
    LexicalConfig,
    RouteModel,
    balanced_weights,
    fit_softmax,
    softmax,
)
from service.patterns.router import choose_route, regex_hits

#: (l2, lexical weight); weight 0 = the embedding alone (printed as the baseline).
FULL_GRID: tuple[tuple[float, float], ...] = (
    (1e-3, 3.0),
    (3e-3, 3.0),
    (3e-3, 4.0),
    (3e-3, 5.0),
    (1e-2, 5.0),
    (3e-3, 6.0),
)
DEFAULT_PARAMS = (3e-3, 5.0)
EMBEDDING_SCALE = 3.0
LEXICAL_DIM = 4096
GROUPED_FOLDS = 8
THRESHOLD_GRID = (0.0, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6)
CATALOGUE_FAMILY = route_eval.CATALOGUE_FAMILY


def embed(texts: list[str], cache: Path | None) -> np.ndarray:
    key = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    if cache is not None:
        path = cache.with_name(f"{cache.stem}-{key}.npy")
        if path.exists():
            return np.load(path)
    from service.embedding import encode_sync

    vectors = encode_sync(texts)
    if cache is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, vectors)
    return vectors


def regex_table(rows: Sequence[dict[str, Any]], registry: PatternRegistry) -> list[list[tuple]]:
    """Per row, the regex hits the router would act on: [(route, exact)]."""
    patterns = list(registry.patterns)
    table = []
    for row in rows:
        hits = regex_hits(row["query"], patterns)
        hits = [h for h in hits if h.pattern.type == "hybrid"] or hits
        table.append([(h.pattern.type, h.exact) for h in hits])
    return table


def features(vectors: np.ndarray, texts: Sequence[str], lexical: LexicalConfig) -> np.ndarray:
    lex = np.stack([lexical.vector(t) for t in texts]) if lexical.dim else None
    parts = [vectors * EMBEDDING_SCALE] + ([lex] if lex is not None else [])
    return np.hstack(parts).astype(np.float64)


def out_of_fold(
    x: np.ndarray, y: np.ndarray, families: np.ndarray, folds: list[np.ndarray], l2: float
) -> np.ndarray:
    """Probabilities of each row from a model that never saw its family."""
    probs = np.zeros((len(y), len(ROUTES)))
    for test in folds:
        train = ~test
        weights = balanced_weights(y[train], families[train])
        w, b = fit_softmax(x[train], y[train], len(ROUTES), l2=l2, sample_weight=weights)
        probs[test] = softmax(x[test] @ w.T + b)
    return probs


def family_folds(families: np.ndarray, k: int | None) -> list[np.ndarray]:
    """Leave-one-family-out (k None) or k grouped folds; catalogue rows are never tested."""
    names = sorted(set(families) - {CATALOGUE_FAMILY})
    if k is None:
        return [families == f for f in names]
    rng = np.random.default_rng(13)
    order = rng.permutation(names)
    return [np.isin(families, order[i::k]) for i in range(k)]


def pipeline(
    probs: np.ndarray, regex: Sequence[list[tuple]], thresholds: dict[str, float]
) -> list[str]:
    """The router's balanced-mode decision for every row (see HybridRouter.route)."""
    out = []
    for p, hits in zip(probs, regex, strict=True):
        exact = [route for route, is_exact in hits if is_exact]
        if len(exact) == 1:
            out.append(exact[0])  # an exact form decides without the model
            continue
        named = dict(zip(ROUTES, (float(v) for v in p), strict=True))
        out.append(choose_route(named, thresholds)[0])
    return out


def calibrate(
    probs: np.ndarray, regex: Sequence[list[tuple]], labels: Sequence[str]
) -> dict[str, float]:
    """Per-route thresholds maximising out-of-family accuracy (coordinate ascent, ties low)."""
    thresholds = dict.fromkeys(ROUTES, 0.0)
    for _ in range(2):
        for route in ("infrastructure", "memory", "hybrid"):
            scores = []
            for t in THRESHOLD_GRID:
                trial = {**thresholds, route: t}
                routed = pipeline(probs, regex, trial)
                scores.append((sum(a == b for a, b in zip(routed, labels, strict=True)), -t))
            thresholds[route] = -max(scores)[1]
    return thresholds


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patterns", type=Path, default=DEFAULT_PATTERNS_PATH)
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL_PATH)
    parser.add_argument("--grid", choices=("full", "none"), default="full")
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path("/tmp/tmws-router-embeddings.npy"),
        help="embedding cache (keyed by the texts); '' to disable",
    )
    args = parser.parse_args(argv)
    started = time.time()
    registry = PatternRegistry.load(args.patterns)
    rows = route_eval.training_rows(registry)
    texts = [r["query"] for r in rows]
    labels = [r["route"] for r in rows]
    y = np.array([ROUTES.index(r) for r in labels])
    families = np.array([r["family"] for r in rows])
    tested = families != CATALOGUE_FAMILY
    vectors = embed(texts, args.cache if str(args.cache) else None)
    regex = regex_table(rows, registry)
    print(
        f"{len(rows)} rows, {len(set(families))} families, embedded in {time.time() - started:.0f}s"
    )

    grid = FULL_GRID if args.grid == "full" else (DEFAULT_PARAMS,)
    best, best_score = DEFAULT_PARAMS, -1.0
    if len(grid) > 1:
        folds = family_folds(families, GROUPED_FOLDS)
        for l2, weight in grid:
            x = features(vectors, texts, LexicalConfig(LEXICAL_DIM, weight))
            probs = out_of_fold(x, y, families, folds, l2)
            routed = pipeline(probs, regex, dict.fromkeys(ROUTES, 0.0))
            score = float(np.mean(np.array(routed)[tested] == np.array(labels)[tested]))
            print(f"  grouped {GROUPED_FOLDS}-fold  l2={l2:g} words={weight:g}: {score:.4f}")
            if score > best_score:
                best, best_score = (l2, weight), score
    l2, weight = best
    lexical = LexicalConfig(LEXICAL_DIM, weight)
    lofo = family_folds(families, None)

    x = features(vectors, texts, lexical)
    probs = out_of_fold(x, y, families, lofo, l2)
    keep = np.flatnonzero(tested)
    thresholds = calibrate(probs[keep], [regex[i] for i in keep], [labels[i] for i in keep])
    routed = pipeline(probs, regex, thresholds)
    model_only = pipeline(probs, [[] for _ in rows], thresholds)
    base_x = features(vectors, texts, LexicalConfig(0, 0.0))
    base_probs = out_of_fold(base_x, y, families, lofo, l2)
    baseline = pipeline(base_probs, [[] for _ in rows], dict.fromkeys(ROUTES, 0.0))

    def report(predicted: list[str]) -> dict[str, Any]:
        keep = np.flatnonzero(tested)
        return route_eval.evaluate(
            [labels[i] for i in keep], [predicted[i] for i in keep], [families[i] for i in keep]
        )

    lofo_report = report(routed)
    print(route_eval.format_report(lofo_report, "leave-one-family-out, design set (router)"))
    for name, predicted in (("model only, no regex", model_only), ("embedding only", baseline)):
        print(f"  {name}: {route_eval._pct(report(predicted)['accuracy'])}")
    print(f"  thresholds: {thresholds}")

    weights = balanced_weights(y, families)
    w, b = fit_softmax(x, y, len(ROUTES), l2=l2, sample_weight=weights)
    assert w.shape == (len(ROUTES), EMBEDDING_DIM + LEXICAL_DIM)
    model = RouteModel(
        classes=ROUTES,
        weights=w,
        bias=b,
        scale=EMBEDDING_SCALE,
        thresholds=thresholds,
        lexical=lexical,
        meta={
            "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "embedder": "all-MiniLM-L6-v2",
            "rows": len(rows),
            "families": sorted(set(families)),
            "l2": l2,
            "lexical_weight": weight,
            "data_digest": route_eval.data_digest(rows, registry),
            "lofo": {
                "accuracy": lofo_report["accuracy"],
                "per_route": {r: v["recall"] for r, v in lofo_report["per_route"].items()},
                "model_only": report(model_only)["accuracy"],
                "embedding_only": report(baseline)["accuracy"],
            },
        },
    )
    model.save(args.out)
    print(
        f"wrote {args.out} ({args.out.stat().st_size // 1024} KiB) in {time.time() - started:.0f}s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
