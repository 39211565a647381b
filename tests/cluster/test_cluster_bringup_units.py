"""Ray connection choices, progress display and atomic writes (no Ray started)."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from analysis.atomic import write_parquet_atomic
from cluster.progress import Progress
from cluster.ray_connect import in_submitted_job, local_num_cpus, runtime_env_for


def test_runtime_env_only_for_a_remote_cluster_outside_a_job() -> None:
    assert runtime_env_for(None, {}) is None
    assert runtime_env_for("127.0.0.1:6379", {}) is None
    remote = runtime_env_for("ray://10.0.0.5:10001", {})
    assert remote is not None and Path(remote["working_dir"]).joinpath("cluster").is_dir()
    assert ".venv" in remote["excludes"]
    job_env = {"RAY_JOB_CONFIG_JSON_ENV_VAR": "{}"}
    assert in_submitted_job(job_env)
    assert runtime_env_for("10.0.0.5:6379", job_env) is None


def test_local_num_cpus_covers_every_bundle() -> None:
    assert local_num_cpus(3.0, 4) == 4
    assert local_num_cpus(6.5, 4) == 7
    assert local_num_cpus(1.0) >= 2


def test_progress_lines_without_a_terminal() -> None:
    out = io.StringIO()
    progress = Progress(stream=out, bars=False)
    with progress.phase("load", total=3) as bar:
        bar.update_to(3, rps=10)
    text = out.getvalue()
    assert "[load] start" in text and "[load] 3/3 rps=10" in text and "[load] done" in text
    assert "load" in progress.timings


def test_silent_progress_still_times_phases() -> None:
    out = io.StringIO()
    progress = Progress(enabled=False, stream=out)
    with progress.phase("gather", total=1) as bar:
        bar.advance()
    assert out.getvalue() == "" and "gather" in progress.timings


def test_parquet_written_atomically(tmp_path: Path) -> None:
    table = pa.table({"x": [1, 2, 3]})
    path = write_parquet_atomic(table, tmp_path / "out" / "history.parquet")
    assert pq.read_table(path).equals(table)
    assert [p.name for p in path.parent.iterdir()] == ["history.parquet"]
