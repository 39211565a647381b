"""[2.3] Multi-client WebSocket pattern execution: 10 sockets of ONE agent, no crosstalk.

On every instance of the run one agent (multi-terminal) opens 10 simultaneous sessions; each
sends its own unique requests concurrently, all sessions reusing the same JSON-RPC ids. A reply
must carry the asking session's id (get_agent_info) and its own query (execute_pattern probe), and
arrive only on the socket that asked. The 11th connection of that agent must be refused with the
limit reason, and closing one session must free its slot. Every request is one history row.
"""

import experiments  # noqa: F401  (checks the dependencies before anything imports them)

# isort: split
import argparse
import asyncio
import sys
import time
from typing import Any

import pyarrow.compute as pc
from websockets.exceptions import ConnectionClosed

from actors.recorder import CLIENT_ERROR_REASONS, Outcome, SessionInfo
from analysis import checks
from analysis.checks import Evidence
from cluster.run import ClusterRun, RunResult
from experiments.runner import DRIVER_BATCHES, Experiment, main
from experiments.runner import Outcome as Verdict
from experiments.support.driver import DriverLog, session_info, violation
from experiments.support.instances import health_all, scale_name, sized
from experiments.support.rows import all_succeeded, rate_pct, reasons_containing, where
from service.client import WsClient

SECTION = "2.3"
CLIENTS = 10
REQUESTS_PER_CLIENT = {"ci": 3, "laptop": 10, "cloud": 20}


class MultiClientExperiment(Experiment):
    scenario = "multi_client"
    section = SECTION
    title = "Multi-client WebSocket pattern execution (10 sockets, one agent)"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--clients", type=int, default=CLIENTS, help="sockets per agent")

    def drive(self, run: ClusterRun, args: argparse.Namespace) -> dict[str, Any]:
        log = DriverLog(run.run_id, self.scenario)
        per_client = sized(REQUESTS_PER_CLIENT, scale_name(run))
        facts = asyncio.run(self._drive(run, log, args.clients, per_client))
        facts[DRIVER_BATCHES] = log.batches()
        return facts

    async def _drive(
        self, run: ClusterRun, log: DriverLog, clients: int, per_client: int
    ) -> dict[str, Any]:
        health = await health_all(run)
        limits = [(h.get("sessions") or {}).get("max_per_agent") for h in health]
        await asyncio.gather(
            *(
                self._instance(f"{run.run_id}-mt-{i}", info.ws_url, log, clients, per_client)
                for i, info in enumerate(run.instance_infos)
            )
        )
        after = await health_all(run)
        return {
            "clients_per_agent": clients,
            "requests_per_client": per_client,
            "max_per_agent": limits,
            "refused_by_instance": [(h.get("sessions") or {}).get("refused") for h in after],
        }

    async def _instance(
        self, agent: str, url: str, log: DriverLog, clients: int, per_client: int
    ) -> None:
        sessions = list(
            await asyncio.gather(*(WsClient.connect(url, agent) for _ in range(clients)))
        )
        try:
            await self._over_limit(url, agent, log, "over_limit")
            await asyncio.gather(
                *(self._client(s, c, log, per_client) for c, s in enumerate(sessions))
            )
            await self._slot_freed(url, agent, log, sessions)
        finally:
            await asyncio.gather(*(s.close() for s in sessions))

    async def _over_limit(self, url: str, agent: str, log: DriverLog, key: str) -> bool:
        """Try one more connection; the row records whether (and how) it was refused."""
        t_send = time.time_ns()
        try:
            extra = await WsClient.connect(url, agent)
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else None
            reason = exc.rcvd.reason if exc.rcvd is not None else ""
            outcome = Outcome(error_code=code, error_reason=f"ws_close: {reason}"[:300])
            session = SessionInfo(agent)
        else:
            outcome, session = Outcome.ok({}), session_info(extra)
            await extra.close()
        log.record(
            phase="limit",
            method="ws_connect",
            session=session,
            outcome=outcome,
            t_send_ns=t_send,
            t_recv_ns=time.time_ns(),
            key=key,
            op="other",
        )
        return outcome.success

    async def _slot_freed(
        self, url: str, agent: str, log: DriverLog, sessions: list[WsClient]
    ) -> None:
        """Close one session; a new connection must then be admitted (bounded retries)."""
        first = sessions.pop(0)
        await first.close()
        t_send = time.time_ns()
        outcome, session = Outcome(error_code=None), SessionInfo(agent)
        for _attempt in range(20):
            try:
                replacement = await WsClient.connect(url, agent)
            except ConnectionClosed as exc:
                reason = exc.rcvd.reason if exc.rcvd is not None else ""
                outcome = violation(f"still refused after close: {reason}")
                # The server forgets a session right after the close handshake: retry briefly.
                await asyncio.sleep(0.05)
                continue
            outcome, session = Outcome.ok({}), session_info(replacement)
            sessions.append(replacement)
            break
        log.record(
            phase="limit",
            method="ws_connect",
            session=session,
            outcome=outcome,
            t_send_ns=t_send,
            t_recv_ns=time.time_ns(),
            key="after_close",
            op="other",
        )

    async def _client(self, session: WsClient, c: int, log: DriverLog, n: int) -> None:
        own = session.session_id

        def own_session(r: Any) -> str | None:
            got = (r or {}).get("session_id")
            return None if got == own else f"crosstalk: session {got} answered on {own}"

        async def one(k: int) -> None:
            query = f"run the test tool for client {c} request {k} of session {own[:12]}"

            def own_probe(r: Any) -> str | None:
                probe = (((r or {}).get("result") or {}).get("output") or {}).get("probe")
                return None if probe == query else f"crosstalk: probe {probe!r} for {query!r}"

            # Every client uses the same ids (1..n and "p1".."pn"): only the socket tells them apart.
            await asyncio.gather(
                log.call(session, "get_agent_info", {}, phase="clients", request_id=k,
                         key="session_id", expect=own_session),
                log.call(session, "execute_pattern", {"query": query, "use_cache": False},
                         phase="clients", request_id=f"p{k}", key="probe", expect=own_probe),
            )  # fmt: skip

        await asyncio.gather(*(one(k) for k in range(1, n + 1)))

        def no_stray_frames(_result: Any) -> str | None:
            stray = session.take_unmatched()
            return (
                f"crosstalk: {len(stray)} frames nobody on this socket asked for" if stray else None
            )

        # Barrier: once the ping is answered, any stray frame for this socket has arrived.
        await log.call(session, "ping", {}, phase="clients", key="barrier", expect=no_stray_frames)

    def check(self, result: RunResult, facts: dict[str, Any], args: argparse.Namespace) -> Verdict:
        table = result.table
        clients = where(table, phase="clients")
        rows = clients.to_pylist()
        by_session: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_session.setdefault(row["session_id"], []).append(row)
        client_codes = set(CLIENT_ERROR_REASONS)
        answered = sum(
            1 for rs in by_session.values() if any(r["error_code"] not in client_codes for r in rs)
        )
        ok_clients = sum(1 for rs in by_session.values() if all(r["success"] for r in rs))
        n_instances = len({r["instance_id"] for r in rows})
        expected_clients = facts["clients_per_agent"] * max(n_instances, 1)
        over = where(table, phase="limit", key="over_limit").to_pylist()
        refused = [
            r
            for r in over
            if not r["success"] and r["error_code"] == 1013 and "limit" in (r["error_reason"] or "")
        ]
        named = where(clients, key="session_id")
        own = int(pc.sum(named.column("success")).as_py() or 0)
        found = [
            checks.equals(
                "all_clients_receive_responses",
                float(answered),
                expected_clients,
                evidence=Evidence("client sessions that sent requests", len(by_session), 1),
                description="sessions that got replies (10 per agent on every instance)",
                section=SECTION,
            ),
            checks.at_least(
                "client_success_rate",
                rate_pct(ok_clients, len(by_session)),
                80.0,
                evidence=Evidence("client sessions", len(by_session), CLIENTS),
                description="clients whose every request succeeded with its own reply (plan: ≥ 8/10)",
                unit="%",
                section=SECTION,
            ),
            checks.equals(
                "no_message_crosstalk",
                float(reasons_containing(clients, "crosstalk").num_rows),
                0,
                evidence=Evidence("client requests", clients.num_rows, 1),
                description="replies carrying another session's id or query, or stray frames",
                section=SECTION,
            ),
            checks.holds(
                "session_isolation",
                len(by_session) == expected_clients and own == named.num_rows > 0,
                measured=f"{len(by_session)} distinct sessions; "
                f"{own} of {named.num_rows} replies named their own session",
                expectation=f"{expected_clients} distinct sessions, each reply naming its own",
                evidence=Evidence("replies naming a session", named.num_rows, 1),
                section=SECTION,
            ),
            checks.holds(
                "connection_limit_enforced",
                len(refused) == len(over),
                measured="; ".join(f"{r['error_code']} {r['error_reason']}" for r in over)
                or "none",
                expectation="the 11th socket of one agent is closed with 1013 and the limit reason",
                evidence=Evidence("connections over the limit tried", len(over), 1),
                section="10",
            ),
            all_succeeded(
                "slot_freed_after_close",
                where(table, phase="limit", key="after_close"),
                section="10",
                description="after one socket closes, the agent may connect again",
            ),
        ]
        return Verdict(found, metrics={"clients": len(by_session), "clients_ok": ok_clients})


EXPERIMENT = MultiClientExperiment()

if __name__ == "__main__":
    sys.exit(main(EXPERIMENT))
