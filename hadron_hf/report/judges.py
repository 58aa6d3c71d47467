"""The judges section: can the panel's verdicts be trusted? Agreement, position bias, votes that merely
repeat the shown order, undecided and fail-safe rounds, and how each judge model voted."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from hadron_hf.report.source import RunInfo
from hadron_hf.report.stats import SHOWN_ORDER_WARN, JudgeStats

_LINKS = 12


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _pct(part: float, whole: float) -> str:
    return f"{part / whole:.0%}" if whole else "n/a"


def _num(value: float | None, fmt: str = ".2f") -> str:
    return "n/a" if value is None else format(value, fmt)


def _round_links(found: Sequence[tuple[int, int]]) -> str:
    if not found:
        return "none"
    links = ", ".join(f'<a href="#row-{i}">row {i} round {k}</a>' for i, k in found[:_LINKS])
    more = f" and {len(found) - _LINKS:,} more (filter the rows by quality)" if len(found) > _LINKS else ""
    return f"{len(found):,}: {links}{more}"


def judges_section(s: JudgeStats, info: RunInfo) -> str:
    """The judges section's HTML.

    Args:
        s: the panel statistics (``stats.judge_stats``).
        info: the run facts (panel size).

    Returns:
        A heading, a warning when votes look positional, and the tables.
    """
    parts = ['<h2 id="judges">Judges: can the verdicts be trusted?</h2>']
    if not s.votes:
        parts.append('<p class="muted">No judge votes in these rows (no round was judged).</p>')
        return "".join(parts)
    share = s.shown_order_share
    if s.shown_order_warning and share is not None:
        parts.append(
            f'<p class="warnbox" id="shown-order-warning">⚠ {s.shown_order:,} of {s.parsed:,} counted votes '
            f"({share:.0%}) rank the candidates exactly in the order they were shown (X1 &gt; X2 &gt; X3); a judge "
            f"reading the answers would do so about 1 time in 6 (17%). These judges are likely voting by position, "
            f"not content, so round winners here carry little signal. Warned at ≥ {SHOWN_ORDER_WARN:.0%}.</p>")
    first = sum(s.position_first.values())
    chance_first = 1 / len(s.position_first) if s.position_first else None
    facts = [
        ("votes counted", f"{s.parsed:,} of {s.votes:,} ({_pct(s.parsed, s.votes)})",
         "a vote counts when it names every label exactly once"),
        ("repeat the shown order", f"{s.shown_order:,} of {s.parsed:,} ({_pct(s.shown_order, s.parsed)})",
         "chance 17%; high values mean ranking by position"),
        ("Kendall's W (mean per round)", _num(s.kendall_w),
         f"over {s.agreement_rounds:,} rounds with ≥ 2 counted votes; 1 = identical rankings, "
         f"chance ≈ {_num(s.chance_w)}"),
        ("same first choice (judge pairs)", "n/a" if s.top_agreement is None else f"{s.top_agreement:.0%}",
         "share of pairs of judges in a round that picked the same winner; chance 33%"),
        ("rounds judged", f"{s.judged_rounds:,} of {s.rounds:,}", f"{s.no_flaws:,} ended by the critic's “no flaws”"),
        ("undecided rounds", _round_links(s.undecided), "short of quorum: A kept, not counted toward convergence"),
        ("fail-safe rounds", _round_links(s.fail_safe), "half the panel or fewer counted: A kept with zero scores"),
        ("seats re-asked / skipped", f"{s.reasked:,} / {s.skipped:,}",
         "re-asked after a missing vote; skipped once the winner was settled"),
    ]
    parts.append('<table class="facts judges">' + "".join(
        f"<tr><th>{_e(k)}</th><td>{v}</td><td class=\"muted\">{_e(note)}</td></tr>" for k, v, note in facts)
        + "</table>")
    parts.append(f"<h3>Position bias: how often each label position was ranked first "
                 f"(chance {_num(chance_first, '.0%')})</h3>")
    rows = "".join(f'<tr><td>{_e(label)}</td><td class="num">{n:,}</td><td class="num">{_pct(n, first)}</td>'
                   f'<td><span class="meter"><span style="width:{100 * n / first if first else 0:.0f}%"></span></span>'
                   f"</td></tr>" for label, n in s.position_first.items())
    parts.append('<table class="grid" id="position-bias"><tr><th>position</th><th>first places</th><th>share</th>'
                 f"<th></th></tr>{rows}</table>")
    parts.append(_by_model(s, info))
    return "".join(parts)


def _by_model(s: JudgeStats, info: RunInfo) -> str:
    head = ("<tr><th>judge model</th><th>votes</th><th>counted</th><th>constrained</th><th>repeat shown order</th>"
            "<th>first choice A / B / AB</th><th>picked the round's winner</th></tr>")
    rows = []
    for model, m in sorted(s.by_model.items(), key=lambda kv: -kv[1].votes):
        picks = " / ".join(f"{_pct(m.first[c], m.parsed)}" for c in ("A", "B", "AB"))
        rows.append(f"<tr><td>{_e(model)}</td><td class=\"num\">{m.votes:,}</td>"
                    f"<td class=\"num\">{m.parsed:,} ({_pct(m.parsed, m.votes)})</td>"
                    f"<td class=\"num\">{m.constrained:,}</td>"
                    f"<td class=\"num\">{m.shown_order:,} ({_pct(m.shown_order, m.parsed)})</td>"
                    f"<td class=\"num\">{picks}</td><td class=\"num\">{_pct(m.with_winner, m.decided)}</td></tr>")
    panel = f" (panel of {info.panel} per round)" if info.panel else ""
    return (f'<h3>Votes per judge model{_e(panel)}</h3>'
            f'<table class="grid" id="judge-models">{head}{"".join(rows)}</table>')
