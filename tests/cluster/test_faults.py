"""The fault driver: command construction (compose, user commands), records, driver choice, and
real stops/pauses of an embedded Redis through the embedded and the commands drivers."""

from __future__ import annotations

import argparse
import asyncio
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from cluster.faults import (
    COMPOSE_FILE,
    CommandDriver,
    ComposeDriver,
    EmbeddedDriver,
    FaultError,
    FaultInjector,
    add_fault_arguments,
    choose_driver,
    run_command,
)
from service.infra.embedded import EmbeddedInfra

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "embedded_fault.py"


class Calls:
    """A command runner that records instead of running (docker is not installed here)."""

    def __init__(self) -> None:
        self.argvs: list[tuple[Any, bool]] = []

    def __call__(self, argv: Any, *, shell: bool) -> str:
        self.argvs.append((argv, shell))
        return ""


def test_compose_commands_use_the_services_of_the_compose_file() -> None:
    calls = Calls()
    driver = ComposeDriver(COMPOSE_FILE, runner=calls)
    base = ["docker", "compose", "-f", str(COMPOSE_FILE)]
    assert driver.command("stop", "redis") == [*base, "stop", "redis"]
    assert driver.command("start", "postgres") == [*base, "start", "postgres"]
    assert driver.command("pause", "redis") == [*base, "pause", "redis"]
    assert driver.command("resume", "postgres") == [*base, "unpause", "postgres"]
    injector = FaultInjector(driver)
    with injector.fault("postgres", "pause"):
        pass
    assert [a for a, _ in calls.argvs] == [
        [*base, "pause", "postgres"],
        [*base, "unpause", "postgres"],
    ]
    assert not any(shell for _, shell in calls.argvs)


def test_compose_project_and_renamed_services(tmp_path: Path) -> None:
    compose = tmp_path / "compose.yml"
    compose.write_text("services:\n  cache: {image: redis}\n  postgres: {image: pg}\n")
    driver = ComposeDriver(compose, project="sim", services={"redis": "cache"}, runner=Calls())
    assert driver.command("stop", "redis")[-4:] == ["-p", "sim", "stop", "cache"]


def test_compose_file_without_the_service_is_refused(tmp_path: Path) -> None:
    compose = tmp_path / "compose.yml"
    compose.write_text("services:\n  web: {image: nginx}\n")
    with pytest.raises(FaultError, match="no service postgres, redis"):
        ComposeDriver(compose, runner=Calls())


def test_user_commands_get_the_target_substituted_and_run_in_a_shell(tmp_path: Path) -> None:
    log = tmp_path / "log"
    driver = CommandDriver(
        {"stop": f"echo stop {{target}} >> {log}", "start": f"echo start {{target}} >> {log}"}
    )
    injector = FaultInjector(driver)
    assert injector.supports("stop") and not injector.supports("pause")
    with injector.fault("redis", "stop") as record:
        assert record.applied_ns is not None and record.healed_ns is None
    assert log.read_text().splitlines() == ["stop redis", "start redis"]
    assert record.healed_ns is not None and record.healed_ns >= record.applied_ns
    assert record.commands == [f"echo stop redis >> {log}", f"echo start redis >> {log}"]
    assert injector.to_dicts()[0]["duration_s"] >= 0


def test_a_failing_command_names_itself_and_its_exit_code() -> None:
    driver = CommandDriver({"stop": "echo nope >&2; exit 3", "start": "true"})
    injector = FaultInjector(driver)
    with pytest.raises(FaultError, match=r"exited 3: nope"):
        injector.apply("postgres", "stop")
    assert injector.records[0].error is not None
    assert injector.records[0].applied_ns is None


def test_missing_pause_command_is_a_clear_error() -> None:
    driver = CommandDriver({"stop": "true", "start": "true"})
    with pytest.raises(FaultError, match="no --fault-pause-cmd given"):
        driver.command("pause", "redis")


def test_unknown_target_and_kind_are_refused() -> None:
    injector = FaultInjector(CommandDriver({"stop": "true", "start": "true"}))
    with pytest.raises(FaultError, match="unknown fault target 'mysql'"):
        injector.apply("mysql", "stop")
    with pytest.raises(FaultError, match="unknown fault kind 'kill'"):
        injector.apply("redis", "kill")


def test_fault_is_healed_when_the_body_raises() -> None:
    calls = Calls()
    injector = FaultInjector(ComposeDriver(COMPOSE_FILE, runner=calls))
    with pytest.raises(RuntimeError), injector.fault("redis", "stop"):
        raise RuntimeError("experiment failed mid-outage")
    assert [a[-2] for a, _ in calls.argvs] == ["stop", "start"]
    assert injector.records[0].healed_ns is not None


def test_run_command_is_bounded_and_reports_missing_programs() -> None:
    with pytest.raises(FaultError, match="could not run"):
        run_command(["/nonexistent/docker", "compose"], shell=False)
    assert run_command("echo hi", shell=True) == "hi\n"


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_fault_arguments(parser)
    return parser.parse_args(argv)


def test_driver_choice_follows_the_options() -> None:
    ours = object()
    assert choose_driver(_args(), None) is None
    chosen = choose_driver(_args(), ours)
    assert chosen is not None and chosen.name == "embedded"
    commands = choose_driver(_args("--fault-stop-cmd", "a", "--fault-start-cmd", "b"), None)
    assert commands is not None and commands.name == "commands"
    compose = choose_driver(_args("--faults", "compose"), None)
    assert compose is not None and compose.name == "compose"
    assert choose_driver(_args("--faults", "none"), ours) is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--faults", "embedded"), "given by URL"),
        (("--faults", "commands", "--fault-stop-cmd", "x"), "needs --fault-start-cmd"),
        (("--faults", "compose", "--fault-stop-cmd", "x"), "need --faults commands"),
        (("--faults", "compose", "--compose-file", "/nonexistent.yml"), "cannot read"),
    ],
)
def test_impossible_fault_options_are_usage_errors(argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        choose_driver(_args(*argv), None)


async def _redis_answers(url: str, timeout_s: float = 1.0) -> bool:
    client = Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        return bool(await client.ping())
    except (RedisError, OSError):  # refused (stopped) or timed out (paused)
        return False
    finally:
        await client.aclose()


def test_embedded_driver_really_stops_and_restarts_redis(private_infra: EmbeddedInfra) -> None:
    injector = FaultInjector(EmbeddedDriver(private_infra))
    with injector.fault("redis", "stop"):
        assert not private_infra.redis.running()
        assert not asyncio.run(_redis_answers(private_infra.redis_url))
    assert asyncio.run(_redis_answers(private_infra.redis_url))


def test_user_commands_really_pause_stop_and_restart_redis(private_infra: EmbeddedInfra) -> None:
    """What a user without our embedded driver would do: signals by the pid file, and the small
    script for a stop that waits for the exit and a start on the same port."""
    pid_file = shlex.quote(str(private_infra.redis.pid_file))
    script = f"{shlex.quote(sys.executable)} {shlex.quote(str(SCRIPT))}"
    state = shlex.quote(str(private_infra.state_dir))
    driver = CommandDriver(
        {
            "stop": f"{script} stop {{target}} --state-dir {state}",
            "start": f"{script} start {{target}} --state-dir {state}",
            "pause": f"kill -STOP $(cat {pid_file})",
            "resume": f"kill -CONT $(cat {pid_file})",
        }
    )
    injector = FaultInjector(driver)
    with injector.fault("redis", "pause"):
        # Paused: the port still accepts connections, but nothing answers.
        assert private_infra.redis.running()
        assert not asyncio.run(_redis_answers(private_infra.redis_url, timeout_s=0.5))
    assert asyncio.run(_redis_answers(private_infra.redis_url))
    with injector.fault("redis", "stop"):
        assert not asyncio.run(_redis_answers(private_infra.redis_url))
    assert asyncio.run(_redis_answers(private_infra.redis_url))
    assert [r.kind for r in injector.records] == ["pause", "stop"]


def test_the_script_refuses_a_folder_without_servers(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "stop", "redis", "--state-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2 and "no embedded servers recorded" in done.stderr
