"""Preference pairs read from a refined row: the final pair, the draft pair, or every ordered pair per round.

Borda scores are comparable only within one judge panel, so a pair's scores always come from one round.
A function here returns the pairs, or a string saying why the row has none (the recipes count these).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from hadron_hf import columns as col
from hadron_hf.core.borda import CANDIDATES, RULES

EMPTY_ANSWER = "empty answer"
NO_REJECTED = "no rejected answer"
SAME_TEXT = "chosen equals rejected"
NO_DECISIVE_ROUND = "no decisive round"
NO_MARGIN = "no margin"
BELOW_MIN_MARGIN = "margin below minimum"
TIE = "tie"

Row = dict[str, Any]


@dataclass(frozen=True)
class Pair:
    """A better and a worse answer to one prompt, with their Borda points from one panel when known."""

    chosen: str
    rejected: str
    score_chosen: float | None
    score_rejected: float | None
    chosen_won: bool  # the chosen answer won its round (or is the final answer)

    @property
    def margin(self) -> float | None:
        """``score_chosen - score_rejected`` where both are known."""
        if self.score_chosen is None or self.score_rejected is None:
            return None
        return self.score_chosen - self.score_rejected


def row_pairs(row: Row, rejected: Literal["lowest", "draft"] = "lowest",
              pairs: Literal["one", "all"] = "one") -> list[Pair] | str:
    """The preference pairs of one refined (``ok``) row, or why it has none.

    Args:
        row: a row of a refined dataset.
        rejected: with ``pairs="one"``, the final answer against the lowest-ranked other answer of the
            last decisive round (``"lowest"``, the ``preference`` column) or against the draft.
        pairs: ``"one"`` pair, or every ordered pair (better over worse) of every decisive round.
    """
    if pairs == "all":
        return _all_pairs(row)
    refined = row[col.REFINED]
    if rejected == "lowest":
        pref = row[col.PREFERENCE]
        if not pref or pref["rejected"] is None:
            return NO_REJECTED
        return [Pair(refined, pref["rejected"], pref["score_chosen"], pref["score_rejected"], True)]
    draft = row[col.DRAFT]
    if draft == refined:
        return SAME_TEXT
    for rnd in reversed(decisive_rounds(row)):
        scores = _text_scores(rnd)
        if refined in scores and draft in scores:
            return [Pair(refined, draft, scores[refined], scores[draft], True)]
    return [Pair(refined, draft, None, None, True)]


def filter_pairs(pairs: list[Pair], min_margin: float | None = None, drop_ties: bool = False,
                 require_margin: bool = False) -> list[Pair] | str:
    """The pairs that pass the filters, or the first reason one failed when none pass.

    Args:
        pairs: candidate pairs.
        min_margin: drop pairs whose margin is below this, or unknown.
        drop_ties: drop pairs with a zero margin.
        require_margin: drop pairs whose margin is unknown.
    """
    kept, reasons = [], []
    for p in pairs:
        margin = p.margin
        if p.chosen == p.rejected:
            reasons.append(SAME_TEXT)
        elif not p.rejected.strip():
            reasons.append(EMPTY_ANSWER)
        elif margin is None and (require_margin or min_margin is not None):
            reasons.append(NO_MARGIN)
        elif margin is not None and min_margin is not None and margin < min_margin:
            reasons.append(BELOW_MIN_MARGIN)
        elif drop_ties and margin == 0:
            reasons.append(TIE)
        else:
            kept.append(p)
    return kept if kept else (reasons[0] if reasons else NO_REJECTED)


def decisive_rounds(row: Row) -> list[Row]:
    """Rounds that a quorum of counted votes decided (not a NO FLAWS exit, a fail-safe or undecided)."""
    return [r for r in row[col.TRACE]["rounds"]
            if not r["no_flaws"] and not r["fail_safe"] and not r.get("undecided")
            and any(v["parsed"] for v in r["votes"])]


def _all_pairs(row: Row) -> list[Pair] | str:
    rounds = decisive_rounds(row)
    if not rounds:
        return NO_DECISIVE_ROUND
    tie_order = RULES[row[col.TRACE]["variant"]].tie_order
    found = []
    for rnd in rounds:
        # the order borda_winner uses: points, then the variant's tie order
        ranked = sorted(CANDIDATES, key=lambda c: (-rnd["scores"][c], tie_order.index(c)))
        for i, better in enumerate(ranked):
            for worse in ranked[i + 1:]:
                found.append(Pair(rnd[better] or "", rnd[worse] or "", float(rnd["scores"][better]),
                                  float(rnd["scores"][worse]), better == rnd["winner"]))
    return found


def _text_scores(rnd: Row) -> dict[str, float]:
    scores: dict[str, float] = {}
    for c in CANDIDATES:
        if rnd[c] is not None:
            scores[rnd[c]] = max(scores.get(rnd[c], float("-inf")), float(rnd["scores"][c]))
    return scores
