"""When a round's outcome is settled before every judge has answered.

Early-stopped judging (``early_stop_judging``) asks the panel in waves and stops once the rest cannot
change the outcome; speculation (``speculate``) starts the winner's next critique as soon as the votes in
so far lock it. Pure functions of the votes so far.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hadron_hf.core.borda import RULES, borda_scores, borda_winner, winner_is_locked
from hadron_hf.core.panel import Vote


@dataclass(frozen=True)
class Waves:
    """Early-stopped judging for one variant and quorum (see ``panel.EarlyStop``)."""

    variant: str
    quorum: int

    def settled(self, votes: Sequence[Vote], panel: int) -> bool:
        """Whether the votes still to come can no longer change the outcome."""
        return settled(votes, panel, self.variant, self.quorum)

    def wave(self, votes: Sequence[Vote], panel: int) -> int:
        """Seats to ask in the next wave."""
        return wave_size(votes, panel, self.variant, self.quorum)


def settled(votes: Sequence[Vote], panel: int, variant: str, quorum: int) -> bool:
    """Whether the votes still to come can no longer change the round's winner, fail-safe or quorum.

    A round short of quorum re-asks exactly the seats whose votes did not count, so it is never settled
    before every seat has answered: which seats are missing is part of its outcome.
    """
    rule, left = RULES[variant], panel - len(votes)
    counted = [v.ranking for v in votes if v.parsed]
    if variant == "hadron":
        if len(counted) + left <= panel / 2:
            return True  # the fail-safe will fire whatever the rest say (and it never re-asks)
        if len(counted) <= panel / 2:
            return False  # whether the fail-safe fires is still open
    if len(counted) < quorum:
        return False
    return winner_is_locked(borda_scores(counted, rule), left, rule)


def wave_size(votes: Sequence[Vote], panel: int, variant: str, quorum: int) -> int:
    """The fewest further votes after which the round could be settled (calling fewer cannot save a call).

    A vote moves any two candidates' gap by at most the Borda swing, so a candidate can only become
    locked after ``t`` more votes if its gap to every rival plus ``t`` swings covers the ``left - t``
    swings still to come; it also needs the quorum, and the hadron variant a parsed majority, or enough
    failures to make the fail-safe certain.
    """
    rule, left = RULES[variant], panel - len(votes)
    counted = [v.ranking for v in votes if v.parsed]
    scores, swing = borda_scores(counted, rule), rule.points[0] - rule.points[-1]

    def holds(leader: str, rival: str, t: int) -> bool:
        gap = scores[leader] - scores[rival] + swing * t - swing * (left - t)
        return gap > 0 or (gap == 0 and rule.tie_order.index(leader) < rule.tie_order.index(rival))

    def could_lock(t: int) -> bool:
        if variant == "hadron":
            if len(counted) + left - t <= panel / 2:
                return True
            if len(counted) + t <= panel / 2:
                return False
        if len(counted) + t < quorum:
            return False
        return any(all(holds(c, r, t) for r in rule.tie_order if r != c) for c in rule.tie_order)

    return next((t for t in range(1, left) if could_lock(t)), left)


def locked_winner(votes: Sequence[Vote], panel: int, variant: str, quorum: int) -> str | None:
    """The round's winner if the votes so far settle it (see ``settled``), else ``None``.

    A certain hadron fail-safe is an ``A`` win; otherwise the leader of the counted votes, whom the votes
    still to come cannot overtake.
    """
    if not settled(votes, panel, variant, quorum):
        return None
    rule = RULES[variant]
    counted = [v.ranking for v in votes if v.parsed]
    if variant == "hadron" and len(counted) <= panel / 2:
        return "A"
    return borda_winner(borda_scores(counted, rule), rule)
