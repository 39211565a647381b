"""The fault driver: stop/start/pause/resume a named server (`redis`, `postgres`) wherever it runs.

One API, three kinds of driver, chosen by the experiment's options (`--faults`):

- `embedded`: the embedded servers this run owns (`service.infra.embedded.EmbeddedInfra`):
  a real stop and restart on the same port, or SIGSTOP/SIGCONT of the server's processes
  (`pause_<target>` / `resume_<target>`), so connections stay open and nothing answers.
- `compose`: `docker compose stop|start|pause|unpause SERVICE` for the services of a compose
  file (default: the project's docker-compose.yml, where the servers are `postgres` and `redis`).
- `commands`: shell commands the user gives (`--fault-stop-cmd 'systemctl stop {target}'`...),
  with `{target}` replaced by the target's name — for anything else (Kubernetes, a cloud VM).

A `FaultInjector` wraps a driver and records every fault it applies and heals, with wall-clock
times (`FaultRecord`), so checks can split the history rows into before / during / after, and a
later faults.parquet can be written from the records. `with injector.fault("redis", "pause"):`
heals on exit whatever happens inside, so a failing experiment never leaves a server frozen.

No driver (`none`): the experiment cannot take a server away, and reports its fault criteria as
skipped (which fails the run unless the user allows that skip).
"""

from __future__ import annotations

import argparse
import logging
import shlex
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import yaml

log = logging.getLogger(__name__)

TARGETS = ("redis", "postgres")
ACTIONS = ("stop", "start", "pause", "resume")
#: A fault and the action that heals it.
KINDS: dict[str, str] = {"stop": "start", "pause": "resume"}
DRIVERS = ("embedded", "compose", "commands", "none")
PROJECT_ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yml"
#: docker compose's own verbs for our actions.
COMPOSE_VERBS = {"stop": "stop", "start": "start", "pause": "pause", "resume": "unpause"}
#: Bound on one user command or docker compose call (a stop that hangs must not hang the run).
COMMAND_TIMEOUT_S = 120.0

Target = Literal["redis", "postgres"]
Kind = Literal["stop", "pause"]


class FaultError(RuntimeError):
    """A fault could not be applied or healed (the message says which command and why)."""


class FaultDriver(Protocol):
    """Takes one named server away and brings it back."""

    name: str

    def supports(self, action: str) -> bool:
        """Whether this driver can perform `action` (e.g. no pause command given)."""
        ...

    def act(self, action: str, target: str) -> str:
        """Perform `action` on `target`; returns a one-line description of what ran."""
        ...


def _check(action: str, target: str) -> None:
    if action not in ACTIONS:
        raise FaultError(f"unknown fault action {action!r} (one of {', '.join(ACTIONS)})")
    if target not in TARGETS:
        raise FaultError(f"unknown fault target {target!r} (one of {', '.join(TARGETS)})")


class EmbeddedDriver:
    """Faults on the embedded servers: `infra.<action>_<target>()` (e.g. `pause_redis`)."""

    name = "embedded"

    def __init__(self, infra: Any) -> None:
        self.infra = infra

    def supports(self, action: str) -> bool:
        return all(callable(getattr(self.infra, f"{action}_{t}", None)) for t in TARGETS)

    def act(self, action: str, target: str) -> str:
        _check(action, target)
        method = getattr(self.infra, f"{action}_{target}", None)
        if method is None:
            raise FaultError(
                f"the embedded servers cannot {action} {target} (no {action}_{target})"
            )
        method()
        return f"embedded {action}_{target}()"


class CommandRunner(Protocol):
    def __call__(self, argv: Sequence[str] | str, *, shell: bool) -> str: ...


def run_command(argv: Sequence[str] | str, *, shell: bool) -> str:
    """Run one command to completion (bounded); its stdout, or `FaultError` naming it."""
    shown = argv if isinstance(argv, str) else shlex.join(argv)
    try:
        done = subprocess.run(
            argv,
            shell=shell,
            check=False,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise FaultError(f"`{shown}` did not finish within {COMMAND_TIMEOUT_S:.0f}s") from exc
    except OSError as exc:
        raise FaultError(f"`{shown}` could not run: {exc}") from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise FaultError(f"`{shown}` exited {done.returncode}: {' / '.join(tail) or 'no output'}")
    return done.stdout


def compose_services(path: Path) -> set[str]:
    """The service names a compose file defines."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise FaultError(f"cannot read compose file {path}: {exc}") from exc
    return set((data.get("services") or {}).keys())


class ComposeDriver:
    """`docker compose -f FILE [-p PROJECT] stop|start|pause|unpause SERVICE`."""

    name = "compose"

    def __init__(
        self,
        compose_file: Path = COMPOSE_FILE,
        *,
        project: str | None = None,
        services: Mapping[str, str] | None = None,
        runner: CommandRunner = run_command,
    ) -> None:
        self.compose_file = Path(compose_file)
        self.project = project
        self.services = {t: t for t in TARGETS} | dict(services or {})
        self.runner = runner
        defined = compose_services(self.compose_file)
        missing = sorted(s for s in self.services.values() if s not in defined)
        if missing:
            raise FaultError(
                f"compose file {self.compose_file} has no service {', '.join(missing)} "
                f"(it defines {', '.join(sorted(defined)) or 'none'})"
            )

    def supports(self, action: str) -> bool:
        return action in COMPOSE_VERBS

    def command(self, action: str, target: str) -> list[str]:
        """The exact argv for `action` on `target`."""
        _check(action, target)
        argv = ["docker", "compose", "-f", str(self.compose_file)]
        if self.project:
            argv += ["-p", self.project]
        return [*argv, COMPOSE_VERBS[action], self.services[target]]

    def act(self, action: str, target: str) -> str:
        argv = self.command(action, target)
        self.runner(argv, shell=False)
        return shlex.join(argv)


class CommandDriver:
    """User-given shell commands per action; `{target}` becomes `redis` or `postgres`."""

    name = "commands"

    def __init__(self, commands: Mapping[str, str], *, runner: CommandRunner = run_command) -> None:
        unknown = set(commands) - set(ACTIONS)
        if unknown:
            raise FaultError(f"unknown fault actions {sorted(unknown)}")
        self.commands = {a: c for a, c in commands.items() if c}
        self.runner = runner

    def supports(self, action: str) -> bool:
        return action in self.commands

    def command(self, action: str, target: str) -> str:
        """The shell command for `action` on `target`."""
        _check(action, target)
        template = self.commands.get(action)
        if template is None:
            raise FaultError(f"no --fault-{action}-cmd given")
        return template.replace("{target}", target)

    def act(self, action: str, target: str) -> str:
        command = self.command(action, target)
        self.runner(command, shell=True)
        return command


@dataclass
class FaultRecord:
    """One fault: what was taken away, by which driver, and when (wall clock, ns).

    `applied_ns` is when the fault action returned (the server is gone from then on);
    `healed_ns` when the healing action returned (None: never healed).
    """

    target: str
    kind: str
    driver: str
    requested_ns: int
    applied_ns: int | None = None
    heal_requested_ns: int | None = None
    healed_ns: int | None = None
    commands: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def duration_s(self) -> float | None:
        """Applied → healed, seconds."""
        if self.applied_ns is None or self.healed_ns is None:
            return None
        return (self.healed_ns - self.applied_ns) / 1e9

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "duration_s": self.duration_s}


class FaultInjector:
    """Applies and heals faults through one driver, recording each (`records`)."""

    def __init__(self, driver: FaultDriver) -> None:
        self.driver = driver
        self.records: list[FaultRecord] = []

    @property
    def name(self) -> str:
        return self.driver.name

    def supports(self, kind: str) -> bool:
        """Whether the driver can both apply and heal a fault of `kind` (stop or pause)."""
        return kind in KINDS and self.driver.supports(kind) and self.driver.supports(KINDS[kind])

    def apply(self, target: str, kind: str) -> FaultRecord:
        """Take `target` away (`kind`: stop or pause); the record holds the times."""
        if kind not in KINDS:
            raise FaultError(f"unknown fault kind {kind!r} (one of {', '.join(KINDS)})")
        record = FaultRecord(target, kind, self.driver.name, requested_ns=time.time_ns())
        self.records.append(record)
        try:
            record.commands.append(self.driver.act(kind, target))
        except FaultError as exc:
            record.error = str(exc)
            raise
        record.applied_ns = time.time_ns()
        log.warning("fault: %s %s via %s", kind, target, self.driver.name)
        return record

    def heal(self, record: FaultRecord) -> FaultRecord:
        """Undo `record`'s fault (start after stop, resume after pause)."""
        record.heal_requested_ns = time.time_ns()
        try:
            record.commands.append(self.driver.act(KINDS[record.kind], record.target))
        except FaultError as exc:
            record.error = str(exc)
            raise
        record.healed_ns = time.time_ns()
        log.warning("healed: %s %s after %.1fs", record.kind, record.target, record.duration_s)
        return record

    @contextmanager
    def fault(self, target: str, kind: str) -> Iterator[FaultRecord]:
        """`with injector.fault("redis", "pause") as record:` — healed on exit, always."""
        record = self.apply(target, kind)
        try:
            yield record
        finally:
            if record.healed_ns is None:
                self.heal(record)

    def to_dicts(self) -> list[dict[str, Any]]:
        """Every record as plain data (facts, metrics.json)."""
        return [r.to_dict() for r in self.records]


# -- options ------------------------------------------------------------------------------------


def add_fault_arguments(parser: argparse.ArgumentParser) -> None:
    """The fault options every fault experiment takes."""
    group = parser.add_argument_group("faults")
    group.add_argument(
        "--faults",
        choices=(*DRIVERS, "auto"),
        default="auto",
        help="how servers are taken away: embedded (our servers: signals and restarts), compose "
        "(docker compose stop/pause), commands (--fault-*-cmd), none; default auto: commands "
        "when given, embedded when the servers are ours, else none (fault criteria skipped)",
    )
    for action in ACTIONS:
        group.add_argument(
            f"--fault-{action}-cmd",
            default=None,
            metavar="CMD",
            help=f"shell command to {action} a server; {{target}} becomes redis or postgres",
        )
    group.add_argument(
        "--compose-file",
        type=Path,
        default=COMPOSE_FILE,
        help="compose file for --faults compose (default: the project's docker-compose.yml)",
    )
    group.add_argument(
        "--compose-project", default=None, help="docker compose project name (-p) if not default"
    )


def user_commands(args: argparse.Namespace) -> dict[str, str]:
    """The --fault-*-cmd options that were given, by action."""
    found = {a: getattr(args, f"fault_{a}_cmd", None) for a in ACTIONS}
    return {a: c for a, c in found.items() if c}


def choose_driver(args: argparse.Namespace, embedded: Any) -> FaultInjector | None:
    """The injector the options ask for (None: no faults in this run).

    `embedded` is the run's own embedded servers, or None when the servers were given by URL.
    Raises `ValueError` (a one-line usage error, exit 2) for options that cannot work.
    """
    commands = user_commands(args)
    choice = args.faults
    if choice == "auto":
        choice = "commands" if commands else ("embedded" if embedded is not None else "none")
    if commands and choice != "commands":
        raise ValueError(f"--fault-*-cmd options need --faults commands (got --faults {choice})")
    if choice == "none":
        return None
    if choice == "embedded":
        if embedded is None:
            raise ValueError(
                "--faults embedded: the servers were given by URL (TMWS_DATABASE_URL/"
                "TMWS_REDIS_URL), so they are not ours to stop; use --faults compose or commands"
            )
        return FaultInjector(EmbeddedDriver(embedded))
    try:
        if choice == "compose":
            return FaultInjector(ComposeDriver(args.compose_file, project=args.compose_project))
        missing = [f"--fault-{a}-cmd" for a in ("stop", "start") if a not in commands]
        if missing:
            raise ValueError(f"--faults commands needs {' and '.join(missing)}")
        return FaultInjector(CommandDriver(commands))
    except FaultError as exc:
        raise ValueError(str(exc)) from exc


def owned_servers(run: Any) -> Any:
    """The embedded servers a run may stop (its own, or the ones a test passed), else None."""
    given = run.config.infra
    if given is not None:
        return given if hasattr(given, "stop_redis") else None
    return run.infra.owned if run.infra is not None else None
