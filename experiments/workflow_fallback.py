"""[6.3] Workflow integration error handling: a failing pattern inside hybrid workflows.

Instances run with TMWS_ENABLE_TEST_PATTERNS=true, which loads `failing_test_pattern` (trigger
"failing pattern test": a hybrid pattern whose required tool always fails). On every instance an
agent runs:

1. a workflow whose step 1 executes the failing pattern: the engine falls back to the LLM
   (route `llm_fallback`) and the workflow carries on;
2. a workflow whose step 1 is the failing tool itself: it stops there and names the step;
3. the failing pattern directly: answered by the LLM fallback, with the pattern's error attached.

Afterwards the driver counts the failures in the learning record (`pattern_executions`,
success=false for that pattern in this run's namespaces) and reads `get_pattern_stats`; then it
keeps sending the failing query on one instance until the statistics demote the pattern (its
queries then go straight to the LLM): the learning system acting on what it recorded.
"""

import experiments  # noqa: F401  (checks the dependencies before anything imports them)

# isort: split
import argparse
import asyncio
import sys
from typing import Any

from analysis import checks
from analysis.checks import Criterion, Evidence
from cluster.run import ClusterRun, RunResult
from experiments.runner import DRIVER_BATCHES, Experiment, main
from experiments.runner import Outcome as Verdict
from experiments.support.driver import DriverLog
from experiments.support.instances import fetchval
from experiments.support.rows import all_succeeded, reasons_all_contain, where
from service.client import WsClient

SECTION = "6.3"
FAILING_QUERY = "failing pattern test"
PATTERN = "failing_test_pattern"
PATTERN_STEP = {
    "tool": "execute_pattern",
    "arguments": {"query": FAILING_QUERY, "use_cache": False},
}
#: failing executions that demote a pattern (service/patterns/stats.py DEFAULT_MIN_RUNS)
DEMOTION_RUNS = 5


def step_route(result: Any, step: int = 1) -> dict[str, Any]:
    """Row columns from a workflow result: the pattern step's route and pattern, or the failure."""
    r = result or {}
    done = {c.get("step"): c.get("result") or {} for c in r.get("completed") or []}
    pattern = done.get(step) if step in done else done.get(0, {})
    cols: dict[str, Any] = {
        "route": pattern.get("route"),
        "pattern_name": pattern.get("pattern_name"),
    }
    if r.get("success") is False:
        error = r.get("error") or {}
        cols["error_reason"] = (
            f"failed_step={r.get('failed_step')} tool={r.get('failed_tool')} "
            f"reason={error.get('reason')}"
        )
    return cols


def fell_back(result: Any) -> str | None:
    r = result or {}
    if r.get("route") != "llm_fallback" or r.get("fallback") is not True:
        return f"no_fallback: route {r.get('route')!r} fallback {r.get('fallback')!r}"
    if PATTERN not in str(r.get("pattern_name")) or not r.get("error"):
        return f"no_failure_reported: pattern {r.get('pattern_name')!r} error {r.get('error')!r}"
    return None


class WorkflowFallbackExperiment(Experiment):
    scenario = "workflow_fallback"
    section = SECTION
    title = "Workflow integration error handling with LLM fallback and learning record"

    def instance_env(self, args: argparse.Namespace) -> dict[str, str]:
        return {"TMWS_ENABLE_TEST_PATTERNS": "true"}

    def drive(self, run: ClusterRun, args: argparse.Namespace) -> dict[str, Any]:
        log = DriverLog(run.run_id, self.scenario)
        assert run.infra is not None
        facts = asyncio.run(self._drive(run, log, run.infra.database_url))
        facts[DRIVER_BATCHES] = log.batches()
        return facts

    async def _drive(self, run: ClusterRun, log: DriverLog, database_url: str) -> dict[str, Any]:
        sessions = await asyncio.gather(
            *(
                WsClient.connect(info.ws_url, f"{run.run_id}-wf-{i}")
                for i, info in enumerate(run.instance_infos)
            )
        )
        try:
            await asyncio.gather(*(self._agent(s, log) for s in sessions))
            stats = await asyncio.gather(*(self._stats(s, log) for s in sessions))
            recorded = await fetchval(
                database_url,
                "SELECT count(*) FROM pattern_executions"
                " WHERE pattern_name = $1 AND NOT success AND namespace LIKE $2",
                PATTERN,
                f"{run.run_id}-%",
            )
            demotion = await self._until_demoted(sessions[0], log)
        finally:
            await asyncio.gather(*(s.close() for s in sessions))
        return {
            "learning_failures_recorded": int(recorded),
            "pattern_stats_before_demotion": stats,
            "demotion": demotion,
        }

    async def _agent(self, session: WsClient, log: DriverLog) -> None:
        steps = [
            {"tool": "store_memory", "arguments": {"content": "the failing pattern drill note"}},
            PATTERN_STEP,
            {"tool": "create_task", "arguments": {"title": "after the failing pattern"}},
        ]
        await log.call(
            session, "execute_workflow", {"steps": steps}, phase="workflow",
            key="workflow_pattern_step", row=step_route,
            expect=lambda r: None
            if (r or {}).get("success") is True
            and not fell_back(((r.get("completed") or [{}, {}])[1]).get("result"))
            else f"workflow_not_completed: {str(r)[:200]}",
        )  # fmt: skip
        failing = [
            PATTERN_STEP,
            {"tool": "fail_tool", "arguments": {"reason": "step failure drill"}},
            {"tool": "create_task", "arguments": {"title": "never created"}},
        ]
        await log.call(
            session, "execute_workflow", {"steps": failing}, phase="workflow",
            key="workflow_failing_step", row=lambda r: step_route(r, 0),
        )  # fmt: skip
        for _ in range(2):
            await log.call(
                session, "execute_pattern", {"query": FAILING_QUERY, "use_cache": False},
                phase="direct", key="direct", expect=fell_back,
            )  # fmt: skip

    async def _stats(self, session: WsClient, log: DriverLog) -> dict[str, Any] | None:
        call = await log.call(session, "get_pattern_stats", {"pattern_name": PATTERN},
                              phase="learning", key="stats")  # fmt: skip
        return ((call.result or {}).get("patterns") or {}).get(PATTERN)

    async def _until_demoted(self, session: WsClient, log: DriverLog) -> dict[str, Any]:
        """Keep failing on one instance until the pattern's queries go straight to the LLM."""
        routes = []
        for _ in range(DEMOTION_RUNS + 2):
            call = await log.call(
                session, "execute_pattern", {"query": FAILING_QUERY, "use_cache": False},
                phase="learning", key="until_demoted",
            )  # fmt: skip
            routes.append((call.result or {}).get("route"))
            if routes[-1] == "llm":
                break
        stats = await self._stats(session, log)
        return {"routes": routes, "demoted": bool(stats and stats.get("demoted"))}

    def check(self, result: RunResult, facts: dict[str, Any], args: argparse.Namespace) -> Verdict:
        table = result.table
        with_pattern = where(table, key="workflow_pattern_step")
        failing = where(table, key="workflow_failing_step")
        # Counted before the demotion drill: the workflow and direct phases only.
        expected = sum(
            where(table, route="llm_fallback", phase=phase).num_rows
            for phase in ("workflow", "direct")
        )
        demotion = facts["demotion"]
        found: list[Criterion] = [
            all_succeeded(
                "workflow_continues_after_pattern_failure",
                with_pattern,
                section=SECTION,
                minimum=3,
                description="a workflow step executing the failing pattern is answered by the LLM fallback",
            ),
            reasons_all_contain(
                "workflow_error_handling_activated",
                failing,
                "failed_step=1 tool=fail_tool reason=tool_failed",
                expectation="failed_step=1 tool=fail_tool reason=tool_failed on every failing workflow",
                section=SECTION,
            ),
            all_succeeded(
                "llm_fallback_triggered",
                where(table, key="direct"),
                section=SECTION,
                minimum=3,
                description="the failing pattern answered with route llm_fallback, fallback=true and its error",
            ),
            checks.holds(
                "failure_recorded_in_learning_system",
                expected > 0 and facts["learning_failures_recorded"] == expected,
                measured=f"{facts['learning_failures_recorded']} pattern_executions rows with "
                f"success=false for {PATTERN}; {expected} fallbacks in the history",
                expectation="one success=false row per failing execution",
                evidence=Evidence("fallbacks in the history", expected, 1),
                section=SECTION,
            ),
            checks.holds(
                "learning_demotes_failing_pattern",
                demotion["demoted"] and demotion["routes"][-1:] == ["llm"],
                measured=f"routes {demotion['routes']}; demoted={demotion['demoted']}",
                expectation=f"after {DEMOTION_RUNS} recorded failures the query goes to the LLM",
                evidence=Evidence(
                    "routing decisions after the failures", len(demotion["routes"]), 1
                ),
                section=SECTION,
            ),
        ]
        return Verdict(found, metrics={"fallback_rows": expected})


EXPERIMENT = WorkflowFallbackExperiment()

if __name__ == "__main__":
    sys.exit(main(EXPERIMENT))
