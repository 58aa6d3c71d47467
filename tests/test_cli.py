import json
from pathlib import Path

import pytest
from datasets import load_dataset, load_from_disk

from hadron_hf.cli import main
from hadron_hf.testing import FakeOpenAIServer


@pytest.fixture(autouse=True)
def _private_cache(cache_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HADRON_HF_CACHE", cache_dir)


def test_demo_on_the_embedded_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("llama_cpp", reason="the demo needs the [local] extra (llama-cpp-python)")
    out = tmp_path / "demo"
    code = main(["demo", "--rows", "1", "--judges", "2", "--max-iterations", "1", "--max-tokens", "32",
                 "--output", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    refined = load_from_disk(str(out / "refined"))
    assert len(refined) == 1 and refined[0]["autoreason_status"] == "ok"
    assert (out / "refined.jsonl").read_text().count("\n") == 1
    assert "judge votes parsed" in printed and "(100%)" in printed and str(out) in printed
    for view in ("sft", "dpo", "critic", "reward", "kto"):
        assert (out / "views" / view / "README.md").is_file(), view
    sft = load_dataset(str(out / "views" / "sft"), split="train")
    assert sft[0]["messages"][-1]["role"] == "assistant"


def test_refine_a_jsonl_file_against_a_server(tmp_path: Path, server: FakeOpenAIServer) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"question": f"q{i}"}) + "\n" for i in range(5)))
    code = main(["refine", str(src), "--base-url", server.url, "--model", "m", "--prompt-column", "question",
                 "--limit", "3", "--judges", "2", "--output", str(tmp_path / "out")])
    assert code == 0
    refined = load_from_disk(str(tmp_path / "out" / "refined"))
    assert refined["question"] == ["q0", "q1", "q2"] and set(refined["autoreason_status"]) == {"ok"}


def test_refine_a_text_file(tmp_path: Path, server: FakeOpenAIServer) -> None:
    src = tmp_path / "prompts.txt"
    src.write_text("First prompt\n\nSecond prompt\n")
    assert main(["refine", str(src), "--base-url", server.url, "--output", str(tmp_path / "o")]) == 0
    assert load_from_disk(str(tmp_path / "o" / "refined"))["prompt"] == ["First prompt", "Second prompt"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["refine", "{tmp}/missing.jsonl"], "no such file"),
        (["refine", "{tmp}/in.jsonl", "--prompt-column", "nope", "--base-url", "http://127.0.0.1:9/v1"],
         "has no column 'nope'; its columns are ['prompt']"),
        (["refine", "{tmp}/in.jsonl", "--model-path", "{tmp}/none.gguf"], "no such file"),
        (["refine", "{tmp}/in.jsonl", "--config", "{tmp}/bad.yaml"], "judges"),
        (["refine", "{tmp}/in.unknown"], "unknown file type"),
    ],
    ids=["missing-file", "unknown-column", "missing-model", "bad-config", "bad-extension"],
)
def test_user_errors_are_one_clear_line(argv: list[str], message: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "in.jsonl").write_text(json.dumps({"prompt": "p"}) + "\n")
    (tmp_path / "in.unknown").write_text("x")
    (tmp_path / "bad.yaml").write_text("judges: -2\n")
    code = main([a.format(tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "Traceback" not in err
