-- TMWS schema v2.0: memories with 384-d embeddings, tasks, agents.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE memories (
    id          bigserial PRIMARY KEY,
    namespace   text        NOT NULL,
    agent_id    text        NOT NULL,
    content     text        NOT NULL,
    embedding   vector(384) NOT NULL,
    tags        text[]      NOT NULL DEFAULT '{}',
    importance  real        NOT NULL DEFAULT 0.5 CHECK (importance >= 0 AND importance <= 1),
    shared      boolean     NOT NULL DEFAULT false,
    metadata    jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Cosine distance (`<=>`) is what recall orders by; MiniLM vectors are normalised.
-- m/ef_construction are pgvector's defaults, spelled out so a change is a visible migration.
CREATE INDEX memories_embedding_hnsw ON memories
    USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64);
CREATE INDEX memories_namespace_created ON memories (namespace, created_at DESC);
CREATE INDEX memories_shared ON memories (created_at DESC) WHERE shared;

CREATE TABLE tasks (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    namespace   text        NOT NULL,
    agent_id    text        NOT NULL,
    title       text        NOT NULL,
    description text        NOT NULL DEFAULT '',
    status      text        NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'in_progress', 'completed', 'failed', 'cancelled')),
    priority    text        NOT NULL DEFAULT 'medium'
        CHECK (priority IN ('low', 'medium', 'high', 'critical')),
    result      jsonb,
    version     integer     NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tasks_namespace_created ON tasks (namespace, created_at DESC);

CREATE TABLE agents (
    agent_id    text        PRIMARY KEY,
    namespace   text        NOT NULL,
    persona     text,
    metadata    jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now()
);
