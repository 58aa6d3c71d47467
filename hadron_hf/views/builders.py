"""Training views of a refined dataset, in the exact column formats TRL's trainers accept.

Every view is a pure batch function for ``Dataset.map(fn, batched=True, remove_columns=...)``: it reads
the columns ``autoreason_map`` wrote and returns the view's columns, possibly more or fewer rows than it
got. ``build_view`` runs one over a whole dataset with typed ``Features`` and counts the rows it dropped,
and why. Rows with ``autoreason_status == "error"`` never reach a view.

- ``sft``: ``messages`` (or ``prompt`` + ``completion``), optionally ``reasoning``; for ``SFTTrainer``.
- ``dpo``: ``prompt``, ``chosen``, ``rejected``, ``score_chosen``, ``score_rejected``, ``margin``; ``DPOTrainer``.
- ``critic``: ``prompt``, ``draft``, ``critique``, ``revision`` (or ``messages``); ``SFTTrainer``.
- ``reward``: ``chosen``, ``rejected`` (full conversations), ``margin``; ``RewardTrainer``.
- ``kto``: ``prompt``, ``completion``, ``label``; ``KTOTrainer``.

Example:
    >>> result = build_view(refined, "dpo", PairOptions(min_margin=1.0, drop_ties=True))  # doctest: +SKIP
    >>> result.dataset[0]["chosen"]  # doctest: +SKIP
    [{'role': 'assistant', 'content': '...'}]
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from datasets import Dataset, Features, List, Value

from hadron_hf import columns as col
from hadron_hf.chat import Message
from hadron_hf.core import prompts
from hadron_hf.errors import ConfigError, InputError
from hadron_hf.inputs import normalize_prompt
from hadron_hf.views.pairs import EMPTY_ANSWER, Pair, filter_pairs, row_pairs

VIEW_NAMES: tuple[str, ...] = ("sft", "dpo", "critic", "reward", "kto")
MESSAGES = List({"role": Value("string"), "content": Value("string")})
"""The ``Features`` of a conversation: a list of ``{"role", "content"}`` messages."""

# Why an input row produced no view row (pairs.py has the preference reasons); the recipes count these.
ERROR_ROW = "error row"
BAD_PROMPT = "unusable prompt"
NO_REASONING = "no reasoning recorded for the answer"
NO_CHANGE = "no iteration changed the answer"
NO_WINNER_PAIR = "no winner pair left after filters"

_DROPPED = "_dropped"
_UNLIMITED = 1 << 62


@dataclass(frozen=True)
class SftOptions:
    """Options of the SFT view.

    Args:
        prompt_column: the column holding the prompt (a string or a list of messages).
        system_prompt: a system message to put first when the prompt has none.
        form: ``"messages"`` (one conversation) or ``"prompt_completion"``.
        cot: ``"none"``; ``"think"`` puts the reasoning of the call that wrote the final answer in
            ``<think>…</think>`` before it; ``"field"`` puts it in a separate ``reasoning`` column. Rows
            without recorded reasoning are dropped.
    """

    prompt_column: str = "prompt"
    system_prompt: str | None = None
    form: Literal["messages", "prompt_completion"] = "messages"
    cot: Literal["none", "think", "field"] = "none"


@dataclass(frozen=True)
class PairOptions:
    """Options of the preference views (DPO, reward, KTO).

    Args:
        prompt_column: the column holding the prompt.
        system_prompt: a system message to put first when the prompt has none.
        rejected: ``"lowest"``: the final answer against the lowest-ranked other answer of the last
            decisive round (the ``preference`` column); ``"draft"``: the final answer against the draft.
            Used when ``pairs="one"``.
        pairs: ``"one"`` pair per row, or ``"all"`` ordered pairs (better over worse) of every decisive
            round. For KTO, ``"all"`` labels every round's winner true and its losers false.
        min_margin: drop pairs whose Borda margin is below this, or unknown.
        drop_ties: drop pairs with a margin of zero.
    """

    prompt_column: str = "prompt"
    system_prompt: str | None = None
    rejected: Literal["lowest", "draft"] = "lowest"
    pairs: Literal["one", "all"] = "one"
    min_margin: float | None = None
    drop_ties: bool = False


@dataclass(frozen=True)
class CriticOptions:
    """Options of the critic view (one row per iteration whose critique led to a new answer).

    Args:
        prompt_column: the column holding the prompt.
        form: ``"triple"`` (``prompt``, ``draft``, ``critique``, ``revision``) or ``"messages"`` (the
            tournament's own critic prompt as the user turn, the critique as the assistant turn).
    """

    prompt_column: str = "prompt"
    form: Literal["triple", "messages"] = "triple"


ViewOptions = SftOptions | PairOptions | CriticOptions
Row = dict[str, Any]
RowView = list[Row] | str  # the view rows of one input row, or why it has none

OPTION_TYPES: dict[str, type[SftOptions] | type[PairOptions] | type[CriticOptions]] = {
    "sft": SftOptions, "dpo": PairOptions, "critic": CriticOptions, "reward": PairOptions, "kto": PairOptions,
}


def view_features(view: str, options: ViewOptions | None = None) -> Features:
    """The exact ``Features`` of a view under the given options.

    Raises:
        ConfigError: unknown view name.
    """
    options = _options(view, options)
    score = Value("float64")
    if isinstance(options, SftOptions):
        base = {"messages": MESSAGES} if options.form == "messages" else {"prompt": MESSAGES, "completion": MESSAGES}
        return Features(base | ({"reasoning": Value("string")} if options.cot == "field" else {}))
    if isinstance(options, CriticOptions):
        if options.form == "messages":
            return Features({"messages": MESSAGES})
        return Features({k: Value("string") for k in ("prompt", "draft", "critique", "revision")})
    if view == "dpo":
        return Features({"prompt": MESSAGES, "chosen": MESSAGES, "rejected": MESSAGES,
                         "score_chosen": score, "score_rejected": score, "margin": score})
    if view == "reward":
        return Features({"chosen": MESSAGES, "rejected": MESSAGES, "margin": score})
    return Features({"prompt": MESSAGES, "completion": MESSAGES, "label": Value("bool")})


def sft_rows(row: Row, options: SftOptions) -> RowView:
    """The SFT rows of one refined row (one at most), or why there are none."""
    prompt = _prompt_messages(row, options.prompt_column, options.system_prompt)
    if isinstance(prompt, str):
        return prompt
    answer = row[col.REFINED] or ""
    if not answer.strip():
        return EMPTY_ANSWER
    reasoning = answer_reasoning(row) if options.cot != "none" else None
    if options.cot != "none" and not reasoning:
        return NO_REASONING
    content = f"<think>\n{reasoning}\n</think>\n\n{answer}" if options.cot == "think" else answer
    completion: list[Message] = [{"role": "assistant", "content": content}]
    out: Row = {"messages": prompt + completion} if options.form == "messages" else {
        "prompt": prompt, "completion": completion}
    if options.cot == "field":
        out["reasoning"] = reasoning
    return [out]


def dpo_rows(row: Row, options: PairOptions) -> RowView:
    """The DPO rows of one refined row: explicit prompt, one-message ``chosen`` and ``rejected``."""
    prompt = _prompt_messages(row, options.prompt_column, options.system_prompt)
    pairs = prompt if isinstance(prompt, str) else _selected_pairs(row, options, require_margin=False)
    if isinstance(pairs, str):
        return pairs
    return [{"prompt": prompt, "chosen": [_assistant(p.chosen)], "rejected": [_assistant(p.rejected)],
             "score_chosen": p.score_chosen, "score_rejected": p.score_rejected, "margin": p.margin}
            for p in pairs]


def reward_rows(row: Row, options: PairOptions) -> RowView:
    """The reward-model rows of one refined row: full ``chosen`` / ``rejected`` conversations and ``margin``.

    TRL adds ``margin`` to the loss, so pairs without a known margin are dropped.
    """
    prompt = _prompt_messages(row, options.prompt_column, options.system_prompt)
    pairs = prompt if isinstance(prompt, str) else _selected_pairs(row, options, require_margin=True)
    if isinstance(pairs, str):
        return pairs
    return [{"chosen": [*prompt, _assistant(p.chosen)], "rejected": [*prompt, _assistant(p.rejected)],
             "margin": p.margin} for p in pairs]


def kto_rows(row: Row, options: PairOptions) -> RowView:
    """The KTO rows of one refined row: winners labelled true, losers false (a later round's label wins)."""
    prompt = _prompt_messages(row, options.prompt_column, options.system_prompt)
    pairs = prompt if isinstance(prompt, str) else _selected_pairs(row, options, require_margin=False)
    if isinstance(pairs, str):
        return pairs
    labels: dict[str, bool] = {}
    for p in pairs:
        if p.chosen_won:
            labels[p.chosen] = True
            labels[p.rejected] = False
    if not labels:
        return NO_WINNER_PAIR
    return [{"prompt": prompt, "completion": [_assistant(text)], "label": label} for text, label in labels.items()]


def critic_rows(row: Row, options: CriticOptions) -> RowView:
    """One critic row per iteration whose critique led to a new answer (B or AB won)."""
    prompt = _prompt_messages(row, options.prompt_column, None)
    if isinstance(prompt, str):
        return prompt
    task = prompts.task_text(prompt)
    trace = row[col.TRACE]
    changed = [r for r in trace["rounds"] if r["winner"] != "A" and not r["no_flaws"] and r["critique"]]
    if not changed:
        return NO_CHANGE
    if options.form == "messages":
        hadron = trace["variant"] == "hadron"
        return [{"messages": [*prompts.critic_messages(task, r["A"], hadron), _assistant(r["critique"])]}
                for r in changed]
    return [{"prompt": task, "draft": r["A"], "critique": r["critique"], "revision": r[r["winner"]]}
            for r in changed]


ROW_FUNCTIONS: dict[str, Callable[[Row, Any], RowView]] = {
    "sft": sft_rows, "dpo": dpo_rows, "critic": critic_rows, "reward": reward_rows, "kto": kto_rows,
}


def view_batch(batch: dict[str, list[Any]], view: str, options: ViewOptions | None = None) -> dict[str, list[Any]]:
    """A view of one batch, for ``Dataset.map(view_batch, batched=True, remove_columns=ds.column_names)``.

    Pass ``features=view_features(view, options)`` to ``map`` so that columns keep their types.

    Args:
        batch: a batch of a refined dataset.
        view: one of ``VIEW_NAMES``.
        options: the view's options (``SftOptions``, ``PairOptions`` or ``CriticOptions``).

    Returns:
        The view's columns; error rows and rows the options filter out are left out.
    """
    return _view_columns(batch, view, _options(view, options), mark_drops=False)


@dataclass(frozen=True)
class ViewResult:
    """A built view and how it came about."""

    view: str
    dataset: Dataset
    options: ViewOptions
    rows_in: int
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def rows_out(self) -> int:
        """Rows in the view."""
        return len(self.dataset)

    def render(self) -> str:
        """The recipe's printed summary: rows in, rows out, dropped and why."""
        lines = [f"  rows in   {self.rows_in}", f"  rows out  {self.rows_out} ({self.view})",
                 f"  dropped   {sum(self.dropped.values())} input rows"]
        lines += [f"    {n:>6}  {reason}" for reason, n in sorted(self.dropped.items(), key=lambda kv: -kv[1])]
        return "\n".join(lines)


def build_view(refined: Dataset, view: str, options: ViewOptions | None = None,
               num_proc: int | None = None) -> ViewResult:
    """Build one view of a refined dataset, counting the input rows that gave no view row.

    Args:
        refined: the output of ``autoreason_map`` (see ``load_refined``).
        view: one of ``VIEW_NAMES``.
        options: the view's options; ``None`` for the defaults.
        num_proc: processes for ``Dataset.map``.

    Returns:
        The view's dataset, typed with ``view_features``, with the counts.

    Raises:
        ConfigError: unknown view, wrong options type, or the prompt column is missing.
    """
    options = _options(view, options)
    if options.prompt_column not in refined.column_names:
        raise ConfigError(f"the refined dataset has no prompt column {options.prompt_column!r}; its columns "
                          f"are {refined.column_names}. Choose one with --prompt-column.")
    features = view_features(view, options)
    # in memory: map's cache files would otherwise land inside the user's save_to_disk folder
    marked = refined.map(_view_columns, batched=True, remove_columns=refined.column_names, num_proc=num_proc,
                         features=Features({**features, _DROPPED: Value("string")}), keep_in_memory=True,
                         fn_kwargs={"view": view, "options": options, "mark_drops": True},
                         desc=f"Building the {view} view")
    reasons = Counter(r for r in marked[_DROPPED] if r is not None)
    kept = marked.filter(_is_kept, input_columns=_DROPPED, keep_in_memory=True, num_proc=num_proc,
                         desc="Dropping rows")
    return ViewResult(view, kept.remove_columns(_DROPPED), options, len(refined), dict(reasons))


def answer_reasoning(row: Row) -> str | None:
    """The reasoning of the call that wrote the row's final answer, when the model returned any."""
    for call in row.get(col.REASONING) or []:
        if call["role"] != "judge" and call["answer"] == row[col.REFINED] and call["reasoning"]:
            return str(call["reasoning"])
    return None


def _options(view: str, options: ViewOptions | None) -> ViewOptions:
    if view not in OPTION_TYPES:
        raise ConfigError(f"unknown view {view!r}; choose one of {list(VIEW_NAMES)}")
    kind = OPTION_TYPES[view]
    if options is None:
        return kind()
    if not isinstance(options, kind):
        raise ConfigError(f"the {view} view takes {kind.__name__}, not {type(options).__name__}")
    return options


def _view_columns(batch: dict[str, list[Any]], view: str, options: ViewOptions,
                  mark_drops: bool) -> dict[str, list[Any]]:
    names = list(view_features(view, options))
    out: dict[str, list[Any]] = {name: [] for name in names} | ({_DROPPED: []} if mark_drops else {})
    for row in _rows(batch):
        got = ERROR_ROW if row.get(col.STATUS) != col.STATUS_OK else ROW_FUNCTIONS[view](row, options)
        if isinstance(got, str):
            if mark_drops:  # a placeholder carries the reason through map; build_view filters it out
                for name in names:
                    out[name].append(None)
                out[_DROPPED].append(got)
            continue
        for view_row in got:
            for name in names:
                out[name].append(view_row[name])
            if mark_drops:
                out[_DROPPED].append(None)
    return out


def _is_kept(dropped: str | None) -> bool:
    return dropped is None


def _rows(batch: dict[str, list[Any]]) -> Iterator[Row]:
    size = len(next(iter(batch.values()), []))
    for i in range(size):
        yield {name: values[i] for name, values in batch.items()}


def _assistant(text: str) -> Message:
    return {"role": "assistant", "content": text}


def _selected_pairs(row: Row, options: PairOptions, require_margin: bool) -> list[Pair] | str:
    pairs = row_pairs(row, options.rejected, options.pairs)
    if isinstance(pairs, str):
        return pairs
    return filter_pairs(pairs, options.min_margin, options.drop_ties, require_margin)


def _prompt_messages(row: Row, prompt_column: str, system_prompt: str | None) -> list[Message] | str:
    try:
        messages = normalize_prompt(row.get(prompt_column), _UNLIMITED)
    except InputError:
        return BAD_PROMPT
    if system_prompt and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": system_prompt})
    return messages
