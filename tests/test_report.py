import argparse
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from datasets import Dataset
from report_fixtures import demo_like, forty_rows, refine, synthetic_rows

from hadron_hf import ConfigError, InputError, cli
from hadron_hf.cli.report import add_subcommand
from hadron_hf.report import render_report, write_report
from hadron_hf.report.stats import even_bins, incumbent_origin, integer_bins, judge_stats, kendall_w

PAYLOAD = "<script>alert(1)</script>"
PROMPTS = [f"Explain topic {i} in two sentences {PAYLOAD}." for i in range(5)] + [
    '"><img src=x onerror=alert(2)>', None]


@pytest.fixture(scope="module")
def payload_rows() -> Dataset:
    """Model replies and prompts carrying markup; the last row is an error row."""
    ds, _ = refine(Dataset.from_dict({"prompt": PROMPTS}), judges=3, max_iterations=2)
    return ds.map(lambda r: {"refined": (r["refined"] or "") + PAYLOAD} if r["refined"] else {})


@pytest.fixture(scope="module")
def forty() -> tuple[Dataset, dict[str, Any]]:
    return forty_rows()


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.data: list[str] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self._script: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._script = dict(attrs)
            self.scripts.append((self._script, ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._script = None

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self.scripts[-1] = (self.scripts[-1][0], self.scripts[-1][1] + data)
        else:
            self.data.append(data)

    def json(self, id_: str) -> Any:
        return json.loads(next(text for attrs, text in self.scripts if attrs.get("id") == id_))

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.data).split())


def parse(page: str) -> _Collector:
    parser = _Collector()
    parser.feed(page)
    parser.close()
    return parser


def test_model_text_travels_as_inert_json_and_never_as_markup(payload_rows: Dataset) -> None:
    page = render_report(payload_rows)
    doc = parse(page)
    executable = [a for a, _ in doc.scripts if a.get("type") != "application/json"]
    assert len(executable) == 1 and "alert(" not in doc.scripts[[a for a, _ in doc.scripts].index(executable[0])][1]
    assert not any(t == "img" for t, _ in doc.tags)
    assert PAYLOAD not in page and "<img src=x" not in page
    for i, row in enumerate(payload_rows):
        detail = doc.json(f"d-{i}")
        assert detail["p"] == (row["prompt"] if row["prompt"] is not None else "(missing)")
        if row["autoreason_status"] == "ok":
            assert detail["t"][detail["r"]] == row["refined"] and PAYLOAD in row["refined"]
    csp = next(a["content"] for t, a in doc.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy")
    assert csp is not None and "default-src 'none'" in csp and "script-src 'sha256-" in csp


def test_index_has_each_rows_winner_path_margin_and_error_reason(forty: tuple[Dataset, dict[str, Any]]) -> None:
    ds, run = forty
    index = parse(render_report(ds, run=run)).json("rows-index")
    assert [r["i"] for r in index] == list(range(len(ds)))
    for entry, row in zip(index, ds, strict=True):
        trace = row["autoreason_trace"]
        assert entry["s"] == row["autoreason_status"]
        if entry["s"] == "ok":
            assert entry["w"] == [r["winner"] for r in trace["rounds"]]
            assert entry["m"] == row["preference"]["margin"] and entry["c"] == int(trace["converged"])
            assert entry["x"] == [row["id"], row["category"]]  # the input's own columns
        else:
            assert entry["e"] and entry["e"] in row["autoreason_error"] and entry["w"] == []
    assert any(e["s"] == "error" for e in index) and any(len(e["w"]) == 3 for e in index)


def test_header_names_models_panel_variant_seed_date_version_and_input(
        forty: tuple[Dataset, dict[str, Any]]) -> None:
    ds, run = forty
    doc = parse(render_report(ds, run=run))
    assert "<title>AutoReason report: forty.jsonl</title>" in render_report(ds, run=run)
    text = doc.text
    at = run["roles"]["teacher"]
    for fact in (f"teacher {at}", f"critic {at}", f"author {at}", f"synthesizer {at}", f"judges panel of 3: {at} ×3",
                 "variant paper", "seed 0", "created 2026-12-03T10:15:00Z", "hadron_hf 0.1.0",
                 "input prompts/forty.jsonl split train", "up to 3, converged after 2 A wins in a row"):
        assert fact in text, fact
    assert "HADRON_TEST_KEY" in text and "unknown" not in text  # the key's variable name, never a key


def test_without_run_json_the_header_derives_what_it_can_and_says_what_is_unknown(
        forty: tuple[Dataset, dict[str, Any]]) -> None:
    ds, _ = forty
    page = render_report(ds, source="/tmp/runs/my-run/refined")
    text = parse(page).text
    assert "<title>AutoReason report: my-run</title>" in page
    assert "teacher fake-model (read off the rows)" in text and "variant paper (read off the rows)" in text
    assert "judges panel of 3: fake-model (read off the rows)" in text
    assert "seed unknown (no run.json beside the data)" in text and "created unknown" in text


def test_judges_section_flags_votes_that_repeat_the_shown_order() -> None:
    ds, run = demo_like()
    doc = parse(render_report(ds, run=run))
    stats = judge_stats(list(ds))
    assert stats.parsed == stats.votes == stats.shown_order > 0 and stats.shown_order_warning
    assert stats.position_first["X1"] == stats.parsed and stats.position_first["X2"] == 0
    assert "AutoReason report: hadron_hf bundled prompts" in doc.text
    assert any(a.get("id") == "shown-order-warning" for _, a in doc.tags)
    assert f"{stats.parsed} of {stats.parsed} counted votes (100%) rank the candidates exactly" in doc.text
    assert "X1 " + str(stats.parsed) + " 100%" in doc.text  # the position-bias table
    assert "SmolLM2-135M-Instruct.Q4_1.gguf" in doc.text and "repeat shown order" in doc.text


def test_judges_section_lists_undecided_rounds_and_agreement(forty: tuple[Dataset, dict[str, Any]]) -> None:
    ds, run = forty
    rows = list(ds)
    stats = judge_stats(rows)
    topic3 = next(i for i, r in enumerate(rows) if "topic 3 " in (r["prompt"] or ""))
    assert (topic3, 1) in stats.undecided and not stats.shown_order_warning
    assert stats.kendall_w is not None and 0 <= stats.kendall_w <= 1 and stats.top_agreement is not None
    doc = parse(render_report(ds, run=run))
    assert any(a.get("href") == f"#row-{topic3}" for t, a in doc.tags if t == "a")
    assert "Kendall's W (mean per round)" in doc.text and "shown-order-warning" not in render_report(ds, run=run)
    index = doc.json("rows-index")
    assert index[topic3]["q"] == "undecided" and index[topic3]["u"][0] == 2


def test_new_trace_fields_are_read_when_present() -> None:
    row = synthetic_rows(1)[0]
    row["autoreason_trace"]["quality"] = "fail_safe"
    rnd = row["autoreason_trace"]["rounds"][1]
    rnd.update({"undecided": True, "quorum": 2, "reasked": 1})
    doc = parse(render_report([row]))
    entry = doc.json("rows-index")[0]
    assert entry["q"] == "fail_safe" and entry["u"] == [0, 2, 0]
    detail = doc.json("d-0")["R"][1]
    assert (detail["un"], detail["qu"], detail["ra"]) == (True, 2, 1)
    assert "seats re-asked / skipped 1 / 0" in doc.text


def test_kendall_w_and_incumbent_origin() -> None:
    assert kendall_w([["A", "B", "AB"]] * 3) == 1.0
    assert kendall_w([["A", "B", "AB"], ["AB", "B", "A"]]) == 0.0
    assert kendall_w([["A", "B", "AB"]]) is None
    rounds = [{"iteration": 1, "winner": "AB"}, {"iteration": 2, "winner": "A"}, {"iteration": 3, "winner": "B"}]
    assert [incumbent_origin(rounds, k) for k in range(4)] == ["draft", "round 1's AB", "round 1's AB", "round 3's B"]


def test_histograms_draw_every_bin_with_labelled_axes(forty: tuple[Dataset, dict[str, Any]]) -> None:
    bins = integer_bins([0, 2, 3, 6, 6], 0, 6, "rows", "margin")
    assert bins.labels == ["0", "1", "2", "3", "4", "5", "6"] and bins.counts["rows"] == [1, 0, 1, 1, 0, 0, 2]
    even = even_bins({"a": [0.0, 95.0, 210.0]}, "chars", target=4)
    assert even.labels[0].startswith("0–") and sum(even.counts["a"]) == 3
    assert even.edges is not None and len(even.edges) == len(even.labels) + 1 and even.edges[0] == "0"
    ds, run = forty
    page = render_report(ds, run=run)
    doc = parse(page)
    captions = [d for d in doc.data if d in {"Rounds per row", "Final Borda margin", "Answer length: draft vs final",
                                              "Round winners by round"}]
    assert len(captions) == 4
    for axis in ("rounds played", "margin (Borda points, chosen − rejected)", "answer length (characters)", "round"):
        assert 'class="axt" x=' in page and f">{axis}</text>" in page
    margin_svg = page.split("Final Borda margin</figcaption>")[1].split("</svg>")[0]
    assert margin_svg.count('class="bar"') == 7  # 0..6 for a panel of 3, empty bins included
    ok = ds["autoreason_status"].count("ok")
    assert ok == 38 and f"/ {ok} (" in doc.text and "of ok rows: A won the last k rounds" in doc.text


def test_input_columns_with_few_values_become_filters(forty: tuple[Dataset, dict[str, Any]]) -> None:
    ds, run = forty
    doc = parse(render_report(ds, run=run))
    selects = {a.get("data-col"): a for t, a in doc.tags if t == "select" and a.get("data-col")}
    assert set(selects) == {"category"}  # ``id`` has a value per row: searchable, not a drop-down
    options = [a["value"] for t, a in doc.tags if t == "option" and (a.get("value") or "").startswith("=")]
    assert sorted(options) == sorted(f"={c}" for c in ("explain", "code", "math", "advice", "creative"))
    assert doc.json("rows-meta")["extra"] == ["id", "category"]


def test_not_a_refined_dataset_is_a_clear_error() -> None:
    with pytest.raises(InputError, match="not a refined dataset"):
        render_report(Dataset.from_dict({"prompt": ["a"]}))


def _run_report(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    add_subcommand(parser.add_subparsers())
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_report_command_reads_output_folder_dataset_folder_and_jsonl(
        forty: tuple[Dataset, dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.report in cli.COMMANDS
    ds, run = forty
    out = tmp_path / "run-out"
    ds.save_to_disk(str(out / "refined"))
    ds.to_json(str(out / "refined.jsonl"))
    (out / "run.json").write_text(json.dumps(run))
    # The loader and run.json reader of every command (hadron_hf.sources): an output folder and its refined/
    # have the run's facts; a file is just rows, even beside a run.json.
    for source, title in ((out, "forty.jsonl"), (out / "refined", "forty.jsonl"), (out / "refined.jsonl", "run-out")):
        html = tmp_path / "r.html"
        assert _run_report(["report", str(source), "-o", str(html), "--overwrite"]) == 0
        page = html.read_text(encoding="utf-8")
        assert f"<title>AutoReason report: {title}</title>" in page
        assert len(parse(page).json("rows-index")) == len(ds)
        assert f"Wrote {html} (40 rows)" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="--overwrite"):  # an existing report is not replaced silently
        _run_report(["report", str(out), "-o", str(tmp_path / "r.html")])
    (out / "run.json").unlink()
    assert _run_report(["report", str(out), "-o", str(tmp_path / "two.html"), "--limit", "2", "--title", "T <b>"]) == 0
    two = (tmp_path / "two.html").read_text()
    assert "<title>T &lt;b&gt;</title>" in two and len(parse(two).json("rows-index")) == 2
    assert "no run.json found" in capsys.readouterr().out
    with pytest.raises(InputError, match="no such file or folder"):
        _run_report(["report", str(tmp_path / "missing"), "-o", str(tmp_path / "x.html")])
    with pytest.raises(InputError, match="cannot load"):
        _run_report(["report", str(tmp_path), "-o", str(tmp_path / "x.html")])


def test_hadron_variant_renders(tmp_path: Path) -> None:
    ds, run = refine(Dataset.from_dict({"prompt": [f"Explain topic {i}." for i in range(6)]}), variant="hadron")
    path = write_report(ds, tmp_path / "sub" / "r.html", run=run)
    doc = parse(path.read_text(encoding="utf-8"))
    assert "variant hadron" in doc.text
    flaws = [r["no_flaws"] for t in ds["autoreason_trace"] for r in t["rounds"]]
    details = [doc.json(f"d-{i}") for i in range(len(ds))]
    assert [r["nf"] for d in details for r in d["R"]] == flaws
    assert all(r["mo"] == [] for d in details for r in d["R"])  # AB is a repair of A: no merge order
    assert re.search(r"rounds judged \d+ of \d+ \d+ ended by the critic", doc.text)
