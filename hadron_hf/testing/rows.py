"""Reading refined rows in tests and benchmarks: comparing two runs, and counting a row's dependent calls."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

STEPS_PER_ROUND: Mapping[str, int] = {"paper": 4, "hadron": 3}
"""Dependent calls of a full round: critic, B, AB, judges; the hadron variant runs B and AB together."""


def comparable_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows without their usage counters, with parallel calls' traces in a fixed order (they finish in any
    order): equal for two runs that made the same decisions, whatever came from the cache or a batch."""
    out = []
    for row in rows:
        kept = {k: v for k, v in row.items() if k != "autoreason_usage"}
        kept["reasoning_traces"] = sorted(kept["reasoning_traces"] or [], key=lambda t: json.dumps(t, sort_keys=True))
        out.append(kept)
    return out


SPECULATIVE_USAGE: frozenset[str] = frozenset({"speculative_calls", "speculative_prompt_tokens",
                                              "speculative_completion_tokens", "speculative_hits"})
"""The usage fields that count speculative critiques (``speculate``): they differ from a plain run's."""


def without_speculation(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row without what speculation adds: the speculative usage fields and the trace's discarded critiques;
    equal to the same row refined without speculation."""
    out = dict(row)
    out["autoreason_usage"] = {k: v for k, v in (row["autoreason_usage"] or {}).items() if k not in SPECULATIVE_USAGE}
    out["autoreason_trace"] = {k: v for k, v in (row["autoreason_trace"] or {}).items() if k != "speculative"}
    return out


def dependent_steps(trace: Mapping[str, Any]) -> int:
    """A row's chain of dependent calls: the draft, then 1 per NO FLAWS round and a full round's steps."""
    per_round = STEPS_PER_ROUND[trace["variant"]]
    return 1 + sum(1 if rnd["no_flaws"] else per_round for rnd in trace["rounds"])
