"""The SFT view as the data folder ``mlx_lm.lora --data DIR`` reads: ``train.jsonl``, ``valid.jsonl``,
``test.jsonl``, one ``{"messages": [...]}`` conversation per line.

The split is seeded and made by prompt: every row of one prompt lands in the same split, so no prompt is
trained on and evaluated on. Prompts are ordered by a hash of their text before the seeded shuffle, so
the split depends on the seed and the rows, not on their order. Every split with a non-zero ratio gets at
least one prompt (inputs need at least as many distinct prompts as such splits); a split whose ratio is 0
gets no file, which ``mlx_lm`` reads as empty (an empty file would break its loader).

Example:
    >>> export = write_mlx_dataset(refined, "out/mlx", ratios=(0.8, 0.1, 0.1), seed=0)  # doctest: +SKIP
    >>> print(export.render())  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets import Dataset

from hadron_hf.errors import ConfigError, InputError
from hadron_hf.views.builders import SftOptions, build_view

SPLITS: tuple[str, ...] = ("train", "valid", "test")
DEFAULT_RATIOS: tuple[float, float, float] = (0.8, 0.1, 0.1)
Row = dict[str, Any]


def check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    """Validate train/valid/test ratios and scale them to sum to 1.

    Raises:
        ConfigError: not three numbers, a negative one, or no training share.
    """
    if len(ratios) != 3 or any(r < 0 for r in ratios) or ratios[0] <= 0:
        raise ConfigError(f"ratios must be three numbers >= 0 (train, valid, test) with train > 0, got {list(ratios)}")
    total = float(sum(ratios))
    return (ratios[0] / total, ratios[1] / total, ratios[2] / total)


def prompt_key(row: Row) -> str:
    """What identifies a row's prompt: every message but the final answer, as canonical JSON."""
    return json.dumps(row["messages"][:-1], sort_keys=True, ensure_ascii=False)


def split_rows(rows: Sequence[Row], ratios: Sequence[float] = DEFAULT_RATIOS, seed: int = 0) -> dict[str, list[Row]]:
    """Split conversations into train/valid/test by prompt, seeded.

    Args:
        rows: ``{"messages": [...]}`` rows, the last message being the answer.
        ratios: shares of prompts for train, valid and test (scaled to sum to 1).
        seed: the shuffle's seed.

    Returns:
        The rows of each split, by name; within a split, rows keep their input order.

    Raises:
        ConfigError: bad ratios.
        InputError: fewer distinct prompts than splits with a non-zero ratio.
    """
    shares = check_ratios(ratios)
    groups: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(prompt_key(row), []).append(i)
    keys = sorted(groups, key=lambda k: hashlib.sha256(k.encode()).hexdigest())
    random.Random(seed).shuffle(keys)
    counts = _split_sizes(len(keys), shares)
    out: dict[str, list[Row]] = {}
    start = 0
    for name, count in zip(SPLITS, counts, strict=True):
        chosen = sorted(i for k in keys[start:start + count] for i in groups[k])
        out[name] = [rows[i] for i in chosen]
        start += count
    return out


def _split_sizes(prompts: int, shares: tuple[float, float, float]) -> tuple[int, int, int]:
    wanted = sum(1 for s in shares if s > 0)
    if prompts < wanted:
        raise InputError(f"{prompts} distinct prompt(s) cannot fill {wanted} non-empty splits: every split with a "
                         "non-zero ratio needs at least one prompt. Add rows or set a ratio to 0.")
    # At least one prompt for each used split, the rest by rounding; train takes what is left.
    valid = max(1, round(prompts * shares[1])) if shares[1] > 0 else 0
    test = max(1, round(prompts * shares[2])) if shares[2] > 0 else 0
    while prompts - valid - test < 1:
        if valid >= test and valid > 1:
            valid -= 1
        else:
            test -= 1
    return prompts - valid - test, valid, test


@dataclass(frozen=True)
class MlxExport:
    """What ``write_mlx_dataset`` wrote."""

    folder: Path
    rows: dict[str, int]
    prompts: dict[str, int]
    rows_in: int
    dropped: dict[str, int] = field(default_factory=dict)

    def render(self) -> str:
        """The recipe's printed summary: rows and prompts per split, and input rows left out."""
        lines = [f"  rows in   {self.rows_in}"]
        lines += [f"  {name:<8}  {self.rows[name]:>6} rows  {self.prompts[name]:>6} prompts" for name in SPLITS]
        lines.append(f"  dropped   {sum(self.dropped.values())} input rows")
        lines += [f"    {n:>6}  {reason}" for reason, n in sorted(self.dropped.items(), key=lambda kv: -kv[1])]
        return "\n".join(lines)


def write_mlx_dataset(refined: Dataset, output: str | Path, *, options: SftOptions | None = None,
                      ratios: Sequence[float] = DEFAULT_RATIOS, seed: int = 0) -> MlxExport:
    """Write the SFT view of a refined dataset as an ``mlx_lm.lora --data`` folder.

    Args:
        refined: the output of ``autoreason_map``.
        output: the folder; stale ``train/valid/test.jsonl`` files in it are replaced or removed.
        options: SFT view options; ``form`` must be ``"messages"`` and ``cot`` ``"none"`` or ``"think"``.
        ratios: shares of prompts for train, valid and test.
        seed: the split's seed.

    Returns:
        Counts per split and the input rows left out, with reasons.

    Raises:
        ConfigError: bad options or ratios.
        InputError: too few distinct prompts for the splits asked for.
    """
    options = options or SftOptions()
    if options.form != "messages" or options.cot == "field":
        raise ConfigError("the MLX export writes chat conversations: use form='messages' and cot 'none' or 'think'")
    view = build_view(refined, "sft", options)
    rows: list[Row] = view.dataset.to_list()
    parts = split_rows(rows, ratios, seed)
    folder = Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    for name, part in parts.items():
        path = folder / f"{name}.jsonl"
        path.unlink(missing_ok=True)
        if part:
            path.write_text("".join(json.dumps({"messages": r["messages"]}, ensure_ascii=False) + "\n" for r in part))
    return MlxExport(folder, {n: len(p) for n, p in parts.items()},
                     {n: len({prompt_key(r) for r in p}) for n, p in parts.items()}, view.rows_in, view.dropped)
