"""Migration to the original Hadron's row shape, so downstream scripts written for it keep working.

The original (a distilabel task plus ``scripts/build_dataset.py``) wrote one JSONL row per prompt:

- ``generation``: the final answer;
- ``autoreason_trace``: ``{iterations, converged, winner_source, total_calls, final_answer}``, each
  iteration ``{iteration, A, critique, B, AB, votes, borda, winner, no_flaws}`` and each vote
  ``{judge_id, ranking, raw_response, parsed_ok, label_permutation}``;
- ``autoreason_iterations``, ``autoreason_converged``, ``total_calls``, ``model_name``;
- ``reasoning_trace``: ``[{call_index, role_hint, source_model, reasoning, text}]`` and
  ``reasoning_total_chars``.

How our trace maps onto it:

- Iterations count from 0 there, from 1 here.
- A vote's ``label_permutation`` maps the label shown to the judge (``X1``..``X3``) to the candidate
  behind it: our ``shown[i]`` is the candidate behind ``X{i+1}``. ``ranking`` is the candidates best
  first in both.
- A judge call that failed has ``raw_response=None``; a reply without a usable ranking keeps its text
  with ``parsed_ok=False`` and an empty ranking.
- A no-flaws round has ``B = AB = ""``, no votes and zero Borda scores.
- ``winner_source`` there is the last iteration's winner (``"A"`` when the incumbent held), not where the
  final answer came from; we reproduce that. ``total_calls`` counts every call started, failed judge calls
  included, as the original did.
- Rows that failed (``autoreason_status == "error"``) are left out: the original never wrote them.
- ``elapsed_seconds`` is not recorded here and is left out.

Example:
    >>> old = to_hadron_rows(refined)  # doctest: +SKIP
    >>> old.to_json("hadron_pilot.jsonl")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datasets import Dataset, Features, List, Value

from hadron_hf import columns as col
from hadron_hf.core.borda import LABELS
from hadron_hf.core.prompts import task_text
from hadron_hf.errors import InputError
from hadron_hf.inputs import normalize_prompt

GENERATION = "generation"
INSTRUCTION = "instruction"

_VOTE = {
    "judge_id": Value("int32"),
    "ranking": List(Value("string")),
    "raw_response": Value("string"),
    "parsed_ok": Value("bool"),
    "label_permutation": {label: Value("string") for label in LABELS},
}
_BORDA = {"A": Value("int32"), "B": Value("int32"), "AB": Value("int32")}
_ITERATION = {
    "iteration": Value("int32"),
    "A": Value("string"),
    "critique": Value("string"),
    "B": Value("string"),
    "AB": Value("string"),
    "votes": List(_VOTE),
    "borda": _BORDA,
    "winner": Value("string"),
    "no_flaws": Value("bool"),
}
HADRON_FEATURES = Features(
    {
        GENERATION: Value("string"),
        col.TRACE: {
            "iterations": List(_ITERATION),
            "converged": Value("bool"),
            "winner_source": Value("string"),
            "total_calls": Value("int32"),
            "final_answer": Value("string"),
        },
        "autoreason_iterations": Value("int32"),
        "autoreason_converged": Value("bool"),
        "total_calls": Value("int32"),
        "model_name": Value("string"),
        "reasoning_trace": List(
            {
                "call_index": Value("int32"),
                "role_hint": Value("string"),
                "source_model": Value("string"),
                "reasoning": Value("string"),
                "text": Value("string"),
            }
        ),
        "reasoning_total_chars": Value("int64"),
    }
)
"""The columns the original Hadron wrote (besides its input columns), typed."""


def hadron_row(row: dict[str, Any]) -> dict[str, Any]:
    """One successful refined row in the original Hadron's shape (only the columns it added).

    Args:
        row: a row of ``autoreason_map``'s output with ``autoreason_status == "ok"``.

    Returns:
        The values of ``HADRON_FEATURES``'s columns.
    """
    trace = row[col.TRACE]
    iterations = [_iteration(r) for r in trace["rounds"]]
    failed_judges = sum(1 for r in iterations for v in r["votes"] if v["raw_response"] is None)
    total_calls = int((row.get(col.USAGE) or {}).get("calls") or 0) + failed_judges
    calls = row.get(col.REASONING) or []
    reasoning = [
        {"call_index": i, "role_hint": c["role"], "source_model": c["model"], "reasoning": c["reasoning"] or "",
         "text": c["answer"]}
        for i, c in enumerate(calls)
    ]
    teacher = next((c["model"] for c in calls if c["role"] == "teacher"), None)
    return {
        GENERATION: row[col.REFINED],
        col.TRACE: {
            "iterations": iterations,
            "converged": trace["converged"],
            "winner_source": iterations[-1]["winner"] if iterations else "A",
            "total_calls": total_calls,
            "final_answer": row[col.REFINED],
        },
        "autoreason_iterations": len(iterations),
        "autoreason_converged": trace["converged"],
        "total_calls": total_calls,
        "model_name": teacher,
        "reasoning_trace": reasoning,
        "reasoning_total_chars": sum(len(e["reasoning"]) for e in reasoning),
    }


def hadron_batch(batch: dict[str, list[Any]], prompt_column: str = "prompt") -> dict[str, list[Any]]:
    """``hadron_row`` over a batch of successful rows, for ``Dataset.map(batched=True)``.

    Adds ``instruction`` (the prompt's text) when the batch has no such column: the original's scripts
    read it.

    Args:
        batch: a batch of refined rows, all with ``autoreason_status == "ok"``.
        prompt_column: the column holding the prompt.

    Returns:
        The original's columns (and ``instruction``), one value per row.
    """
    size = len(batch[col.TRACE])
    rows = [hadron_row({name: values[i] for name, values in batch.items()}) for i in range(size)]
    out: dict[str, list[Any]] = {name: [r[name] for r in rows] for name in HADRON_FEATURES}
    if INSTRUCTION not in batch:
        out[INSTRUCTION] = [_instruction(p) for p in batch[prompt_column]]
    return out


def to_hadron_rows(refined: Dataset, prompt_column: str = "prompt") -> Dataset:
    """Turn a refined dataset into the original Hadron's rows, keeping the input columns.

    Args:
        refined: the output of ``autoreason_map``.
        prompt_column: the column holding the prompt (copied to ``instruction`` when that is missing).

    Returns:
        One row per successful input row: the input columns, ``instruction`` and ``HADRON_FEATURES``'s
        columns; our own columns are removed. Failed rows are left out, as the original never wrote them.

    Raises:
        InputError: ``refined`` is not the output of ``autoreason_map``, or lacks the prompt column.
    """
    missing = [c for c in (col.REFINED, col.TRACE, col.STATUS, prompt_column) if c not in refined.column_names]
    if missing:
        raise InputError(f"cannot migrate: the dataset lacks {missing} (its columns are {refined.column_names})")
    ok = refined.filter(_is_ok, input_columns=col.STATUS, keep_in_memory=True, desc="Dropping failed rows")
    ours = [c for c in col.OUTPUT_COLUMNS if c in ok.column_names]
    kept = {name: feature for name, feature in ok.features.items() if name not in ours}
    extra = {} if INSTRUCTION in ok.column_names else {INSTRUCTION: Value("string")}
    features = Features({**kept, **extra, **HADRON_FEATURES})
    return ok.map(hadron_batch, batched=True, remove_columns=ours, features=features, keep_in_memory=True,
                  fn_kwargs={"prompt_column": prompt_column}, desc="Migrating to the Hadron row shape")


def write_hadron_rows(rows: Dataset, output: str | Path) -> Path:
    """Write migrated rows as JSONL (the original's format, one object per line) or parquet.

    Returns:
        The file written.
    """
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix.lower() == ".parquet":
        rows.to_parquet(str(output))
    else:
        rows.to_json(str(output), lines=True, force_ascii=False)
    return output


def _is_ok(status: str | None) -> bool:
    return status == col.STATUS_OK


def _instruction(prompt: Any) -> str | None:
    try:
        return task_text(normalize_prompt(prompt, 1 << 62))
    except InputError:
        return None


def _iteration(rnd: dict[str, Any]) -> dict[str, Any]:
    return {
        "iteration": rnd["iteration"] - 1,
        "A": rnd["A"],
        "critique": rnd["critique"],
        "B": rnd["B"] or "",
        "AB": rnd["AB"] or "",
        "votes": [_vote(v) for v in rnd["votes"]],
        "borda": {name: int(rnd["scores"][name]) for name in _BORDA},
        "winner": rnd["winner"],
        "no_flaws": rnd["no_flaws"],
    }


def _vote(vote: dict[str, Any]) -> dict[str, Any]:
    # A judge call that failed has no model and no reply; one that answered badly keeps its text.
    call_failed = bool(vote["error"]) and not vote["raw"] and not vote["model"]
    return {
        "judge_id": vote["judge"],
        "ranking": list(vote["ranking"]) if vote["parsed"] else [],
        "raw_response": None if call_failed else vote["raw"],
        "parsed_ok": vote["parsed"],
        "label_permutation": dict(zip(LABELS, vote["shown"], strict=True)),
    }
