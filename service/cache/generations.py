"""Generation counters in Redis: one per namespace plus the global one ("*"), bumped atomically.

A bump is one Lua script: INCR `tmws:gen:{namespace}` and PUBLISH
`{namespace, generation, origin, ts, reason}` on `tmws:invalidate`, so no instance can see
the new counter without the message having been sent. `reload_patterns` bumps "*", which
every cached answer also depends on.

Counters survive a Redis restart that lost its data without going backwards: a missing
counter is seeded from the Redis server clock in microseconds (`TIME`), and each bump adds 1.
Generations are therefore opaque, large, monotone integers (about 1.7e15, below 2**53 so
JSON clients keep them exact); they only go wrong if bumps outpace one per microsecond.
Lua turns integers that big into floats, so the scripts pass them around as strings.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from service.cache.keys import INVALIDATE_CHANNEL, generation_key
from service.cache.l1 import GLOBAL_NAMESPACE

# Shared Lua fragment: value of counter `k`, seeding it from server time (µs) when missing.
_SEEDED_GET = """
local function seeded_get(k)
  local v = redis.call('GET', k)
  if not v then
    local t = redis.call('TIME')
    redis.call('SET', k, t[1] .. string.format('%06d', tonumber(t[2])), 'NX')
    v = redis.call('GET', k)
  end
  return v
end
"""

#: KEYS: namespace gen, global gen[, result key] -> {ns gen, global gen[, payload or false]}
LOOKUP_SCRIPT = (
    _SEEDED_GET
    + """
local out = {seeded_get(KEYS[1]), seeded_get(KEYS[2])}
if KEYS[3] then out[3] = redis.call('GET', KEYS[3]) end
return out
"""
)

#: KEYS: gen key. ARGV: namespace, origin, ts_ms, reason, publish flag, channel -> new gen
BUMP_SCRIPT = (
    _SEEDED_GET
    + """
seeded_get(KEYS[1])
redis.call('INCR', KEYS[1])
local gen = redis.call('GET', KEYS[1])
if ARGV[5] == '1' then
  redis.call('PUBLISH', ARGV[6], cjson.encode({namespace = ARGV[1], generation = gen,
    origin = ARGV[2], ts = ARGV[3], reason = ARGV[4]}))
end
return gen
"""
)


@dataclass(frozen=True)
class Generations:
    """The (namespace, global) generation pair an answer depends on."""

    namespace: int
    global_: int


@dataclass(frozen=True)
class InvalidationMessage:
    """A decoded `tmws:invalidate` message."""

    namespace: str
    generation: int
    origin: str
    ts_ms: float
    reason: str

    @classmethod
    def decode(cls, data: str | bytes) -> InvalidationMessage:
        """Parse the JSON the bump script publishes; raises ValueError when malformed."""
        raw: dict[str, Any] = json.loads(data)
        try:
            return cls(
                namespace=str(raw["namespace"]),
                generation=int(raw["generation"]),
                origin=str(raw.get("origin", "")),
                ts_ms=float(raw.get("ts", 0.0)),
                reason=str(raw.get("reason", "")),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed invalidation message: {data!r}") from exc


class GenerationStore:
    """Reads and bumps generation counters in single round trips (MGET, Lua scripts)."""

    def __init__(self, client: Redis, instance_id: str) -> None:
        self.instance_id = instance_id
        self._client = client
        self._lookup = client.register_script(LOOKUP_SCRIPT)
        self._bump = client.register_script(BUMP_SCRIPT)

    async def read(self, namespace: str) -> Generations:
        """Current (namespace, global) generations in one round trip."""
        gens, _ = await self.lookup(namespace, None)
        return gens

    async def lookup(
        self, namespace: str, result_key: str | None
    ) -> tuple[Generations, str | None]:
        """Current generations and, if `result_key` is given, its L2 payload, in one round trip."""
        keys = [generation_key(namespace), generation_key(GLOBAL_NAMESPACE)]
        if result_key is not None:
            keys.append(result_key)
        # One MGET reads the same keys as atomically as the script does, and is the cheaper
        # call on both ends (redis-py's EVALSHA wrapper cost as much as the round trip; every
        # strict L1 hit makes this call). Only a missing counter needs the script, which seeds
        # it from the server clock.
        out = await self._client.execute_command("MGET", *keys)
        if out[0] is None or out[1] is None:
            out = await self._lookup(keys=keys)
        payload = out[2] if len(out) > 2 and out[2] else None
        return Generations(int(out[0]), int(out[1])), payload

    async def bump(self, namespace: str, reason: str, *, publish: bool = True) -> int:
        """INCR the counter and (unless `publish` is False) announce it, atomically."""
        args = [
            namespace,
            self.instance_id,
            f"{time.time() * 1000:.3f}",
            reason,
            "1" if publish else "0",
            INVALIDATE_CHANNEL,
        ]
        return int(await self._bump(keys=[generation_key(namespace)], args=args))
