"""Reading judges' rankings and turning votes into a round winner (Borda count)."""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hadron_hf.errors import RankingParseError

CANDIDATES: tuple[str, ...] = ("A", "B", "AB")
LABELS: tuple[str, ...] = ("X1", "X2", "X3")


@dataclass(frozen=True)
class BordaRule:
    """Points per rank (best first) and the order that breaks ties (first wins)."""

    points: tuple[int, ...]
    tie_order: tuple[str, ...]


PAPER_RULE = BordaRule(points=(3, 2, 1), tie_order=("A", "B", "AB"))
HADRON_RULE = BordaRule(points=(2, 1, 0), tie_order=("A", "AB", "B"))
RULES: Mapping[str, BordaRule] = {"paper": PAPER_RULE, "hadron": HADRON_RULE}

_RANKING_LINE = re.compile(r"ranking\s*[:=\-]\s*(?P<body>.*)", re.IGNORECASE)


def ranking_choices(labels: Sequence[str] = LABELS) -> tuple[str, ...]:
    """Every well-formed one-line ranking of ``labels``, for constrained decoding."""
    return tuple("RANKING: " + " > ".join(p) for p in itertools.permutations(labels))


def parse_ranking(reply: str, labels: Sequence[str] = LABELS) -> tuple[str, ...]:
    """Read the ranking from a judge's reply.

    The last line that says ``RANKING:`` wins, so a judge may reason first. Markdown emphasis, brackets,
    quotes and any of ``>``, ``,``, ``;`` or words between labels are tolerated; labels match without
    regard to case. A vote counts only when it names every label exactly once.

    Args:
        reply: the judge's full answer.
        labels: the labels the judge was shown.

    Returns:
        The labels, best first.

    Raises:
        RankingParseError: no ``RANKING:`` line, or one that does not name each label exactly once.

    Example:
        >>> parse_ranking("X2 is clearer.\\n**RANKING:** X2 > X1 > X3")
        ('X2', 'X1', 'X3')
    """
    bodies = [m.group("body") for line in reply.splitlines() if (m := _RANKING_LINE.search(line))]
    if not bodies:
        raise RankingParseError(f"no RANKING line in judge reply: {_excerpt(reply)!r}")
    by_key = {label.lower(): label for label in labels}
    pattern = re.compile(
        r"(?<![A-Za-z0-9])("
        + "|".join(re.escape(k) for k in sorted(by_key, key=len, reverse=True))
        + r")(?![A-Za-z0-9])",
        re.IGNORECASE,
    )
    found = tuple(by_key[m.lower()] for m in pattern.findall(bodies[-1]))
    if sorted(found) != sorted(labels):
        raise RankingParseError(
            f"ranking must name each of {', '.join(labels)} exactly once, got {_excerpt(bodies[-1])!r}"
        )
    return found


def borda_scores(rankings: Sequence[Sequence[str]], rule: BordaRule) -> dict[str, int]:
    """Sum Borda points over ``rankings`` (each a sequence of candidates, best first)."""
    scores = dict.fromkeys(rule.tie_order, 0)
    for ranking in rankings:
        for place, candidate in enumerate(ranking):
            scores[candidate] += rule.points[place]
    return scores


def borda_winner(scores: Mapping[str, int], rule: BordaRule) -> str:
    """The candidate with the most points; ties go to whichever comes first in ``rule.tie_order``."""
    return max(rule.tie_order, key=lambda c: (scores[c], -rule.tie_order.index(c)))


def borda_loser(scores: Mapping[str, int], rule: BordaRule) -> str:
    """The candidate with the fewest points; ties go against whichever comes last in ``rule.tie_order``."""
    return min(rule.tie_order, key=lambda c: (scores[c], -rule.tie_order.index(c)))


def winner_is_locked(scores: Mapping[str, int], votes_left: int, rule: BordaRule) -> bool:
    """Whether ``votes_left`` more votes can no longer change the winner of ``scores``.

    The leader is safe when no rival could catch it even if every remaining vote put the rival first
    and the leader last.
    """
    leader = borda_winner(scores, rule)
    swing = votes_left * (rule.points[0] - rule.points[-1])
    for rival in rule.tie_order:
        if rival == leader:
            continue
        best_rival = scores[rival] + swing
        rival_wins_tie = rule.tie_order.index(rival) < rule.tie_order.index(leader)
        if best_rival > scores[leader] or (best_rival == scores[leader] and rival_wins_tie):
            return False
    return True


def _excerpt(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
