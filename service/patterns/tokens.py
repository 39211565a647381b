"""Token accounting with the real MiniLM WordPiece tokenizer (offline, shipped with the model).

A pattern answer costs the tokens of what would be sent to the model: its template filled with
the query and a compact rendering of the result, cut to the pattern's budget. A cache hit costs
only its lookup envelope. The LLM path costs the baseline.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from service.embedding import count_tokens, counting_tokenizer

BASELINE_TOKENS = 400
#: Longest query text kept in a prompt, so a long query cannot eat the whole budget.
_QUERY_SHARE = 0.4
_MAX_ITEMS = 6
_MAX_STR = 240
_LLM_ROUTES = ("llm", "llm_fallback")
#: Bookkeeping fields that cost tokens without helping the model answer.
_SKIP_KEYS = frozenset(
    {
        "memory_id",
        "namespace",
        "shared",
        "version_seen",
        "version_written",
        "embedding",
        "metadata",
        "session_id",
    }
)


@dataclass(frozen=True)
class Prompt:
    text: str
    tokens: int
    truncated: bool


def compact(value: Any, *, max_items: int = _MAX_ITEMS, max_str: int = _MAX_STR) -> str:
    """A terse one-line rendering of a tool result (`k=v; k=v`, lists bracketed and capped)."""
    if isinstance(value, Mapping):
        parts = [
            f"{k}={compact(v, max_items=max_items, max_str=max_str)}"
            for k, v in value.items()
            if k not in _SKIP_KEYS and v is not None and v != [] and v != {}
        ]
        return "; ".join(parts)
    if isinstance(value, list | tuple):
        shown = [compact(v, max_items=max_items, max_str=max_str) for v in value[:max_items]]
        more = f" +{len(value) - max_items}" if len(value) > max_items else ""
        return "[" + " | ".join(shown) + more + "]"
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    return text if len(text) <= max_str else text[: max_str - 1] + "…"


def truncate_tokens(text: str, limit: int) -> str:
    """The longest prefix of `text` holding at most `limit` tokens (cut on a token boundary)."""
    if limit <= 0:
        return ""
    encoding = counting_tokenizer()(
        text, add_special_tokens=False, return_offsets_mapping=True, truncation=False, verbose=False
    )
    offsets = encoding["offset_mapping"]
    if len(offsets) <= limit:
        return text
    return text[: offsets[limit - 1][1]]


def render_prompt(
    template: str, *, query: str, result: Any, budget: int, pattern: str = ""
) -> Prompt:
    """Fill `template`, compacting and cutting the result so the prompt fits `budget` tokens."""
    query_text = truncate_tokens(query, max(1, int(budget * _QUERY_SHARE)))
    fixed = template.format(query=query_text, result="", pattern=pattern)
    room = budget - count_tokens(fixed)
    full = compact(result)
    body = truncate_tokens(full, room)
    text = template.format(query=query_text, result=body, pattern=pattern)
    tokens = count_tokens(text)
    # Word pieces can merge across the seam between template and body: trim until it fits.
    while tokens > budget and body:
        room -= tokens - budget
        body = truncate_tokens(full, room)
        text = template.format(query=query_text, result=body, pattern=pattern)
        tokens = count_tokens(text)
    return Prompt(text=text, tokens=tokens, truncated=body != full or query_text != query)


def cache_envelope(pattern_name: str) -> str:
    """What a cache hit puts in front of the model: a reference to the stored answer.

    The generation is left out on purpose: it is bookkeeping, and its digits would make the
    charge grow with the age of the cluster.
    """
    return f"cached:{pattern_name}"


def cache_hit_tokens(pattern_name: str) -> int:
    """Tokens charged for a cache hit: only its lookup envelope (5-8 for the catalogue's names)."""
    return count_tokens(cache_envelope(pattern_name))


def token_report(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Overall and per-type token reduction from executed requests (not from configuration)."""
    total_used = total_base = count = 0
    by_type: dict[str, dict[str, float]] = {}
    for row in rows:
        used, base = row.get("tokens_used"), row.get("tokens_baseline")
        if used is None or base is None or row.get("success") is False:
            continue
        route = row.get("route")
        # A fallback row names its failed pattern, but it was charged as an LLM call.
        kind = str(route if route in _LLM_ROUTES else row.get("pattern_type") or route or "llm")
        if row.get("cache_hit"):
            kind = f"{kind}(cache)"
        bucket = by_type.setdefault(kind, {"requests": 0, "tokens_used": 0, "tokens_baseline": 0})
        bucket["requests"] += 1
        bucket["tokens_used"] += int(used)
        bucket["tokens_baseline"] += int(base)
        total_used += int(used)
        total_base += int(base)
        count += 1
    for bucket in by_type.values():
        bucket["mean_tokens_used"] = round(bucket["tokens_used"] / bucket["requests"], 2)
        bucket["reduction"] = _reduction(bucket["tokens_used"], bucket["tokens_baseline"])
    return {
        "requests": count,
        "tokens_used": total_used,
        "tokens_baseline": total_base,
        "reduction": _reduction(total_used, total_base),
        "by_type": dict(sorted(by_type.items())),
    }


def _reduction(used: float, baseline: float) -> float | None:
    return round(1.0 - used / baseline, 4) if baseline else None


def report_json(rows: Iterable[Mapping[str, Any]]) -> str:
    """`token_report` as pretty JSON, for the CLI."""
    return json.dumps(token_report(rows), indent=2)
