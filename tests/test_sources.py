"""The one input loader: files, folders, bundled, the Hub (streamed or not), and path-like names."""

from __future__ import annotations

import json
from pathlib import Path

import fakehub
import pytest
from datasets import Dataset, IterableDataset
from fakehub import FakeHub

from hadron_hf.errors import ConfigError, InputError
from hadron_hf.sources import (
    check_output,
    load_prompts,
    load_refined,
    looks_like_path,
    open_dataset,
    read_run_info,
    refined_location,
)

# huggingface_hub's LFS upload passes a file object as `data=`, which its bundled httpx deprecates.
pytestmark = pytest.mark.filterwarnings(r"ignore:Use 'content=<\.\.\.>' to upload raw bytes:DeprecationWarning")
fake_hub = fakehub.fake_hub


@pytest.mark.parametrize(("name", "path_like"), [
    ("./prompts", True), ("/data/x", True), ("~/x", True), ("data/prompts.jsonl", True), ("a/b/c", True),
    ("my prompts", True), ("HuggingFaceTB/smoltalk", False), ("squad", False), ("org/name.v2", False),
], ids=str)
def test_looks_like_path(name: str, path_like: bool) -> None:
    assert looks_like_path(name) is path_like


def test_missing_path_like_names_fail_at_once_without_the_hub() -> None:
    with pytest.raises(InputError, match="no such file or folder"):
        open_dataset("data/typo.parquet")


def test_files_bundled_and_limit(tmp_path: Path) -> None:
    (tmp_path / "p.jsonl").write_text("".join(json.dumps({"prompt": f"p{i}"}) + "\n" for i in range(5)))
    assert load_prompts(str(tmp_path / "p.jsonl"), limit=2)["prompt"] == ["p0", "p1"]
    assert "category" in load_prompts("bundled", limit=3).column_names


def test_a_hub_dataset_loads_or_streams(fake_hub: FakeHub) -> None:
    Dataset.from_dict({"prompt": ["a", "b", "c"]}).push_to_hub("fake-user/src-prompts", private=True)
    assert load_prompts("fake-user/src-prompts")["prompt"] == ["a", "b", "c"]
    stream = open_dataset("fake-user/src-prompts", streaming=True)
    assert isinstance(stream, IterableDataset) and [r["prompt"] for r in stream] == ["a", "b", "c"]
    with pytest.raises(InputError, match="no split 'test'|cannot load"):
        load_prompts("fake-user/src-prompts", split="test")


def test_load_refined_takes_an_output_folder_and_reads_its_run_json(tmp_path: Path) -> None:
    rows = {"prompt": ["p"], "draft": ["d"], "refined": ["r"], "autoreason_trace": [None], "preference": [None],
            "autoreason_status": ["ok"]}
    out = tmp_path / "run"
    Dataset.from_dict(rows).save_to_disk(str(out / "refined"))
    (out / "run.json").write_text(json.dumps({"input": "x.jsonl"}))
    assert refined_location(str(out)) == str(out / "refined")
    assert load_refined(str(out))["refined"] == ["r"]
    assert read_run_info(str(out)) == read_run_info(str(out / "refined")) == {"input": "x.jsonl"}
    assert read_run_info(str(tmp_path)) is None
    with pytest.raises(InputError, match="not a refined dataset"):
        Dataset.from_dict({"prompt": ["p"]}).save_to_disk(str(tmp_path / "plain"))
        load_refined(str(tmp_path / "plain"))


def test_check_output_refuses_non_empty_outputs(tmp_path: Path) -> None:
    check_output(tmp_path / "new")
    (tmp_path / "empty").mkdir()
    check_output(tmp_path / "empty")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(ConfigError, match="--overwrite"):
        check_output(tmp_path / "full")
    check_output(tmp_path / "full", overwrite=True)
