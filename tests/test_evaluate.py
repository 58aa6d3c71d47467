"""The eval: bootstrap CI, blind panels against the loopback server, ``hadron-hf eval`` and the recipe."""

from __future__ import annotations

import importlib.util
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import fakehub
import pytest
from datasets import Dataset, load_dataset, load_from_disk
from fakehub import FakeHub

from hadron_hf import AutoReasonConfig, ModelConfig, autoreason_map
from hadron_hf.cli import main as cli_main
from hadron_hf.evaluation.evaluate import BASELINE, JUDGEMENT_FEATURES, EvalSettings, evaluate
from hadron_hf.evaluation.stats import bootstrap_ci
from hadron_hf.testing import FakeOpenAIServer, Faults

pytestmark = pytest.mark.filterwarnings(r"ignore:Use 'content=<\.\.\.>' to upload raw bytes:DeprecationWarning")
fake_hub = fakehub.fake_hub  # re-exported fixture; an import would trip F811 on every test argument

_CANDIDATE = re.compile(r'<candidate id="(X\d)">\n(.*?)\n</candidate>', re.DOTALL)
ROOT = Path(__file__).resolve().parent.parent


def load_recipe() -> Any:
    spec = importlib.util.spec_from_file_location("eval_recipe", ROOT / "recipes" / "eval.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def first_position(role: str, messages: list[dict[str, str]], body: dict[str, Any]) -> str | None:
    """A judge with pure position bias: whatever it is shown, X1 > X2 > X3."""
    if role != "judge":
        return None
    labels = [label for label, _ in _CANDIDATE.findall(messages[-1]["content"])]
    return "They all try.\nRANKING: " + " > ".join(sorted(labels))


def prefers_refined(role: str, messages: list[dict[str, str]], body: dict[str, Any]) -> str | None:
    if role != "judge":
        return None
    shown = _CANDIDATE.findall(messages[-1]["content"])
    return "RANKING: " + " > ".join(label for label, text in sorted(shown, key=lambda s: "Refined" not in s[1]))


def refined_rows(n: int) -> dict[str, list[Any]]:
    """A refined dataset in ``autoreason_map``'s layout, with distinct drafts and longer refined answers."""
    return {
        "prompt": [f"Task {i}: explain idea {i}." for i in range(n)],
        "category": ["code" if i % 2 else "math" for i in range(n)],
        "draft": [f"Draft {i}." for i in range(n)],
        "refined": [f"Refined answer {i}, with more detail." for i in range(n)],
        "autoreason_trace": [{"variant": "paper", "converged": True}] * n,
        "preference": [{"chosen": "x", "rejected": None}] * n,
        "autoreason_status": ["ok"] * n,
    }


def config(url: str, cache_dir: str, **kw: Any) -> AutoReasonConfig:
    judges = [ModelConfig(base_url=url, model=name, api_key_env=None) for name in ("judge-a", "judge-b")]
    return AutoReasonConfig(model=ModelConfig(base_url=url, model="gen", api_key_env=None), judge_models=judges,
                            cache_dir=cache_dir, **kw)


@pytest.mark.parametrize(("outcomes", "low", "high"), [
    ([1.0] * 30, 1.0, 1.0),
    ([0.0] * 30, 0.0, 0.0),
    ([0.5] * 7, 0.5, 0.5),
], ids=["all-wins", "all-losses", "all-ties"])
def test_bootstrap_ci_of_constant_outcomes_is_that_constant(outcomes: list[float], low: float, high: float) -> None:
    assert bootstrap_ci(outcomes) == (low, high)


def test_bootstrap_ci_of_half_wins_is_around_half_and_narrows_with_rows() -> None:
    small_low, small_high = bootstrap_ci([1.0, 0.0] * 20, seed=1)
    big_low, big_high = bootstrap_ci([1.0, 0.0] * 500, seed=1)
    assert 0.25 < small_low < 0.5 < small_high < 0.75
    assert small_low < big_low < 0.5 < big_high < small_high
    assert big_high - big_low == pytest.approx(2 * 1.96 * (0.25 / 1000) ** 0.5, rel=0.15)
    assert bootstrap_ci([1.0, 0.0] * 20, seed=1) == (small_low, small_high)
    with pytest.raises(ValueError, match="at least one"):
        bootstrap_ci([])


def test_recipe_blind_shuffle_cancels_a_position_biased_judge(
        server: FakeOpenAIServer, cache_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HADRON_HF_CACHE", cache_dir)
    server.responder = first_position
    Dataset.from_dict(refined_rows(40)).save_to_disk(str(tmp_path / "run" / "refined"))
    out = tmp_path / "eval"
    rc = load_recipe().main([str(tmp_path / "run"), "--base-url", server.url, "--model", "gen",
                             "--judge-base-url", server.url, "--judge-model", "judge-a", "--judge-model", "judge-b",
                             "--baseline", "--output", str(out)])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["judged"] == 40 and summary["judges"] == 7 and summary["votes_parsed"] == summary["votes"] == 280
    # The judge always picks position X1, and that is all the position table shows ...
    assert summary["position_wins"] == {"X1": 280, "X2": 0, "X3": 0}
    # ... but fresh label orders spread X1 over the methods, so the win rate is chance, not 1.0.
    assert 0.3 < summary["win_rate"] < 0.7 and summary["ci_low"] < 0.5 < summary["ci_high"]
    assert summary["wins"] + summary["losses"] == 40 and summary["ties"] == 0  # seven votes never tie
    for method in ("draft", "refined", BASELINE):
        assert summary["mean_borda"][method] == pytest.approx(14.0, abs=2.0)  # 7 judges x 2 points on average
    judged = load_from_disk(str(out / "judgements"))
    assert judged.features == JUDGEMENT_FEATURES
    votes = [v for row in judged for v in row["votes"]]
    assert all(v["ranking"] == v["shown"] for v in votes)
    assert len({tuple(v["shown"]) for v in votes}) == 6
    firsts = Counter(v["shown"][0] for v in votes)
    assert all(0.2 < firsts[m] / 280 < 0.47 for m in ("draft", "refined", BASELINE))
    assert all(sorted(Counter(v["model"] for v in row["votes"]).values()) == [3, 4] for row in judged)
    assert all(row[BASELINE].startswith("author_b answer") and row["critique"] for row in judged)
    # The length statistics are the texts' own.
    assert summary["lengths"]["refined"]["mean_chars"] == sum(map(len, refined_rows(40)["refined"])) / 40
    assert summary["lengths"]["draft"]["mean_words"] == 2.0
    lengths = summary["lengths"]
    assert summary["length_ratio"] == lengths["refined"]["mean_chars"] / lengths["draft"]["mean_chars"] == 35.75 / 8.75
    assert set(summary["categories"]) == {"code", "math"} and summary["categories"]["code"]["rows"] == 20
    assert Counter(role for role, _ in server.log.models) == {"judge": 280, "critic": 40, "author_b": 40}
    judge_prompt = next(b for b in server.log.bodies if b["model"] == "judge-a")["messages"][-1]["content"]
    assert "Task " in judge_prompt and "Draft " in judge_prompt and "Refined answer" in judge_prompt
    markdown = (out / "summary.md").read_text()
    assert "| X1 | 280 | 100% |" in markdown and "| code | 20 |" in markdown
    assert markdown in capsys.readouterr().out


def test_a_judge_that_prefers_refined_gives_win_rate_one_and_paper_borda(
        server: FakeOpenAIServer, cache_dir: str) -> None:
    server.responder = prefers_refined
    rows = refined_rows(10)
    rows["refined"][3] = rows["draft"][3]  # unchanged by refinement: a tie, and no judge is asked
    rows["autoreason_status"][4], rows["draft"][4], rows["refined"][4] = "error", None, None
    result = evaluate(Dataset.from_dict(rows).remove_columns("category"), config(server.url, cache_dir),
                      EvalSettings(judges=3, category_column="category"))
    s = result.summary
    assert (s.judged, s.errors, s.wins, s.ties, s.losses, s.identical) == (9, 1, 8, 1, 0, 1)
    assert s.win_rate == pytest.approx(8.5 / 9) and s.ci_high == 1.0 and s.tie_rate == pytest.approx(1 / 9)
    assert s.categories == {} and s.votes == 3 * 8
    row = result.judgements[0]
    assert row["borda"] == {"draft": 3, "refined": 6, BASELINE: None}  # 2/1 points, three judges
    assert row["refined_vs_draft"] == "win" and row["chars"]["refined"] > row["chars"]["draft"]
    assert result.judgements[3]["votes"] == [] and result.judgements[3]["refined_vs_draft"] == "tie"
    assert result.judgements[4]["status"] == "error" and "not refined" in result.judgements[4]["error"]
    assert s.mean_borda["refined"] == pytest.approx(6 * 8 / 9)


def test_unparseable_judge_replies_are_recorded_and_not_counted(cache_dir: str) -> None:
    with FakeOpenAIServer(faults=Faults(rate=0.3, kinds=("garbage_judge",), seed=2)) as server:
        result = evaluate(Dataset.from_dict(refined_rows(12)), config(server.url, cache_dir),
                          EvalSettings(judges=5, reason_first=False))
    s = result.summary
    bad = [v for row in result.judgements for v in row["votes"] if not v["parsed"]]
    assert 0 < len(bad) == s.votes - s.votes_parsed and s.votes == 60
    assert all("RANKING" in (v["error"] or "") and v["raw"] and v["ranking"] == [] for v in bad)
    assert sum(s.position_wins.values()) == s.votes_parsed
    assert "one line only" in server.log.bodies[0]["messages"][-1]["content"]


def test_hadron_hf_eval_on_a_refined_dataset_from_autoreason_map(
        server: FakeOpenAIServer, cache_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HADRON_HF_CACHE", cache_dir)
    ds = Dataset.from_dict({"prompt": [f"Question {i}: why?" for i in range(8)] + [""],
                            "category": ["a", "b", "a", "b", "a", "b", "a", "b", "a"]})
    cfg = AutoReasonConfig(model=ModelConfig(base_url=server.url, model="m"), judges=3, max_iterations=1,
                           cache_dir=cache_dir)
    ds.map(autoreason_map, batched=True, fn_kwargs={"config": cfg}).save_to_disk(str(tmp_path / "demo" / "refined"))
    before = len(server.log.models)
    rc = cli_main(["eval", str(tmp_path / "demo"), "--judge-base-url", server.url, "--judge-model", "external",
                   "--judges", "5", "--output", str(tmp_path / "eval")])
    assert rc == 0
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert (summary["rows"], summary["judged"], summary["errors"]) == (9, 8, 1)
    assert summary["methods"] == ["draft", "refined"] and summary["judge_models"] == ["external"]
    assert summary["wins"] + summary["ties"] + summary["losses"] + summary["undecided"] == 8
    changed = 8 - summary["identical"]
    assert changed > 0
    assert server.log.models[before:] == [("judge", "external")] * 5 * changed
    assert sum(summary["position_wins"].values()) == summary["votes_parsed"] == 5 * changed
    assert set(summary["categories"]) == {"a", "b"}
    assert "Refined vs draft" in capsys.readouterr().out
    assert len(load_dataset("json", data_files=str(tmp_path / "eval" / "judgements.jsonl"), split="train")) == 9


def test_eval_with_a_wrong_judge_key_stops_with_one_clear_message(
        cache_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HADRON_HF_CACHE", cache_dir)
    monkeypatch.setenv("JUDGE_KEY", "sk-wrong-secret-1234")
    Dataset.from_dict(refined_rows(4)).save_to_disk(str(tmp_path / "refined"))
    with FakeOpenAIServer(api_key="sk-right") as server:
        rc = cli_main(["eval", str(tmp_path / "refined"), "--judge-base-url", server.url, "--judge-model", "j",
                       "--judge-api-key-env", "JUDGE_KEY", "--output", str(tmp_path / "eval")])
    err = capsys.readouterr().err
    assert rc == 2 and "hadron-hf: error:" in err and "sk-wrong-secret-1234" not in err
    assert not (tmp_path / "eval" / "summary.json").exists()


def test_push_judgements_summary_and_card_to_the_hub(server: FakeOpenAIServer, cache_dir: str,
                                                     fake_hub: FakeHub) -> None:
    server.responder = prefers_refined
    result = evaluate(Dataset.from_dict(refined_rows(6)), config(server.url, cache_dir), EvalSettings(judges=3))
    repo = "fake-user/autoreason-eval"
    assert result.push_to_hub(repo).endswith(f"/datasets/{repo}")
    readme = fake_hub.read_file(repo, "README.md").decode()
    assert "config_name: judgements" in readme and "Refined vs draft" in readme and "| X1 |" in readme
    assert server.url not in readme
    assert json.loads(fake_hub.read_file(repo, "summary.json"))["win_rate"] == 1.0
    pushed = load_dataset(repo, "judgements", split="train")
    assert pushed["refined_vs_draft"] == ["win"] * 6 and fake_hub.repos[repo]["private"]
