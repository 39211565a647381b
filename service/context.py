"""Who is calling and what the server is made of: `CallContext` and `Services`.

Every layer below the transport takes a `CallContext`, so this module sits at the bottom with
`errors` and `config`: at run time it imports nothing of ours but `config` and `metrics` (a leaf:
each `Services` owns its Prometheus registry). The concrete types of the parts live in higher
layers (tools, patterns) and in `cache`/`store`; they are named here for the type checker only, so
no arrow inside `service/` points up at run time.

`Services` is built once in the app's lifespan (`service.bootstrap.start_services`) and handed
down; handlers read its typed fields, never look a part up by name.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from service.config import Settings
from service.metrics import ServiceMetrics

if TYPE_CHECKING:
    from service.cache.coherent import CoherentCache
    from service.embedding import Embedder
    from service.infra.embedded import EmbeddedInfra
    from service.llm import LLMBackend
    from service.patterns.engine import PatternEngine
    from service.sessions import SessionRegistry
    from service.store.db import Database
    from service.tools.registry import ToolRegistry


@dataclass
class Services:
    """The parts of one running server; `None` marks a part this server runs without."""

    settings: Settings
    tools: ToolRegistry
    embedder: Embedder
    #: None only in transport-level tests, which run without PostgreSQL
    db: Database | None = None
    #: owns the Redis connections; None in transport-level tests
    cache: CoherentCache | None = None
    #: set by the app's lifespan when not given
    sessions: SessionRegistry | None = None
    patterns: PatternEngine | None = None
    #: the backend of the LLM fallback route (the engine's own)
    llm: LLMBackend | None = None
    #: embedded servers this process started and must stop (None when given URLs)
    owned_infra: EmbeddedInfra | None = None
    started_at: float = field(default_factory=time.time)
    #: Prometheus figures of this instance (`/metrics`); built from the rest after init
    metrics: ServiceMetrics = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.metrics = ServiceMetrics(self.settings.instance_id)
        self.metrics.watch(self)

    @property
    def instance_id(self) -> str:
        return self.settings.instance_id


@dataclass
class CallContext:
    """Who is calling: identity and namespace of the session, plus the service's parts."""

    agent_id: str
    session_id: str
    instance_id: str
    services: Services
    namespace: str = ""
    #: per-session protocol state the transports keep (MCP version, teams, admin verdict)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.namespace:
            self.namespace = self.agent_id
