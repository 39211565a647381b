"""The one atomic writer: a temporary file in the same folder, then `os.replace`.

A reader (a dashboard, `recheck`, a second run) never sees half a file: it sees the old one or
the new one. Used by the report folder (`report.py`) and the cluster's gather (`cluster/`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


def write_atomic(path: Path, write: Callable[[Path], None]) -> Path:
    """`write(tmp)` then move tmp onto `path` (parents created); the temp file never stays."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text_atomic(text: str, path: Path) -> Path:
    """UTF-8 text, atomically."""
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json_atomic(payload: Any, path: Path) -> Path:
    """Compact JSON, atomically."""
    return write_text_atomic(json.dumps(payload), path)


def write_parquet_atomic(table: pa.Table, path: Path) -> Path:
    """A Parquet file, atomically."""
    return write_atomic(path, lambda tmp: pq.write_table(table, tmp))
