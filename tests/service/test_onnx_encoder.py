"""The ONNX Runtime backend of the encoder: exported from `MiniLM._encoder` once, checked against
it, the same vectors as sentence-transformers, and a server process still imports no
transformers (tests/service/test_minilm.py holds the same for whichever graph is cached)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from service import onnx_encoder
from service.embedding import _direct_for, _minilm, load_model
from service.minilm import MiniLM

ROOT = Path(__file__).resolve().parents[2]
TEXTS = ["ok", "is the database healthy", "word " * 400, "ünïcödé notes ✓", "show queue depth"]


def _model() -> MiniLM:
    model = _minilm()
    assert model is not None
    return model


def test_both_backends_give_sentence_transformers_vectors() -> None:
    expected = load_model().encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    onnx, torch_only = _direct_for("onnx", 1), _direct_for("torch", 1)
    assert isinstance(onnx, MiniLM) and isinstance(torch_only, MiniLM)
    assert onnx.onnx is not None, "onnxruntime is a dependency: the onnx backend must load"
    assert torch_only.onnx is None
    assert onnx.weights is torch_only.weights  # one copy of the weights for both
    assert np.allclose(onnx.encode(TEXTS), expected, atol=1e-5)
    assert np.allclose(torch_only.encode(TEXTS), expected, atol=1e-5)


def test_the_graph_is_exported_once_and_refused_when_it_differs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMWS_EMBED_ONNX_DIR", str(tmp_path))
    onnx_encoder.load(_model(), 1)
    graphs = list(tmp_path.glob("*.onnx"))
    assert len(graphs) == 1 and not list(tmp_path.glob(".*"))  # no temporary file left behind
    written = graphs[0].stat().st_mtime_ns
    onnx_encoder.load(_model(), 1)
    assert graphs[0].stat().st_mtime_ns == written  # the cached graph, not a second export
    # Negative control: a graph whose hidden states differ from torch's is not used.
    monkeypatch.setattr(onnx_encoder, "MAX_DIFFERENCE", -1.0)
    with pytest.raises(onnx_encoder.OnnxUnavailable, match="differs from torch"):
        onnx_encoder.load(_model(), 1)


def test_missing_onnxruntime_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(onnx_encoder.OnnxUnavailable, match="onnxruntime is not installed"):
        onnx_encoder.load(_model(), 1)


def test_exporting_in_a_server_process_imports_no_transformers(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from service import bootstrap\n"
        "from service.embedding import backend_in_use, encode_sync\n"
        "assert encode_sync(['ok']).shape == (1, 384)\n"
        "assert backend_in_use() == 'onnx', backend_in_use()\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'sentence_transformers', "
        "'transformers', 'sklearn', 'scipy'})\n"
        "assert not heavy, heavy\n"
    )
    env = {**os.environ, "TMWS_EMBED_ONNX_DIR": str(tmp_path)}  # empty: this process exports
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(list(tmp_path.glob("*.onnx"))) == 1
