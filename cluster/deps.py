"""Does this Python have the project's dependencies? Standard library only: it runs where they may not.

`ray job submit -- python experiments/coherency.py` runs whatever `python` the job's runtime env
puts first on PATH: a head started outside the virtualenv, a `conda`/`uv`/`py_executable` runtime
env, or a node image without the project all give a Python without pyarrow, asyncpg, torch, ….
Without this check that shows up as a traceback from the first import; with it, as one line naming
what is missing. The requirements are read from `pyproject.toml` next to the code (a checkout, a
job's uploaded working dir), else from the installed `tmws-sim` distribution (the image).

    python -m cluster.deps        # exit 0 and "ok", or exit 2 and the one line
"""

from __future__ import annotations

import importlib.metadata as metadata
import re
import sys
import tomllib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DISTRIBUTION = "tmws-sim"
#: Exit code of a Python that cannot run the project: the runner's "bad input".
EXIT_MISSING = 2

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?")

VersionOf = Callable[[str], str | None]


def installed_version(name: str) -> str | None:
    """The installed version of distribution `name`, or None when it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def project_requirements(root: Path = PROJECT_ROOT) -> list[str]:
    """The project's runtime requirements (PEP 508 strings); empty when they cannot be found."""
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        data = tomllib.loads(pyproject.read_text())
        return list(data.get("project", {}).get("dependencies", []))
    try:
        requires = metadata.requires(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        return []
    # Extras of the project itself (`dev`) are not needed to run it.
    return [r for r in requires if "extra ==" not in r.replace("extra==", "extra ==")]


def problems(requirements: Iterable[str], version_of: VersionOf = installed_version) -> list[str]:
    """One short phrase per unmet requirement: `pyarrow` (missing) or `torch 2.5.0 (needs ==2.13.0)`.

    Presence is always checked; versions and the requirements of extras (`ray[default]`) only
    when `packaging` is importable (it is not standard library, and may be missing too).
    """
    found: list[str] = []
    for text in requirements:
        match = _NAME.match(text)
        if not match:
            continue
        name, extras = match.group(1), match.group(2)
        version = version_of(name)
        if version is None:
            found.append(name)
            continue
        found.extend(_version_problems(text, name, version))
        if extras and version_of is installed_version:
            found.extend(_extra_problems(name, [e.strip() for e in extras.split(",")]))
    return found


def _version_problems(text: str, name: str, version: str) -> list[str]:
    try:
        from packaging.requirements import InvalidRequirement, Requirement
        from packaging.version import InvalidVersion
    except ImportError:
        return []
    try:
        requirement = Requirement(text)
        ok = requirement.specifier.contains(version, prereleases=True)
    except (InvalidRequirement, InvalidVersion):
        return []
    return [] if ok else [f"{name} {version} (needs {requirement.specifier})"]


def _extra_problems(name: str, extras: Sequence[str]) -> list[str]:
    """Unmet requirements that `name[extras]` adds over plain `name` (one level deep)."""
    try:
        from packaging.requirements import InvalidRequirement, Requirement
    except ImportError:
        return []
    out: list[str] = []
    for text in metadata.requires(name) or []:
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            continue
        marker = requirement.marker
        if marker is None or marker.evaluate({"extra": ""}):
            continue  # a base requirement: pip checked it when it installed `name`
        if any(marker.evaluate({"extra": extra}) for extra in extras):
            out.extend(problems([text]))
    return out


def missing_line(found: Sequence[str], python: str = sys.executable) -> str:
    """The one line a job without the dependencies prints."""
    return (
        f"tmws-sim: this Python ({python}) lacks the project's dependencies: "
        f"{', '.join(found)}. Run the job with the project's Python (`scripts/ray_local.sh up` "
        f"starts Ray from .venv) or a runtime env that has them (the tmws-sim image, or "
        f"`pip install .`)."
    )


def require_dependencies(root: Path = PROJECT_ROOT) -> None:
    """Exit with one line on stderr (code 2) when this Python lacks a project dependency."""
    found = problems(project_requirements(root))
    if found:
        print(missing_line(found), file=sys.stderr)
        raise SystemExit(EXIT_MISSING)


def main() -> int:
    found = problems(project_requirements())
    if found:
        print(missing_line(found), file=sys.stderr)
        return EXIT_MISSING
    print(f"ok: {sys.executable} has every dependency of {DISTRIBUTION}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
