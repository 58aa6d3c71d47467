"""The wheel ships every module and the card templates (the checkout's layout is not what a user installs)."""

from __future__ import annotations

import fnmatch
import os
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest

from hadron_hf.views.cards import CARD_DIR

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = sorted(p.name for p in (ROOT / "dataset_cards").glob("*.md.j2"))


def setuptools_config() -> dict[str, Any]:
    config: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return config


def test_every_package_folder_is_listed_and_the_templates_are_mapped_in() -> None:
    config = setuptools_config()
    folders = {".".join(p.relative_to(ROOT).parts) for p in (ROOT / "hadron_hf").rglob("*")
               if p.is_dir() and "__pycache__" not in p.parts and any(f.is_file() for f in p.iterdir())}
    assert folders | {"hadron_hf", "hadron_hf.dataset_cards"} == set(config["packages"])
    assert config["package-dir"] == {"hadron_hf.dataset_cards": "dataset_cards"}
    patterns = config["package-data"]["hadron_hf.dataset_cards"]
    assert TEMPLATES and all(any(fnmatch.fnmatch(t, p) for p in patterns) for t in TEMPLATES)
    assert CARD_DIR.is_dir() and sorted(p.name for p in CARD_DIR.glob("*.md.j2")) == TEMPLATES


def test_the_built_wheel_holds_every_module_and_template() -> None:
    wheel = os.environ.get("HADRON_HF_WHEEL")
    if not wheel:
        pytest.skip("no built wheel: .ci/run builds one (pip wheel --no-deps . -w dist) and sets HADRON_HF_WHEEL")
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "hadron_hf").rglob("*.py")}
    assert modules <= names
    assert {f"hadron_hf/dataset_cards/{t}" for t in TEMPLATES} <= names
    assert "hadron_hf/data/prompts.jsonl" in names and "hadron_hf/py.typed" in names
