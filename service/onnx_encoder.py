"""MiniLM's transformer run by ONNX Runtime: the same fp32 weights, about twice as fast a query.

Why: one short query through torch eager is ~37 unpacked GEMMs and ~200 small ops (~17 ms on a
2-core EPYC VM, one thread); ONNX Runtime prepacks the weights for its GEMM and fuses bias+GELU
and skip+LayerNorm (~7.5 ms there). The vectors are the same within 3e-7
(`scripts/bench_embedding.py --stages` prints both).

The graph is exported from the loaded torch model, never downloaded: once per model files and
library versions, into `TMWS_EMBED_ONNX_DIR` (default `~/.cache/tmws/onnx`). It is written to a
private temporary file and renamed into place, so servers starting together never read half a
file; a graph whose output differs from torch's on a probe text is not used.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: Bumped when the export itself changes (inputs, outputs, opset).
EXPORT_FORMAT = 1
OPSET = 17
#: Largest difference from torch's hidden states on the probe text for the graph to be used.
MAX_DIFFERENCE = 1e-4
_PROBE = "is the database healthy and what did we note about the failover?"
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class OnnxUnavailable(RuntimeError):
    """onnxruntime/onnx are missing, or the export or its check failed."""


def cache_dir() -> Path:
    configured = os.environ.get("TMWS_EMBED_ONNX_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "tmws" / "onnx"


def graph_key(model_dir: Path) -> str:
    """What the exported graph depends on: the model files and the exporting libraries."""
    import torch
    import transformers

    h = hashlib.sha256(
        f"{EXPORT_FORMAT}:{OPSET}:{torch.__version__}:{transformers.__version__}".encode()
    )
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        stat = path.stat()
        h.update(f"\n{path.relative_to(model_dir)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


class OnnxTransformer:
    """`last_hidden_state` of the BERT encoder, computed by an ONNX Runtime session."""

    def __init__(self, path: Path, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        # Spinning threads would burn the cores three servers, Postgres and Ray share.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = path
        self.threads = max(1, threads)
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._names = {i.name for i in self._session.get_inputs()}

    def hidden(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        feed = {k: np.asarray(v, dtype=np.int64) for k, v in batch.items() if k in self._names}
        return np.asarray(self._session.run(None, feed)[0], dtype=np.float32)


def load(transformer: Any, tokenizer: Any, model_dir: Path, threads: int) -> OnnxTransformer:
    """The session for `transformer`, exporting and checking its graph first if not cached."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise OnnxUnavailable(f"onnxruntime is not installed ({exc})") from exc
    path = cache_dir() / f"minilm-{graph_key(model_dir)}.onnx"
    if not path.exists():
        _export(transformer, tokenizer, path)
    session = OnnxTransformer(path, threads)
    difference = _check(session, transformer, tokenizer)
    if difference > MAX_DIFFERENCE:
        raise OnnxUnavailable(f"{path}: differs from torch by {difference:.1e} on the probe")
    return session


def _export(transformer: Any, tokenizer: Any, path: Path) -> None:
    import torch

    class _Hidden(torch.nn.Module):
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, ids: Any, mask: Any, types: Any) -> Any:
            out = self.model(input_ids=ids, attention_mask=mask, token_type_ids=types)
            return out.last_hidden_state

    sample = tokenizer(["a warm up sentence", "ok"], padding=True, return_tensors="pt")
    axes = {"batch": 0, "tokens": 1}
    dynamic = {name: {v: k for k, v in axes.items()} for name in (*_INPUTS, "hidden")}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".onnx", dir=path.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _Hidden(transformer).eval(),
                tuple(sample[name] for name in _INPUTS),
                tmp,
                input_names=list(_INPUTS),
                output_names=["hidden"],
                dynamic_axes=dynamic,
                opset_version=OPSET,
                dynamo=False,
            )
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide it from servers run as another user
        os.replace(tmp, path)
        log.info("exported the MiniLM encoder to %s", path)
    except Exception as exc:
        raise OnnxUnavailable(f"exporting MiniLM to ONNX failed: {exc}") from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _check(session: OnnxTransformer, transformer: Any, tokenizer: Any) -> float:
    """Largest absolute difference from torch's hidden states on a padded probe batch."""
    import torch

    texts = [_PROBE, "ok"]
    batch = tokenizer(texts, padding=True, return_tensors="np")
    mask = batch["attention_mask"][..., None].astype(bool)
    with torch.inference_mode():
        expected = transformer(**{k: torch.from_numpy(v) for k, v in batch.items()})
        expected = expected.last_hidden_state.numpy()
    got = session.hidden(dict(batch))
    if got.shape != expected.shape:
        return float("inf")
    # Padded positions are never pooled: only the real tokens must agree.
    return float(np.abs(np.where(mask, got - expected, 0.0)).max())
