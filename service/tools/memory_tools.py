"""`store_memory` and `recall_memory`: pgvector memory over real MiniLM embeddings."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, StringConstraints

from service.context import CallContext
from service.namespaces import resolve_namespace
from service.store.memories import MemoryStore
from service.timings import timed_stage
from service.tools.arguments import check_json_size
from service.tools.registry import ToolArgs, ToolRegistry, ToolSpec
from service.tools.store_access import (
    bump_version,
    check_writable,
    database,
    seen_version,
    write_outcome,
)

MAX_CONTENT_CHARS = 10_000
MAX_QUERY_CHARS = 2_000
MAX_TAGS = 20
MAX_TAG_CHARS = 64

#: One tag: non-empty, short.
Tag = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TAG_CHARS)]


class StoreMemoryArgs(ToolArgs):
    content: str = Field(
        min_length=1,
        max_length=MAX_CONTENT_CHARS,
        description="Text to remember (embedded as 384-d MiniLM).",
    )
    tags: list[Tag] = Field(
        default_factory=list, max_length=MAX_TAGS, description="Labels to filter recall by."
    )
    importance: float = Field(
        default=0.5, ge=0.0, le=1.0, description="Weight from 0 (trivial) to 1."
    )
    shared: bool = Field(
        default=False,
        description="Visible to every namespace's recall when true; private otherwise.",
    )
    metadata: dict[str, Any] = Field(
        default_factory=dict,
        description="Free-form JSON kept with the memory (at most TMWS_MAX_METADATA_BYTES encoded).",
    )
    namespace: str | None = Field(
        default=None,
        max_length=80,
        description="Your own namespace (default) or a team namespace 'team:<name>' you belong to.",
    )


class RecallMemoryArgs(ToolArgs):
    query: str = Field(
        min_length=1, max_length=MAX_QUERY_CHARS, description="Text to search for by meaning."
    )
    limit: int = Field(default=10, ge=1, le=100, description="Most results to return (1..100).")
    min_similarity: float = Field(
        default=0.0, ge=0.0, le=1.0, description="Drop results with cosine similarity below this."
    )
    tags: list[Tag] | None = Field(
        default=None,
        max_length=MAX_TAGS,
        description="Only memories carrying at least one of these tags.",
    )
    include_shared: bool = Field(
        default=True, description="Also search memories other namespaces marked shared."
    )
    namespace: str | None = Field(
        default=None,
        max_length=80,
        description="Your own namespace (default) or a team namespace 'team:<name>' you belong to.",
    )


async def store_memory(ctx: CallContext, args: StoreMemoryArgs) -> dict[str, Any]:
    """Embed and insert one memory into the caller's namespace."""
    limit = ctx.services.settings.limits.max_metadata_bytes
    check_json_size(args.metadata, limit, "metadata")
    namespace = resolve_namespace(ctx, args.namespace)
    check_writable(ctx)
    embedding = await ctx.services.embedder.embed(args.content)
    store = MemoryStore(database(ctx))
    memory = (namespace, ctx.agent_id, args.content, embedding)
    fields = {
        "tags": args.tags,
        "importance": args.importance,
        "shared": args.shared,
        "metadata": args.metadata,
    }
    late_ms = ctx.services.settings.bugs.ack_before_commit_ms
    if late_ms:  # injected bug: answer now; commit and bump later
        row = await store.store_committing_later(
            late_ms / 1000.0,
            lambda: bump_version(ctx, "store_memory", namespace, shared=args.shared),
            *memory,
            **fields,
        )
        return {**{k: row[k] for k in ("memory_id", "namespace", "shared", "created_at")},
                "version_written": None}  # fmt: skip
    async with write_outcome(ctx, "store_memory", namespace, shared=args.shared):
        row = await store.store(*memory, **fields)
    version = await bump_version(ctx, "store_memory", namespace, shared=args.shared)
    return {
        "memory_id": row["memory_id"],
        "namespace": row["namespace"],
        "shared": row["shared"],
        "created_at": row["created_at"],
        "version_written": version,
    }


async def recall_memory(ctx: CallContext, args: RecallMemoryArgs) -> dict[str, Any]:
    """Top-k memories by cosine similarity from the caller's namespace (plus shared ones)."""
    namespace = resolve_namespace(ctx, args.namespace)
    version = await seen_version(ctx, namespace)
    embedding = await ctx.services.embedder.embed(args.query)
    with timed_stage("db"):  # pool wait and the pgvector query, in the request's timings
        rows = await MemoryStore(database(ctx)).recall(
            namespace,
            embedding,
            limit=args.limit,
            min_similarity=args.min_similarity,
            tags=args.tags,
            include_shared=args.include_shared,
        )
    results = [
        {
            "memory_id": r["memory_id"],
            "content": r["content"],
            "similarity": round(r["similarity"], 6),
            "tags": r["tags"],
            "importance": r["importance"],
            "namespace": r["namespace"],
            "shared": r["shared"],
        }
        for r in rows
    ]
    return {"results": results, "count": len(results), "version_seen": version}


def register_memory_tools(registry: ToolRegistry) -> None:
    """Add `store_memory` and `recall_memory`."""
    registry.register(
        ToolSpec(
            "store_memory",
            "Store a memory (text, tags, importance) in your namespace; shared=true lets every agent recall it.",
            StoreMemoryArgs,
            store_memory,
        )
    )
    registry.register(
        ToolSpec(
            "recall_memory",
            "Recall your memories most similar in meaning to a query (pgvector cosine top-k).",
            RecallMemoryArgs,
            recall_memory,
        )
    )
