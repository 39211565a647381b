"""Negative controls (issue 8, point 4): every injected bug (service/bugs.py) makes the experiment
that should catch it exit 1 with the named criterion failing, and the same experiment without
the bug passes. The matrix is `CONTROLS`; docs/experiments.md has it as a table.

Clean runs are shared: a control whose clean configuration is already an experiment test of its
own (same experiment, same options) names that test in `clean`, and the configurations no other
test runs clean are run here once each (`CLEAN_HERE`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import pytest

from experiments.runner import Experiment
from tests.experiments.test_chaos import EVERY_KIND


@dataclass(frozen=True)
class Control:
    """One bug, the experiment run (and its options) that must catch it, and the criterion."""

    bug: str
    scenario: str
    args: tuple[str, ...]
    criterion: str
    #: The test that runs the same configuration without the bug (must pass), or "here".
    clean: str
    #: Embedded servers of its own: the run stops or pauses them.
    private: bool = False

    @property
    def experiment(self) -> Experiment:
        return importlib.import_module(f"experiments.{self.scenario}").EXPERIMENT  # type: ignore[no-any-return]

    @property
    def config(self) -> tuple[str, tuple[str, ...]]:
        return self.scenario, self.args


#: Eventual mode with its stated bound, Redis paused mid-load (writes during the pause are taken
#: and announced at recovery — unless the instance forgets to).
EVENTUAL_PAUSE = (
    "--cache-mode",
    "eventual",
    "--staleness-bound-ms",
    "1000",
    "--fault-mode",
    "pause",
)

#: PostgreSQL stopped once: the cheapest run with a no-fault baseline (a write through one
#: instance, then every instance's cached answer, then another namespace's) and acknowledged
#: writes checked across a real outage.
DB_STOP = ("--fault-mode", "stop")

#: The chaos run of tests/experiments/test_chaos.py (every fault category, strict).
CHAOS_EVERY_KIND = EVERY_KIND
CHAOS_CLEAN = "tests/experiments/test_chaos.py::test_chaos_ci_every_kind_passes_strict"
#: Chaos in eventual mode with its stated bound, Redis paused twice (a given schedule sets the
#: load's span: 50 s here). Strict mode cannot see `late-invalidation`: every strict L1 hit
#: checks the generation in Redis, so a late message never serves a stale answer. Eventual mode
#: trusts pub/sub while healthy: a message 3 s late serves reads staler than the 1 s bound (11
#: in one run of this schedule; 0 in one run with one pause and a 24 s load, hence two).
CHAOS_EVENTUAL = (
    "--cache-mode",
    "eventual",
    "--staleness-bound-ms",
    "1000",
    "--nemesis",
    "pause:redis@4s+5s, pause:redis@30s+5s",
)
#: Options the named clean tests run with (default options unless listed).
CLEAN_ARGS = {CHAOS_CLEAN: CHAOS_EVERY_KIND}

CONTROLS: tuple[Control, ...] = (
    # Issue 8's first acceptance: a service whose memory writes never invalidate any cache
    # fails the flagship at ci scale (stale answers from L1 entries nobody told to drop).
    Control(
        "skip-publish",
        "coherency",
        (),
        "no_stale_reads",
        "tests/experiments/test_coherency.py::test_coherency_strict_ci",
    ),
    Control(
        "skip-generation-check",
        "db_recovery",
        DB_STOP,
        "acked_writes_visible_across_instances",
        "here",
        private=True,
    ),
    Control(
        "shared-l2-across-namespaces",
        "db_recovery",
        DB_STOP,
        "namespace_isolation",
        "here",
        private=True,
    ),
    Control(
        "ack-before-commit:2000",
        "db_recovery",
        DB_STOP,
        "acked_writes_durable_stop",
        "here",
        private=True,
    ),
    # The baseline write is read 1 s (the stated bound) after its ack: other instances still
    # serve their L1 entry until the late message arrives.
    Control(
        "late-invalidation:3000",
        "redis_failover",
        EVENTUAL_PAUSE,
        "acked_writes_visible_across_instances",
        "here",
        private=True,
    ),
    # The switch drops the pending bumps of the writes acknowledged during the pause (retried,
    # they did the fence's work and hid the bug): the outage's marked writes stay out of every
    # instance's cached answer (0 of 9 reads included their write in one bugged run).
    Control(
        "no-flush-on-reconnect",
        "redis_failover",
        EVENTUAL_PAUSE,
        "acked_writes_visible_after_recovery_pause",
        "here",
        private=True,
    ),
    # Chaos (every fault kind, strict): L1/L2 hits served without comparing generations are
    # stale reads, explained by witnesses. Its clean run is test_chaos's own.
    Control(
        "skip-generation-check",
        "chaos",
        CHAOS_EVERY_KIND,
        "no_stale_reads",
        CHAOS_CLEAN,
        private=True,
    ),
    # Chaos in eventual mode (Redis paused): a message applied 3 s late serves answers staler
    # than the 1 s bound, explained by witnesses; the clean run of this configuration is here.
    # `no-flush-on-reconnect` is not in chaos (docs/experiments.md, "Negative controls"): the
    # 4.3 mix bumps every namespace about once a second, so an un-flushed entry is replaced
    # within about the bound (1 stale read in one run, 0 in a run with three Redis pauses).
    Control(
        "late-invalidation:3000",
        "chaos",
        CHAOS_EVENTUAL,
        "no_stale_reads_beyond_bound",
        "here",
        private=True,
    ),
    Control(
        "no-cancel-on-timeout",
        "timeout",
        (),
        "no_resource_leaks",
        "tests/experiments/test_timeout.py::test_timeout_ci",
    ),
    Control(
        "pool-leak",
        "pool_stress",
        (),
        "no_connection_leak",
        "tests/experiments/test_pool_stress.py::test_pool_stress_ci",
    ),
)
#: Bugs no criterion catches reliably yet, and why (a strict xfail: catching one fails the test,
#: so the entry must then go).
NOT_CAUGHT: dict[str, str] = {}
#: Configurations run clean here (no other test runs them), once each.
CLEAN_HERE = sorted({c.config for c in CONTROLS if c.clean == "here"})


def _servers(control_private: bool, request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue("private_infra" if control_private else "infra")


def _mode(args: tuple[str, ...]) -> str:
    return args[args.index("--cache-mode") + 1] if "--cache-mode" in args else "strict"


def _matrix() -> list[Any]:
    known = [c.bug.split(":")[0] for c in CONTROLS]
    return [
        pytest.param(
            c,
            id=name if c.scenario != "chaos" else f"{name}-chaos-{_mode(c.args)}",
            marks=[pytest.mark.xfail(strict=True, reason=NOT_CAUGHT[name])]
            if name in NOT_CAUGHT
            else [],
        )
        for c, name in zip(CONTROLS, known, strict=True)
    ]


@pytest.mark.slow
@pytest.mark.parametrize("control", _matrix())
def test_injected_bug_is_caught(
    control: Control, run_ci: Any, request: pytest.FixtureRequest, shared_ray: None
) -> None:
    run = run_ci(
        control.experiment,
        _servers(control.private, request),
        *control.args,
        "--inject-bug",
        control.bug,
    )
    caught = run.criteria[control.criterion]
    assert run.metrics["injected_bugs"] == [control.bug]
    assert caught["verdict"] == "fail" and caught["critical"], caught
    assert run.code == 1
    if control.scenario == "chaos":  # the failure comes explained (summary.md, timeline.html)
        summary = (run.out / "summary.md").read_text()
        assert "## Witnesses" in summary and "stale read" in summary, summary[-3000:]
        assert 'id="witness-1"' in (run.out / "timeline.html").read_text()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("scenario", "args"), CLEAN_HERE, ids=lambda v: v if isinstance(v, str) else "-".join(v)
)
def test_same_configuration_without_the_bug_passes(
    scenario: str,
    args: tuple[str, ...],
    run_ci: Any,
    request: pytest.FixtureRequest,
    shared_ray: None,
) -> None:
    control = next(c for c in CONTROLS if c.config == (scenario, args))
    run = run_ci(control.experiment, _servers(control.private, request), *args)
    assert run.metrics["injected_bugs"] == []
    run.passed(*(c.criterion for c in CONTROLS if c.config == (scenario, args)))
    assert run.code == 0


def test_every_known_bug_has_a_control_and_every_clean_run_exists() -> None:
    from service.bugs import KNOWN_BUGS

    assert sorted({c.bug.split(":")[0] for c in CONTROLS}) == sorted(KNOWN_BUGS)
    for control in CONTROLS:
        if control.clean == "here":
            continue
        path, name = control.clean.split("::")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        assert callable(getattr(module, name, None)), control.clean
        # The named clean test runs the experiment with its default options (or those listed).
        assert control.args == CLEAN_ARGS.get(control.clean, ()), control
