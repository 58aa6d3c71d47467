"""The recipe scripts and ``hadron-hf recipe``: on the output of ``hadron-hf refine``, to folders and the fake Hub."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fakehub
import pytest
import yaml
from datasets import load_dataset
from fakehub import FakeHub

from hadron_hf import cli
from hadron_hf.sources import load_refined
from hadron_hf.testing import FakeOpenAIServer
from hadron_hf.views import ERROR_ROW, VIEW_NAMES, PairOptions, build_view

# huggingface_hub's LFS upload passes a file object as `data=`, which its bundled httpx deprecates.
pytestmark = pytest.mark.filterwarnings(r"ignore:Use 'content=<\.\.\.>' to upload raw bytes:DeprecationWarning")

fake_hub = fakehub.fake_hub

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-recipes-SECRET-9876543210fedcba"
PASSWORD = "url-password-do-not-leak"
PROMPTS = [f"Explain idea {i} to a student." for i in range(6)] + [None, "", "Write a limerick about parquet."]


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The output folder of a real ``hadron-hf refine`` run against a keyed loopback server."""
    root = tmp_path_factory.mktemp("recipes")
    prompts = root / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    with pytest.MonkeyPatch.context() as mp, FakeOpenAIServer(api_key=KEY, reasoning="reasoning") as srv:
        mp.setenv("HADRON_RECIPES_KEY", KEY)
        mp.setenv("HADRON_HF_CACHE", str(root / "cache"))
        rc = cli.main(["refine", str(prompts), "--base-url", srv.url, "--model", "m", "--api-key-env",
                       "HADRON_RECIPES_KEY", "--judges", "3", "--max-iterations", "3", "--output", str(root / "demo")])
        assert rc == 0
        # what the user refined with, for the cards: it names the key's variable and a URL with credentials
        (root / "refine.yaml").write_text(yaml.safe_dump({
            "model": {"base_url": f"http://alice:{PASSWORD}@127.0.0.1:{srv.port}/v1", "model": "m",
                      "api_key_env": "HADRON_RECIPES_KEY"},
            "judges": 3, "max_iterations": 3,
        }))
        yield root / "demo"


def script(view: str) -> Callable[[list[str]], int]:
    """``main`` of ``recipes/{view}.py``, loaded from its file as ``python recipes/{view}.py`` would."""
    spec = importlib.util.spec_from_file_location(f"recipe_script_{view}", ROOT / "recipes" / f"{view}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    main: Callable[[list[str]], int] = module.main
    return main


def card_header(text: str) -> dict[str, Any]:
    loaded = yaml.safe_load(text.split("---\n")[1])
    assert isinstance(loaded, dict)
    return loaded


def assert_no_secret(blobs: dict[str, bytes]) -> None:
    for name, blob in blobs.items():
        for secret in (KEY, PASSWORD, "HADRON_RECIPES_KEY"):
            assert secret.encode() not in blob, f"{secret} in {name}"


@pytest.mark.parametrize("view", VIEW_NAMES)
def test_script_writes_the_view_and_its_card(demo_dir: Path, tmp_path: Path, view: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / view
    assert script(view)([str(demo_dir), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    expected = build_view(load_refined(str(demo_dir)), view)
    assert f"rows in   {len(PROMPTS)}" in printed and f"rows out  {expected.rows_out}" in printed
    assert f"dropped   {sum(expected.dropped.values())} input rows" in printed and f"2  {ERROR_ROW}" in printed
    assert load_dataset(str(out), split="train").to_list() == expected.dataset.to_list()
    meta = card_header((out / "README.md").read_text())
    assert {"hadron_hf", "autoreason"} <= set(meta["tags"])
    assert "configs" not in meta  # a local README with configs makes datasets serve stale cached rows


def test_rewriting_an_output_folder_reloads_the_new_rows(demo_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "dpo"
    assert script("dpo")([str(demo_dir), "--output", str(out)]) == 0
    one = load_dataset(str(out), split="train").to_list()
    assert script("dpo")([str(demo_dir), "--output", str(out), "--pairs", "all"]) == 2  # refused: not empty
    assert load_dataset(str(out), split="train").to_list() == one
    assert script("dpo")([str(demo_dir), "--output", str(out), "--pairs", "all", "--overwrite"]) == 0
    every = load_dataset(str(out), split="train").to_list()
    assert len(every) > len(one)
    assert every == build_view(load_refined(str(demo_dir)), "dpo", PairOptions(pairs="all")).dataset.to_list()


@pytest.mark.parametrize("view", VIEW_NAMES)
def test_push_each_view_and_load_it_back_from_the_hub(demo_dir: Path, tmp_path: Path, fake_hub: FakeHub,
                                                       monkeypatch: pytest.MonkeyPatch, view: str) -> None:
    monkeypatch.setenv("HADRON_RECIPES_KEY", KEY)  # the key is in the environment while the card is made
    repo = f"fake-user/autoreason-{view}"
    args = [str(demo_dir / "refined"), "--output", str(tmp_path / view), "--push-to-hub", repo,
            "--generation-config", str(demo_dir.parent / "refine.yaml"), "--source-dataset", "fake-user/prompts",
            "--license", "cc-by-4.0"]
    assert script(view)(args) == 0

    state = fake_hub.repos[repo]
    assert state["private"] is True and state["type"] == "dataset"
    local = load_dataset(str(tmp_path / view), split="train").to_list()
    assert local and load_dataset(repo, split="train").to_list() == local
    readme = state["files"]["README.md"].decode()
    meta = card_header(readme)
    assert meta["license"] == "cc-by-4.0" and {"hadron_hf", "autoreason"} <= set(meta["tags"])
    assert meta["configs"] == [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}]
    assert "dataset_info" in meta  # written by push_to_hub and kept by the card pushed after it
    assert f"load_dataset('{repo}', split=\"train\")" in readme and "| iteration cap | 3 |" in readme
    assert_no_secret(state["files"])
    assert_no_secret({p.name: p.read_bytes() for p in (tmp_path / view).rglob("*") if p.is_file()})


def test_cli_recipe_pushes_two_configs_to_one_public_repo(demo_dir: Path, tmp_path: Path, fake_hub: FakeHub) -> None:
    repo = "fake-user/autoreason-mixed"
    jsonl = str(demo_dir / "refined.jsonl")
    assert cli.main(["recipe", "dpo", jsonl, "--output", str(tmp_path / "dpo"), "--push-to-hub", repo,
                     "--public", "--config-name", "dpo", "--pairs", "all", "--min-margin", "1", "--drop-ties"]) == 0
    assert cli.main(["recipe", "sft", jsonl, "--output", str(tmp_path / "sft"), "--push-to-hub", repo,
                     "--public", "--config-name", "sft", "--cot", "think"]) == 0

    assert fake_hub.repos[repo]["private"] is False
    dpo = load_dataset(repo, "dpo", split="train")
    assert len(dpo) > 0 and all(m >= 1 for m in dpo["margin"])
    sft = load_dataset(repo, "sft", split="train")
    assert all(row["messages"][-1]["content"].startswith("<think>\n") for row in sft)
    meta = card_header(fake_hub.read_file(repo, "README.md").decode())
    assert sorted(c["config_name"] for c in meta["configs"]) == ["dpo", "sft"]


def test_recipe_script_runs_as_a_program_on_a_hub_input(demo_dir: Path, tmp_path: Path, fake_hub: FakeHub) -> None:
    load_refined(str(demo_dir)).push_to_hub("fake-user/refined-input", private=True)
    out = tmp_path / "kto"
    done = subprocess.run(
        [sys.executable, "recipes/kto.py", "--input", "fake-user/refined-input", "--output", str(out),
         "--pairs", "all"], cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "TQDM_DISABLE": "1"},
    )
    assert done.returncode == 0, done.stderr  # --input: the recipes' old spelling of the positional input
    assert "kto view of fake-user/refined-input" in done.stdout and f"2  {ERROR_ROW}" in done.stdout
    labels = load_dataset(str(out), split="train")["label"]
    assert True in labels and False in labels


def test_write_views_writes_every_view_with_its_card(demo_dir: Path, tmp_path: Path) -> None:
    from hadron_hf.views import write_views

    refined = load_refined(str(demo_dir))
    paths = write_views(refined, tmp_path / "views")
    assert sorted(paths) == sorted(VIEW_NAMES)
    for view, path in paths.items():
        assert path == tmp_path / "views" / view
        assert "## Usage" in (path / "README.md").read_text()
        assert load_dataset(str(path), split="train").to_list() == build_view(refined, view).dataset.to_list()


def test_errors_end_in_one_line(demo_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plain = tmp_path / "plain.jsonl"
    plain.write_text('{"prompt": "hi"}\n')
    assert script("dpo")([str(plain), "--output", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "not a refined dataset" in err and "Traceback" not in err
    assert cli.main(["recipe", "sft", str(demo_dir), "--prompt-column", "question"]) == 2
    assert "no prompt column 'question'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["recipe"])
