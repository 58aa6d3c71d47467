"""``hadron-hf report``: one self-contained HTML file showing a refined dataset's tournaments.

Everything is rendered here into escaped HTML, with inline CSS, inline SVG charts and a few lines of
inline JS (search, status filter, ``#row-N`` opens a row); no CDN, so it works offline. Model output is
untrusted: every piece of it goes through ``html.escape``, and the page's Content-Security-Policy lets
only our own script (by its hash) run and forbids every network fetch.

Example:
    >>> write_report(load_prompts("hadron-hf-output/demo/refined"), "report.html")  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import base64
import difflib
import hashlib
import html
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from hadron_hf import columns as col
from hadron_hf.borda import LABELS
from hadron_hf.errors import InputError
from hadron_hf.summary import RunSummary, summarize

_CSS = """
*{box-sizing:border-box}body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;
color:#1d2330;background:#f6f7f9}main{max-width:1180px;margin:0 auto;padding:20px}h1{font-size:22px;margin:0 0 4px}
h2{font-size:17px;margin:24px 0 8px}.muted{color:#667}.cards{display:grid;gap:8px;
grid-template-columns:repeat(auto-fill,minmax(150px,1fr))}.card{background:#fff;border:1px solid #dde;
border-radius:8px;padding:8px 10px}.card b{display:block;font-size:18px}.charts{display:flex;flex-wrap:wrap;gap:10px}
figure.chart{margin:0;background:#fff;border:1px solid #dde;border-radius:8px;padding:6px}figcaption{font-weight:600}
svg text{font:11px system-ui,sans-serif;fill:#334}svg rect.bar{fill:#4c78a8}.tools{display:flex;gap:8px;
align-items:center;margin:8px 0;position:sticky;top:0;background:#f6f7f9;padding:6px 0;z-index:1}
.tools input{flex:1;padding:6px 8px;border:1px solid #bbc;border-radius:6px}.tools select,.tools button{padding:6px}
details.row{background:#fff;border:1px solid #dde;border-radius:8px;margin:6px 0}details.row[hidden]{display:none}
details.row>summary{padding:8px 10px;cursor:pointer;display:flex;gap:8px;align-items:baseline}
details.row>summary .p{flex:1;overflow:hidden;white-space:nowrap;text-overflow:ellipsis}
details.row[open]>summary{border-bottom:1px solid #dde}.body{padding:8px 14px}
.badge{display:inline-block;border-radius:10px;padding:0 7px;font-size:12px;background:#e6e8ee}
.ok{background:#d8f0dd}.error{background:#f8d7d7}.warn{background:#fbeccb}
pre{white-space:pre-wrap;word-break:break-word;background:#f8f8fb;border:1px solid #e4e4ec;border-radius:6px;
padding:8px;margin:4px 0;font:13px/1.4 ui-monospace,Menlo,Consolas,monospace}
del{background:#fbd3d3;color:#7a1d1d}ins{background:#cdeed3;color:#12521f;text-decoration:none}
details.round{border-left:3px solid #c5cce0;margin:10px 0;padding-left:10px}
details.round>summary{cursor:pointer;font-weight:600}table{border-collapse:collapse;width:100%;margin:4px 0}
td,th{border:1px solid #e0e0ea;padding:3px 6px;text-align:left;vertical-align:top;font-size:13px}
th{background:#f0f1f6}.win{outline:2px solid #54a24b}details.txt>summary{cursor:pointer;color:#345}
h3{font-size:14px;margin:12px 0 4px}
"""

_JS = """
(function(){
window.addEventListener("error",function(e){document.body.setAttribute("data-js-error",String(e.message));});
var rows=Array.prototype.slice.call(document.querySelectorAll("details.row"));
var q=document.getElementById("q"),f=document.getElementById("f"),n=document.getElementById("shown");
var text=new Map();
function keep(r,v){var s=r.dataset.status,c=r.dataset.converged;
 return v==="all"||s===v||(v==="converged"&&c==="1")||(v==="unconverged"&&s==="ok"&&c==="0");}
function apply(){var s=q.value.trim().toLowerCase(),v=f.value,k=0;
 rows.forEach(function(r){if(!text.has(r))text.set(r,r.textContent.toLowerCase());
  var on=keep(r,v)&&(!s||text.get(r).indexOf(s)>=0);r.hidden=!on;if(on)k++;});
 n.textContent=k+" of "+rows.length+" rows";}
function openHash(){var m=/^#row-(\\d+)$/.exec(location.hash);if(!m)return;
 var r=document.getElementById("row-"+m[1]);if(!r)return;r.hidden=false;r.open=true;
 var top=r.getBoundingClientRect().top;if(top<0||top>window.innerHeight-60)r.scrollIntoView();}
rows.forEach(function(r){r.addEventListener("toggle",function(){
 if(r.open&&location.hash!=="#"+r.id)history.replaceState(null,"","#"+r.id);});});
document.getElementById("expand").addEventListener("click",function(){
 var open=!rows.some(function(r){return !r.hidden&&r.open;});
 rows.forEach(function(r){if(!r.hidden)r.open=open;});});
q.addEventListener("input",apply);f.addEventListener("change",apply);
window.addEventListener("hashchange",openHash);apply();openHash();
document.body.setAttribute("data-ready","1");
})();
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def render_report(ds: Any, title: str = "AutoReason report", prompt_column: str = "prompt") -> str:
    """Render a refined dataset as one self-contained HTML page.

    Args:
        ds: a ``Dataset`` produced by ``autoreason_map`` (or a list of its row dicts).
        title: the page title.
        prompt_column: the column holding each prompt (a string or chat messages).

    Returns:
        The HTML text.

    Raises:
        InputError: the dataset lacks the columns ``autoreason_map`` adds.
    """
    names = ds.column_names if hasattr(ds, "column_names") else (list(ds[0]) if len(ds) else [])
    missing = [c for c in (col.TRACE, col.STATUS) if c not in names]
    if names and missing:
        raise InputError(f"not a refined dataset: no column {missing[0]!r} (its columns are {names}); "
                         "run autoreason_map or `hadron-hf refine` first")
    rows = list(ds)
    summary = summarize(rows)
    script = _JS.strip()
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    csp = f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'sha256-{digest}'"
    body = "\n".join(_row_html(i, r, prompt_column) for i, r in enumerate(rows))
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1"><title>{_e(title)}</title>'
        f"<style>{_CSS}</style></head><body><main>\n<h1>{_e(title)}</h1>"
        f'<div class="muted">{summary.rows} rows, variant {_e(_variants(rows))}</div>\n'
        f"<h2>Overview</h2>{_overview(summary, rows)}\n"
        '<h2>Rows</h2><div class="tools"><input id="q" type="search" placeholder="Search prompts and answers">'
        '<select id="f"><option value="all">all</option><option value="ok">ok</option>'
        '<option value="error">error</option><option value="converged">converged</option>'
        '<option value="unconverged">not converged</option></select>'
        '<button id="expand" type="button">expand/collapse</button><span id="shown" class="muted"></span></div>\n'
        f'<div id="rows">\n{body}\n</div></main><script>{script}</script></body></html>\n'
    )


def write_report(ds: Any, path: str | Path, title: str = "AutoReason report", prompt_column: str = "prompt") -> Path:
    """Write ``render_report(ds, ...)`` to ``path`` (UTF-8) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(ds, title, prompt_column), encoding="utf-8")
    return path


def _variants(rows: Sequence[dict[str, Any]]) -> str:
    found = sorted({r[col.TRACE]["variant"] for r in rows if r.get(col.TRACE)})
    return ", ".join(found) or "unknown"


def _overview(s: RunSummary, rows: Sequence[dict[str, Any]]) -> str:
    traces = [r[col.TRACE] for r in rows if r.get(col.STATUS) == col.STATUS_OK and r.get(col.TRACE)]
    rounds = [rnd for t in traces for rnd in t["rounds"] or []]
    cards = [
        ("rows", s.rows), ("ok", s.ok), ("errors", s.errors), ("converged", f"{s.converged_pct:.0f}%"),
        ("mean iterations", f"{s.mean_iterations:.2f}"), ("calls", f"{s.calls} ({s.cached_calls} cached)"),
        ("tokens in / out", f"{s.prompt_tokens:,} / {s.completion_tokens:,}"),
        ("cost", "n/a" if s.cost_usd is None else f"${s.cost_usd:.4f}"),
        ("judge parse rate", f"{s.parse_rate:.0%} of {s.votes}"),
        ("mean Borda margin", "n/a" if s.mean_margin is None else f"{s.mean_margin:.2f}"),
        ("fail-safe rounds", sum(bool(r.get("fail_safe")) for r in rounds)),
        ("no-flaws rounds", sum(bool(r.get("no_flaws")) for r in rounds)),
    ]
    grid = "".join(f'<div class="card"><span class="muted">{_e(k)}</span><b>{_e(v)}</b></div>' for k, v in cards)
    iterations = Counter(t["iterations"] for t in traces)
    margins = Counter(r[col.PREFERENCE]["margin"] for r in rows
                      if r.get(col.PREFERENCE) and r[col.PREFERENCE].get("margin") is not None)
    sources = Counter(t["winner_source"] for t in traces)
    winners = Counter(rnd["winner"] for rnd in rounds)
    charts = [
        _bar_chart("Iterations per row", [(str(k), iterations[k]) for k in range(1, max(iterations, default=0) + 1)]),
        _bar_chart("Borda margin (chosen − rejected)", [(f"{k:g}", v) for k, v in sorted(margins.items())]),
        _bar_chart("Final winner source", [(k, sources[k]) for k in ("draft", "B", "AB")]),
        _bar_chart("Round winners", [(k, winners[k]) for k in ("A", "B", "AB")]),
    ]
    return f'<div class="cards">{grid}</div><div class="charts">{"".join(charts)}</div>'


def _bar_chart(title: str, bars: Sequence[tuple[str, int]], width: int = 270, height: int = 150) -> str:
    pad, top = 22, max((v for _, v in bars), default=0)
    inner = ['<text x="50%" y="50%" text-anchor="middle">no data</text>'] if not top else []
    step = (width - 2 * pad) / max(len(bars), 1)
    for i, (label, value) in enumerate(bars if top else ()):
        h = (height - 2 * pad) * value / top
        x, y = pad + i * step, height - pad - h
        mid = x + step / 2
        inner.append(f'<rect class="bar" x="{x + step * 0.1:.1f}" y="{y:.1f}" width="{step * 0.8:.1f}" '
                     f'height="{h:.1f}"><title>{_e(label)}: {value}</title></rect>'
                     f'<text x="{mid:.1f}" y="{height - pad + 14}" text-anchor="middle">{_e(label)}</text>'
                     f'<text x="{mid:.1f}" y="{y - 3:.1f}" text-anchor="middle">{value}</text>')
    return (f'<figure class="chart"><figcaption>{_e(title)}</figcaption><svg width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{_e(title)}">{"".join(inner)}</svg></figure>')


def _prompt_text(value: Any) -> str:
    if value is None:
        return "(missing)"
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(m, dict) for m in value):
        return "\n\n".join(f"[{m.get('role')}] {m.get('content')}" for m in value)
    return json.dumps(value, ensure_ascii=False, default=str)


def _row_html(i: int, row: dict[str, Any], prompt_column: str) -> str:
    status = row.get(col.STATUS) or col.STATUS_ERROR
    trace = row.get(col.TRACE) or {}
    prompt = _prompt_text(row.get(prompt_column))
    converged = bool(trace.get("converged"))
    badges = [f'<span class="badge {_e(status)}">{_e(status)}</span>']
    if trace:
        badges.append(f'<span class="badge">{trace.get("iterations", 0)} rounds</span>')
        badges.append(f'<span class="badge {"ok" if converged else "warn"}">'
                      f'{"converged" if converged else "not converged"}</span>')
        badges.append(f'<span class="badge">winner: {_e(trace.get("winner_source"))}</span>')
    parts = [f"<h3>Prompt</h3><pre>{_e(prompt)}</pre>"]
    if status != col.STATUS_OK:
        parts.append(f'<h3>Error</h3><pre class="error">{_e(row.get(col.ERROR))}</pre>')
    if trace:
        draft, refined = row.get(col.DRAFT) or "", row.get(col.REFINED) or ""
        change = "unchanged: the draft won" if draft == refined else "deleted / inserted words"
        parts.append(f'<h3>Draft → refined <span class="muted">({change})</span></h3>'
                     f"<pre>{_diff_html(draft, refined)}</pre>")
        parts.extend(_round_html(rnd, trace.get("variant", "")) for rnd in trace.get("rounds") or [])
        parts.append(_usage_html(row.get(col.USAGE), row.get(col.PREFERENCE)))
    parts.append(_reasoning_html(row.get(col.REASONING) or []))
    return (f'<details class="row" id="row-{i}" data-status="{_e(status)}" data-converged="{int(converged)}">'
            f'<summary><span class="muted">#{i}</span>{"".join(badges)}<span class="p">{_e(prompt[:160])}</span>'
            f'</summary><div class="body">{"".join(parts)}</div></details>')


def _diff_html(old: str, new: str) -> str:
    a, b = re.findall(r"\s+|\S+", old), re.findall(r"\s+|\S+", new)
    # Without autojunk the matcher is quadratic; only very long answers need the heuristic.
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=len(a) + len(b) > 6000)
    out = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            out.append(_e("".join(a[i1:i2])))
            continue
        if i2 > i1:
            out.append(f"<del>{_e(''.join(a[i1:i2]))}</del>")
        if j2 > j1:
            out.append(f"<ins>{_e(''.join(b[j1:j2]))}</ins>")
    return "".join(out)


def _text_block(label: str, text: str | None, winner: bool, open_: bool = False) -> str:
    if text is None:
        return ""
    cls = "txt win" if winner else "txt"
    mark = " ★ winner" if winner else ""
    return (f'<details class="{cls}"{" open" if open_ else ""}><summary>{_e(label)}{mark}</summary>'
            f"<pre>{_e(text)}</pre></details>")


def _round_html(rnd: dict[str, Any], variant: str) -> str:
    winner = rnd.get("winner")
    flags = []
    if rnd.get("no_flaws"):
        flags.append('<span class="badge ok">no flaws</span>')
    if rnd.get("fail_safe"):
        flags.append('<span class="badge warn">fail-safe: too few parsed votes, A kept</span>')
    if rnd.get("votes_skipped"):
        flags.append(f'<span class="badge">{int(rnd["votes_skipped"])} judges skipped (settled early)</span>')
    scores = rnd.get("scores") or {}
    head = (f'<summary>Round {_e(rnd.get("iteration"))}: winner {_e(winner)} '
            f'<span class="muted">({" · ".join(f"{k} {_e(v)}" for k, v in scores.items())})</span> '
            f'{"".join(flags)}</summary>')
    merge = rnd.get("merge_order") or []
    sources = ", ".join(f"{LABELS[i]}={_e(c)}" for i, c in enumerate(merge))
    merged = f' <span class="muted">(AB merged from {sources})</span>' if merge else ""
    parts = [
        _text_block("A (incumbent)", rnd.get("A"), winner == "A"),
        f"<div><b>Critique</b></div><pre>{_e(rnd.get('critique'))}</pre>",
        _text_block("B (adversarial revision)", rnd.get("B"), winner == "B"),
        _text_block("AB (synthesis)", rnd.get("AB"), winner == "AB") + merged,
    ]
    votes = rnd.get("votes") or []
    if votes:
        parts.append(_votes_html(votes))
    if not rnd.get("no_flaws"):
        parts.append(_borda_bars(scores, winner))
    return f'<details class="round" open data-variant="{_e(variant)}">{head}{"".join(parts)}</details>'


def _votes_html(votes: Iterable[dict[str, Any]]) -> str:
    lines = ["<table><tr><th>judge</th><th>model</th><th>labels shown</th><th>ranking</th><th>vote</th>"
             "<th>raw reply</th></tr>"]
    for v in votes:
        shown = ", ".join(f"{LABELS[i]}={c}" for i, c in enumerate(v.get("shown") or []))
        ranking = " > ".join(v.get("ranking") or [])
        status = "counted" + (" (constrained)" if v.get("constrained") else "") if v.get("parsed") \
            else f"dropped: {v.get('error') or 'unparsed'}"
        raw = f'<details class="txt"><summary>show</summary><pre>{_e(v.get("raw"))}</pre></details>'
        lines.append(f'<tr><td>{_e(v.get("judge"))}</td><td>{_e(v.get("model"))}</td><td>{_e(shown)}</td>'
                     f'<td>{_e(ranking)}</td><td class="{"" if v.get("parsed") else "error"}">{_e(status)}</td>'
                     f"<td>{raw}</td></tr>")
    return "".join(lines) + "</table>"


def _borda_bars(scores: dict[str, Any], winner: Any) -> str:
    top = max((int(v or 0) for v in scores.values()), default=0) or 1
    width, bar_h = 360, 16
    rows = []
    for i, (name, value) in enumerate(scores.items()):
        w = 260 * int(value or 0) / top
        fill = "#54a24b" if name == winner else "#9aa7c7"
        rows.append(f'<text x="0" y="{i * (bar_h + 4) + 12}">{_e(name)}</text>'
                    f'<rect x="30" y="{i * (bar_h + 4)}" width="{w:.1f}" height="{bar_h}" fill="{fill}"></rect>'
                    f'<text x="{36 + w:.1f}" y="{i * (bar_h + 4) + 12}">{_e(value)}</text>')
    height = len(scores) * (bar_h + 4)
    return (f'<div class="muted">Borda points</div><svg width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="Borda points">{"".join(rows)}</svg>')


def _usage_html(usage: dict[str, Any] | None, pref: dict[str, Any] | None) -> str:
    u, p = usage or {}, pref or {}
    cost = "" if u.get("cost_usd") is None else f", ${u['cost_usd']:.4f}"
    margin = "" if p.get("margin") is None else f"; preference margin {p['margin']:g}"
    return (f'<p class="muted">{_e(u.get("calls"))} calls ({_e(u.get("cached_calls"))} cached), '
            f'{_e(u.get("prompt_tokens"))} tokens in, {_e(u.get("completion_tokens"))} out{_e(cost)}{_e(margin)}</p>')


def _reasoning_html(traces: Sequence[dict[str, Any]]) -> str:
    shown = [t for t in traces if t.get("reasoning")]
    if not shown:
        return f'<p class="muted">{len(traces)} calls; no reasoning traces captured.</p>'
    items = "".join(f'<details class="txt"><summary>{_e(t.get("role"))}, round {_e(t.get("iteration"))}, '
                    f'{_e(t.get("model"))}</summary><pre>{_e(t.get("reasoning"))}</pre></details>' for t in shown)
    return f'<details class="txt"><summary>Reasoning traces ({len(shown)})</summary>{items}</details>'


def add_subcommand(subparsers: Any) -> None:
    """Add ``hadron-hf report DATASET_PATH -o report.html`` to the CLI."""
    parser = subparsers.add_parser("report", help="write a self-contained HTML report of a refined dataset")
    parser.add_argument("dataset", metavar="DATASET_PATH", help="a save_to_disk folder or a .jsonl/.parquet file")
    parser.add_argument("-o", "--output", default="report.html", help="the HTML file to write (default report.html)")
    parser.add_argument("--split", default="train", help="split of a DatasetDict folder")
    parser.add_argument("--limit", type=int, default=None, help="only the first N rows")
    parser.add_argument("--title", default=None, help="page title")
    parser.add_argument("--prompt-column", default="prompt", help="column holding the prompt")
    parser.set_defaults(func=run_report)


def run_report(args: argparse.Namespace) -> int:
    """``hadron-hf report``: load a refined dataset and write its HTML report."""
    from hadron_hf.sources import load_prompts

    ds = load_prompts(args.dataset, split=args.split, limit=args.limit)
    title = args.title or f"AutoReason report: {Path(args.dataset).name}"
    path = write_report(ds, args.output, title, args.prompt_column)
    print(f"Wrote {path} ({len(ds)} rows); open it in any browser, no network needed.")
    return 0
