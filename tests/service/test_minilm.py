"""The torch-only MiniLM pipeline: the bundled model runs on it, its token accounting equals the
Hugging Face tokenizer's, other layouts are left to sentence-transformers, and a server process
never imports sentence-transformers or transformers (their import was most of an instance's
start-up). Vectors equal to `SentenceTransformer.encode`: tests/service/test_embedding.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from service.embedding import _direct, count_tokens, load_model, model_folder, token_offsets
from service.minilm import MiniLM, read_layout

ROOT = Path(__file__).resolve().parents[2]
TEXTS = [
    "",
    "ok",
    "[CLS] is the database healthy? [SEP]",
    "a\tb\nc  d",
    "Ünïcode façade — résumé 日本語 emoji 🙂 " * 60,  # past 256 tokens: never truncated here
]


def test_the_bundled_model_runs_on_the_torch_only_pipeline() -> None:
    assert isinstance(_direct(), MiniLM)
    layout = read_layout(model_folder())
    assert layout is not None and layout.max_length == 256 and layout.layers == 6


@pytest.mark.parametrize("text", TEXTS)
def test_token_accounting_equals_the_hugging_face_tokenizer(text: str) -> None:
    reference = load_model().tokenizer(
        text, add_special_tokens=False, return_offsets_mapping=True, truncation=False, verbose=False
    )
    assert count_tokens(text) == len(reference["input_ids"])
    assert token_offsets(text) == [tuple(o) for o in reference["offset_mapping"]]


def _copy_with(tmp_path: Path, path: str, change: dict[str, object]) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(model_folder(), folder, ignore=shutil.ignore_patterns("*.safetensors"))
    target = folder / path
    target.write_text(json.dumps({**json.loads(target.read_text()), **change}))
    return folder


@pytest.mark.parametrize(
    ("path", "change"),
    [
        (
            "1_Pooling/config.json",
            {"pooling_mode_mean_tokens": False, "pooling_mode_cls_token": True},
        ),
        ("config.json", {"model_type": "roberta"}),
        ("config.json", {"hidden_act": "relu"}),
    ],
    ids=["cls-pooling", "not-bert", "other-activation"],
)
def test_other_layouts_are_left_to_sentence_transformers(
    tmp_path: Path, path: str, change: dict[str, object]
) -> None:
    assert read_layout(_copy_with(tmp_path, path, {})) is not None  # the copy alone is runnable
    assert read_layout(_copy_with(tmp_path / "changed", path, change)) is None


def test_a_folder_without_the_model_files_is_not_a_layout(tmp_path: Path) -> None:
    assert read_layout(tmp_path) is None


def test_a_server_process_never_imports_sentence_transformers_or_transformers() -> None:
    code = (
        "import sys\n"
        "from service import bootstrap\n"
        "from service.embedding import count_tokens, encode_sync\n"
        "assert encode_sync(['ok']).shape == (1, 384) and count_tokens('ok') == 1\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'sentence_transformers', "
        "'transformers', 'sklearn', 'scipy'})\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
