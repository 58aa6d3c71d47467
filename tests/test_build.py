"""``hadron-hf build`` and ``recipes/build.py``: sampling, prompt columns, outputs with cards, the Hub, resuming."""

from __future__ import annotations

import importlib.util
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fakehub
import pytest
import yaml
from datasets import Dataset, load_dataset, load_from_disk
from fakehub import FakeHub

from hadron_hf import cli
from hadron_hf.build import SampleSpec, as_prompt, detect_prompt_column, sample_prompts, stratify
from hadron_hf.engine.cache import RequestCache
from hadron_hf.errors import InputError
from hadron_hf.sources import bundled_prompts
from hadron_hf.testing import FakeOpenAIServer
from hadron_hf.views import build_view

# huggingface_hub's LFS upload passes a file object as `data=`, which its bundled httpx deprecates.
pytestmark = pytest.mark.filterwarnings(r"ignore:Use 'content=<\.\.\.>' to upload raw bytes:DeprecationWarning")

fake_hub = fakehub.fake_hub

ROOT = Path(__file__).resolve().parent.parent
TOURNAMENT = ["--model", "m", "--judges", "3", "--max-iterations", "2"]


@pytest.fixture(autouse=True)
def _private_cache(cache_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HADRON_HF_CACHE", cache_dir)


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def squash(text: str) -> str:
    """The text with every run of spaces as one space: table columns widen with their longest label."""
    return re.sub(" +", " ", text)


def card_header(text: str) -> dict[str, Any]:
    loaded = yaml.safe_load(text.split("---\n")[1])
    assert isinstance(loaded, dict)
    return loaded


def script_main() -> Callable[[list[str]], int]:
    """``main`` of ``recipes/build.py``, loaded from its file as ``python recipes/build.py`` would."""
    spec = importlib.util.spec_from_file_location("recipe_script_build", ROOT / "recipes" / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    main: Callable[[list[str]], int] = module.main
    return main


SHAPES = {
    "prompt": ({"prompt": "Why is the sky blue?", "id": 1}, "Why is the sky blue?"),
    "text": ({"text": "Why is the sky blue?", "source": "web"}, "Why is the sky blue?"),
    "instruction": ({"instruction": "Why is the sky blue?", "input": "", "output": "x"}, "Why is the sky blue?"),
    "question": ({"question": "Why is the sky blue?", "answer": "x"}, "Why is the sky blue?"),
    "messages": ({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]},
                 [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]),
    "turns": ({"turns": ["Write a poem.", "Now shorter."], "category": "writing"},
              [{"role": "user", "content": "Write a poem."}, {"role": "user", "content": "Now shorter."}]),
}


@pytest.mark.parametrize("column", list(SHAPES), ids=list(SHAPES))
def test_the_prompt_column_is_detected_and_converted(tmp_path: Path, column: str) -> None:
    row, expected = SHAPES[column]
    sample = sample_prompts(str(write_jsonl(tmp_path / "in.jsonl", [row])), SampleSpec())
    assert sample.prompt_column == column
    assert sample.dataset[0][column] == expected
    assert sorted(sample.dataset.column_names) == sorted(row)  # the other columns are kept


def test_no_prompt_column_is_an_error_listing_the_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(InputError, match=r"looked for prompt, text, instruction, question, messages, turns\); "
                                         r"its columns are \['body', 'label'\]"):
        detect_prompt_column(["body", "label"])
    assert detect_prompt_column(["text", "prompt"]) == "prompt"  # the first of the list wins
    src = write_jsonl(tmp_path / "in.jsonl", [{"body": "x", "label": 1}])
    assert cli.main(["build", str(src), "--base-url", "http://127.0.0.1:9/v1"]) == 2
    err = capsys.readouterr().err
    assert "its columns are ['body', 'label']" in err and "--prompt-column" in err and "Traceback" not in err
    assert cli.main(["build", str(src), "--prompt-column", "nope", "--base-url", "http://127.0.0.1:9/v1"]) == 2
    assert "has no column 'nope'" in capsys.readouterr().err
    assert as_prompt("plain") == "plain" and as_prompt([]) == []


def test_duplicate_prompts_are_dropped_and_counted(tmp_path: Path) -> None:
    rows = [{"text": t} for t in ["a", "b", " a ", "c", "b", "a", "d"]]
    src = str(write_jsonl(tmp_path / "in.jsonl", rows))
    sample = sample_prompts(src, SampleSpec(method="first"))
    assert sample.dataset["text"] == ["a", "b", "c", "d"] and (sample.scanned, sample.duplicates) == (7, 3)
    first_three = sample_prompts(src, SampleSpec(size=3, method="first"))
    assert first_three.dataset["text"] == ["a", "b", "c"] and first_three.duplicates == 1
    assert len(sample_prompts(src, SampleSpec(method="first", dedup=False)).dataset) == 7


def test_stratified_sample_gives_each_category_its_share() -> None:
    shares = Counter(bundled_prompts()["category"])
    assert shares == {"explain": 8, "code": 7, "math": 7, "advice": 5, "creative": 5}
    sample = sample_prompts("bundled", SampleSpec(size=16, method="stratified", seed=3))
    # 16 of 32: half of each, the four half-rows left over going to the largest remainders (ties by name)
    assert Counter(sample.dataset["category"]) == {"explain": 4, "code": 4, "math": 3, "advice": 3, "creative": 2}
    again = sample_prompts("bundled", SampleSpec(size=16, method="stratified", seed=3))
    assert again.dataset.to_list() == sample.dataset.to_list()
    other = sample_prompts("bundled", SampleSpec(size=16, method="stratified", seed=4))
    assert other.dataset["prompt"] != sample.dataset["prompt"]
    rows = [{"c": "x"}] * 9 + [{"c": "y"}]
    assert Counter(r["c"] for r in stratify(rows, "c", 5, seed=0)) == {"x": 5}  # 4.5 vs 0.5: x has the larger rest
    with pytest.raises(InputError, match="no column 'topic' to stratify by"):
        sample_prompts("bundled", SampleSpec(size=4, method="stratified", stratify_column="topic"))


def test_random_samples_depend_on_the_seed_only(tmp_path: Path) -> None:
    one = sample_prompts("bundled", SampleSpec(size=5, seed=1)).dataset["prompt"]
    assert one == sample_prompts("bundled", SampleSpec(size=5, seed=1)).dataset["prompt"]
    assert one != sample_prompts("bundled", SampleSpec(size=5, seed=2)).dataset["prompt"]
    assert one != bundled_prompts(5)["prompt"]


def test_build_over_bundled_prompts_writes_every_output_with_its_card(
        tmp_path: Path, server: FakeOpenAIServer, capsys: pytest.CaptureFixture[str]) -> None:
    bundled = bundled_prompts().to_list()
    rows = [bundled[0], bundled[0], bundled[1], bundled[1], *bundled[2:]]  # two duplicates among the first rows
    src = write_jsonl(tmp_path / "prompts.jsonl", rows)
    out = tmp_path / "out"
    assert cli.main(["build", str(src), "--sample-size", "10", "--sample", "first", "--base-url", server.url,
                     *TOURNAMENT, "--output", str(out), "--license", "cc-by-4.0"]) == 0
    printed = squash(capsys.readouterr().out)

    refined = load_from_disk(str(out / "refined"))
    assert refined["prompt"] == [r["prompt"] for r in bundled[:10]]
    assert set(refined["autoreason_status"]) == {"ok"} and refined["category"] == [r["category"] for r in bundled[:10]]
    assert "rows sampled 10 (first; 12 scanned, 2 duplicates dropped)" in printed
    assert "rows refined 10 (0 rows with errors)" in printed
    calls = sum(u["calls"] for u in refined["autoreason_usage"])
    assert f"calls {calls} (0 reused from the request cache)" in printed and "converged" in printed
    assert f"Request cache: reused 0/{calls} calls" in printed

    refined_card = (out / "refined" / "README.md").read_text()
    assert card_header(refined_card)["license"] == "cc-by-4.0" and "## Statistics" in refined_card
    assert f"Prompts from `{src}`" in refined_card and "| iteration cap | 2 |" in refined_card
    assert f"refined 10 rows {out / 'refined'} card {out / 'refined' / 'README.md'}" in printed
    for view in ("sft", "dpo", "critic"):
        expected = build_view(refined, view).dataset.to_list()
        assert expected and load_dataset(str(out / "views" / view), split="train").to_list() == expected
        meta = card_header((out / "views" / view / "README.md").read_text())
        assert {"hadron_hf", "autoreason"} <= set(meta["tags"]) and meta["license"] == "cc-by-4.0"
        folder = out / "views" / view
        assert f"{view} {len(expected)} rows {folder} card {folder / 'README.md'}" in printed
    assert not (out / "views" / "reward").exists()
    info = json.loads((out / "run.json").read_text())
    assert info["input"] == str(src) and info["rows"] == 10 and info["summary"]["calls"] == calls


def test_a_streamed_hub_source_is_built_and_pushed_to_four_repos(
        tmp_path: Path, server: FakeOpenAIServer, fake_hub: FakeHub, capsys: pytest.CaptureFixture[str]) -> None:
    texts = [f"Explain idea number {i} to a student." for i in range(40)]
    Dataset.from_dict({"text": texts, "n": list(range(40))}).push_to_hub("fake-user/big-prompts", private=True)
    out = tmp_path / "out"
    assert cli.main(["build", "fake-user/big-prompts", "--sample-size", "5", "--seed", "7", "--base-url", server.url,
                     *TOURNAMENT, "--output", str(out), "--push-to-hub", "fake-user/distill"]) == 0
    printed = squash(capsys.readouterr().out)
    assert "source fake-user/big-prompts (train, streamed)" in printed

    refined = load_from_disk(str(out / "refined"))
    assert len(refined) == 5 and set(refined["text"]) <= set(texts) and refined["text"] != texts[:5]
    for name in ("refined", "sft", "dpo", "critic"):
        repo = f"fake-user/distill-{name}"
        state = fake_hub.repos[repo]
        assert state["private"] is True and state["type"] == "dataset"
        pushed = load_dataset(repo, split="train")
        local = refined if name == "refined" else load_dataset(str(out / "views" / name), split="train")
        assert len(pushed) > 0 and pushed.to_list() == local.to_list()
        readme = state["files"]["README.md"].decode()
        meta = card_header(readme)
        assert meta["configs"][0]["config_name"] == "default" and "dataset_info" in meta
        assert {"hadron_hf", "autoreason"} <= set(meta["tags"]) and repo in readme
        assert f"/datasets/{repo}" in printed
    assert "fake-user/distill-refined" in fake_hub.repos["fake-user/distill-sft"]["files"]["README.md"].decode()


def test_an_interrupted_build_resumes_without_repeating_a_call(
        tmp_path: Path, cache_dir: str, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "prompts.txt"
    src.write_text("\n".join(bundled_prompts(12)["prompt"]) + "\n")
    cache = RequestCache(Path(cache_dir) / "requests.sqlite")
    failing = threading.Event()

    def fail_when_asked(role: str, messages: list[dict[str, str]], body: dict[str, Any]) -> str | None:
        if failing.is_set():
            raise RuntimeError("the server breaks down")  # a 500: the client retries, then meets the new key
        return None

    with FakeOpenAIServer(latency=0.002, hold_after=60, responder=fail_when_asked) as srv:
        def interrupt() -> None:
            # Once calls are held, the server stops answering; when only held calls are left and every delivered
            # answer is cached, the key is revoked: the retries of the held calls get 401. Stopping answers
            # first means no answer can arrive while the job is being cancelled.
            while srv.log.held == 0:
                time.sleep(0.01)
            failing.set()
            while not (srv.log.in_flight == srv.log.held and cache.count() == sum(srv.log.answered.values())):
                time.sleep(0.01)
            srv.api_key = "sk-revoked"
            srv.release()

        watcher = threading.Thread(target=interrupt, daemon=True)
        watcher.start()
        argv = [str(src), "--base-url", srv.url, *TOURNAMENT, "--batch-size", "4", "--output", str(tmp_path / "o")]
        assert cli.main(["build", *argv]) == 2
        watcher.join(30)
        err = capsys.readouterr().err
        assert "re-run the same command to resume" in err and "refused the API key (401)" in err
        cached_at_stop = cache.count()
        assert cached_at_stop == sum(srv.log.answered.values()) >= 60

        srv.api_key, srv.responder = None, None
        assert script_main()(argv) == 0  # recipes/build.py, same arguments
    printed = capsys.readouterr().out
    cache.close()
    refined = load_from_disk(str(tmp_path / "o" / "refined"))
    calls = sum(u["calls"] for u in refined["autoreason_usage"])
    assert srv.log.repeated == 0 and sum(srv.log.answered.values()) == calls > cached_at_stop
    assert f"Request cache: reused {cached_at_stop}/{calls} calls from an earlier run" in printed
    assert set(refined["autoreason_status"]) == {"ok"} and len(refined) == 12
