"""The parts one running server is made of, built once in the app's lifespan and passed down."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from service.config import Settings
from service.embedding import Embedder
from service.metrics import ServiceMetrics
from service.tools.registry import ToolRegistry


@dataclass
class Services:
    settings: Settings
    tools: ToolRegistry
    embedder: Embedder
    #: service.store.db.Database (None only in transport-level tests)
    db: Any = None
    #: service.cache.coherent.CoherentCache (owns the Redis connections; None in transport tests)
    cache: Any = None
    #: service.sessions.SessionRegistry
    sessions: Any = None
    #: service.patterns.engine.PatternEngine
    patterns: Any = None
    #: service.llm backend used by the LLM fallback route
    llm: Any = None
    #: embedded servers this process started and must stop (None when given URLs)
    owned_infra: Any = None
    started_at: float = field(default_factory=time.time)
    #: Prometheus figures of this instance (`/metrics`); built from the rest after init
    metrics: ServiceMetrics = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.metrics = ServiceMetrics(self.settings.instance_id)
        self.metrics.watch(self)

    @property
    def instance_id(self) -> str:
        return self.settings.instance_id
