import argparse
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from datasets import Dataset

from hadron_hf import AutoReasonConfig, InputError, ModelConfig, autoreason_map, cli
from hadron_hf.report import add_subcommand, render_report, write_report
from hadron_hf.testing import FakeOpenAIServer

PAYLOAD = "<script>alert(1)</script>"
PROMPTS = [f"Explain topic {i} in two sentences." for i in range(6)] + ['"><img src=x onerror=alert(2)>', None]


def _responder(role: str, messages: list[dict[str, str]], body: dict[str, Any]) -> str | None:
    if role == "author_b":
        return f"B rewrites it {PAYLOAD} with an example."
    if role == "judge":
        return f"Weighing them {PAYLOAD}\nRANKING: X1 > X2 > X3"
    return None


def refined_dataset(variant: str = "paper") -> Dataset:
    """A small refined dataset whose model replies carry a script payload; the last row is an error row."""
    with FakeOpenAIServer(reasoning="reasoning", responder=_responder) as server:
        cfg = AutoReasonConfig(
            model=ModelConfig(base_url=server.url, model="m", api_key_env="HADRON_TEST_KEY",
                              price_input_per_mtok=0.5, price_output_per_mtok=2.0),
            judges=3, max_iterations=3, variant=variant, cache=False, progress=False,  # type: ignore[arg-type]
        )
        ds = Dataset.from_dict({"prompt": PROMPTS})
        return ds.map(autoreason_map, batched=True, batch_size=4, fn_kwargs={"config": cfg})


@pytest.fixture(scope="module")
def refined() -> Dataset:
    return refined_dataset()


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.data: list[str] = []
        self.in_script = 0
        self.scripts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self.in_script += tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self.in_script -= tag == "script"

    def handle_data(self, data: str) -> None:
        (self.scripts if self.in_script else self.data).append(data)


def parse(page: str) -> _Collector:
    parser = _Collector()
    parser.feed(page)
    parser.close()
    return parser


def test_report_parses_has_every_row_and_escapes_model_text(refined: Dataset) -> None:
    page = render_report(refined, title="t")
    doc = parse(page)
    row_ids = [a["id"] for t, a in doc.tags if t == "details" and "row" in (a.get("class") or "").split()]
    assert row_ids == [f"row-{i}" for i in range(len(PROMPTS))]
    assert [t for t, _ in doc.tags].count("script") == 1  # ours, and no payload became a tag
    assert not any(t == "img" for t, _ in doc.tags)
    assert "alert(1)" not in "".join(doc.scripts)
    assert PAYLOAD not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    text = "".join(doc.data)
    assert text.count(PAYLOAD) >= len(PROMPTS) - 1  # rendered as visible text in every ok row
    assert '"><img src=x onerror=alert(2)>' in text
    for i, row in enumerate(refined):
        assert f"#{i}" in text
        if row["autoreason_status"] == "ok":
            assert row["refined"] in text and row["draft"] in text
    csp = next(a["content"] for t, a in doc.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy")
    assert csp is not None and "default-src 'none'" in csp and "script-src 'sha256-" in csp


def test_rows_show_each_round_votes_and_status(refined: Dataset) -> None:
    doc = parse(render_report(refined))
    rows = [a for t, a in doc.tags if t == "details" and "row" in (a.get("class") or "").split()]
    assert [r["data-status"] for r in rows] == list(refined["autoreason_status"])
    assert rows[-1]["data-status"] == "error"
    traces = refined["autoreason_trace"][:-1]
    assert [r["data-converged"] for r in rows[:-1]] == [str(int(t["converged"])) for t in traces]
    rounds = [a for t, a in doc.tags if t == "details" and a.get("class") == "round"]
    assert len(rounds) == sum(t["iterations"] for t in traces)
    text = "".join(doc.data)
    assert "Round 1: winner" in text and "Critique" in text and "Borda points" in text
    vote = refined["autoreason_trace"][0]["rounds"][0]["votes"][0]
    shown = ", ".join(f"X{i + 1}={c}" for i, c in enumerate(vote["shown"]))
    assert shown in text and " > ".join(vote["ranking"]) in text  # the permutation and the decoded ranking
    assert "counted" in text and "Reasoning traces" in text and "Thinking as the judge" in text
    assert "prompt is missing" in text  # the error row's message


def test_overview_counts_and_charts(refined: Dataset) -> None:
    doc = parse(render_report(refined))
    text = " ".join(doc.data)
    ok = refined["autoreason_status"].count("ok")
    for label, value in [("rows", len(PROMPTS)), ("ok", ok), ("errors", len(PROMPTS) - ok)]:
        assert f"{label} {value}" in " ".join(text.split())
    captions = [d for d in doc.data if d in {"Iterations per row", "Borda margin (chosen − rejected)",
                                              "Final winner source", "Round winners"}]
    assert len(captions) == 4
    assert sum(1 for t, a in doc.tags if t == "svg" and a.get("role") == "img") >= 4
    cost = sum(u["cost_usd"] for u in refined["autoreason_usage"] if u)
    assert f"${cost:.4f}" in text


def test_draft_to_refined_diff_marks_words() -> None:
    row = {
        "prompt": "p", "draft": "keep old words here", "refined": "keep new words here",
        "autoreason_status": "ok", "autoreason_error": None,
        "autoreason_trace": {"variant": "paper", "converged": False, "iterations": 0, "winner_source": "B",
                             "rounds": []},
        "preference": {"chosen": "keep new words here", "rejected": None, "score_chosen": None,
                       "score_rejected": None, "margin": None},
        "autoreason_usage": {"calls": 1, "cached_calls": 0, "prompt_tokens": 1, "completion_tokens": 1,
                             "cost_usd": None},
        "reasoning_traces": [],
    }
    page = render_report([row])
    assert "keep <del>old</del><ins>new</ins> words here" in page
    assert "no data" in page  # empty charts say so instead of drawing nothing


def test_not_a_refined_dataset_is_a_clear_error() -> None:
    with pytest.raises(InputError, match="not a refined dataset"):
        render_report(Dataset.from_dict({"prompt": ["a"]}))


def _run_report(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    add_subcommand(parser.add_subparsers())
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_report_command_reads_folders_and_jsonl(refined: Dataset, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert "hadron_hf.report" in cli._PLUGINS
    refined.save_to_disk(str(tmp_path / "refined"))
    refined.to_json(str(tmp_path / "refined.jsonl"))
    for source in ("refined", "refined.jsonl"):
        out = tmp_path / f"{source}.html"
        assert _run_report(["report", str(tmp_path / source), "-o", str(out), "--title", "Demo <b>"]) == 0
        page = out.read_text(encoding="utf-8")
        doc = parse(page)
        assert "<title>Demo &lt;b&gt;</title>" in page
        assert sum(1 for t, a in doc.tags if a.get("id", "").startswith("row-")) == len(PROMPTS)
        assert f"Wrote {out}" in capsys.readouterr().out
    assert _run_report(["report", str(tmp_path / "refined"), "-o", str(tmp_path / "two.html"), "--limit", "2"]) == 0
    two = (tmp_path / "two.html").read_text()
    assert 'id="row-1"' in two and 'id="row-2"' not in two


def test_hadron_variant_renders(tmp_path: Path) -> None:
    ds = refined_dataset("hadron")
    path = write_report(ds, tmp_path / "sub" / "r.html")
    doc = parse(path.read_text(encoding="utf-8"))
    assert "variant hadron" in " ".join(doc.data)
    rounds = [r for t in ds["autoreason_trace"] if t for r in t["rounds"]]
    flaws = sum(r["no_flaws"] for r in rounds)
    assert " ".join(doc.data).count("no flaws") == flaws
