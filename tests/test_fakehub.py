"""Round-trips through the real ``datasets`` / ``huggingface_hub`` clients against the loopback FakeHub."""

from __future__ import annotations

import os

import fakehub
import pytest
from datasets import Dataset, load_dataset
from fakehub import FakeHub
from huggingface_hub import DatasetCard, HfApi
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

# huggingface_hub's LFS PUT (lfs._upload_single_part / _upload_parts_iteratively) passes a file object as
# `data=`, which its bundled httpx2 deprecates; nothing on the server side can avoid it.
pytestmark = pytest.mark.filterwarnings(r"ignore:Use 'content=<\.\.\.>' to upload raw bytes:DeprecationWarning")

fake_hub = fakehub.fake_hub  # re-exported fixture; an import would trip F811 on every test argument

ROWS = {"prompt": ["hi", "2+2?", "bye"], "answer": ["hello", "4", "ciao"]}


def test_endpoint_is_loopback(fake_hub: FakeHub) -> None:
    assert os.environ["HF_ENDPOINT"] == fake_hub.url
    assert fake_hub.url.startswith("http://127.0.0.1:")


def test_push_private_dataset_and_load_it_back(fake_hub: FakeHub) -> None:
    repo_id = "fake-user/private-rows"
    Dataset.from_dict(ROWS).push_to_hub(repo_id, private=True)

    state = fake_hub.repos[repo_id]
    assert state["private"] is True and state["type"] == "dataset"
    parquet = [p for p in state["files"] if p.endswith(".parquet")]
    assert parquet and all(p.startswith("data/train-") for p in parquet)
    assert set(parquet) <= state["lfs_files"]  # went through the LFS batch + PUT path
    assert "README.md" in state["files"]

    loaded = load_dataset(repo_id, split="train")
    assert loaded.to_dict() == ROWS
    assert HfApi().dataset_info(repo_id).private is True
    # anonymous callers must not see a private repo
    assert not HfApi(token=False).repo_exists(repo_id, repo_type="dataset")


def test_two_configs_both_load(fake_hub: FakeHub) -> None:
    repo_id = "fake-user/multi-config"
    sft = Dataset.from_dict(ROWS)
    prefs = Dataset.from_dict({"chosen": ["a", "b"], "rejected": ["c", "d"]})
    sft.push_to_hub(repo_id, config_name="sft", private=True)
    sha_after_sft = fake_hub.repos[repo_id]["sha"]
    prefs.push_to_hub(repo_id, config_name="prefs", private=True)
    assert fake_hub.repos[repo_id]["sha"] != sha_after_sft

    files = fake_hub.repos[repo_id]["files"]
    assert any(p.startswith("sft/train-") for p in files)
    assert any(p.startswith("prefs/train-") for p in files)
    assert load_dataset(repo_id, "sft", split="train").to_dict() == ROWS
    assert load_dataset(repo_id, "prefs", split="train").to_dict() == prefs.to_dict()
    # the old commit is still readable by sha, without the second config
    with pytest.raises(KeyError):
        fake_hub.read_file(repo_id, "prefs/train-00000-of-00001.parquet", revision=sha_after_sft)


def test_dataset_card_pushed_after_data_keeps_configs(fake_hub: FakeHub) -> None:
    repo_id = "fake-user/carded"
    Dataset.from_dict(ROWS).push_to_hub(repo_id, config_name="sft", private=True)

    card = DatasetCard.load(repo_id, repo_type="dataset")  # hf_hub_download of README.md
    assert "configs" in card.data.to_dict()
    card.text = "# Carded\n\nA tiny SFT set used by the FakeHub tests.\n"
    card.push_to_hub(repo_id, repo_type="dataset")

    readme = fake_hub.read_file(repo_id, "README.md").decode()
    assert "A tiny SFT set used by the FakeHub tests." in readme
    assert "configs:" in readme and "config_name: sft" in readme
    assert load_dataset(repo_id, "sft", split="train").to_dict() == ROWS


def test_upload_file_and_download(fake_hub: FakeHub) -> None:
    api = HfApi()
    repo_id = api.create_repo("loose-files", repo_type="dataset").repo_id  # no namespace: goes under the hub user
    assert repo_id == f"{fake_hub.user}/loose-files"
    api.upload_file(path_or_fileobj=b"a,b\n1,2\n", path_in_repo="raw/x.csv", repo_id=repo_id, repo_type="dataset")
    api.upload_file(path_or_fileobj=b"\0binary", path_in_repo="raw/blob.dat", repo_id=repo_id, repo_type="dataset")

    assert fake_hub.repos[repo_id]["lfs_files"] == {"raw/blob.dat"}
    local = api.hf_hub_download(repo_id, "raw/x.csv", repo_type="dataset")
    with open(local, "rb") as f:
        assert f.read() == b"a,b\n1,2\n"
    assert api.file_exists(repo_id, "raw/blob.dat", repo_type="dataset")
    assert not api.file_exists(repo_id, "raw/missing.csv", repo_type="dataset")
    with pytest.raises(EntryNotFoundError):
        api.hf_hub_download(repo_id, "nope.txt", repo_type="dataset")
    with pytest.raises(EntryNotFoundError):
        list(api.list_repo_tree(repo_id, "no-such-dir", repo_type="dataset"))


def test_tree_pagination(fake_hub: FakeHub) -> None:
    api = HfApi()
    repo_id = api.create_repo("many-files", repo_type="dataset").repo_id
    for i in range(5):
        api.upload_file(
            path_or_fileobj=f"{i}".encode(), path_in_repo=f"d/{i}.txt", repo_id=repo_id, repo_type="dataset"
        )
    old, fake_hub.page_size = fake_hub.page_size, 2
    try:
        entries = list(api.list_repo_tree(repo_id, recursive=True, repo_type="dataset"))
    finally:
        fake_hub.page_size = old
    assert sorted(e.path for e in entries) == ["d"] + [f"d/{i}.txt" for i in range(5)]


def test_missing_repo_is_repo_not_found(fake_hub: FakeHub) -> None:
    api = HfApi()
    assert not api.repo_exists("fake-user/does-not-exist", repo_type="dataset")
    assert not api.repo_exists("fake-user/does-not-exist")
    with pytest.raises(RepositoryNotFoundError):
        api.dataset_info("fake-user/does-not-exist")
