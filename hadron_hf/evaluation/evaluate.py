"""Does refinement beat single-shot? A blind panel of external judges compares ``refined`` with ``draft``.

Each judge sees the task and the candidates (the draft, the refined answer and optionally a
critique-and-revise baseline made here) under labels ``X1..Xn`` in an order counterbalanced across the
panel (``hadron_hf.panel``) and ranks them.
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

import argparse
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
from hadron_hf import prompts
from hadron_hf.borda import BordaRule, borda_scores
from hadron_hf.chat import ChatModel, Completion, Message, SamplingParams
from hadron_hf.config import AutoReasonConfig, ModelConfig
from hadron_hf.errors import BackendError, ConfigError, FatalBackendError, InputError
from hadron_hf.eval_summary import LOSS, TIE, WIN, EvalSummary, summarize
from hadron_hf.inputs import normalize_prompt
from hadron_hf.panel import collect_votes, draw_seats, judge_caller
from hadron_hf.runtime import use_runtime
from hadron_hf.tournament import RoleModels, row_seed

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

        from hadron_hf.hub import push_with_card

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
        summary = dataclasses.replace(summary, baseline_model=_baseline_models(config))
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
    # Counterbalanced label orders (hadron_hf.panel), so a judge's position bias cancels across a panel.
    seats = draw_seats(list(answers), settings.judges, pool, rng)

    async def send(model: ChatModel, messages: list[Message], params: SamplingParams) -> Completion:
        return await model.chat(messages, params)

    ask = judge_caller(task, answers, send, reason_first=settings.reason_first, temperature=config.judge_temperature,
                       max_tokens=config.judge_max_tokens, constrain=config.constrain_judges)
    outcome = await collect_votes(seats, ask, quorum=0, rng=rng)  # every vote is reported; no re-ask here
    return [{"judge": v.judge, "model": v.model, "shown": list(v.shown), "ranking": list(v.ranking),
             "parsed": v.parsed, "raw": v.raw, "error": v.error} for v in outcome.votes]


def add_subcommand(subparsers: Any) -> None:
    """Add ``hadron-hf eval``."""
    text = "judge refined answers against the drafts with a blind panel"
    parser = subparsers.add_parser("eval", help=text, description=text[0].upper() + text[1:] + ".")
    add_eval_arguments(parser)
    parser.set_defaults(func=run_eval)


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``hadron-hf eval`` and ``recipes/eval.py``."""
    from hadron_hf.cli import add_hub_arguments, add_model_arguments, add_output_arguments

    parser.add_argument("input", help="a refined dataset: a refine/demo/build output folder, a save_to_disk folder, "
                                      "a parquet/jsonl file or a Hub name")
    parser.add_argument("--split", default="train", help="split of the input")
    parser.add_argument("--limit", type=int, default=None, help="only the first N rows (default: all)")
    add_output_arguments(parser, "hadron-hf-output/eval")
    # The baseline's model (and the judges' when none are given): by default the refinement's own, from the
    # run.json of a refine/demo/build output folder.
    add_model_arguments(parser)
    judges = parser.add_argument_group("judges (configure them apart from the tournament's)")
    judges.add_argument("--judge-base-url", help="OpenAI-compatible /v1 URL of the judges")
    judges.add_argument("--judge-model", action="append", help="a judge model; repeat for a pool")
    judges.add_argument("--judge-api-key-env", default=None,
                        help="variable holding the judges' key (default: OPENAI_API_KEY; when given, it must be set)")
    judges.add_argument("--judges", type=int, default=7, help="judges per row")
    judges.add_argument("--ranking-only", action="store_true", help="judges answer one RANKING line, no reasoning")
    group = parser.add_argument_group("evaluation")
    group.add_argument("--baseline", action="store_true", help="also judge a critique-and-revise baseline")
    group.add_argument("--max-tokens", type=int, default=None,
                       help="cap on the baseline's critique and revision (default: the config's, 1024)")
    group.add_argument("--category-column", default="category", help="break results down by this column")
    group.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples")
    group.add_argument("--seed", type=int, default=None, help="seed of label orders and the bootstrap (default: "
                                                              "the config's, 0)")
    group.add_argument("--no-cache", action="store_true", help="do not use the request cache")
    add_hub_arguments(parser, "REPO", "push judgements, summary and card to this dataset repo")
    parser.set_defaults(max_iterations=None, variant=None)


def run_eval(args: argparse.Namespace) -> int:
    """Run ``hadron-hf eval``: judge, write the outputs, print the summary and optionally push."""
    from hadron_hf.sources import check_output, load_refined

    check_output(args.output, args.overwrite)
    ds = load_refined(args.input, split=args.split, limit=args.limit)
    config, origin = _eval_config(args, ds)
    if config.judge_models is None:
        print(f"note: no --judge-base-url/--judge-model or judge_models given; the {origin} model judges itself")
    settings = EvalSettings(judges=args.judges, baseline=args.baseline, category_column=args.category_column,
                            bootstrap_samples=args.bootstrap, seed=config.seed if args.seed is None else args.seed,
                            reason_first=not args.ranking_only)
    names = ", ".join(dict.fromkeys(m.model for m in config.judge_pool_models()))
    baseline = f" and a critique-and-revise baseline by the {origin} model ({_baseline_models(config)})"
    print(f"Judging {len(ds)} rows of {args.input} with {settings.judges} judges ({names})"
          + (baseline if settings.baseline else "") + ".")
    result = evaluate(ds, config, settings)
    paths = result.write(args.output)
    print(result.summary.render_markdown())
    print("Wrote " + ", ".join(str(p) for p in paths))
    if args.push_to_hub:
        print(f"Pushed to {result.push_to_hub(args.push_to_hub, private=args.private)}")
    return 0


def _eval_config(args: argparse.Namespace, ds: Dataset) -> tuple[AutoReasonConfig, str]:
    """The config of an evaluation and where its generation model comes from ("given" or "refinement's own").

    Without --config/--base-url/--model-path, the baseline (and self-judging) use the refinement's own models,
    read from the run.json of a refine/demo/build output folder; with neither, only external judges work.
    """
    from hadron_hf.cli import check_keys, config_from_args
    from hadron_hf.sources import read_run_info

    config = config_from_args(args)
    origin = "given"
    if not any(getattr(args, n, None) for n in ("config", "base_url", "model_path")):
        info = read_run_info(args.input)
        if info is not None and isinstance(info.get("config"), dict):
            run = AutoReasonConfig.from_dict(info["config"], source=f"the config in {args.input}'s run.json")
            # Only what differs from the defaults counts as set, so a default key variable may stay unset.
            overrides = {k: getattr(config, k) for k in config.model_fields_set}
            config = AutoReasonConfig.from_dict({**run.model_dump(exclude_defaults=True), **overrides},
                                                source="configuration")
            origin = "refinement's own"
        elif args.baseline or not (args.judge_base_url or args.judge_model):
            teachers = sorted({c["model"] for calls in ds[col.REASONING] if calls for c in calls
                               if c["role"] == "teacher"}) if col.REASONING in ds.column_names else []
            raise ConfigError(f"{args.input} has no run.json, so the refinement's own model "
                              f"({', '.join(teachers) or 'unknown'}) is not known here; give its endpoint with "
                              "--base-url and --model (or --config, or --model-path), or judges with "
                              "--judge-base-url/--judge-model and no --baseline")
    if args.judge_base_url or args.judge_model:
        key = {"api_key_env": args.judge_api_key_env} if args.judge_api_key_env else {}
        names = args.judge_model or ["default"]
        pool = [ModelConfig(base_url=args.judge_base_url, model=name, **key) for name in names]
        config = config.model_copy(update={"judge_models": pool})
    check_keys(config)
    return config, origin


def _baseline_models(config: AutoReasonConfig) -> str:
    from hadron_hf.cards import describe_model

    roles = config.role_models()
    critic, author = describe_model(roles["critic"]), describe_model(roles["author"])
    return critic if critic == author else f"critic {critic}, author {author}"
