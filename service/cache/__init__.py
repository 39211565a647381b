"""Two-tier cache (in-process L1 over Redis L2) kept coherent across instances by generations."""

from service.cache.coherent import CacheResult, CoherentCache
from service.cache.keys import key_parts, normalise_query, result_key
from service.cache.l1 import GLOBAL_NAMESPACE

__all__ = [
    "GLOBAL_NAMESPACE",
    "CacheResult",
    "CoherentCache",
    "key_parts",
    "normalise_query",
    "result_key",
]
