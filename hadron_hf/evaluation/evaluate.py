"""Does refinement beat single-shot? A blind panel of external judges compares ``refined`` with ``draft``.

Each judge sees the task and the candidates (the draft, the refined answer and optionally a
critique-and-revise baseline made here) under labels ``X1..Xn`` in an order counterbalanced across the
panel (``hadron_hf.core.panel``) and ranks them.
Borda points as in the paper (n for first place down to 1), refined-vs-draft win/tie/loss by the panel's
pairwise majority, a bootstrap confidence interval of the win rate, answer lengths, a per-category
breakdown and the judges' position bias come out as a per-row judgements dataset and a summary.

Example:
    >>> cfg = AutoReasonConfig(model=ModelConfig(base_url=url, model="gen"),  # doctest: +SKIP
    ...                        judge_models=[ModelConfig(base_url=judge_url, model="judge")])
    >>> result = evaluate(load_refined("hadron-hf-output/demo"), cfg, EvalSettings(judges=7))  # doctest: +SKIP
    >>> print(result.summary.render_markdown())  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset, Features, List, Value

from hadron_hf import columns as col
from hadron_hf.chat import ChatModel, Completion, Message, SamplingParams
from hadron_hf.config import AutoReasonConfig
from hadron_hf.core import prompts
from hadron_hf.core.borda import BordaRule, borda_scores
from hadron_hf.core.panel import collect_votes, draw_seats, judge_caller
from hadron_hf.core.tournament import RoleModels, row_seed
from hadron_hf.engine.runtime import use_runtime
from hadron_hf.errors import BackendError, FatalBackendError, InputError
from hadron_hf.evaluation.stats import LOSS, TIE, WIN, EvalSummary, summarize
from hadron_hf.inputs import normalize_prompt

BASELINE = "critique_revise"
"""The method name of the critique-and-revise baseline (one critique, one revision, no judging)."""
METHODS: tuple[str, ...] = (col.DRAFT, col.REFINED, BASELINE)

_PER_METHOD = {m: Value("int32") for m in METHODS}
JUDGEMENT_FEATURES = Features({
    "row": Value("int32"), "prompt": Value("string"), "category": Value("string"),
    "status": Value("string"), "error": Value("string"), "critique": Value("string"), BASELINE: Value("string"),
    "votes": List({"judge": Value("int32"), "model": Value("string"), "shown": List(Value("string")),
                   "ranking": List(Value("string")), "parsed": Value("bool"), "raw": Value("string"),
                   "error": Value("string")}),
    "borda": _PER_METHOD, "refined_vs_draft": Value("string"), "identical": Value("bool"), "chars": _PER_METHOD,
    "words": _PER_METHOD,
})
"""The schema of the per-row judgements dataset (``shown`` lists the methods in label order X1, X2, ...)."""


@dataclass(frozen=True)
class EvalSettings:
    """How to run the evaluation.

    Args:
        judges: judges per row, drawn round robin from the config's judge pool (``judge_models``).
        baseline: also generate and judge a critique-and-revise answer from the draft.
        category_column: break the results down by this column when the dataset has it.
        bootstrap_samples: resamples of the rows for the confidence interval.
        seed: base seed of label orders, call seeds and the bootstrap.
        reason_first: judges may reason before their ``RANKING:`` line; ``False`` asks for one line.
        rows_in_flight: rows judged at once (calls are further limited per endpoint).
    """

    judges: int = 7
    baseline: bool = False
    category_column: str = "category"
    bootstrap_samples: int = 2000
    seed: int = 0
    reason_first: bool = True
    rows_in_flight: int = 256


@dataclass(frozen=True)
class EvalResult:
    """The per-row judgements and their summary."""

    judgements: Dataset
    summary: EvalSummary

    def write(self, folder: str | Path) -> list[Path]:
        """Write ``judgements/`` (save_to_disk), ``judgements.jsonl``, ``summary.json`` and ``summary.md``."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        self.judgements.save_to_disk(str(out / "judgements"))
        self.judgements.to_json(str(out / "judgements.jsonl"))
        (out / "summary.json").write_text(json.dumps(self.summary.as_dict(), indent=2) + "\n")
        (out / "summary.md").write_text(self.summary.render_markdown())
        return [out / "judgements", out / "judgements.jsonl", out / "summary.json", out / "summary.md"]

    def push_to_hub(self, repo_id: str, private: bool = True) -> str:
        """Push the judgements (config ``judgements``), a card with the summary and ``summary.json``.

        Returns:
            The repo's URL.

        Raises:
            ConfigError: the Hub refused the push.
        """
        from huggingface_hub import DatasetCard, DatasetCardData, HfApi

        from hadron_hf.views.hub import push_with_card

        def card(meta: dict[str, Any]) -> DatasetCard:
            data = DatasetCardData(pretty_name="AutoReason evaluation", tags=["hadron_hf", "autoreason", "eval"],
                                   configs=meta.get("configs"), dataset_info=meta.get("dataset_info"))
            return DatasetCard(f"---\n{data.to_yaml()}\n---\n\n# AutoReason evaluation\n\n"
                               f"{self.summary.render_markdown()}")

        url = push_with_card(self.judgements, repo_id, card, config_name="judgements", private=private)
        HfApi().upload_file(path_or_fileobj=json.dumps(self.summary.as_dict(), indent=2).encode(),
                            path_in_repo="summary.json", repo_id=repo_id, repo_type="dataset")
        return url


def evaluate(dataset: Dataset, config: AutoReasonConfig, settings: EvalSettings | None = None) -> EvalResult:
    """Judge ``refined`` against ``draft`` (and optionally a critique-and-revise baseline) on every row.

    Call it from synchronous code; inside an event loop use ``evaluate_async``.

    Args:
        dataset: a refined dataset (``autoreason_map`` output): the prompt column, ``draft``, ``refined``.
        config: the models: ``judge_models`` are the judges (configure them apart from the tournament's);
            ``critic`` and ``author`` (or ``model``) write the baseline; rate limits, retries and the
            request cache apply as in ``autoreason_map``.
        settings: panel size, baseline, category column, bootstrap and seed.

    Returns:
        The per-row judgements (``JUDGEMENT_FEATURES``) and the summary.

    Raises:
        FatalBackendError: a judge or baseline endpoint cannot be used (wrong key, unknown model, down).
    """
    return asyncio.run(evaluate_async(dataset, config, settings))


async def evaluate_async(dataset: Dataset, config: AutoReasonConfig,
                         settings: EvalSettings | None = None) -> EvalResult:
    """``evaluate`` for code already inside an event loop."""
    s = settings or EvalSettings()
    for needed in (config.prompt_column, col.DRAFT, col.REFINED):
        if needed not in dataset.column_names:
            raise InputError(f"the dataset lacks column {needed!r} (its columns are {dataset.column_names}); "
                             "evaluate the output of autoreason_map")
    keep = [c for c in (config.prompt_column, col.DRAFT, col.REFINED, col.STATUS, s.category_column)
            if c in dataset.column_names]
    rows = dataset.select_columns(list(dict.fromkeys(keep))).to_list()
    gate = asyncio.Semaphore(s.rows_in_flight)

    async def judged(i: int, row: dict[str, Any], roles: RoleModels) -> dict[str, Any]:
        async with gate:
            return await judge_row(i, row, config, s, roles)

    async with use_runtime(config) as runtime:  # closed (sessions, cache) when the evaluation ends
        out = await runtime.run_rows([judged(i, row, runtime.roles) for i, row in enumerate(rows)])
    methods = METHODS if s.baseline else METHODS[:2]
    names = tuple(dict.fromkeys(m.model for m in config.judge_pool_models()))
    summary = summarize(out, methods, s.judges, names, s.bootstrap_samples, s.seed)
    if s.baseline:
        summary = dataclasses.replace(summary, baseline_model=baseline_models(config))
    return EvalResult(Dataset.from_list(out, features=JUDGEMENT_FEATURES), summary)


async def judge_row(index: int, row: dict[str, Any], config: AutoReasonConfig, settings: EvalSettings,
                    roles: RoleModels) -> dict[str, Any]:
    """One row's judgement record (``JUDGEMENT_FEATURES``); a bad row or failed baseline gets an error."""
    category = row.get(settings.category_column)
    out: dict[str, Any] = {"row": index, "prompt": None, "category": None if category is None else str(category),
                           "status": col.STATUS_OK, "error": None, "critique": None, BASELINE: None, "votes": [],
                           "borda": None, "refined_vs_draft": None, "identical": None, "chars": None,
                           "words": None}
    try:
        draft, refined = row[col.DRAFT], row[col.REFINED]
        if row.get(col.STATUS, col.STATUS_OK) != col.STATUS_OK or not isinstance(draft, str) \
                or not isinstance(refined, str):
            raise InputError("the row was not refined (its autoreason_status is not ok)")
        task = normalize_prompt(row[config.prompt_column], config.max_prompt_chars)
        out["prompt"] = text = prompts.task_text(task)
        rng = random.Random(row_seed(settings.seed, json.dumps([task, draft, refined], ensure_ascii=False)))
        answers = {col.DRAFT: draft, col.REFINED: refined}
        if settings.baseline:
            seeds = rng.getrandbits(31), rng.getrandbits(31)
            critique = (await roles.critic.chat(prompts.critic_messages(text, draft, False),
                                                SamplingParams(config.temperature, config.max_tokens, seeds[0]))).text
            answers[BASELINE] = (await roles.author.chat(
                prompts.author_messages(text, draft, critique),
                SamplingParams(config.author_temperature, config.max_tokens, seeds[1]))).text
            out["critique"], out[BASELINE] = critique, answers[BASELINE]
        # Identical candidates only would give the judges nothing to compare.
        votes = [] if len(set(answers.values())) == 1 else await _panel(text, answers, rng, roles.judges,
                                                                        config, settings)
    except FatalBackendError:
        raise
    except (InputError, BackendError) as exc:
        return {**out, "status": col.STATUS_ERROR, "error": f"{type(exc).__name__}: {exc}"}
    methods = tuple(answers)
    counted = [v["ranking"] for v in votes if v["parsed"]]
    scores = borda_scores(counted, BordaRule(tuple(range(len(methods), 0, -1)), methods))
    ahead = sum(r.index(col.REFINED) < r.index(col.DRAFT) for r in counted)
    identical = draft == refined
    if identical:
        outcome: str | None = TIE
    elif not counted:
        outcome = None
    else:
        outcome = WIN if 2 * ahead > len(counted) else TIE if 2 * ahead == len(counted) else LOSS
    return {**out, "votes": votes, "borda": {**dict.fromkeys(METHODS), **scores}, "refined_vs_draft": outcome,
            "identical": identical, "chars": {m: len(answers[m]) if m in answers else None for m in METHODS},
            "words": {m: len(answers[m].split()) if m in answers else None for m in METHODS}}


async def _panel(task: str, answers: dict[str, str], rng: random.Random, pool: Sequence[ChatModel],
                 config: AutoReasonConfig, settings: EvalSettings) -> list[dict[str, Any]]:
    # Counterbalanced label orders (hadron_hf.core.panel), so a judge's position bias cancels across a panel.
    seats = draw_seats(list(answers), settings.judges, pool, rng)

    async def send(model: ChatModel, messages: list[Message], params: SamplingParams) -> Completion:
        return await model.chat(messages, params)

    ask = judge_caller(task, answers, send, reason_first=settings.reason_first, temperature=config.judge_temperature,
                       max_tokens=config.judge_max_tokens, constrain=config.constrain_judges)
    outcome = await collect_votes(seats, ask, quorum=0, rng=rng)  # every vote is reported; no re-ask here
    return [{"judge": v.judge, "model": v.model, "shown": list(v.shown), "ranking": list(v.ranking),
             "parsed": v.parsed, "raw": v.raw, "error": v.error} for v in outcome.votes]


def baseline_models(config: AutoReasonConfig) -> str:
    """The model(s) that write the critique-and-revise baseline, as the summary names them."""
    from hadron_hf.views.cards import describe_model

    roles = config.role_models()
    critic, author = describe_model(roles["critic"]), describe_model(roles["author"])
    return critic if critic == author else f"critic {critic}, author {author}"
