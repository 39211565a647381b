"""What a run gathers (`RunResult`) and the files it leaves: history, resources, histograms.

Every file is written atomically (`analysis/atomic.py`), so a reader never sees half of one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
from hdrh.histogram import HdrHistogram

from analysis import hdr
from analysis.atomic import write_json_atomic, write_parquet_atomic

HISTORY_FILE = "history.parquet"
RESOURCES_FILE = "resources.parquet"
HISTOGRAMS_FILE = "latency_hdr.json"


@dataclass
class RunResult:
    """What `gather` returns: the history table, merged histograms and where files went."""

    table: pa.Table
    histograms: dict[str, HdrHistogram]
    sent: int
    history_path: Path | None = None
    resources: pa.Table | None = None
    resources_path: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)
    #: Per swarm: its clock offset to the driver, measured at start and at gather.
    clocks: dict[str, dict[str, Any]] = field(default_factory=dict)

    def latency_summary(self, key: str = "all") -> dict[str, float | int | None]:
        hist = self.histograms.get(key)
        return hdr.summary_ms(hist) if hist is not None else {"count": 0}

    def write(self, out_dir: Path) -> None:
        """History and resources as Parquet, histograms as JSON; records where they went."""
        self.history_path = write_parquet_atomic(self.table, out_dir / HISTORY_FILE)
        if self.resources is not None:
            self.resources_path = write_parquet_atomic(self.resources, out_dir / RESOURCES_FILE)
        write_json_atomic(
            {k: hdr.encode(h).decode() for k, h in self.histograms.items()},
            out_dir / HISTOGRAMS_FILE,
        )
