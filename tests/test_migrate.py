"""Migration to the original Hadron's rows, on datasets refined by a real ``autoreason_map`` run."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest
from datasets import Dataset

from hadron_hf import AutoReasonConfig, ModelConfig, autoreason_map, cli
from hadron_hf.core.borda import LABELS, parse_ranking
from hadron_hf.errors import InputError
from hadron_hf.export.hadron_rows import HADRON_FEATURES, hadron_row, to_hadron_rows
from hadron_hf.testing import FakeOpenAIServer, Faults, role_of

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = [f"Explain topic {i} in two sentences." for i in range(8)] + [None]
CANDIDATE = re.compile(r'<candidate id="(X\d)">\n(.*?)\n</candidate>', re.DOTALL)


def refine(server: FakeOpenAIServer, cache_dir: str, variant: str) -> Dataset:
    """A refined dataset with reasoning, some unparseable judge replies and one failed row."""
    server.reasoning = "reasoning"
    server.faults = Faults(rate=0.2, kinds=("garbage_judge",))
    cfg = AutoReasonConfig(model=ModelConfig(base_url=server.url, model="m", api_key_env=None), judges=3,
                           max_iterations=3, variant=variant, cache_dir=cache_dir, progress=False)  # type: ignore[arg-type]
    ds = Dataset.from_dict({"prompt": PROMPTS, "id": list(range(len(PROMPTS)))})
    return ds.map(autoreason_map, batched=True, batch_size=4, fn_kwargs={"config": cfg})


def judge_panels(server: FakeOpenAIServer) -> list[dict[str, str]]:
    """What each judge request showed: candidate text by label."""
    return [dict(CANDIDATE.findall(body["messages"][-1]["content"]))
            for body in server.log.bodies if role_of(body["messages"]) == "judge"]


@pytest.mark.parametrize("variant", ["paper", "hadron"], ids=["paper", "hadron"])
def test_every_field_follows_the_trace(server: FakeOpenAIServer, cache_dir: str, variant: str) -> None:
    refined = refine(server, cache_dir, variant)
    old = to_hadron_rows(refined)
    ok = [r for r in refined if r["autoreason_status"] == "ok"]
    assert len(old) == len(ok) == len(PROMPTS) - 1
    assert old.column_names == ["prompt", "id", "instruction", *HADRON_FEATURES]
    panels = judge_panels(server)
    seen = {"no_flaws": 0, "unparsed": 0, "votes": 0}
    for ours, row in zip(ok, old, strict=True):
        assert row["id"] == ours["id"] and row["instruction"] == ours["prompt"]
        trace, theirs = ours["autoreason_trace"], row["autoreason_trace"]
        assert row["generation"] == theirs["final_answer"] == ours["refined"]
        assert row["autoreason_converged"] == theirs["converged"] == trace["converged"]
        assert row["autoreason_iterations"] == len(theirs["iterations"]) == trace["iterations"]
        assert theirs["winner_source"] == trace["rounds"][-1]["winner"]
        assert row["total_calls"] == theirs["total_calls"] == ours["autoreason_usage"]["calls"]
        assert row["model_name"] == "m"
        calls = ours["reasoning_traces"]
        assert [(e["call_index"], e["role_hint"], e["source_model"], e["reasoning"], e["text"])
                for e in row["reasoning_trace"]] == [(i, c["role"], c["model"], c["reasoning"], c["answer"])
                                                     for i, c in enumerate(calls)]
        assert row["reasoning_total_chars"] == sum(len(c["reasoning"]) for c in calls) > 0
        for i, (rnd, it) in enumerate(zip(trace["rounds"], theirs["iterations"], strict=True)):
            assert it["iteration"] == i == rnd["iteration"] - 1
            assert (it["A"], it["critique"], it["winner"], it["no_flaws"]) == (
                rnd["A"], rnd["critique"], rnd["winner"], rnd["no_flaws"])
            assert it["borda"] == rnd["scores"]
            if it["no_flaws"]:
                seen["no_flaws"] += 1
                assert it["B"] == it["AB"] == "" and it["votes"] == [] and it["winner"] == "A"
                assert it["borda"] == {"A": 0, "B": 0, "AB": 0}
                continue
            assert (it["B"], it["AB"]) == (rnd["B"], rnd["AB"])
            texts = {"A": it["A"], "B": it["B"], "AB": it["AB"]}
            for vote, mine in zip(it["votes"], rnd["votes"], strict=True):
                seen["votes"] += 1
                perm = vote["label_permutation"]
                assert vote["judge_id"] == mine["judge"] and vote["raw_response"] == mine["raw"]
                assert sorted(perm) == list(LABELS) and sorted(perm.values()) == ["A", "AB", "B"]
                # The judge really saw candidate perm[X] under label X.
                assert {label: texts[c] for label, c in perm.items()} in panels
                assert vote["parsed_ok"] == mine["parsed"]
                if vote["parsed_ok"]:
                    # Its reply, read through the permutation, is the recorded ranking (best first).
                    assert vote["ranking"] == [perm[x] for x in parse_ranking(vote["raw_response"])]
                else:
                    seen["unparsed"] += 1
                    assert vote["ranking"] == []
    assert seen["votes"] > 0 and seen["unparsed"] > 0
    assert (seen["no_flaws"] > 0) == (variant == "hadron")


def test_a_failed_judge_call_has_no_raw_response() -> None:
    vote = {"judge": 1, "model": "", "shown": ["B", "AB", "A"], "raw": "", "ranking": [], "parsed": False,
            "constrained": False, "error": "ServerError: 503"}
    good = {"judge": 0, "model": "m", "shown": ["AB", "A", "B"], "raw": "RANKING: X2 > X1 > X3",
            "ranking": ["A", "AB", "B"], "parsed": True, "constrained": False, "error": None}
    rnd = {"iteration": 1, "A": "a", "critique": "c", "B": "b", "AB": "ab", "no_flaws": False,
           "votes": [good, vote], "scores": {"A": 3, "B": 1, "AB": 2}, "winner": "A"}
    row = {"refined": "a", "autoreason_trace": {"converged": False, "rounds": [rnd]},
           "autoreason_usage": {"calls": 5}, "reasoning_traces": []}
    got = hadron_row(row)
    votes = got["autoreason_trace"]["iterations"][0]["votes"]
    assert votes[0] == {"judge_id": 0, "ranking": ["A", "AB", "B"], "raw_response": "RANKING: X2 > X1 > X3",
                        "parsed_ok": True, "label_permutation": {"X1": "AB", "X2": "A", "X3": "B"}}
    assert votes[1] == {"judge_id": 1, "ranking": [], "raw_response": None, "parsed_ok": False,
                        "label_permutation": {"X1": "B", "X2": "AB", "X3": "A"}}
    # the failed call was still made: the original counted it
    assert got["total_calls"] == got["autoreason_trace"]["total_calls"] == 6
    assert got["model_name"] is None and got["reasoning_trace"] == [] and got["reasoning_total_chars"] == 0


def test_recipe_writes_the_originals_jsonl(server: FakeOpenAIServer, cache_dir: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    refined = refine(server, cache_dir, "hadron")
    refined.save_to_disk(str(tmp_path / "refined"))
    out = tmp_path / "old" / "hadron.jsonl"
    assert cli.main(["recipe", "hadron", str(tmp_path / "refined"), "--output", str(out)]) == 0
    assert f"{len(PROMPTS)} rows in, {len(PROMPTS) - 1} rows out (1 failed rows left out)" in capsys.readouterr().out
    lines: list[dict[str, Any]] = [json.loads(line) for line in out.read_text().splitlines()]
    expected = to_hadron_rows(refined).to_list()
    assert lines == expected
    for row in lines:
        assert {"generation", "autoreason_trace", "autoreason_iterations", "autoreason_converged", "total_calls",
                "reasoning_trace", "instruction"} <= set(row)
        assert set(row["autoreason_trace"]) == {"iterations", "converged", "winner_source", "total_calls",
                                                "final_answer"}
    spec = importlib.util.spec_from_file_location("recipe_script_hadron", ROOT / "recipes" / "hadron.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    parquet = tmp_path / "old.parquet"
    assert module.main([str(tmp_path / "refined"), "--output", str(parquet)]) == 0
    assert Dataset.from_parquet(str(parquet)).to_list() == expected


def test_a_dataset_that_is_not_refined_is_refused() -> None:
    with pytest.raises(InputError, match="lacks"):
        to_hadron_rows(Dataset.from_dict({"prompt": ["x"]}))
