"""Import direction, read with ``ast``: training-view modules never reach the tournament, the engine or a
backend; argparse stays out of the library modules that never had it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "hadron_hf"
ENGINE = {"hadron_hf.core.tournament", "hadron_hf.engine.runtime", "hadron_hf.dataset_map", "hadron_hf.engine.resilience", "hadron_hf.engine.cache",
          "hadron_hf.engine.fallback", "hadron_hf.scale.ray_engine", "hadron_hf.backends"}
VIEW_MODULES = ["views", "pairs", "cards", "migrate", "mlx_export", "inputs", "columns", "sources", "summary"]


def imports_of(module: str) -> set[str]:
    """The hadron_hf modules ``module`` imports, at module level or inside functions."""
    path = PACKAGE / (module.removeprefix("hadron_hf.").replace(".", "/") + ".py")
    if not path.exists():
        path = path.with_suffix("") / "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("hadron_hf"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names
                         if (PACKAGE / node.module.removeprefix("hadron_hf").lstrip(".").replace(".", "/")
                             / f"{a.name}.py").exists())
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("hadron_hf"))
    return {m for m in found if m != "hadron_hf"}


def reachable(module: str) -> set[str]:
    seen: set[str] = set()
    todo = [module]
    while todo:
        current = todo.pop()
        if current == "hadron_hf.config":  # its settings() builds TournamentSettings; config is read everywhere
            continue
        for found in imports_of(current) - seen:
            seen.add(found)
            todo.append(found)
    return seen


@pytest.mark.parametrize("module", VIEW_MODULES)
def test_training_view_modules_do_not_reach_the_tournament_engine_or_backends(module: str) -> None:
    bad = {m for m in reachable(f"hadron_hf.{module}") if any(m == e or m.startswith(e + ".") for e in ENGINE)}
    assert not bad, f"hadron_hf.{module} imports {sorted(bad)}"


@pytest.mark.parametrize("module", ["inputs", "sources", "pipeline", "cards", "summary", "columns", "testing", "views"])
def test_no_argparse_in_library_modules(module: str) -> None:
    assert "argparse" not in (PACKAGE / f"{module}.py").read_text()
