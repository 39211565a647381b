"""Resilience building blocks: circuit breakers, retry backoff, time budgets."""

from service.resilience.breaker import BreakerState, CircuitBreaker
from service.resilience.retry import Backoff
from service.resilience.timeouts import MAX_EXECUTION_S, Deadline, run_with_timeout

__all__ = [
    "MAX_EXECUTION_S",
    "Backoff",
    "BreakerState",
    "CircuitBreaker",
    "Deadline",
    "run_with_timeout",
]
