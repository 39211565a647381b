"""Benchmark: JSON on the wire, `json` (before) against the orjson fast path of service/wire.py.

Encodes a typical `execute_pattern` reply and parses a typical request, many times each; prints
microseconds per call for the json path the server used before and the path it uses now:

    .venv/bin/python scripts/bench_wire.py --rounds 20000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service.wire import _finite_float, _reject_constant, encode_checked, parse  # noqa: E402

REPLY = {
    "jsonrpc": "2.0",
    "id": 17,
    "result": {
        "success": True,
        "pattern_name": "execute_tool",
        "pattern_type": "infrastructure",
        "route": "infrastructure",
        "confidence": 0.95,
        "matched_by": "regex",
        "execution_time_ms": 1.234,
        "route_ms": 0.05,
        "tokens_used": 52,
        "tokens_baseline": 400,
        "cache_hit": True,
        "cache_tier": "l1",
        "instance_id": "tmws-abc",
        "version": 3,
        "namespace": "bench-1",
        "error": None,
        "result": {"tool": "execute_tool", "output": {"ok": True, "checks": [{"db": True}] * 3}},
        "timings": {"route": 0.05, "cache": 0.4, "record": 0.02, "total": 0.6},
    },
}
REQUEST = (
    '{"jsonrpc":"2.0","id":17,"method":"execute_pattern",'
    '"params":{"query":"execute tool test","execution_mode":"fast","use_cache":true}}'
)


def per_call_us(fn: Callable[[], object], rounds: int) -> float:
    started = time.perf_counter()
    for _ in range(rounds):
        fn()
    return (time.perf_counter() - started) * 1e6 / rounds


def json_encode() -> object:
    text = json.dumps(
        REPLY, separators=(",", ":"), ensure_ascii=False, default=str, allow_nan=False
    )
    return len(text.encode("utf-8"))


def json_parse() -> object:
    return json.loads(REQUEST, parse_constant=_reject_constant, parse_float=_finite_float)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20000)
    rounds = parser.parse_args().rounds
    for label, before, after in (
        ("encode reply", json_encode, lambda: encode_checked(REPLY)),
        ("parse request", json_parse, lambda: parse(REQUEST, max_depth=64)),
    ):
        old, new = per_call_us(before, rounds), per_call_us(after, rounds)
        print(f"{label:14s} before {old:6.1f} us   after {new:6.1f} us   (x{old / new:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
