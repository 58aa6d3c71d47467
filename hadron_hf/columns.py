"""The names and ``datasets.Features`` of every column ``autoreason_map`` adds, in one place.

How far a row's labels can be trusted is in its trace:

- each round of ``autoreason_trace.rounds`` has ``quorum`` (counted votes needed for a decision),
  ``reasked`` (seats asked again, with fresh seeds, because the first asks fell short of quorum) and
  ``undecided`` (still short after the re-ask: the incumbent stays, the round never counts toward
  convergence and yields no preference pair). Re-asked votes follow the first asks in ``votes``, with
  ``reask`` set. ``fail_safe`` marks the hadron variant's rule (half the panel or fewer counted: an A
  win with zero scores, kept for parity with the original); it yields no pair either.
- ``autoreason_trace.quality`` is ``"clean"`` when every judged round reached its quorum and no
  fail-safe fired, ``"fail_safe"`` when any round of a hadron row was a fail-safe, and ``"undecided"``
  when any round was undecided (the row ran out of rounds, or reached convergence, with at least one
  round that no quorum decided). Only a ``"clean"`` row's ``converged`` rests on counted votes alone:
  undecided rounds never count toward convergence, and a hadron row that converges through fail-safe
  rounds says ``"fail_safe"``.

With ``speculate`` on, ``autoreason_trace.speculative`` lists the discarded speculative critiques (the
candidate critiqued, the round it was for, model, text and tokens), and ``autoreason_usage`` counts them
apart: ``speculative_calls``, ``speculative_prompt_tokens`` and ``speculative_completion_tokens`` are
extra calls on top of ``calls`` (which, like ``reasoning_traces``, are those of a run without
speculation); ``speculative_hits`` counts the critiques that came from a kept speculative call;
``cost_usd`` includes the discarded calls.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from datasets import Features, List, Value

DRAFT = "draft"
REFINED = "refined"
TRACE = "autoreason_trace"
PREFERENCE = "preference"
USAGE = "autoreason_usage"
REASONING = "reasoning_traces"
STATUS = "autoreason_status"
ERROR = "autoreason_error"

STATUS_OK = "ok"
STATUS_ERROR = "error"

QUALITY_CLEAN = "clean"
QUALITY_UNDECIDED = "undecided"
QUALITY_FAIL_SAFE = "fail_safe"

_SCORES = {"A": Value("int32"), "B": Value("int32"), "AB": Value("int32")}
_VOTE = {
    "judge": Value("int32"),
    "model": Value("string"),
    "shown": List(Value("string")),
    "ranking": List(Value("string")),
    "parsed": Value("bool"),
    "constrained": Value("bool"),
    "raw": Value("string"),
    "error": Value("string"),
    "reask": Value("bool"),
}
_SPECULATIVE = {
    "candidate": Value("string"),
    "iteration": Value("int32"),
    "model": Value("string"),
    "critique": Value("string"),
    "prompt_tokens": Value("int64"),
    "completion_tokens": Value("int64"),
}
_ROUND = {
    "iteration": Value("int32"),
    "A": Value("string"),
    "critique": Value("string"),
    "B": Value("string"),
    "AB": Value("string"),
    "no_flaws": Value("bool"),
    "merge_order": List(Value("string")),
    "votes": List(_VOTE),
    "scores": _SCORES,
    "winner": Value("string"),
    "fail_safe": Value("bool"),
    "votes_skipped": Value("int32"),
    "undecided": Value("bool"),
    "quorum": Value("int32"),
    "reasked": Value("int32"),
}

OUTPUT_FEATURES = Features(
    {
        DRAFT: Value("string"),
        REFINED: Value("string"),
        TRACE: {
            "variant": Value("string"),
            "converged": Value("bool"),
            "iterations": Value("int32"),
            "winner_source": Value("string"),
            "rounds": List(_ROUND),
            "quality": Value("string"),
            "speculative": List(_SPECULATIVE),
        },
        PREFERENCE: {
            "chosen": Value("string"),
            "rejected": Value("string"),
            "score_chosen": Value("float64"),
            "score_rejected": Value("float64"),
            "margin": Value("float64"),
        },
        USAGE: {
            "calls": Value("int32"),
            "cached_calls": Value("int32"),
            "prompt_tokens": Value("int64"),
            "completion_tokens": Value("int64"),
            "cost_usd": Value("float64"),
            "speculative_calls": Value("int32"),
            "speculative_prompt_tokens": Value("int64"),
            "speculative_completion_tokens": Value("int64"),
            "speculative_hits": Value("int32"),
        },
        REASONING: List(
            {
                "role": Value("string"),
                "model": Value("string"),
                "iteration": Value("int32"),
                "reasoning": Value("string"),
                "answer": Value("string"),
            }
        ),
        STATUS: Value("string"),
        ERROR: Value("string"),
    }
)
"""The typed schema of the columns ``autoreason_map`` adds."""

OUTPUT_COLUMNS: tuple[str, ...] = tuple(OUTPUT_FEATURES)


def output_features(input_features: Features | None) -> Features:
    """The full ``Features`` of a refined dataset: the input's columns plus ours (ours win a name clash)."""
    merged = dict(input_features or {})
    merged.update(OUTPUT_FEATURES)
    return Features(merged)


class TypedColumn(list[Any]):
    """A list of column values that also tells Arrow its exact type.

    ``Dataset.map`` infers a column's type from the first batch written, so an error column that is
    ``None`` on every row of that batch would become ``null`` and the next batch would fail. Arrow asks
    ``__arrow_array__`` for the type instead, while ``IterableDataset`` still sees a plain list.
    """

    def __init__(self, values: list[Any], arrow_type: pa.DataType) -> None:
        super().__init__(values)
        self.arrow_type = arrow_type

    def __arrow_array__(self, type: pa.DataType | None = None) -> pa.Array:  # noqa: A002 (Arrow's name)
        return pa.array(list(self), type=type or self.arrow_type)


def typed_batch(values: dict[str, list[Any]]) -> dict[str, TypedColumn]:
    """Wrap each of our output columns so it keeps its declared type in any batch."""
    arrow = OUTPUT_FEATURES.arrow_schema
    return {name: TypedColumn(column, arrow.field(name).type) for name, column in values.items()}
