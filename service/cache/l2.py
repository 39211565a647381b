"""L2: results in Redis as JSON envelopes tagged with the generations they were computed from.

An envelope is only written while those generations are still current (checked inside the
same Lua script), so an answer computed across a bump is never published as fresh; the
script also releases the single-flight lock and publishes the "filled" note in that step.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from service.cache.generations import Generations
from service.cache.keys import FILLED_CHANNEL, generation_key, lock_key
from service.cache.l1 import GLOBAL_NAMESPACE

#: KEYS: result, ns gen, global gen, lock. ARGV: payload, ttl_ms, gen, global gen, token,
#: filled channel, filled note. Returns 1 if stored (generations still current), else 0.
STORE_SCRIPT = """
local stored = 0
if redis.call('GET', KEYS[2]) == ARGV[3] and redis.call('GET', KEYS[3]) == ARGV[4] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  stored = 1
end
if ARGV[5] ~= '' and redis.call('GET', KEYS[4]) == ARGV[5] then redis.call('DEL', KEYS[4]) end
redis.call('PUBLISH', ARGV[6], ARGV[7])
return stored
"""


@dataclass(frozen=True)
class Envelope:
    """One L2 entry: the answer plus where and from which generations it was computed."""

    value_json: str
    generation: int
    global_generation: int
    computed_at: float
    instance: str

    def encode(self) -> str:
        # The value is embedded as already-encoded JSON so L1 can keep the same text.
        return (
            f'{{"g":{self.generation},"gg":{self.global_generation},'
            f'"at":{self.computed_at:.6f},"i":{json.dumps(self.instance)},'
            f'"v":{self.value_json}}}'
        )

    @classmethod
    def decode(cls, text: str) -> Envelope:
        """Parse an envelope; raises ValueError when it is not one."""
        raw: dict[str, Any] = json.loads(text)
        try:
            return cls(
                value_json=json.dumps(raw["v"], separators=(",", ":")),
                generation=int(raw["g"]),
                global_generation=int(raw["gg"]),
                computed_at=float(raw["at"]),
                instance=str(raw["i"]),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError("not a cache envelope") from exc

    def matches(self, gens: Generations) -> bool:
        """Valid only for exactly the generations it was computed from."""
        return self.generation == gens.namespace and self.global_generation == gens.global_


class L2Store:
    """Conditional writes of envelopes."""

    def __init__(self, client: Redis, instance_id: str) -> None:
        self.instance_id = instance_id
        self._store = client.register_script(STORE_SCRIPT)

    async def store_if_current(
        self,
        key: str,
        namespace: str,
        envelope: Envelope,
        ttl_s: float,
        lock_token: str | None,
    ) -> bool:
        """Write `envelope` if its generations are current; release our lock; note "filled"."""
        note = json.dumps({"key": key, "instance": self.instance_id, "g": envelope.generation})
        keys = [key, generation_key(namespace), generation_key(GLOBAL_NAMESPACE), lock_key(key)]
        args = [
            envelope.encode(),
            str(max(1, int(ttl_s * 1000))),
            str(envelope.generation),
            str(envelope.global_generation),
            lock_token or "",
            FILLED_CHANNEL,
            note,
        ]
        return bool(await self._store(keys=keys, args=args))


def new_envelope(value_json: str, gens: Generations, instance: str) -> Envelope:
    """An envelope stamped now."""
    return Envelope(value_json, gens.namespace, gens.global_, time.time(), instance)
