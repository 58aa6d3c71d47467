"""What the report computes from a refined dataset: each row's round-winner path and quality, the judges'
agreement and position bias, and histogram bins.

Every reader here uses ``.get()``: datasets written before ``undecided``, ``quorum``, ``reasked`` and the
trace's ``quality`` existed still render, with those facts derived from the votes where possible.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hadron_hf import columns as col
from hadron_hf.core.borda import LABELS
from hadron_hf.evaluation.stats import position_first_places

Row = dict[str, Any]

QUALITY_CLEAN, QUALITY_UNDECIDED, QUALITY_FAIL_SAFE = "clean", "undecided", "fail_safe"
SHOWN_ORDER_WARN = 0.5
"""Share of parsed votes repeating the shown order above which the report warns (chance is 1/6)."""


def rounds_of(row: Row) -> list[dict[str, Any]]:
    """The row's rounds, or ``[]`` for an error row."""
    return list((row.get(col.TRACE) or {}).get("rounds") or [])


def parsed_votes(rnd: dict[str, Any]) -> list[dict[str, Any]]:
    """The round's votes that counted (a full, well-formed ranking)."""
    return [v for v in rnd.get("votes") or [] if v.get("parsed") and v.get("ranking") and v.get("shown")]


def is_undecided(rnd: dict[str, Any]) -> bool:
    """Whether the round was short of quorum; before ``undecided`` existed: judged with no counted vote."""
    if rnd.get("undecided") is not None:
        return bool(rnd["undecided"])
    return not rnd.get("no_flaws") and not rnd.get("fail_safe") and not parsed_votes(rnd)


def repeats_shown(vote: dict[str, Any]) -> bool:
    """Whether a counted vote ranks the candidates exactly in the order shown (``X1 > X2 > X3``)."""
    return bool(vote.get("parsed")) and list(vote.get("ranking") or []) == list(vote.get("shown") or [])


def row_quality(row: Row) -> str:
    """``clean``, ``undecided`` or ``fail_safe`` (the trace's own value when it has one); ``error`` rows say so."""
    trace = row.get(col.TRACE) or {}
    if row.get(col.STATUS) != col.STATUS_OK or not trace:
        return "error"
    if trace.get("quality"):
        return str(trace["quality"])
    rounds = rounds_of(row)
    if any(r.get("fail_safe") for r in rounds):
        return QUALITY_FAIL_SAFE
    return QUALITY_UNDECIDED if any(is_undecided(r) for r in rounds) else QUALITY_CLEAN


def round_lead(rnd: dict[str, Any]) -> int | None:
    """The winner's Borda lead over the runner-up, or ``None`` when no votes decided the round."""
    scores = [int(v or 0) for v in (rnd.get("scores") or {}).values()]
    if rnd.get("no_flaws") or rnd.get("fail_safe") or len(scores) < 2 or not parsed_votes(rnd):
        return None
    top = sorted(scores, reverse=True)
    return top[0] - top[1]


def incumbent_origin(rounds: Sequence[dict[str, Any]], index: int) -> str:
    """Where round ``index``'s A (0-based) came from: ``draft`` or ``round 2's AB``."""
    origin = "draft"
    for rnd in rounds[:index]:
        if rnd.get("winner") not in (None, "A"):
            origin = f"round {rnd.get('iteration')}'s {rnd.get('winner')}"
    return origin


def margin_of(row: Row) -> float | None:
    """The preference pair's Borda margin (chosen − rejected), when the row has a pair."""
    pref = row.get(col.PREFERENCE) or {}
    value = pref.get("margin")
    return None if value is None else float(value)


@dataclass
class ModelVotes:
    """How one judge model voted."""

    votes: int = 0
    parsed: int = 0
    constrained: int = 0
    shown_order: int = 0
    first: Counter[str] = field(default_factory=Counter)
    with_winner: int = 0
    decided: int = 0


@dataclass
class JudgeStats:
    """The panel's behaviour over every round of a dataset."""

    votes: int = 0
    parsed: int = 0
    shown_order: int = 0
    position_first: dict[str, int] = field(default_factory=dict)
    rounds: int = 0
    judged_rounds: int = 0
    no_flaws: int = 0
    reasked: int = 0
    skipped: int = 0
    undecided: list[tuple[int, int]] = field(default_factory=list)
    fail_safe: list[tuple[int, int]] = field(default_factory=list)
    kendall_w: float | None = None
    chance_w: float | None = None
    top_agreement: float | None = None
    agreement_rounds: int = 0
    by_model: dict[str, ModelVotes] = field(default_factory=dict)

    @property
    def shown_order_share(self) -> float | None:
        """Share of counted votes that repeat the shown order."""
        return self.shown_order / self.parsed if self.parsed else None

    @property
    def shown_order_warning(self) -> bool:
        """Whether so many votes repeat the shown order that the judges likely rank by position."""
        share = self.shown_order_share
        return share is not None and self.parsed >= 6 and share >= SHOWN_ORDER_WARN


def kendall_w(rankings: Sequence[Sequence[str]]) -> float | None:
    """Kendall's coefficient of concordance of full rankings of the same items (1 = all agree).

    Args:
        rankings: one ranking per judge, best first, each naming the same items.

    Returns:
        W in [0, 1], or ``None`` with fewer than two rankings or items.

    Example:
        >>> kendall_w([["A", "B", "AB"], ["A", "B", "AB"]])
        1.0
    """
    m, n = len(rankings), len(rankings[0]) if rankings else 0
    if m < 2 or n < 2:
        return None
    totals: Counter[str] = Counter()
    for ranking in rankings:
        for place, item in enumerate(ranking, 1):
            totals[item] += place
    mean = m * (n + 1) / 2
    spread = sum((totals[item] - mean) ** 2 for item in rankings[0])
    return 12 * spread / (m * m * (n ** 3 - n))


def judge_stats(rows: Sequence[Row]) -> JudgeStats:
    """Votes, agreement, position bias, undecided and fail-safe rounds, and votes per judge model.

    Args:
        rows: refined rows (``autoreason_map`` output), in dataset order; the row index is kept for links.

    Returns:
        The aggregated ``JudgeStats``.
    """
    s = JudgeStats()
    all_parsed: list[dict[str, Any]] = []
    ws: list[float] = []
    chance: list[float] = []
    pairs = agree = 0
    for index, row in enumerate(rows):
        for rnd in rounds_of(row):
            s.rounds += 1
            s.reasked += int(rnd.get("reasked") or 0)
            s.skipped += int(rnd.get("votes_skipped") or 0)
            if rnd.get("no_flaws"):
                s.no_flaws += 1
                continue
            s.judged_rounds += 1
            if rnd.get("fail_safe"):
                s.fail_safe.append((index, int(rnd.get("iteration") or 0)))
            elif is_undecided(rnd):
                s.undecided.append((index, int(rnd.get("iteration") or 0)))
            counted = parsed_votes(rnd)
            all_parsed.extend(counted)
            _count_models(s, rnd, counted)
            w = kendall_w([v["ranking"] for v in counted])
            if w is not None:
                ws.append(w)
                chance.append(1 / len(counted))
            for a, b in itertools.combinations(counted, 2):
                pairs += 1
                agree += a["ranking"][0] == b["ranking"][0]
    s.votes = sum(m.votes for m in s.by_model.values())
    s.parsed = len(all_parsed)
    s.shown_order = sum(repeats_shown(v) for v in all_parsed)
    width = max((len(v["shown"]) for v in all_parsed), default=len(LABELS))
    labels = [f"X{i + 1}" for i in range(width)]
    s.position_first = position_first_places(all_parsed, labels)
    s.agreement_rounds = len(ws)
    s.kendall_w = statistics.fmean(ws) if ws else None
    s.chance_w = statistics.fmean(chance) if chance else None
    s.top_agreement = agree / pairs if pairs else None
    return s


def _count_models(s: JudgeStats, rnd: dict[str, Any], counted: Sequence[dict[str, Any]]) -> None:
    decided = not rnd.get("fail_safe") and not is_undecided(rnd)
    counted_ids = {id(v) for v in counted}
    for vote in rnd.get("votes") or []:
        m = s.by_model.setdefault(str(vote.get("model") or "unknown"), ModelVotes())
        m.votes += 1
        if id(vote) in counted_ids:
            m.parsed += 1
            m.constrained += bool(vote.get("constrained"))
            m.shown_order += repeats_shown(vote)
            m.first[vote["ranking"][0]] += 1
            if decided:
                m.decided += 1
                m.with_winner += vote["ranking"][0] == rnd.get("winner")


@dataclass(frozen=True)
class Bins:
    """Histogram bins: a label per bin, counts per series, and the x-axis title."""

    labels: list[str]
    counts: dict[str, list[int]]
    x_title: str
    edges: list[str] | None = None
    """For bins over a continuous range: the ``len(labels) + 1`` boundaries, labelled on the axis."""


def integer_bins(values: Iterable[float], low: int, high: int, series: str, x_title: str) -> Bins:
    """One bin per integer from ``low`` to ``high`` (widened to fit the values), empty bins included."""
    found = [round(v) for v in values]
    low, high = min([low, *found]), max([high, *found])
    counts = Counter(found)
    return Bins([str(k) for k in range(low, high + 1)], {series: [counts[k] for k in range(low, high + 1)]},
                x_title)


def even_bins(series: dict[str, list[float]], x_title: str, target: int = 12) -> Bins:
    """Equal-width bins with a round width (1, 2 or 5 × 10^k) over every series' values, empty ones included."""
    values = [v for vs in series.values() for v in vs]
    if not values:
        return Bins([], {name: [] for name in series}, x_title)
    low, high = min(values), max(values)
    raw = max((high - low) / target, 1.0)
    power = 10 ** math.floor(math.log10(raw))
    width = next(step * power for step in (1, 2, 5, 10) if step * power >= raw)
    start = math.floor(low / width) * width
    count = max(1, math.floor((high - start) / width) + 1)
    counts: dict[str, list[int]] = defaultdict(lambda: [0] * count)
    for name, vs in series.items():
        counts[name] = [0] * count
        for v in vs:
            counts[name][min(count - 1, int((v - start) // width))] += 1
    edges = [f"{start + i * width:,.0f}" for i in range(count + 1)]
    labels = [f"{edges[i]}–{edges[i + 1]}" for i in range(count)]
    return Bins(labels, dict(counts), x_title, edges)
