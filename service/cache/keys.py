"""Deterministic cache keys and the Redis key names of the cache; pure.

A result key hashes the namespace with the normalised key parts (query, registry version,
execution mode, ...) as canonical JSON, so two instances never hold one answer under two keys
and an answer never crosses namespaces or registry versions.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from typing import Any

KEY_PREFIX = "tmws:c:"
LOCK_PREFIX = "tmws:lock:"
GEN_PREFIX = "tmws:gen:"
INVALIDATE_CHANNEL = "tmws:invalidate"
FILLED_CHANNEL = "tmws:filled"

_SPACE = re.compile(r"\s+")
_TRAILING = ".?!;, "


def normalise_query(query: str) -> str:
    """NFKC, case-folded, whitespace collapsed, trailing punctuation dropped."""
    text = unicodedata.normalize("NFKC", query).casefold()
    return _SPACE.sub(" ", text).strip().rstrip(_TRAILING)


def key_parts(query: str, registry_version: int | str, mode: str, **extra: Any) -> dict[str, Any]:
    """The usual parts of a pattern-result key (extra parts must be JSON-serialisable)."""
    return {"query": query, "registry_version": registry_version, "mode": mode, **extra}


def result_key(namespace: str, parts: dict[str, Any]) -> str:
    """`tmws:c:<sha256>` over namespace + parts, with `parts["query"]` normalised."""
    canonical = dict(parts)
    if isinstance(canonical.get("query"), str):
        canonical["query"] = normalise_query(canonical["query"])
    blob = json.dumps(
        {"ns": namespace, "parts": canonical},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return KEY_PREFIX + hashlib.sha256(blob.encode("utf-8")).hexdigest()


def generation_key(namespace: str) -> str:
    """Redis key of a namespace's generation counter ("*" is the global one)."""
    return GEN_PREFIX + namespace


def lock_key(key: str) -> str:
    """Redis key of the single-flight lock for one result key."""
    return LOCK_PREFIX + key.removeprefix(KEY_PREFIX)
