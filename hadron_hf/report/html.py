"""The page: header (what was run), vocabulary, overview charts, the judges section, and the row list.

Aggregates are rendered here as escaped HTML. Rows travel as JSON (``data.py``) and the page's one script
(``row.js`` and ``list.js``, allowed by its hash in the Content-Security-Policy) builds the DOM for the visible page
only, so 10,000 rows open as fast as 50. Nothing is fetched: no CDN, no fonts, ``default-src 'none'``.
"""

from __future__ import annotations

import base64
import hashlib
import html
import importlib.resources
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hadron_hf import columns as col
from hadron_hf.errors import InputError
from hadron_hf.report import data
from hadron_hf.report.charts import bar_chart
from hadron_hf.report.judges import judges_section
from hadron_hf.report.source import RunInfo, run_info
from hadron_hf.report.stats import (
    Bins,
    even_bins,
    integer_bins,
    is_undecided,
    judge_stats,
    margin_of,
    rounds_of,
    row_quality,
)
from hadron_hf.summary import RunSummary, summarize

VOCABULARY = (
    ("draft", "the teacher's first answer to the prompt."),
    ("A", "the incumbent at the start of a round: the draft in round 1, afterwards whichever text won the "
          "round before (so a round's A says where it came from, e.g. “A = round 1's AB”)."),
    ("B", "the author's rewrite of A, guided by the critic's critique."),
    ("AB", "the synthesizer's answer: in the paper variant a merge of A and B (shown to it as X1/X2 in a "
           "random order), in the hadron variant a minimal repair of A from the critique."),
    ("X1, X2, X3", "the blind labels a judge sees; each judge gets its own order, listed as “shown”."),
    ("round winner", "the candidate with the most Borda points; A winning keeps the incumbent. The path "
                     "AB → A → A reads: round 1 won by AB, then AB (now A) kept twice."),
    ("converged", "A won the last k rounds in a row; undecided and fail-safe rounds do not count."),
    ("final source", "where the final answer was first written: draft, B or AB."),
    ("margin", "the preference pair's Borda margin, chosen − rejected, in Borda points."),
    ("quality", "clean, undecided (a round short of quorum) or fail_safe (too few counted votes; A kept)."),
)


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _asset(name: str) -> str:
    return importlib.resources.files("hadron_hf.report").joinpath(name).read_text(encoding="utf-8")


def render_report(ds: Any, title: str | None = None, prompt_column: str = "prompt",
                  run: dict[str, Any] | None = None, source: str | None = None) -> str:
    """Render a refined dataset as one self-contained, offline HTML page.

    Args:
        ds: a ``Dataset`` produced by ``autoreason_map`` (or a list of its row dicts).
        title: the page title; by default "AutoReason report: <input name>".
        prompt_column: the column holding each prompt (a string or chat messages).
        run: the refine run's ``run.json`` (models per role, seed, date, version), when known.
        source: where the rows were read from, named in the title when ``run`` is missing.

    Returns:
        The HTML text.

    Raises:
        InputError: the dataset lacks the columns ``autoreason_map`` adds.
    """
    names = list(ds.column_names) if hasattr(ds, "column_names") else (list(ds[0]) if len(ds) else [])
    missing = [c for c in (col.TRACE, col.STATUS) if c not in names]
    if names and missing:
        raise InputError(f"not a refined dataset: no column {missing[0]!r} (its columns are {names}); "
                         "run autoreason_map or `hadron-hf refine` first")
    rows = ds.to_list() if hasattr(ds, "to_list") else [dict(r) for r in ds]
    info = run_info(rows, run, source)
    return _page(rows, names, info, title or info.title, prompt_column)


def write_report(ds: Any, path: str | Path, title: str | None = None, prompt_column: str = "prompt",
                 run: dict[str, Any] | None = None, source: str | None = None) -> Path:
    """Write ``render_report(ds, ...)`` to ``path`` (UTF-8) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(ds, title, prompt_column, run, source), encoding="utf-8")
    return path


def _page(rows: Sequence[dict[str, Any]], names: Sequence[str], info: RunInfo, title: str,
          prompt_column: str) -> str:
    summary = summarize(rows)
    judges = judge_stats(rows)
    extra = data.extra_columns(names, prompt_column)
    filters = data.filter_values(rows, extra)
    index = [data.index_entry(i, r, prompt_column, extra) for i, r in enumerate(rows)]
    meta = {"extra": extra, "variant": info.variant, "panel": info.panel}
    details = "".join(f'<script type="application/json" id="d-{i}">'
                      f"{data.script_json(data.detail_entry(r, prompt_column, extra))}</script>\n"
                      for i, r in enumerate(rows))
    script = _asset("row.js").strip() + "\n" + _asset("list.js").strip()
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    csp = f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'sha256-{digest}'"
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1"><title>{_e(title)}</title>'
        f"<style>{_asset('report.css')}</style></head><body><main>\n"
        f"{_header(title, info, summary)}\n{_vocabulary()}\n"
        f"<h2>Overview</h2>{_overview(summary, rows, info, judges.shown_order_warning)}\n"
        f"{judges_section(judges, info)}\n"
        f"<h2>Rows</h2>{_tools(filters, extra)}\n"
        '<noscript><p class="warnbox">The row list is drawn by the page\'s script; allow JavaScript to see rows.'
        "</p></noscript>\n"
        f'<script type="application/json" id="rows-meta">{data.script_json(meta)}</script>\n'
        f'<script type="application/json" id="rows-index">{data.script_json(index)}</script>\n'
        f"</main><script>{script}</script>\n{details}</body></html>\n"
    )


def _header(title: str, info: RunInfo, s: RunSummary) -> str:
    unknown = '<span class="muted">unknown (no run.json beside the data)</span>'

    def fact(value: Any, key: str = "") -> str:
        if value is None or value == "" or value == []:
            return unknown
        note = ' <span class="muted">(read off the rows)</span>' if key and (key in info.derived or (
            key == "judges" and {"judges", "models", "panel"} & set(info.derived))) else ""
        return _e(value) + note

    judges = Counter(info.judges)
    panel = ", ".join(f"{m} ×{n}" if n > 1 else m for m, n in judges.items()) if judges else None
    facts = [
        ("input", fact(info.input) + (f' <span class="muted">split {_e(info.split)}</span>' if info.split else "")),
        ("rows", f"{s.rows:,} ({s.ok:,} ok, {s.errors:,} errors)"),
        *[(role, fact(info.roles.get(role), "models")) for role in ("teacher", "critic", "author", "synthesizer")],
        ("judges", fact(" ".join(filter(None, (f"panel of {info.panel}:" if info.panel else "", panel))) or None,
                        "judges" if {"judges", "models", "panel"} & set(info.derived) else "")),
        ("variant", fact(info.variant, "variant")),
        ("rounds", fact(f"up to {info.max_iterations}, converged after {info.converge_k} A wins in a row"
                        if info.max_iterations else None)),
        ("seed", fact(info.seed)),
        ("created", fact(info.created)),
        ("hadron_hf", fact(info.version)),
    ]
    cells = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in facts)
    config = ""
    if info.config:
        config = (f'<details class="txt"><summary>Full configuration</summary>'
                  f"<pre>{_e(json.dumps(info.config, indent=2, ensure_ascii=False, default=str))}</pre></details>")
    return f'<h1>{_e(title)}</h1><table class="facts">{cells}</table>{config}'


def _vocabulary() -> str:
    items = "".join(f"<dt>{_e(term)}</dt><dd>{_e(text)}</dd>" for term, text in VOCABULARY)
    return f'<details class="vocab" open><summary>How to read this report</summary><dl>{items}</dl></details>'


def _overview(s: RunSummary, rows: Sequence[dict[str, Any]], info: RunInfo, positional: bool) -> str:
    ok_rows = [r for r in rows if r.get(col.STATUS) == col.STATUS_OK and r.get(col.TRACE)]
    converged = sum(bool(r[col.TRACE].get("converged")) for r in ok_rows)
    quality = Counter(row_quality(r) for r in ok_rows)
    sources = Counter(str(r[col.TRACE].get("winner_source")) for r in ok_rows)
    share = f" ({converged / len(ok_rows):.0%})" if ok_rows else ""
    cards = [
        ("rows", f"{s.rows:,}", f"{s.ok:,} ok · {s.errors:,} errors"),
        ("converged", f"{converged:,} / {len(ok_rows):,}{share}", "of ok rows: A won the last k rounds"),
        ("quality", f"{quality['clean']:,} clean", f"{quality['undecided']:,} undecided · "
                                                     f"{quality['fail_safe']:,} fail-safe"),
        ("mean rounds", f"{s.mean_iterations:.2f}", f"over {len(ok_rows):,} ok rows"),
        ("final source", " / ".join(f"{sources[k]:,}" for k in ("draft", "B", "AB")),
         "draft / B / AB wrote the final text"),
        ("mean margin", "n/a" if s.mean_margin is None else f"{s.mean_margin:.2f} pts", "Borda, chosen − rejected"),
        ("calls", f"{s.calls:,}", f"{s.cached_calls:,} from cache"),
        ("tokens", f"{s.prompt_tokens:,} in", f"{s.completion_tokens:,} out"),
        ("cost", "n/a" if s.cost_usd is None else f"${s.cost_usd:.4f}", "at the configured prices"),
    ]
    grid = "".join(f'<div class="card"><span class="k">{_e(k)}</span><b title="{_e(v)}">{_e(v)}</b>'
                   f'<span class="k">{_e(sub)}</span></div>' for k, v, sub in cards)
    warn = ""
    if positional:
        warn = ('<p class="warnbox">⚠ Most judge votes repeat the order the candidates were shown in: the round '
                'winners below may reflect label positions, not quality. See <a href="#judges">Judges</a>.</p>')
    return f'{warn}<div class="cards">{grid}</div><div class="charts">{"".join(_charts(ok_rows, info))}</div>'


def _charts(ok_rows: Sequence[dict[str, Any]], info: RunInfo) -> list[str]:
    iterations = [len(rounds_of(r)) for r in ok_rows]
    margins = [m for r in ok_rows if (m := margin_of(r)) is not None]
    # Both Borda rules give the best and the worst of three candidates 2 points apart per judge.
    margin_top = 2 * info.panel if info.panel else 0
    lengths = even_bins({"draft": [float(len(r.get(col.DRAFT) or "")) for r in ok_rows],
                         "final": [float(len(r.get(col.REFINED) or "")) for r in ok_rows]},
                        "answer length (characters)")
    return [
        bar_chart("Rounds per row", integer_bins(iterations, 1, info.max_iterations or 1, "rows", "rounds played"),
                  "rows", "ok rows only"),
        bar_chart("Final Borda margin", integer_bins(margins, 0, margin_top, "rows", "margin (Borda points, "
                                                                             "chosen − rejected)"),
                  "rows", _no_pair_note(len(ok_rows) - len(margins)) if ok_rows else ""),
        bar_chart("Answer length: draft vs final", lengths, "rows", "the final answer is the row's refined text"),
        bar_chart("Round winners by round", _winners_by_round(ok_rows), "rounds",
                  "A = the incumbent kept; undecided and fail-safe rounds keep A too"),
    ]


def _no_pair_note(missing: int) -> str:
    if not missing:
        return "every ok row has a preference pair"
    return f"{missing:,} ok rows have no preference pair (no decided round), so no margin"


def _winners_by_round(ok_rows: Sequence[dict[str, Any]]) -> Bins:
    most = max((len(rounds_of(r)) for r in ok_rows), default=0)
    kinds = ("A", "B", "AB", "undecided", "fail-safe")
    counts = {k: [0] * most for k in kinds}
    for row in ok_rows:
        for k, rnd in enumerate(rounds_of(row)):
            kind = "fail-safe" if rnd.get("fail_safe") else "undecided" if is_undecided(rnd) else rnd.get("winner")
            if kind in counts:
                counts[str(kind)][k] += 1
    shown = {k: v for k, v in counts.items() if k in ("A", "B", "AB") or any(v)}
    return Bins([str(k + 1) for k in range(most)], shown, "round")


def _tools(filters: dict[str, list[tuple[str, int]]], extra: Sequence[str]) -> str:
    def select(id_: str, label: str, options: Sequence[tuple[str, str]], attrs: str = "") -> str:
        opts = "".join(f'<option value="{_e(v)}">{_e(t)}</option>' for v, t in options)
        return f'<label>{_e(label)} <select id="{_e(id_)}"{attrs}>{opts}</select></label>'

    parts = [
        '<input id="q" type="search" placeholder="Search prompts, answers, errors, input columns" '
        'aria-label="search">',
        select("f-status", "status", [("", "all"), ("ok", "ok"), ("error", "error")]),
        select("f-quality", "quality", [("", "all"), ("clean", "clean"), ("undecided", "undecided"),
                                        ("fail_safe", "fail-safe")]),
        select("f-conv", "converged", [("", "all"), ("1", "converged"), ("0", "not converged")]),
        select("f-src", "final source", [("", "all"), ("draft", "draft"), ("B", "B"), ("AB", "AB")]),
    ]
    for k, (name, values) in enumerate(filters.items()):
        options = [("", "all")] + [("=" + v[: data.PREVIEW], f"{v[:40] or '(empty)'} ({n:,})") for v, n in values]
        parts.append(select(f"f-x{k}", name, options, f' class="fx" data-col="{_e(name)}"'))
    if extra:
        parts.append('<span class="grp">' + select("f-col", "column", [(name, name) for name in extra])
                     + '<input id="f-val" type="search" class="short" placeholder="contains…" '
                       'aria-label="column value">'
                     + "</span>")
    parts.append('<button id="expand" type="button">expand page</button>')
    head = "".join(f'<button type="button" class="h {c}" data-sort="{s}">{_e(t)}</button>' if s else
                   f'<span class="h {c}">{_e(t)}</span>' for c, s, t in (
                       ("c-i", "i", "#"), ("c-st", "", "status"), ("c-w", "", "round winners"),
                       ("c-m", "m", "margin"), ("c-n", "n", "rounds"), ("c-L", "L", "length"),
                       ("c-p", "", "prompt")))
    pager = ('<nav class="pager"><button type="button" id="first">«</button><button type="button" id="prev">‹'
             '</button><span id="page"></span><button type="button" id="next">›</button><button type="button" '
             'id="last">»</button><label>rows per page <select id="size"><option>25</option>'
             '<option selected>50</option><option>100</option><option>250</option></select></label>'
             '<span id="shown" class="muted"></span></nav>')
    return (f'<div class="tools">{"".join(parts)}</div>{pager}'
            f'<div class="list"><div class="lhead">{head}</div><div id="rows"></div></div>'
            f'<nav class="pager bottom"><button type="button" id="prev2">‹ previous page</button>'
            f'<button type="button" id="next2">next page ›</button></nav>')
