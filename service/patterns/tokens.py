"""Token accounting with the real MiniLM WordPiece tokenizer (offline, shipped with the model).

A pattern answer costs the tokens of what would be sent to the model: its template filled with
the query and a compact rendering of the whole result. That count is measured, never assumed:
`untrimmed_tokens` is the prompt built from everything the pattern returned; only when that
exceeds the pattern's budget is the prompt cut to fit (`truncated`), and then `tokens` is the cut
prompt's count. A cache hit costs the same as the answer it repeats (the cached value carries
its prompt's counts): the cache saves the work, not the model's reading. The LLM path costs what
the backend reports (the simulated one: the plan's 400).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from service.embedding import count_tokens, token_offsets

BASELINE_TOKENS = 400
#: Longest query text kept in a prompt, so a long query cannot eat the whole budget.
_QUERY_SHARE = 0.4
_MAX_ITEMS = 6
_MAX_STR = 240
_LLM_ROUTES = ("llm", "llm_fallback")
#: What the model needs to phrase an answer is the data, not how we keep it. Left out everywhere:
#: storage internals and envelope labels (the list shows its length, the pattern names its tool).
_SKIP_KEYS = frozenset(
    {
        "embedding",
        "metadata",
        "session_id",
        "version_seen",
        "version_written",
        "registry_version",
        "count",
        "tool",
        "action",
    }
)
#: Left out of the rows of a list (memories, tasks): each row's identifiers, bookkeeping times
#: and ranking weights cost 5-30 tokens a row and answer nothing. A single object keeps them:
#: "who am I" is answered by the agent id.
_ROW_KEYS = frozenset(
    {
        "id",
        "memory_id",
        "task_id",
        "agent_id",
        "instance_id",
        "namespace",
        "shared",
        "version",
        "created_at",
        "updated_at",
        "importance",
        "tags",
    }
)
#: Envelopes whose content is rendered in place, without the envelope's own name.
_INLINE_KEYS = frozenset({"output", "result", "parts"})
#: Flags whose usual value says nothing: only the unusual one is rendered.
_USUAL = {"ok": True, "partial": False}


@dataclass(frozen=True)
class Prompt:
    """The prompt sent for one pattern answer, and what the whole result would have cost."""

    text: str
    #: tokens of `text`, the prompt actually sent (within the budget)
    tokens: int
    #: tokens of the prompt built from the whole query and result, before any cut
    untrimmed_tokens: int
    #: the budget cut the prompt (tokens < untrimmed_tokens)
    truncated: bool


def compact(
    value: Any,
    *,
    max_items: int | None = _MAX_ITEMS,
    max_str: int | None = _MAX_STR,
    row: bool = False,
) -> str:
    """A terse one-line rendering of a tool result for the model (`k=v; k=v`, lists bracketed):
    the data without storage internals (`_SKIP_KEYS`), list rows without their bookkeeping
    (`_ROW_KEYS`), envelopes inlined, usual flags unsaid. `max_items` and `max_str` cap lists and
    strings (None: everything, as the untrimmed prompt has it)."""
    if isinstance(value, Mapping):
        skip = _SKIP_KEYS | _ROW_KEYS if row else _SKIP_KEYS
        parts = []
        for k, v in value.items():
            if k in skip or v is None or v == [] or v == {} or (k in _USUAL and v == _USUAL[k]):
                continue
            text = compact(v, max_items=max_items, max_str=max_str)
            parts.append(text if k in _INLINE_KEYS else f"{k}={text}")
        return "; ".join(p for p in parts if p)
    if isinstance(value, list | tuple):
        cap = len(value) if max_items is None else max_items
        shown = [compact(v, max_items=max_items, max_str=max_str, row=True) for v in value[:cap]]
        more = f" +{len(value) - cap}" if len(value) > cap else ""
        return "[" + " | ".join(shown) + more + "]"
    if isinstance(value, float):
        return f"{value:.2g}" if abs(value) < 1 else f"{value:.4g}"
    text = str(value)
    return text if max_str is None or len(text) <= max_str else text[: max_str - 1] + "…"


def truncate_tokens(text: str, limit: int) -> str:
    """The longest prefix of `text` holding at most `limit` tokens (cut on a token boundary)."""
    if limit <= 0:
        return ""
    offsets = token_offsets(text)
    if len(offsets) <= limit:
        return text
    return text[: offsets[limit - 1][1]]


def render_prompt(
    template: str, *, query: str, result: Any, budget: int, pattern: str = ""
) -> Prompt:
    """Fill `template` with the query and the whole result; only a prompt over `budget` tokens is
    cut (query share, capped lists and strings, then the result text) until it fits."""
    whole = template.format(
        query=query, result=compact(result, max_items=None, max_str=None), pattern=pattern
    )
    untrimmed = count_tokens(whole)
    if untrimmed <= budget:
        return Prompt(text=whole, tokens=untrimmed, untrimmed_tokens=untrimmed, truncated=False)
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
    return Prompt(text=text, tokens=tokens, untrimmed_tokens=untrimmed, truncated=True)


def token_report(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Overall and per-type token reduction from executed requests (not from configuration):
    tokens sent, tokens of the untrimmed prompts, and how often the budget cut a prompt."""
    total: dict[str, float] = dict.fromkeys(_SUMS, 0)
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
        untrimmed = row.get("tokens_untrimmed")
        values = {
            "requests": 1,
            "tokens_used": int(used),
            "tokens_untrimmed": int(used if untrimmed is None else untrimmed),
            "tokens_baseline": int(base),
            "truncated": int(bool(row.get("truncated"))),
        }
        bucket = by_type.setdefault(kind, dict.fromkeys(_SUMS, 0))
        for name, value in values.items():
            bucket[name] += value
            total[name] += value
    for bucket in by_type.values():
        _finish(bucket)
    return {**_finish(total), "by_type": dict(sorted(by_type.items()))}


_SUMS = ("requests", "tokens_used", "tokens_untrimmed", "tokens_baseline", "truncated")


def _finish(bucket: dict[str, float]) -> dict[str, float]:
    """Means, truncation rate and reductions of summed counts (in place)."""
    n = bucket["requests"]
    bucket["mean_tokens_used"] = round(bucket["tokens_used"] / n, 2) if n else None
    bucket["mean_tokens_untrimmed"] = round(bucket["tokens_untrimmed"] / n, 2) if n else None
    bucket["truncation_rate"] = round(bucket["truncated"] / n, 4) if n else None
    bucket["reduction"] = _reduction(bucket["tokens_used"], bucket["tokens_baseline"])
    bucket["reduction_untrimmed"] = _reduction(
        bucket["tokens_untrimmed"], bucket["tokens_baseline"]
    )
    return bucket


def _reduction(used: float, baseline: float) -> float | None:
    return round(1.0 - used / baseline, 4) if baseline else None


def report_json(rows: Iterable[Mapping[str, Any]]) -> str:
    """`token_report` as pretty JSON, for the CLI."""
    return json.dumps(token_report(rows), indent=2)
