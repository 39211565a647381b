-- TMWS schema v2.2: one row per pattern execution, plus indexes for the new read paths.
-- Additive only: every v2.0 row and column stays as it was.
CREATE TABLE pattern_executions (
    id              bigserial        PRIMARY KEY,
    agent_id        text             NOT NULL,
    instance_id     text             NOT NULL,
    namespace       text             NOT NULL,
    pattern_name    text             NOT NULL,
    pattern_type    text             NOT NULL,
    route           text,
    execution_mode  text             NOT NULL,
    success         boolean          NOT NULL,
    error           text,
    latency_ms      double precision NOT NULL CHECK (latency_ms >= 0),
    tokens_used     integer          NOT NULL DEFAULT 0 CHECK (tokens_used >= 0),
    tokens_baseline integer          NOT NULL DEFAULT 0 CHECK (tokens_baseline >= 0),
    cache_hit       boolean          NOT NULL DEFAULT false,
    cache_tier      text,
    created_at      timestamptz      NOT NULL DEFAULT now()
);

-- Per-pattern statistics over time windows, per-agent history, per-namespace audits.
CREATE INDEX pattern_executions_pattern_created ON pattern_executions (pattern_name, created_at DESC);
CREATE INDEX pattern_executions_agent_created ON pattern_executions (agent_id, created_at DESC);
CREATE INDEX pattern_executions_namespace_created ON pattern_executions (namespace, created_at DESC);
CREATE INDEX pattern_executions_instance_created ON pattern_executions (instance_id, created_at DESC);
-- Failures are rare and read often (dashboards, breaker post-mortems): a small partial index.
CREATE INDEX pattern_executions_failures ON pattern_executions (pattern_name, created_at DESC)
    WHERE NOT success;

-- v2.2 task listing filters by status within a namespace.
CREATE INDEX tasks_namespace_status_updated ON tasks (namespace, status, updated_at DESC);
