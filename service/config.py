"""Settings, read once from `TMWS_*` environment variables into typed objects and passed in.

Nothing below this module reads `os.environ`. A malformed value fails at once with a
`ConfigError` naming the variable.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from service.bugs import BugSpecError, InjectedBugs

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_STATE_DIR = Path(".tmws")
DEFAULT_POOL_MIN = 10
DEFAULT_POOL_MAX = 30
DEFAULT_POOL_ACQUIRE_TIMEOUT_S = 10.0
#: Ceiling of one database use (borrow + queries): the tools' 5 s budget.
DEFAULT_DB_CALL_TIMEOUT_S = 5.0
#: A server restarted during a database outage waits this long for it rather than failing.
DEFAULT_DB_STARTUP_WAIT_S = 30.0
DEFAULT_REDIS_POOL_MAX = 64
DEFAULT_REDIS_POOL_TIMEOUT_S = 2.0
DEFAULT_MAX_CONNECTIONS_PER_AGENT = 10
DEFAULT_TORCH_THREADS = 1
DEFAULT_EMBED_CACHE_SIZE = 4096
DEFAULT_EMBED_MAX_BATCH = 64
#: How the MiniLM transformer runs: ONNX Runtime (same weights, ~2x faster a query) or torch.
EMBED_BACKENDS: tuple[str, ...] = ("onnx", "torch")
DEFAULT_EMBED_BACKEND = "onnx"
DEFAULT_MAX_FRAME_BYTES = 1 << 20
DEFAULT_RATE_PER_S = 200.0
DEFAULT_RATE_BURST = 400
DEFAULT_HEARTBEAT_S = 20.0
DEFAULT_IDLE_TIMEOUT_S = 300.0
DEFAULT_MAX_CONNECTIONS = 4096
DEFAULT_MAX_IN_FLIGHT = 64
DEFAULT_MAX_BATCH = 50
DEFAULT_MAX_JSON_DEPTH = 64
DEFAULT_MAX_REPLY_BYTES = 4 << 20
DEFAULT_AGENT_RATE_PER_S = 1000.0
DEFAULT_AGENT_RATE_BURST = 2000
DEFAULT_HTTP_MAX_IN_FLIGHT = 256
DEFAULT_MAX_METADATA_BYTES = 16 << 10
DEFAULT_MAX_TASK_RESULT_BYTES = 64 << 10
#: HS256 keys shorter than the hash output (32 bytes) are brute-forceable (RFC 7518 3.2).
MIN_AUTH_SECRET_BYTES = 32
DEFAULT_PATTERNS_PATH = Path(__file__).resolve().parent.parent / "configs" / "patterns.yaml"


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class DatabaseSettings:
    url: str | None = None
    pool_min: int = DEFAULT_POOL_MIN
    pool_max: int = DEFAULT_POOL_MAX
    acquire_timeout_s: float = DEFAULT_POOL_ACQUIRE_TIMEOUT_S
    #: Deadline of one borrow-and-use of a connection; past it the connection is terminated.
    call_timeout_s: float = DEFAULT_DB_CALL_TIMEOUT_S
    vector_index: Literal["hnsw", "ivfflat"] = "hnsw"
    #: How long a starting server waits for PostgreSQL to answer (0: one attempt).
    startup_wait_s: float = DEFAULT_DB_STARTUP_WAIT_S

    def __post_init__(self) -> None:
        if self.startup_wait_s < 0:
            raise ConfigError(f"TMWS_DB_STARTUP_WAIT={self.startup_wait_s} must be >= 0")
        if self.pool_min < 1 or self.pool_min > self.pool_max:
            raise ConfigError(
                f"TMWS_POOL_MIN={self.pool_min} must be >= 1 and <= TMWS_POOL_MAX={self.pool_max}"
            )
        if self.call_timeout_s <= 0:
            raise ConfigError(f"TMWS_DB_CALL_TIMEOUT={self.call_timeout_s} must be > 0")


@dataclass(frozen=True)
class LimitSettings:
    max_connections_per_agent: int = DEFAULT_MAX_CONNECTIONS_PER_AGENT
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    rate_per_s: float = DEFAULT_RATE_PER_S
    rate_burst: int = DEFAULT_RATE_BURST
    heartbeat_s: float = DEFAULT_HEARTBEAT_S
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S
    #: Open WebSocket sessions of all agents together.
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    #: Requests one socket may have running at once (each request of a batch counts).
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    #: Requests in one JSON-RPC batch.
    max_batch: int = DEFAULT_MAX_BATCH
    #: Nesting of arrays and objects in one message.
    max_json_depth: int = DEFAULT_MAX_JSON_DEPTH
    #: Encoded bytes of one reply (of a whole batch's reply).
    max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES
    #: Per-agent token bucket over every transport and socket of that agent (0 = off).
    agent_rate_per_s: float = DEFAULT_AGENT_RATE_PER_S
    agent_rate_burst: int = DEFAULT_AGENT_RATE_BURST
    #: `/mcp` requests being served at once, all agents together.
    http_max_in_flight: int = DEFAULT_HTTP_MAX_IN_FLIGHT
    #: Encoded JSON bytes of a memory's `metadata` and of a task's `result`.
    max_metadata_bytes: int = DEFAULT_MAX_METADATA_BYTES
    max_task_result_bytes: int = DEFAULT_MAX_TASK_RESULT_BYTES
    #: permessage-deflate on the WebSocket (when the client offers it). Off by default: the
    #: frames are small JSON on a LAN or loopback, where deflating every frame on both ends
    #: costs CPU and buys nothing (scripts/bench_cached_path.py --compression compares).
    ws_compression: bool = False

    def __post_init__(self) -> None:
        for name, value, least in (
            ("TMWS_MAX_CONNECTIONS", self.max_connections, 1),
            ("TMWS_MAX_IN_FLIGHT", self.max_in_flight, 1),
            ("TMWS_MAX_BATCH", self.max_batch, 1),
            ("TMWS_MAX_JSON_DEPTH", self.max_json_depth, 4),
            ("TMWS_MAX_REPLY_BYTES", self.max_reply_bytes, 4096),
            ("TMWS_HTTP_MAX_IN_FLIGHT", self.http_max_in_flight, 1),
        ):
            if value < least:
                raise ConfigError(f"{name}={value} must be >= {least}")


@dataclass(frozen=True)
class SecuritySettings:
    #: Browser origins allowed on /mcp and /ws/mcp; empty = loopback origins only. A request
    #: without an Origin header (not a browser) is always allowed.
    allowed_origins: tuple[str, ...] = ()
    #: Host header values allowed; empty = loopback names plus the bound address (any Host when
    #: bound to a wildcard address such as 0.0.0.0).
    allowed_hosts: tuple[str, ...] = ()
    #: Agents with admin rights; None (unset) = on an open server every agent, with auth only
    #: tokens carrying the `admin` claim.
    admin_agents: tuple[str, ...] | None = None


@dataclass(frozen=True)
class CacheSettings:
    mode: Literal["strict", "eventual"] = "strict"
    l1_max_entries: int = 10_000
    default_ttl_s: float = 300.0
    #: Redis data connections per instance, and how long a request waits for a free one.
    redis_pool_max: int = DEFAULT_REDIS_POOL_MAX
    redis_pool_timeout_s: float = DEFAULT_REDIS_POOL_TIMEOUT_S

    def __post_init__(self) -> None:
        if self.redis_pool_max < 1:
            raise ConfigError(f"TMWS_REDIS_POOL_MAX={self.redis_pool_max} must be >= 1")


def onnx_graph_dir() -> Path:
    """Where the exported encoder graph is kept (`TMWS_EMBED_ONNX_DIR`): read here, at the first
    encode, because processes that never build `Settings` encode too (the suite's warm step)."""
    configured = os.environ.get("TMWS_EMBED_ONNX_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "tmws" / "onnx"


@dataclass(frozen=True)
class EmbeddingSettings:
    #: Intra-op threads of the encoder (torch, process-wide); encodes run one at a time.
    torch_threads: int = DEFAULT_TORCH_THREADS
    #: Query embeddings kept (exact text, LRU); 0 = none.
    cache_size: int = DEFAULT_EMBED_CACHE_SIZE
    #: Texts in one coalesced encode.
    max_batch: int = DEFAULT_EMBED_MAX_BATCH
    #: Runtime of the transformer (`service.onnx_encoder`); torch if onnxruntime is unavailable.
    backend: str = DEFAULT_EMBED_BACKEND

    def __post_init__(self) -> None:
        if self.backend not in EMBED_BACKENDS:
            raise ConfigError(
                f"TMWS_EMBED_BACKEND={self.backend!r} must be one of {', '.join(EMBED_BACKENDS)}"
            )
        for name, value in (
            ("TMWS_TORCH_THREADS", self.torch_threads),
            ("TMWS_EMBED_MAX_BATCH", self.max_batch),
        ):
            if value < 1:
                raise ConfigError(f"{name}={value} must be >= 1")


@dataclass(frozen=True)
class Settings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    instance_id: str = field(default_factory=lambda: f"tmws-{uuid.uuid4().hex[:8]}")
    redis_url: str | None = None
    auth_secret: str | None = None
    environment: str = "development"
    state_dir: Path = DEFAULT_STATE_DIR
    patterns_path: Path = DEFAULT_PATTERNS_PATH
    llm_url: str | None = None
    #: Load test-only patterns (slow_test_pattern, failing_test_pattern) and their tools.
    enable_test_patterns: bool = False
    #: A cache hit's answer waits for its learning-record row's commit (off: the row is written
    #: behind; a crash may lose the hits of the last group commit).
    record_waits_on_hits: bool = False
    #: `tmws serve` runs on uvloop when it is installed (Ray's async actors pick it up by
    #: themselves, RAY_USE_UVLOOP); false keeps asyncio's own loop.
    uvloop: bool = True
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    embedding: EmbeddingSettings = field(default_factory=EmbeddingSettings)
    #: Deliberate defects for negative controls (service/bugs.py); refused without test patterns.
    bugs: InjectedBugs = field(default_factory=InjectedBugs)

    def __post_init__(self) -> None:
        if self.bugs.any and not self.enable_test_patterns:
            raise ConfigError(
                f"TMWS_INJECT_BUGS={self.bugs} is refused without TMWS_ENABLE_TEST_PATTERNS=true "
                "(injected bugs exist only for negative controls)"
            )

    @property
    def auth_enabled(self) -> bool:
        return bool(self.auth_secret)

    def with_urls(self, database_url: str, redis_url: str) -> Settings:
        """A copy pointing at the given servers (used once the embedded default is up)."""
        return replace(self, redis_url=redis_url, database=replace(self.database, url=database_url))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every `TMWS_*` variable; unknown values fail naming the variable."""
        env = os.environ if env is None else env
        r = _Reader(env)
        return cls(
            host=r.str("TMWS_HOST", DEFAULT_HOST),
            port=r.int("TMWS_PORT", DEFAULT_PORT),
            instance_id=r.str("TMWS_INSTANCE_ID", "") or f"tmws-{uuid.uuid4().hex[:8]}",
            redis_url=r.str("TMWS_REDIS_URL", "") or None,
            auth_secret=_auth_secret(r.str("TMWS_AUTH_SECRET", "")),
            environment=r.str("TMWS_ENVIRONMENT", "development"),
            state_dir=Path(r.str("TMWS_STATE_DIR", str(DEFAULT_STATE_DIR))),
            patterns_path=Path(r.str("TMWS_PATTERNS_PATH", str(DEFAULT_PATTERNS_PATH))),
            llm_url=r.str("TMWS_LLM_URL", "") or None,
            enable_test_patterns=r.bool("TMWS_ENABLE_TEST_PATTERNS", False),
            record_waits_on_hits=r.bool("TMWS_RECORD_WAITS_ON_HITS", False),
            uvloop=r.bool("TMWS_UVLOOP", True),
            database=DatabaseSettings(
                url=r.str("TMWS_DATABASE_URL", "") or None,
                pool_min=r.int("TMWS_POOL_MIN", DEFAULT_POOL_MIN),
                pool_max=r.int("TMWS_POOL_MAX", DEFAULT_POOL_MAX),
                acquire_timeout_s=r.float(
                    "TMWS_POOL_ACQUIRE_TIMEOUT", DEFAULT_POOL_ACQUIRE_TIMEOUT_S
                ),
                call_timeout_s=r.float("TMWS_DB_CALL_TIMEOUT", DEFAULT_DB_CALL_TIMEOUT_S),
                vector_index=r.choice("TMWS_VECTOR_INDEX", "hnsw", ("hnsw", "ivfflat")),  # type: ignore[arg-type]
                startup_wait_s=r.float("TMWS_DB_STARTUP_WAIT", DEFAULT_DB_STARTUP_WAIT_S),
            ),
            limits=LimitSettings(
                max_connections_per_agent=r.int(
                    "TMWS_MAX_CONNECTIONS_PER_AGENT", DEFAULT_MAX_CONNECTIONS_PER_AGENT
                ),
                max_frame_bytes=r.int("TMWS_MAX_FRAME_BYTES", DEFAULT_MAX_FRAME_BYTES),
                rate_per_s=r.float("TMWS_RATE_PER_S", DEFAULT_RATE_PER_S),
                rate_burst=r.int("TMWS_RATE_BURST", DEFAULT_RATE_BURST),
                heartbeat_s=r.float("TMWS_HEARTBEAT_S", DEFAULT_HEARTBEAT_S),
                idle_timeout_s=r.float("TMWS_IDLE_TIMEOUT_S", DEFAULT_IDLE_TIMEOUT_S),
                max_connections=r.int("TMWS_MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS),
                max_in_flight=r.int("TMWS_MAX_IN_FLIGHT", DEFAULT_MAX_IN_FLIGHT),
                max_batch=r.int("TMWS_MAX_BATCH", DEFAULT_MAX_BATCH),
                max_json_depth=r.int("TMWS_MAX_JSON_DEPTH", DEFAULT_MAX_JSON_DEPTH),
                max_reply_bytes=r.int("TMWS_MAX_REPLY_BYTES", DEFAULT_MAX_REPLY_BYTES),
                agent_rate_per_s=r.float("TMWS_AGENT_RATE_PER_S", DEFAULT_AGENT_RATE_PER_S),
                agent_rate_burst=r.int("TMWS_AGENT_RATE_BURST", DEFAULT_AGENT_RATE_BURST),
                http_max_in_flight=r.int("TMWS_HTTP_MAX_IN_FLIGHT", DEFAULT_HTTP_MAX_IN_FLIGHT),
                max_metadata_bytes=r.int("TMWS_MAX_METADATA_BYTES", DEFAULT_MAX_METADATA_BYTES),
                max_task_result_bytes=r.int(
                    "TMWS_MAX_TASK_RESULT_BYTES", DEFAULT_MAX_TASK_RESULT_BYTES
                ),
                ws_compression=r.bool("TMWS_WS_COMPRESSION", False),
            ),
            cache=CacheSettings(
                mode=r.choice("TMWS_CACHE_MODE", "strict", ("strict", "eventual")),  # type: ignore[arg-type]
                l1_max_entries=r.int("TMWS_L1_MAX_ENTRIES", 10_000),
                default_ttl_s=r.float("TMWS_CACHE_TTL_S", 300.0),
                redis_pool_max=r.int("TMWS_REDIS_POOL_MAX", DEFAULT_REDIS_POOL_MAX),
                redis_pool_timeout_s=r.float(
                    "TMWS_REDIS_POOL_TIMEOUT", DEFAULT_REDIS_POOL_TIMEOUT_S
                ),
            ),
            security=SecuritySettings(
                allowed_origins=r.list("TMWS_ALLOWED_ORIGINS"),
                allowed_hosts=r.list("TMWS_ALLOWED_HOSTS"),
                admin_agents=r.list("TMWS_ADMIN_AGENTS") if "TMWS_ADMIN_AGENTS" in env else None,
            ),
            embedding=EmbeddingSettings(
                torch_threads=r.int("TMWS_TORCH_THREADS", DEFAULT_TORCH_THREADS),
                cache_size=r.int("TMWS_EMBED_CACHE_SIZE", DEFAULT_EMBED_CACHE_SIZE),
                max_batch=r.int("TMWS_EMBED_MAX_BATCH", DEFAULT_EMBED_MAX_BATCH),
                backend=r.choice("TMWS_EMBED_BACKEND", DEFAULT_EMBED_BACKEND, EMBED_BACKENDS),
            ),
            bugs=_bugs(r),
        )


def _auth_secret(raw: str) -> str | None:
    """The secret, refused when too short to protect HS256 tokens."""
    if not raw:
        return None
    size = len(raw.encode("utf-8"))
    if size < MIN_AUTH_SECRET_BYTES:
        raise ConfigError(
            f"TMWS_AUTH_SECRET is {size} bytes; use at least {MIN_AUTH_SECRET_BYTES} "
            "(e.g. the output of `openssl rand -hex 32`)"
        )
    return raw


def _bugs(r: _Reader) -> InjectedBugs:
    """`TMWS_INJECT_BUGS`, plus the older `TMWS_CACHE_SKIP_INVALIDATION_PUBLISH` (= skip-publish)."""
    raw = r.str("TMWS_INJECT_BUGS", "")
    try:
        bugs = InjectedBugs.parse(raw)
    except BugSpecError as exc:
        raise ConfigError(f"TMWS_INJECT_BUGS={raw!r}: {exc}") from None
    if r.bool("TMWS_CACHE_SKIP_INVALIDATION_PUBLISH", False):
        bugs = replace(bugs, skip_publish=True)
    return bugs


class _Reader:
    """Typed reads of environment variables with errors that name the variable."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def str(self, name: str, default: str) -> str:
        return self._env.get(name, default).strip()

    def int(self, name: str, default: int) -> int:
        raw = self._env.get(name)
        if raw is None or raw.strip() == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r} is not an integer") from None
        if value < 0:
            raise ConfigError(f"{name}={raw!r} must not be negative")
        return value

    def float(self, name: str, default: float) -> float:
        raw = self._env.get(name)
        if raw is None or raw.strip() == "":
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r} is not a number") from None
        if value < 0:
            raise ConfigError(f"{name}={raw!r} must not be negative")
        return value

    def bool(self, name: str, default: bool) -> bool:
        raw = self._env.get(name)
        if raw is None or raw.strip() == "":
            return default
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name}={raw!r} is not a boolean (use true or false)")

    def list(self, name: str) -> tuple[str, ...]:
        """A comma-separated list; blanks dropped."""
        return tuple(item.strip() for item in self._env.get(name, "").split(",") if item.strip())

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.str(name, default) or default
        if value not in allowed:
            raise ConfigError(f"{name}={value!r} must be one of {', '.join(allowed)}")
        return value
