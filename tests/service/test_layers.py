"""Every import inside `service/` points down the request path, never up.

transport -> dispatcher -> tools -> patterns -> cache/store, with a base every layer may use
(errors, settings, the call context, wire helpers) and the composition root on top. Imports under
`if TYPE_CHECKING:` are annotations only and are not arrows at run time.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVICE = Path(__file__).resolve().parents[2] / "service"

#: (layer, module prefixes), lowest first; a module belongs to the longest prefix it matches.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "base",
        (
            "service",
            "service.__init__",
            "service.errors",
            "service.config",
            "service.bugs",
            "service.wire",
            "service.context",
            "service.auth",
            "service.namespaces",
            "service.embedding",
            "service.embed_cache",
            # stage timings and the Prometheus figures: leaves every layer reports into
            "service.timings",
            "service.metrics",
            "service.llm",
            "service.resilience",
            # sessions and rate buckets: a leaf (errors only) that the transports drive
            "service.sessions",
        ),
    ),
    ("cache/store", ("service.cache", "service.store", "service.infra")),
    ("patterns", ("service.patterns",)),
    ("tools", ("service.tools",)),
    ("dispatcher", ("service.jsonrpc", "service.mcp_methods")),
    ("transport", ("service.transport",)),
    ("root", ("service.app", "service.bootstrap", "service.cli", "service.__main__")),
]
#: Modules outside the request path: they may use any layer, and no layer may use them.
OUTSIDE = ("service.client",)


def layer_of(module: str) -> int:
    """Index of the layer `module` belongs to (longest matching prefix)."""
    best, best_len = -1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    if best < 0:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS")
    return best


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_imports(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) of every `service.*` import that runs, lazy ones included."""
    found: list[tuple[int, str]] = []
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            skip.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("service")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "service":
                found += [(node.lineno, f"service.{a.name}") for a in node.names]
            elif node.module.startswith("service."):
                found.append((node.lineno, node.module))
    return found


def module_name(path: Path, root: Path = SERVICE) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def upward_imports(root: Path = SERVICE) -> list[str]:
    """Every import from a lower layer into a higher one, as 'file:line: a (layer) -> b (layer)'."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        importer = module_name(path, root)
        outside = importer.startswith(OUTSIDE)
        for line, imported in runtime_imports(ast.parse(path.read_text(), str(path))):
            if imported.startswith(OUTSIDE):
                problems.append(f"{path.name}:{line}: {importer} -> {imported} (outside the path)")
                continue
            if outside:
                continue
            low, high = layer_of(importer), layer_of(imported)
            if high > low:
                problems.append(
                    f"{path.relative_to(root.parent)}:{line}: {importer} ({LAYERS[low][0]}) "
                    f"-> {imported} ({LAYERS[high][0]})"
                )
    return problems


def test_every_arrow_inside_service_points_down() -> None:
    assert upward_imports() == []


def test_every_service_module_has_a_layer() -> None:
    for path in SERVICE.rglob("*.py"):
        name = module_name(path)
        if not name.startswith(OUTSIDE):
            layer_of(name)


def test_the_scan_catches_an_upward_import(tmp_path: Path) -> None:
    """Negative control: a pattern module importing the tool registry is reported."""
    root = tmp_path / "service"
    (root / "patterns").mkdir(parents=True)
    (root / "patterns" / "bad.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "from service.errors import TMWSError\n"
        "if TYPE_CHECKING:\n"
        "    from service.transport.ws import WsConnection\n"
        "def f():\n"
        "    from service.tools.registry import ToolRegistry\n"
    )
    problems = upward_imports(root)
    assert len(problems) == 1, problems
    assert "service.patterns.bad (patterns) -> service.tools.registry (tools)" in problems[0]


@pytest.mark.parametrize(
    ("module", "layer"),
    [
        ("service.context", "base"),
        ("service.cache.coherent", "cache/store"),
        ("service.patterns.engine", "patterns"),
        ("service.tools.registry", "tools"),
        ("service.jsonrpc", "dispatcher"),
        ("service.transport.ws", "transport"),
        ("service.bootstrap", "root"),
    ],
)
def test_layer_of(module: str, layer: str) -> None:
    assert LAYERS[layer_of(module)][0] == layer
