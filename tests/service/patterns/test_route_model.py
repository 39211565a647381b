"""The learned route decision without the embedder: features, fitting, the model file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.patterns.route_model import (
    DEFAULT_MODEL_PATH,
    EMBEDDING_DIM,
    ROUTES,
    LexicalConfig,
    RouteModel,
    RouteModelError,
    balanced_weights,
    fit_softmax,
)


def test_word_features_are_stable_and_normalised() -> None:
    lexical = LexicalConfig(dim=512, weight=3.0)
    a = lexical.vector("Remember that the deploy is on Friday")
    b = lexical.vector("remember that the deploy is on friday")
    assert np.array_equal(a, b)  # case-blind, and crc32 is the same in every process
    assert np.linalg.norm(a) == pytest.approx(3.0, rel=1e-5)
    assert not np.any(LexicalConfig(dim=0).vector("anything"))  # no lexical part at all
    assert not np.array_equal(a, lexical.vector("the deploy is on Friday, remember"))  # bigrams


def _toy(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(ROUTES), 16)) * 3
    y = rng.integers(0, len(ROUTES), size=n)
    return centres[y] + rng.normal(size=(n, 16)), y


def test_fit_learns_and_shuffled_labels_do_not() -> None:
    x, y = _toy(400, 1)
    x_test, y_test = _toy(200, 1)
    w, b = fit_softmax(x, y, len(ROUTES), l2=1e-3)
    accuracy = np.mean(np.argmax(x_test @ w.T + b, axis=1) == y_test)
    assert accuracy > 0.9
    # Negative control: the same fit on shuffled labels must not look good.
    shuffled = np.random.default_rng(2).permutation(y)
    w, b = fit_softmax(x, shuffled, len(ROUTES), l2=1e-3)
    assert np.mean(np.argmax(x_test @ w.T + b, axis=1) == y_test) < 0.5


def test_balanced_weights_equalise_classes_and_damp_big_families() -> None:
    labels = [0] * 90 + [1] * 10
    groups = ["big"] * 80 + ["small"] * 20
    weights = balanced_weights(labels, groups)
    assert weights[:90].sum() == pytest.approx(weights[90:].sum())
    # Within class 0, a row of the small family weighs more than one of the big family.
    assert weights[85] > weights[0]


def test_model_round_trip(tmp_path: Path) -> None:
    lexical = LexicalConfig(dim=64, weight=2.0)
    rng = np.random.default_rng(0)
    model = RouteModel(
        classes=ROUTES,
        weights=rng.normal(size=(4, EMBEDDING_DIM + 64)).astype(np.float32),
        bias=np.zeros(4, dtype=np.float32),
        scale=3.0,
        thresholds={"infrastructure": 0.4, "memory": 0.0, "hybrid": 0.0, "llm": 0.0},
        lexical=lexical,
        meta={"note": "test"},
    )
    path = tmp_path / "m.npz"
    model.save(path)
    loaded = RouteModel.load(path)
    vector = rng.normal(size=EMBEDDING_DIM).astype(np.float32)
    assert np.allclose(
        loaded.probabilities(vector, "show queue depth"),
        model.probabilities(vector, "show queue depth"),
    )
    assert loaded.thresholds == pytest.approx(model.thresholds)
    assert loaded.meta == {"note": "test"} and loaded.lexical == lexical


def test_missing_or_foreign_model_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RouteModelError, match=r"not found; train it with scripts/train_router"):
        RouteModel.load(tmp_path / "absent.npz")
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, something=np.zeros(3))
    with pytest.raises(RouteModelError, match="not a router model"):
        RouteModel.load(foreign)


def test_committed_model_is_small_and_loads() -> None:
    assert DEFAULT_MODEL_PATH.stat().st_size < 512 * 1024
    model = RouteModel.load()
    assert model.classes == ROUTES
    probs = model.probabilities(np.zeros(EMBEDDING_DIM, dtype=np.float32), "remember that x")
    assert probs.shape == (4,) and probs.sum() == pytest.approx(1.0, rel=1e-5)
    lofo = model.meta["lofo"]
    assert lofo["accuracy"] >= 0.85, lofo  # the training-time estimate is recorded
