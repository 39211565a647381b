"""MiniLM's transformer run by ONNX Runtime: the same fp32 weights, about twice as fast a query.

Why: one short query through torch eager is ~37 unpacked GEMMs and ~150 small ops (~14 ms a
query on a 2-core EPYC VM, one thread); ONNX Runtime prepacks the weights for its GEMM and fuses
bias+GELU and skip+LayerNorm (~7 ms there). The vectors are the same within 3e-7
(`scripts/bench_embedding.py --stages` prints both).

The graph is traced from `service.minilm.MiniLM._encoder` itself (the weights already loaded with
safetensors; no transformers, no download): once per model files, encoder source and library
versions, into `TMWS_EMBED_ONNX_DIR` (default `~/.cache/tmws/onnx`). It is written to a private
temporary file and renamed into place, so servers starting together never read half a file; a
graph whose hidden states differ from `_encoder`'s on a padded probe batch is not used. Token type
ids are all zero in MiniLM's encoder, so the graph takes input ids and the attention mask only.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from service.config import onnx_graph_dir

if TYPE_CHECKING:
    from service.minilm import MiniLM

log = logging.getLogger(__name__)

#: Bumped when the export itself changes (inputs, outputs, opset).
EXPORT_FORMAT = 2
OPSET = 17
#: Largest difference from torch's hidden states on the probe text for the graph to be used.
MAX_DIFFERENCE = 1e-4
_PROBE = "is the database healthy and what did we note about the failover?"
_INPUTS = ("input_ids", "attention_mask")


class OnnxUnavailable(RuntimeError):
    """onnxruntime/onnx are missing, or the export or its check failed."""


#: Where the exported graph is kept (`TMWS_EMBED_ONNX_DIR`, read by config).
cache_dir = onnx_graph_dir


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "none"


def graph_key(model_dir: Path) -> str:
    """What the exported graph depends on: the model files, the encoder's source and the
    exporting libraries (versions read from package metadata: nothing heavy is imported)."""
    import torch

    from service import minilm

    versions = f"{torch.__version__}:{_version('onnx')}:{_version('onnxruntime')}"
    h = hashlib.sha256(f"{EXPORT_FORMAT}:{OPSET}:{versions}".encode())
    # The graph is a trace of minilm.py's `_encoder`: a change there is a new graph.
    h.update(Path(minilm.__file__).read_bytes())
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        stat = path.stat()
        h.update(f"\n{path.relative_to(model_dir)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


class OnnxTransformer:
    """`MiniLM._encoder`'s last hidden state, computed by an ONNX Runtime session."""

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
        names = tuple(i.name for i in self._session.get_inputs())
        if names != _INPUTS:
            raise OnnxUnavailable(f"{path}: inputs {names}, expected {_INPUTS}")

    def hidden(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        feed = {"input_ids": ids.astype(np.int64), "attention_mask": mask.astype(np.int64)}
        return np.asarray(self._session.run(None, feed)[0], dtype=np.float32)


def load(model: MiniLM, threads: int) -> OnnxTransformer:
    """The session for `model`'s encoder, exporting and checking its graph first if not cached."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise OnnxUnavailable(f"onnxruntime is not installed ({exc})") from exc
    path = cache_dir() / f"minilm-{graph_key(model.layout.folder)}.onnx"
    if not path.exists():
        _export(model, path)
    session = OnnxTransformer(path, threads)
    difference = _check(session, model)
    if difference > MAX_DIFFERENCE:
        raise OnnxUnavailable(f"{path}: differs from torch by {difference:.1e} on the probe")
    return session


def _export(model: MiniLM, path: Path) -> None:
    import torch

    class _Encoder(torch.nn.Module):
        """`MiniLM._encoder` as a module, for the tracer (its weights become the graph's)."""

        def forward(self, ids: Any, mask: Any) -> Any:
            return model._encoder(ids, mask)

    ids, mask = model.tokenize(["a warm up sentence", "ok"])
    axes = {0: "batch", 1: "tokens"}
    dynamic = {name: axes for name in (*_INPUTS, "hidden")}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".onnx", dir=path.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _Encoder().eval(),
                (torch.from_numpy(ids), torch.from_numpy(mask)),
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


def _check(session: OnnxTransformer, model: MiniLM) -> float:
    """Largest absolute difference from `_encoder`'s hidden states on a padded probe batch
    (longer than the export's sample: the token axis must be dynamic)."""
    import torch

    ids, mask = model.tokenize([_PROBE, "ok"])
    with torch.inference_mode():
        expected = model._encoder(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    got = session.hidden(ids, mask)
    if got.shape != expected.shape:
        return float("inf")
    # Padded positions are never pooled: only the real tokens must agree.
    return float(np.abs(np.where(mask[..., None].astype(bool), got - expected, 0.0)).max())
