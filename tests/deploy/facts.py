"""What the deploy files must agree with: pyproject.toml, the installed Ray, the service's settings."""

from __future__ import annotations

import importlib.metadata
import json
import re
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


@cache
def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def requirement(name: str) -> str:
    """The requirement string of dependency `name` in pyproject.toml."""
    for text in pyproject()["project"]["dependencies"]:
        if re.match(rf"{re.escape(name)}(\[|[<>=!~ ]|$)", text):
            return str(text)
    raise KeyError(name)


def image() -> str:
    """The project's image name: tmws-sim:<version from pyproject.toml>."""
    return f"tmws-sim:{pyproject()['project']['version']}"


def ray_version() -> str:
    """The Ray the project runs with locally (.venv): clusters must run the same."""
    return importlib.metadata.version("ray")


def service_variables() -> set[str]:
    """Every TMWS_* variable the service reads (settings, and the process-level few)."""
    names: set[str] = set()
    for path in (ROOT / "service").rglob("*.py"):
        names |= set(re.findall(r'"(TMWS_[A-Z0-9_]+)"', path.read_text()))
    return names


def load_yaml(relative: str) -> Any:
    return yaml.safe_load((ROOT / relative).read_text())


def load_documents(relative: str) -> list[Any]:
    return [d for d in yaml.safe_load_all((ROOT / relative).read_text()) if d]


def load_json(relative: str) -> Any:
    return json.loads((ROOT / relative).read_text())
