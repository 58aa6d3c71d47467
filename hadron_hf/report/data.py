"""The rows as the page's script reads them: a small index entry per row (what the collapsed line,
sorting, filtering and paging need) and a detail object per row, built into the DOM only when opened.

Model text travels as JSON inside ``<script type="application/json">``, never as markup; the page's
script puts it on screen with ``textContent`` only.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

from hadron_hf import columns as col
from hadron_hf.report.stats import incumbent_origin, is_undecided, margin_of, round_lead, rounds_of, row_quality

PREVIEW = 240
MAX_FILTER_VALUES = 60
_VOTE_KEYS = ("judge", "model", "shown", "ranking", "parsed", "constrained", "raw", "error")


def script_json(value: Any) -> str:
    """JSON safe inside a ``<script>`` element: ``<``, ``>`` and ``&`` become ``\\u`` escapes."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def prompt_text(value: Any) -> str:
    """A prompt as plain text: a string as is, chat messages as ``[role] content`` blocks."""
    if value is None:
        return "(missing)"
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(m, dict) for m in value):
        return "\n\n".join(f"[{m.get('role')}] {m.get('content')}" for m in value)
    return json.dumps(value, ensure_ascii=False, default=str)


def cell_text(value: Any) -> str:
    """An input column's value as text (JSON for lists and dicts)."""
    if value is None or isinstance(value, str):
        return "" if value is None else value
    if isinstance(value, bool | int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False, default=str)


def extra_columns(names: Sequence[str], prompt_column: str) -> list[str]:
    """The input's own columns, beyond the prompt and what ``autoreason_map`` adds."""
    ours = set(col.OUTPUT_COLUMNS) | {prompt_column}
    return [n for n in names if n not in ours]


def filter_values(rows: Sequence[dict[str, Any]], extra: Sequence[str]) -> dict[str, list[tuple[str, int]]]:
    """Per input column whose values repeat (a category), each value and its row count (most frequent first)."""
    found = {}
    for name in extra:
        counts = Counter(cell_text(r.get(name)) for r in rows)
        # A column with a value per row (an id) is for search, not a drop-down.
        if len(counts) <= MAX_FILTER_VALUES and len(counts) < len(rows):
            found[name] = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return found


def index_entry(i: int, row: dict[str, Any], prompt_column: str, extra: Sequence[str]) -> dict[str, Any]:
    """What the collapsed line shows and the list sorts and filters by."""
    trace = row.get(col.TRACE) or {}
    rounds = rounds_of(row)
    error = (row.get(col.ERROR) or "").strip()
    return {
        "i": i, "s": row.get(col.STATUS) or col.STATUS_ERROR, "q": row_quality(row),
        "w": [str(r.get("winner") or "?") for r in rounds],
        "u": [1 if r.get("fail_safe") else 2 if is_undecided(r) else 3 if r.get("no_flaws") else 0 for r in rounds],
        "m": margin_of(row), "n": len(rounds), "c": int(bool(trace.get("converged"))),
        "src": trace.get("winner_source"), "L": len(row.get(col.REFINED) or ""), "D": len(row.get(col.DRAFT) or ""),
        "e": error.splitlines()[0][:PREVIEW] if error else "",
        "p": prompt_text(row.get(prompt_column))[:PREVIEW],
        "x": [cell_text(row.get(name))[:PREVIEW] for name in extra],
    }


class _Texts:
    """A row's distinct long texts, so the draft, each round's A and the refined answer are stored once."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.where: dict[str, int] = {}

    def ref(self, text: Any) -> int | None:
        if text is None:
            return None
        text = str(text)
        if text not in self.where:
            self.where[text] = len(self.items)
            self.items.append(text)
        return self.where[text]


def detail_entry(row: dict[str, Any], prompt_column: str, extra: Sequence[str]) -> dict[str, Any]:
    """Everything the opened row shows: texts, rounds, votes, usage and reasoning."""
    texts = _Texts()
    rounds = rounds_of(row)
    out: dict[str, Any] = {
        "p": prompt_text(row.get(prompt_column)), "e": row.get(col.ERROR) or "",
        "x": [[name, cell_text(row.get(name))] for name in extra],
    }
    if row.get(col.TRACE):
        out["d"], out["r"] = texts.ref(row.get(col.DRAFT)), texts.ref(row.get(col.REFINED))
    out["R"] = [_round_entry(rnd, k, rounds, texts) for k, rnd in enumerate(rounds)]
    out["us"] = row.get(col.USAGE) or None
    pref = row.get(col.PREFERENCE) or {}
    out["pf"] = {k: pref.get(k) for k in ("score_chosen", "score_rejected", "margin")} if pref else None
    out["rs"] = [[t.get("role"), t.get("model"), t.get("iteration"), t.get("reasoning")]
                 for t in row.get(col.REASONING) or [] if t.get("reasoning")]
    out["nc"] = len(row.get(col.REASONING) or [])
    out["t"] = texts.items
    return out


def _round_entry(rnd: dict[str, Any], k: int, rounds: Sequence[dict[str, Any]], texts: _Texts) -> dict[str, Any]:
    return {
        "i": rnd.get("iteration"), "A": texts.ref(rnd.get("A")), "C": texts.ref(rnd.get("critique")),
        "B": texts.ref(rnd.get("B")), "AB": texts.ref(rnd.get("AB")), "o": incumbent_origin(rounds, k),
        "nf": bool(rnd.get("no_flaws")), "mo": list(rnd.get("merge_order") or []), "sc": rnd.get("scores") or {},
        "w": rnd.get("winner"), "fs": bool(rnd.get("fail_safe")), "un": is_undecided(rnd),
        "vs": int(rnd.get("votes_skipped") or 0), "qu": rnd.get("quorum"), "ra": int(rnd.get("reasked") or 0),
        "ld": round_lead(rnd), "v": [[v.get(key) for key in _VOTE_KEYS] for v in rnd.get("votes") or []],
    }
