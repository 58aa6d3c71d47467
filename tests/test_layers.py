"""The layout, read with ``ast``: every module has a layer, and imports only from its own layer or below.

Layers, bottom to top (the README's "Architecture" draws them):

0. vocabulary: errors, the chat protocol, column names, input normalisation;
1. ``core/``: the method, pure (tournament, judge panel, Borda, prompts);
2. ``config/`` (the pydantic edge), ``backends/`` and ``engine/`` (between the tournament and the network);
3. ``dataset_map`` (the ``Dataset.map`` function), ``summary`` and ``scale/`` (Ray);
4. what is made from a refined dataset: ``views/``, ``export/``, ``evaluation/``, ``report/``, and ``sources``
   (the one input loader);
5. ``pipeline`` and ``build``: refine, then views, cards and Hub, shared by the commands;
6. ``cli/``: every argparse parser and command;
7. outside the library: the public API (``hadron_hf/__init__``, re-exports only) and ``testing/`` (fakes for
   users and tests). Nothing below imports them.

A new module must be placed in ``LAYERS`` (the tests fail until it is).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "hadron_hf"
MAX_LINES = 400

_BACKENDS = ["backends", "backends._http", "backends._worker", "backends.batch", "backends.batch_api",
             "backends.batch_store", "backends.constraints", "backends.llama_cpp", "backends.mlx", "backends.openai",
             "backends.openai_sdk"]
_ENGINE = ["engine", "engine.cache", "engine.endpoint", "engine.fallback", "engine.interrupts", "engine.local_models",
           "engine.progress", "engine.resilience", "engine.runtime"]
_REPORT = ["report", "report.charts", "report.data", "report.html", "report.judges", "report.source", "report.stats"]
_CLI = ["cli", "cli.__main__", "cli.build", "cli.evaluate", "cli.export", "cli.options", "cli.recipe", "cli.refine",
        "cli.report"]
_PLACED: dict[int, list[str]] = {
    0: ["errors", "chat", "columns", "inputs"],
    1: ["core", "core.borda", "core.panel", "core.prompts", "core.settling", "core.speculation", "core.tournament"],
    2: ["config", "config.job", "config.models", *_BACKENDS, *_ENGINE],
    3: ["dataset_map", "summary", "scale", "scale.cluster_limiter", "scale.ray_engine"],
    4: ["views", "views.builders", "views.cards", "views.hub", "views.pairs", "views.write", "export",
        "export.hadron_rows", "export.mlx_lora", "evaluation", "evaluation.evaluate", "evaluation.stats", *_REPORT,
        "sources"],
    5: ["pipeline", "build"],
    6: _CLI,
    7: ["", "testing", "testing.batch_server", "testing.openai_server", "testing.replies", "testing.rows",
        "testing.scripted"],
}
LAYERS: dict[str, int] = {f"hadron_hf.{m}".rstrip("."): layer for layer, names in _PLACED.items() for m in names}
"""Every ``hadron_hf`` module (``hadron_hf.views`` is ``views/__init__.py``) and its layer."""

TRAINING_VIEWS = ("hadron_hf.views", "hadron_hf.export")
NOT_FROM_TRAINING_VIEWS = ("hadron_hf.core.tournament", "hadron_hf.core.panel", "hadron_hf.engine",
                           "hadron_hf.backends", "hadron_hf.scale", "hadron_hf.dataset_map")
"""What a training-view script must never load. ``core.borda`` and ``core.prompts`` are pure leaves (they
import only layer 0): the pair view needs Borda's tie order, the critic view the critic's prompt."""
SETTINGS_EDGE = ("hadron_hf.config.job", "hadron_hf.core.tournament")
"""The one edge a training view may cross: ``AutoReasonConfig.settings()`` builds the tournament's frozen
``TournamentSettings`` (pure; it loads no engine or backend). Cards read the config, so views import it."""


def _within(module: str, roots: tuple[str, ...] | str) -> bool:
    return any(module == r or module.startswith(r + ".") for r in ((roots,) if isinstance(roots, str) else roots))


def module_path(module: str) -> Path:
    path = PACKAGE.joinpath(*module.split(".")[1:])
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def found_modules() -> set[str]:
    return {".".join(("hadron_hf", *p.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
            for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}


def imports_of(module: str) -> set[str]:
    """The ``hadron_hf`` modules ``module`` imports, at module level or inside functions."""
    package = module if module_path(module).name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(module_path(module).read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            if not _within(base, "hadron_hf"):
                continue
            for alias in node.names:  # ``from hadron_hf.core import prompts`` imports the module core.prompts
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in LAYERS else base)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if _within(a.name, "hadron_hf"))
    return found - {module}


def stdlib_imports_of(module: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(module_path(module).read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found


def reachable(module: str) -> set[str]:
    seen: set[str] = set()
    todo = [module]
    while todo:
        current = todo.pop()
        for found in imports_of(current) - seen:
            if (current, found) != SETTINGS_EDGE:
                seen.add(found)
                todo.append(found)
    return seen


def test_every_module_has_a_layer_and_every_placed_module_exists() -> None:
    found = found_modules()
    assert not found - set(LAYERS), f"place these modules in this file's LAYERS: {sorted(found - set(LAYERS))}"
    assert not set(LAYERS) - found, f"LAYERS names modules that do not exist: {sorted(set(LAYERS) - found)}"


@pytest.mark.parametrize("module", sorted(LAYERS))
def test_imports_point_down(module: str) -> None:
    up = {m: LAYERS[m] for m in imports_of(module) if LAYERS.get(m, 99) > LAYERS[module]}
    assert not up, f"{module} (layer {LAYERS[module]}) imports from layers above it: {up}"


@pytest.mark.parametrize("module", sorted(m for m in LAYERS if not _within(m, "hadron_hf.cli")))
def test_argparse_only_in_the_cli(module: str) -> None:
    assert "argparse" not in stdlib_imports_of(module), f"{module} imports argparse; parsers belong in hadron_hf.cli"


@pytest.mark.parametrize("module", sorted(m for m in LAYERS if _within(m, TRAINING_VIEWS)))
def test_training_views_never_reach_the_tournament_engine_backends_or_scale_out(module: str) -> None:
    bad = sorted(m for m in reachable(module) if _within(m, NOT_FROM_TRAINING_VIEWS))
    assert not bad, f"{module} reaches {bad}"


@pytest.mark.parametrize("module", sorted(m for m in LAYERS if LAYERS[m] < 7))
def test_the_library_never_imports_testing(module: str) -> None:
    assert not any(_within(m, "hadron_hf.testing") for m in imports_of(module))


def test_no_module_is_over_400_lines() -> None:
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these modules (at most {MAX_LINES} lines): {long}"
