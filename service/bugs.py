"""Injected bugs: deliberate defects, off by default, that prove the experiments' checkers can fail.

`TMWS_INJECT_BUGS="name[,name:arg]..."` turns them on (only together with
`TMWS_ENABLE_TEST_PATTERNS=true`; `Settings` refuses them otherwise). Each one is a small switch
at the one place it belongs:

| name | where | what it breaks |
|---|---|---|
| `skip-publish` | cache bumps | bumps are not published and L1 hits skip the strict generation check |
| `skip-generation-check` | cache reads | L1 and L2 hits are served without comparing generations |
| `no-flush-on-reconnect` | cache recovery | after a Redis loss/pause: no L1 flush, no '*' fence, pending bumps dropped |
| `late-invalidation:MS` | cache listener | invalidations from other instances apply MS ms late |
| `shared-l2-across-namespaces` | cache keys | result keys ignore the namespace |
| `ack-before-commit[:MS]` | store_memory | answers before its transaction commits (commit MS ms later) |
| `no-cancel-on-timeout` | pattern timeout, DB deadline | -32001 is answered, the work runs on |
| `pool-leak[:N]` | DB pool | every Nth acquired connection is never given back |

`TMWS_CACHE_SKIP_INVALIDATION_PUBLISH=true` (the older `--broken-cache` flag) is `skip-publish`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

DEFAULT_ACK_DELAY_MS = 300
DEFAULT_LEAK_EVERY = 5

#: name -> (field, takes an argument: "required" | "optional" | "none")
_SPEC: dict[str, tuple[str, str]] = {
    "skip-publish": ("skip_publish", "none"),
    "skip-generation-check": ("skip_generation_check", "none"),
    "no-flush-on-reconnect": ("no_flush_on_reconnect", "none"),
    "late-invalidation": ("late_invalidation_ms", "required"),
    "shared-l2-across-namespaces": ("shared_l2_across_namespaces", "none"),
    "ack-before-commit": ("ack_before_commit_ms", "optional"),
    "no-cancel-on-timeout": ("no_cancel_on_timeout", "none"),
    "pool-leak": ("pool_leak_every", "optional"),
}
_DEFAULT_ARG = {"ack-before-commit": DEFAULT_ACK_DELAY_MS, "pool-leak": DEFAULT_LEAK_EVERY}

KNOWN_BUGS: tuple[str, ...] = tuple(_SPEC)


class BugSpecError(ValueError):
    """`TMWS_INJECT_BUGS` names an unknown bug or gives a bad argument."""


@dataclass(frozen=True)
class InjectedBugs:
    """Which deliberate defects are on; every field's zero value means "off"."""

    skip_publish: bool = False
    skip_generation_check: bool = False
    no_flush_on_reconnect: bool = False
    #: Invalidations from other instances take effect this many ms late (0 = off).
    late_invalidation_ms: int = 0
    shared_l2_across_namespaces: bool = False
    #: store_memory answers, then commits (and bumps) this many ms later (0 = off).
    ack_before_commit_ms: int = 0
    no_cancel_on_timeout: bool = False
    #: Every Nth acquired database connection is never released (0 = off).
    pool_leak_every: int = 0

    @property
    def any(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))

    def names(self) -> list[str]:
        """The active bugs spelled as `TMWS_INJECT_BUGS` accepts them."""
        out = []
        for name, (attr, arg) in _SPEC.items():
            value = getattr(self, attr)
            if value:
                out.append(name if arg == "none" else f"{name}:{value}")
        return out

    def __str__(self) -> str:
        return ",".join(self.names()) or "none"

    @classmethod
    def parse(cls, text: str) -> InjectedBugs:
        """`"name[,name:arg]..."` -> the switches; unknown names or bad arguments raise."""
        values: dict[str, bool | int] = {}
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            name, _, raw = item.partition(":")
            name = name.strip().lower()
            if name not in _SPEC:
                raise BugSpecError(f"unknown injected bug {name!r}; known: {', '.join(KNOWN_BUGS)}")
            attr, arg = _SPEC[name]
            values[attr] = _argument(name, arg, raw.strip())
        return cls(**values)  # type: ignore[arg-type]


def _argument(name: str, kind: str, raw: str) -> bool | int:
    if kind == "none":
        if raw:
            raise BugSpecError(f"injected bug {name!r} takes no argument, got {raw!r}")
        return True
    if not raw:
        if kind == "required":
            raise BugSpecError(f"injected bug {name!r} needs a number, e.g. {name}:500")
        return _DEFAULT_ARG[name]
    try:
        value = int(raw)
    except ValueError:
        raise BugSpecError(f"injected bug {name!r}: {raw!r} is not an integer") from None
    if value < 1:
        raise BugSpecError(f"injected bug {name!r}: {value} must be >= 1")
    return value


NO_BUGS = InjectedBugs()
