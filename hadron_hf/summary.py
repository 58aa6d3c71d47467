"""Statistics of a refined dataset, shared by the CLI summary, dataset cards and the build recipe."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from hadron_hf import columns as col

FAILURES_SHOWN = 5
"""How many failed rows a summary lists with their reasons."""


POSITION_WARN_SHARE = 0.5
"""``position_repeat_share`` above this (with at least ``POSITION_WARN_VOTES`` votes) draws a warning."""
POSITION_WARN_VOTES = 6


@dataclass(frozen=True)
class RunSummary:
    """Counts and rates over a refined dataset.

    ``undecided_rounds`` / ``undecided_rows``: rounds short of quorum after their re-ask, and ok rows
    with ``quality="undecided"``; ``fail_safe_rounds`` / ``fail_safe_rows`` likewise for the hadron
    fail-safe; ``clean_converged``: ok rows that converged with ``quality="clean"``; ``reasked``: seats
    asked a second time. ``position_votes``: counted votes whose ranking is exactly the order shown
    (``X1 > X2 > X3``); ``position_repeat_share`` is their share of all counted votes.
    """

    rows: int
    ok: int
    errors: int
    converged_pct: float
    mean_iterations: float
    calls: int
    cached_calls: int
    prompt_tokens: int
    completion_tokens: int
    votes: int
    votes_parsed: int
    mean_margin: float | None
    cost_usd: float | None
    elapsed_s: float | None = None
    failures: tuple[tuple[int, str], ...] = ()
    """The first failed rows (up to ``FAILURES_SHOWN``): row index and the reason in ``autoreason_error``."""
    undecided_rounds: int = 0
    undecided_rows: int = 0
    fail_safe_rounds: int = 0
    fail_safe_rows: int = 0
    clean_converged: int = 0
    reasked: int = 0
    position_votes: int = 0

    @property
    def parse_rate(self) -> float:
        """Share of judge votes that parsed (1.0 when there were none)."""
        return self.votes_parsed / self.votes if self.votes else 1.0

    @property
    def position_repeat_share(self) -> float | None:
        """Share of counted votes that repeat the shown order (``None`` when no vote counted)."""
        return self.position_votes / self.votes_parsed if self.votes_parsed else None

    @property
    def position_warning(self) -> str | None:
        """A warning when judges mostly repeat the order they were shown, else ``None``."""
        share = self.position_repeat_share
        if share is None or self.votes_parsed < POSITION_WARN_VOTES or share <= POSITION_WARN_SHARE:
            return None
        return (f"warning: {share:.0%} of counted votes ({self.position_votes}/{self.votes_parsed}) just repeat "
                "the shown order X1 > X2 > X3: the judges may be ranking by position, not by content")

    @property
    def tokens_per_s(self) -> float | None:
        """Completion tokens per second of wall time, when the time is known."""
        return self.completion_tokens / self.elapsed_s if self.elapsed_s else None

    def as_dict(self) -> dict[str, Any]:
        """Plain values, derived rates included."""
        return {**asdict(self), "parse_rate": self.parse_rate, "tokens_per_s": self.tokens_per_s,
                "position_repeat_share": self.position_repeat_share}

    def render(self) -> str:
        """A short human-readable table."""
        lines = [
            ("rows", f"{self.rows} ({self.ok} ok, {self.errors} errors)"),
            ("converged", f"{self.converged_pct:.0f}% ({self.clean_converged} rows on counted votes alone)"),
            ("mean iterations", f"{self.mean_iterations:.2f}"),
            ("calls", f"{self.calls} ({self.cached_calls} from cache)"),
            ("tokens", f"{self.prompt_tokens} in, {self.completion_tokens} out"),
            ("judge votes parsed", f"{self.votes_parsed}/{self.votes} ({self.parse_rate:.0%})"),
        ]
        if self.undecided_rounds or self.reasked:
            lines.append(("undecided", f"{self.undecided_rounds} rounds, {self.undecided_rows} rows "
                                       f"({self.reasked} seats re-asked)"))
        if self.fail_safe_rounds:
            lines.append(("fail-safe", f"{self.fail_safe_rounds} rounds, {self.fail_safe_rows} rows"))
        if self.position_repeat_share is not None:
            lines.append(("votes = shown order", f"{self.position_votes}/{self.votes_parsed} "
                                                 f"({self.position_repeat_share:.0%})"))
        if self.mean_margin is not None:
            lines.append(("mean Borda margin", f"{self.mean_margin:.2f}"))
        if self.cost_usd is not None:
            lines.append(("cost", f"${self.cost_usd:.4f}"))
        if self.elapsed_s is not None:
            lines.append(("wall time", f"{self.elapsed_s:.1f} s"))
            lines.append(("tokens/s", f"{self.tokens_per_s:.1f}"))
        for i, (row, reason) in enumerate(self.failures):
            lines.append(("failed rows" if i == 0 else "", f"row {row}: {reason}"))
        if self.errors > len(self.failures):
            lines.append(("", f"... and {self.errors - len(self.failures)} more"))
        width = max(len(k) for k, _ in lines)
        table = "\n".join(f"  {k.ljust(width)}  {v}" for k, v in lines)
        warning = self.position_warning
        return f"{table}\n  {warning}" if warning else table


def summarize(ds: Any, elapsed_s: float | None = None) -> RunSummary:
    """Summarize a dataset produced by ``autoreason_map`` (a ``Dataset`` or a list of row dicts)."""
    names = [col.TRACE, col.PREFERENCE, col.USAGE, col.STATUS]
    names += [col.ERROR] if col.ERROR in getattr(ds, "column_names", ()) else []
    rows = list(ds.select_columns(names)) if hasattr(ds, "select_columns") else list(ds)
    ok = [r for r in rows if r[col.STATUS] == col.STATUS_OK]
    traces = [r[col.TRACE] for r in ok]
    usages = [r[col.USAGE] for r in rows if r[col.USAGE]]
    rounds = [rnd for t in traces for rnd in t["rounds"]]
    votes = [v for rnd in rounds for v in rnd["votes"]]
    counted = [v for v in votes if v["parsed"]]
    margins = [r[col.PREFERENCE]["margin"] for r in ok if r[col.PREFERENCE]["margin"] is not None]
    costs = [u["cost_usd"] for u in usages if u.get("cost_usd") is not None]
    return RunSummary(
        rows=len(rows),
        ok=len(ok),
        errors=len(rows) - len(ok),
        converged_pct=100.0 * sum(t["converged"] for t in traces) / len(traces) if traces else 0.0,
        mean_iterations=sum(t["iterations"] for t in traces) / len(traces) if traces else 0.0,
        calls=sum(u["calls"] for u in usages),
        cached_calls=sum(u["cached_calls"] for u in usages),
        prompt_tokens=sum(u["prompt_tokens"] for u in usages),
        completion_tokens=sum(u["completion_tokens"] for u in usages),
        votes=len(votes),
        votes_parsed=sum(v["parsed"] for v in votes),
        mean_margin=sum(margins) / len(margins) if margins else None,
        cost_usd=sum(costs) if costs else None,
        elapsed_s=elapsed_s,
        failures=tuple((i, " ".join(str(r.get(col.ERROR) or "no reason recorded").split())[:300])
                       for i, r in enumerate(rows)
                       if r[col.STATUS] != col.STATUS_OK)[:FAILURES_SHOWN],
        undecided_rounds=sum(bool(r.get("undecided")) for r in rounds),
        undecided_rows=sum(t.get("quality") == col.QUALITY_UNDECIDED for t in traces),
        fail_safe_rounds=sum(bool(r.get("fail_safe")) for r in rounds),
        fail_safe_rows=sum(t.get("quality") == col.QUALITY_FAIL_SAFE for t in traces),
        clean_converged=sum(bool(t["converged"]) and t.get("quality", col.QUALITY_CLEAN) == col.QUALITY_CLEAN
                            for t in traces),
        reasked=sum(r.get("reasked") or 0 for r in rounds),
        position_votes=sum(list(v["ranking"]) == list(v["shown"]) for v in counted),
    )
