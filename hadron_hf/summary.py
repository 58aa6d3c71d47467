"""Statistics of a refined dataset, shared by the CLI summary, dataset cards and the build recipe."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from hadron_hf import columns as col

FAILURES_SHOWN = 5
"""How many failed rows a summary lists with their reasons."""


@dataclass(frozen=True)
class RunSummary:
    """Counts and rates over a refined dataset."""

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

    @property
    def parse_rate(self) -> float:
        """Share of judge votes that parsed (1.0 when there were none)."""
        return self.votes_parsed / self.votes if self.votes else 1.0

    @property
    def tokens_per_s(self) -> float | None:
        """Completion tokens per second of wall time, when the time is known."""
        return self.completion_tokens / self.elapsed_s if self.elapsed_s else None

    def as_dict(self) -> dict[str, Any]:
        """Plain values, derived rates included."""
        return {**asdict(self), "parse_rate": self.parse_rate, "tokens_per_s": self.tokens_per_s}

    def render(self) -> str:
        """A short human-readable table."""
        lines = [
            ("rows", f"{self.rows} ({self.ok} ok, {self.errors} errors)"),
            ("converged", f"{self.converged_pct:.0f}%"),
            ("mean iterations", f"{self.mean_iterations:.2f}"),
            ("calls", f"{self.calls} ({self.cached_calls} from cache)"),
            ("tokens", f"{self.prompt_tokens} in, {self.completion_tokens} out"),
            ("judge votes parsed", f"{self.votes_parsed}/{self.votes} ({self.parse_rate:.0%})"),
        ]
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
        return "\n".join(f"  {k.ljust(width)}  {v}" for k, v in lines)


def summarize(ds: Any, elapsed_s: float | None = None) -> RunSummary:
    """Summarize a dataset produced by ``autoreason_map`` (a ``Dataset`` or a list of row dicts)."""
    names = [col.TRACE, col.PREFERENCE, col.USAGE, col.STATUS]
    names += [col.ERROR] if col.ERROR in getattr(ds, "column_names", ()) else []
    rows = list(ds.select_columns(names)) if hasattr(ds, "select_columns") else list(ds)
    ok = [r for r in rows if r[col.STATUS] == col.STATUS_OK]
    traces = [r[col.TRACE] for r in ok]
    usages = [r[col.USAGE] for r in rows if r[col.USAGE]]
    votes = [v for t in traces for rnd in t["rounds"] for v in rnd["votes"]]
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
    )
