"""Statistics of an evaluation: win rate with a bootstrap interval, Borda, lengths, categories, position bias."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from hadron_hf import columns as col

WIN, TIE, LOSS = "win", "tie", "loss"
"""The refined-vs-draft outcomes of a row, by the panel's pairwise majority."""


@dataclass(frozen=True)
class EvalSummary:
    """What the panel concluded; ``win_rate`` counts a tie as half a win and skips rows without votes."""

    rows: int
    judged: int
    errors: int
    judges: int
    judge_models: tuple[str, ...]
    methods: tuple[str, ...]
    wins: int
    ties: int
    losses: int
    undecided: int
    identical: int
    win_rate: float | None
    ci_low: float | None
    ci_high: float | None
    votes: int
    votes_parsed: int
    mean_borda: dict[str, float]
    lengths: dict[str, dict[str, float]]
    position_wins: dict[str, int]
    categories: dict[str, dict[str, Any]]
    baseline_model: str | None = None
    """The model(s) that wrote the critique-and-revise baseline, ``model at endpoint`` (``None``: no baseline)."""

    @property
    def tie_rate(self) -> float | None:
        """Share of decided rows where refined and draft tied."""
        decided = self.wins + self.ties + self.losses
        return self.ties / decided if decided else None

    @property
    def length_ratio(self) -> float | None:
        """Mean refined length over mean draft length, in characters (does refinement pad or shrink?)."""
        draft = self.lengths.get(col.DRAFT, {}).get("mean_chars")
        return self.lengths[col.REFINED]["mean_chars"] / draft if draft else None

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values, the tie rate and length ratio included."""
        return {**asdict(self), "tie_rate": self.tie_rate, "length_ratio": self.length_ratio}

    def render_markdown(self) -> str:
        """The summary as Markdown tables."""
        lines = [f"## Refined vs draft: blind panel of {self.judges} judges ({', '.join(self.judge_models)})", "",
                 "| metric | value |", "|---|---|",
                 f"| rows judged | {self.judged} of {self.rows} ({self.errors} errors) |",
                 f"| refined win rate vs draft | {_rate(self.win_rate, self.ci_low, self.ci_high)} |",
                 f"| wins / ties / losses | {self.wins} / {self.ties} / {self.losses} "
                 f"({self.undecided} without a vote) |",
                 f"| tie rate | {_pct(self.tie_rate)} |",
                 f"| refined identical to draft | {self.identical} rows |",
                 f"| refined / draft mean length | {_ratio(self.length_ratio)} |",
                 f"| votes parsed | {self.votes_parsed}/{self.votes} |",
                 *([f"| baseline written by | {self.baseline_model} |"] if self.baseline_model else []), "",
                 "| method | mean Borda per row | mean chars | median chars | mean words |", "|---|---|---|---|---|"]
        for m in self.methods:
            size = self.lengths.get(m, {})
            lines.append(f"| {m} | {self.mean_borda.get(m, 0.0):.2f} | {size.get('mean_chars', 0.0):.0f} | "
                         f"{size.get('median_chars', 0.0):.0f} | {size.get('mean_words', 0.0):.1f} |")
        top = sum(self.position_wins.values())
        lines += ["", f"Judge position bias: how often each label position ranked first "
                  f"(chance: {_pct(1 / len(self.methods))}).", "", "| position | first places | share |",
                  "|---|---|---|"]
        lines += [f"| {label} | {n} | {_pct(n / top if top else None)} |" for label, n in self.position_wins.items()]
        if self.categories:
            lines += ["", "| category | rows | win rate (95% CI) | ties |", "|---|---|---|---|"]
            for name, c in self.categories.items():
                lines.append(f"| {name} | {c['rows']} | {_rate(c['win_rate'], c['ci_low'], c['ci_high'])} "
                             f"| {c['ties']} |")
        return "\n".join(lines) + "\n"


def bootstrap_ci(outcomes: Sequence[float], samples: int = 2000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """A percentile bootstrap confidence interval of the mean of ``outcomes``.

    Args:
        outcomes: one value per row (1 win, 0.5 tie, 0 loss).
        samples: resamples with replacement.
        level: the interval's coverage.
        seed: seed of the resampling.

    Returns:
        ``(low, high)``.

    Example:
        >>> bootstrap_ci([1.0] * 20)
        (1.0, 1.0)
    """
    if not outcomes:
        raise ValueError("bootstrap_ci needs at least one outcome")
    values = np.asarray(outcomes, dtype=float)
    picks = np.random.default_rng(seed).integers(0, len(values), size=(samples, len(values)))
    means = values[picks].mean(axis=1)
    tail = (1 - level) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def summarize(rows: Sequence[dict[str, Any]], methods: Sequence[str], judges: int, judge_models: Sequence[str] = (),
              bootstrap_samples: int = 2000, seed: int = 0) -> EvalSummary:
    """Aggregate judgement records (``evaluate.JUDGEMENT_FEATURES`` rows) into an ``EvalSummary``.

    Args:
        rows: the per-row judgement records.
        methods: the methods judged, in label-count order (``draft``, ``refined`` and maybe the baseline).
        judges: the panel size.
        judge_models: the judge models' names, for the report.
        bootstrap_samples: resamples for the confidence intervals.
        seed: seed of the resampling.
    """
    ok = [r for r in rows if r["status"] == col.STATUS_OK]
    outcomes = Counter(r["refined_vs_draft"] for r in ok)
    win_rate, low, high = _win_rate(ok, bootstrap_samples, seed)
    votes = [v for r in ok for v in r["votes"]]
    position_wins = position_first_places(votes, [f"X{i + 1}" for i in range(len(methods))])
    lengths = {}
    for m in methods:
        sizes = [r["chars"][m] for r in ok]
        words = [r["words"][m] for r in ok]
        lengths[m] = {"mean_chars": statistics.fmean(sizes) if sizes else 0.0,
                      "median_chars": float(statistics.median(sizes)) if sizes else 0.0,
                      "mean_words": statistics.fmean(words) if words else 0.0}
    by_category: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in ok:
        if r["category"] is not None:
            by_category[r["category"]].append(r)
    categories = {}
    for name in sorted(by_category):
        part = by_category[name]
        rate, c_low, c_high = _win_rate(part, bootstrap_samples, seed)
        categories[name] = {"rows": len(part), "win_rate": rate, "ci_low": c_low, "ci_high": c_high,
                            "ties": sum(r["refined_vs_draft"] == TIE for r in part)}
    return EvalSummary(
        rows=len(rows), judged=len(ok), errors=len(rows) - len(ok), judges=judges,
        judge_models=tuple(judge_models), methods=tuple(methods), wins=outcomes[WIN], ties=outcomes[TIE],
        losses=outcomes[LOSS], undecided=outcomes[None], identical=sum(bool(r["identical"]) for r in ok),
        win_rate=win_rate, ci_low=low, ci_high=high, votes=len(votes), votes_parsed=sum(v["parsed"] for v in votes),
        mean_borda={m: statistics.fmean(r["borda"][m] for r in ok) if ok else 0.0 for m in methods},
        lengths=lengths, position_wins=position_wins, categories=categories,
    )


def position_first_places(votes: Iterable[Mapping[str, Any]], labels: Sequence[str]) -> dict[str, int]:
    """How often each label position (``X1``, ``X2``, ...) was ranked first, over the parsed votes.

    Args:
        votes: votes with ``parsed``, ``shown`` (what stood at each label, in label order) and ``ranking``
            (the same items, best first).
        labels: the position labels, in order.

    Returns:
        First places per label; a judge without position bias spreads them evenly.
    """
    wins = dict.fromkeys(labels, 0)
    for v in votes:
        if v["parsed"]:
            wins[labels[list(v["shown"]).index(v["ranking"][0])]] += 1
    return wins


def _win_rate(rows: Sequence[dict[str, Any]], samples: int, seed: int) -> tuple[float | None, float | None,
                                                                                 float | None]:
    points = [{WIN: 1.0, TIE: 0.5, LOSS: 0.0}[r["refined_vs_draft"]] for r in rows if r["refined_vs_draft"]]
    if not points:
        return None, None, None
    low, high = bootstrap_ci(points, samples, seed=seed)
    return statistics.fmean(points), low, high


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}×"


def _rate(rate: float | None, low: float | None, high: float | None) -> str:
    return "n/a" if rate is None else f"{rate:.2f} ({low:.2f}–{high:.2f})"
