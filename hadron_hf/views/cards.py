"""Dataset cards for the training views, rendered from ``dataset_cards/*.md.j2`` through ``DatasetCard``.

A card holds YAML metadata (license, task categories, size category, tags, Hub ``configs``), the method, the
view's format and a TRL usage snippet, the columns with their types, the generation settings (models,
judges, variant, iterations; never keys or URLs), statistics from ``hadron_hf.summary`` and the lineage.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.resources
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import jinja2
from datasets import Dataset, List, Value
from huggingface_hub import DatasetCard, DatasetCardData

from hadron_hf import columns as col
from hadron_hf.config import AutoReasonConfig, ModelConfig
from hadron_hf.errors import ConfigError
from hadron_hf.summary import summarize
from hadron_hf.views.builders import ViewResult, view_features


def _card_dir() -> Path:
    # An installed wheel ships the templates as hadron_hf/dataset_cards/ (package data); a source checkout
    # keeps them in the top-level dataset_cards/ folder beside the package.
    installed = Path(str(importlib.resources.files("hadron_hf").joinpath("dataset_cards")))
    return installed if installed.is_dir() else Path(__file__).resolve().parents[2] / "dataset_cards"


CARD_DIR = _card_dir()
"""Where the card templates live: ``base.md.j2``, ``refined.md.j2`` and one ``{view}.md.j2`` per view."""

TRAINERS = {"sft": "SFTTrainer", "dpo": "DPOTrainer", "critic": "SFTTrainer", "reward": "RewardTrainer",
            "kto": "KTOTrainer"}
_TASKS = {"sft": ["text-generation"], "dpo": ["text-generation"], "critic": ["text-generation"],
          "reward": ["text-classification"], "kto": ["text-generation"]}
_TAGS = {"sft": ["sft"], "dpo": ["dpo", "preference"], "critic": ["critique", "self-refine"],
         "reward": ["reward-modeling", "preference"], "kto": ["kto", "preference"]}
_SUMMARIES = {
    "sft": "Supervised fine-tuning data: prompts with their AutoReason-refined answers.",
    "dpo": "Preference pairs for DPO: refined answers against weaker candidates, with Borda margins.",
    "critic": "Critique data: drafts, the critiques that improved them, and the revisions that won.",
    "reward": "Reward-model pairs: full conversations with the better and the worse answer, and their margin.",
    "kto": "Unpaired preference data for KTO: tournament winners labelled desirable, losers undesirable.",
}
OPENAI_API_URL = "https://api.openai.com/v1"
"""Where an ``openai`` model without a ``base_url`` is sent."""
_SIZES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
          (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"))
_ROLES = (("teacher", "teacher"), ("critic", "critic"), ("author_b", "author B"), ("synthesizer", "synthesizer"))


@dataclass(frozen=True)
class Lineage:
    """Where a view came from.

    Args:
        source: the refined dataset (a path or a Hub repo id).
        split: its split.
        source_dataset: the prompt dataset the refined one was made from, when known.
    """

    source: str
    split: str = "train"
    source_dataset: str | None = None


def size_category(rows: int) -> str:
    """The Hub's ``size_categories`` value for a row count."""
    return next((name for limit, name in _SIZES if rows < limit), "n>1B")


def describe_feature(feature: Any) -> str:
    """A short type string for a ``datasets`` feature, e.g. ``list[{role: string, content: string}]``."""
    if isinstance(feature, Value):
        return str(feature.dtype)
    if isinstance(feature, List):
        return f"list[{describe_feature(feature.feature)}]"
    if isinstance(feature, dict):
        return "{" + ", ".join(f"{k}: {describe_feature(v)}" for k, v in feature.items()) + "}"
    return type(feature).__name__


def generation_settings(refined: Dataset, config: AutoReasonConfig | None = None) -> dict[str, str]:
    """How the refined data was generated, read from its traces and, when given, the config.

    Only model names, backends and tournament settings appear: never keys, key variables or URLs.
    """
    rows = refined.select_columns([col.TRACE, col.REASONING, col.STATUS])
    ok = [r for r in rows if r[col.STATUS] == col.STATUS_OK]
    models: dict[str, set[str]] = {}
    panel, iterations, variants = 0, [], Counter[str]()
    for r in ok:
        trace = r[col.TRACE]
        variants[trace["variant"]] += 1
        iterations.append(trace["iterations"])
        for call in r[col.REASONING] or []:
            models.setdefault(call["role"], set()).add(call["model"])
        for rnd in trace["rounds"]:
            panel = max(panel, len(rnd["votes"]))
            models.setdefault("judge", set()).update(v["model"] for v in rnd["votes"] if v["model"])
    out = {"variant": ", ".join(sorted(variants)) or "unknown"}
    roles = config.role_models() if config else {}
    for role, label in _ROLES:
        key = "author" if role == "author_b" else role
        out[label] = _model_name(roles[key]) if key in roles else ", ".join(sorted(models.get(role, ()))) or "unknown"
    judges = config.judge_pool_models() if config else []
    out["judge models"] = ", ".join(_model_name(m) for m in judges) or ", ".join(sorted(models.get("judge", ())))
    out["judges per panel"] = str(config.judges if config else panel)
    if iterations:
        out["iterations (mean / max)"] = f"{sum(iterations) / len(iterations):.2f} / {max(iterations)}"
    if config:
        out |= {
            "converge after (k wins in a row)": str(config.converge_k),
            "iteration cap": str(config.max_iterations),
            "temperatures (answers / author B / judges)":
                f"{config.temperature} / {config.author_temperature} / {config.judge_temperature}",
            "max tokens (answers / judges)": f"{config.max_tokens} / {config.judge_max_tokens}",
            "judge pool draw": config.judge_pool,
            "seed": str(config.seed),
        }
    return out


def render_card(result: ViewResult, refined: Dataset, lineage: Lineage, *, config: AutoReasonConfig | None = None,
                license: str = "other", pretty_name: str | None = None, repo_id: str | None = None,
                config_name: str = "default", hub_metadata: dict[str, Any] | None = None) -> DatasetCard:
    """Render the dataset card of a built view.

    Args:
        result: the view, from ``build_view``.
        refined: the refined dataset it was built from (for statistics and generation settings).
        lineage: where the refined dataset came from.
        config: the ``AutoReasonConfig`` that produced it, when known (adds its settings, never its keys).
        license: the ``license`` metadata value.
        pretty_name: the card's title.
        repo_id: the Hub repo the card describes; ``None`` for a local folder, whose card gets no
            ``configs``: ``datasets`` caches a local folder whose README lists ``configs`` by the folder's
            name alone, so reloading a rewritten folder (or another of the same name) gave stale rows.
        config_name: the dataset config the view's data lives under on the Hub.
        hub_metadata: the repo's current card metadata after the data push; its ``configs`` and
            ``dataset_info`` (written by ``push_to_hub``) are kept.

    Returns:
        The card; ``str(card)`` is the README.md text.
    """
    view = result.view
    if view not in TRAINERS:
        raise ConfigError(f"no card template for view {view!r}; choose one of {sorted(TRAINERS)}")
    hub_metadata = hub_metadata or {}
    extra: dict[str, Any] = {"dataset_info": hub_metadata["dataset_info"]} if hub_metadata.get("dataset_info") else {}
    if repo_id is not None or hub_metadata.get("configs"):
        data_dir = "data" if config_name == "default" else config_name
        extra["configs"] = hub_metadata.get("configs") or [
            {"config_name": config_name, "data_files": [{"split": "train", "path": f"{data_dir}/train-*"}]}]
    title = pretty_name or f"AutoReason {view.upper() if view in ('sft', 'dpo', 'kto') else view} data"
    card_data = DatasetCardData(
        license=license, language=hub_metadata.get("language"), pretty_name=title,
        task_categories=_TASKS[view], size_categories=[size_category(result.rows_out)],
        tags=["hadron_hf", "autoreason", "synthetic", "trl", *_TAGS[view]], **extra,
    )
    generation = generation_settings(refined, config)
    location = repo_id or "path/to/this/folder"
    load_args = repr(location) + (f", {config_name!r}" if repo_id and config_name != "default" else "")
    context: dict[str, Any] = {
        "view": view, "options": result.options, "load_args": load_args, "trainer": TRAINERS[view],
        "config_name": config_name if repo_id else "default",
    }
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(CARD_DIR), keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    view_section = env.get_template(f"{view}.md.j2").render(context).strip()
    stats = summarize(refined)
    card = DatasetCard.from_template(
        card_data, template_path=str(CARD_DIR / "base.md.j2"), **context,
        pretty_name=title, summary=_SUMMARIES[view], view_section=view_section,
        variants=generation["variant"], converge_k=config.converge_k if config else None,
        columns=[(name, describe_feature(f)) for name, f in view_features(view, result.options).items()],
        generation=list(generation.items()), statistics=_statistics(stats),
        rows_in=result.rows_in, rows_out=result.rows_out,
        dropped=sorted(result.dropped.items(), key=lambda kv: -kv[1]),
        option_items=[(k, v) for k, v in dataclasses.asdict(result.options).items()],
        lineage=lineage, hadron_version=package_version(),
    )
    return DatasetCard(_redact(str(card), _secrets(config)))


def render_refined_card(refined: Dataset, lineage: Lineage, *, config: AutoReasonConfig | None = None,
                        sampling: str | None = None, license: str = "other", repo_id: str | None = None,
                        hub_metadata: dict[str, Any] | None = None) -> DatasetCard:
    """Render the dataset card of a refined dataset from ``dataset_cards/refined.md.j2``.

    Args:
        refined: the output of ``autoreason_map``.
        lineage: the prompt dataset it was made from (``source`` and ``split``).
        config: the config that refined it (adds its settings, never its keys or URLs).
        sampling: how the rows were drawn, e.g. ``"the first 10 rows"``; ``None`` for every row.
        license: the ``license`` metadata value.
        repo_id: the Hub repo the card describes; ``None`` for a local folder.
        hub_metadata: the repo's card metadata after the data push; ``configs`` and ``dataset_info`` are kept.

    Returns:
        The card; ``str(card)`` is the README.md text.
    """
    meta = {k: v for k, v in (hub_metadata or {}).items() if k in ("configs", "dataset_info")}
    data = DatasetCardData(license=license, pretty_name="AutoReason refined prompts",
                           task_categories=["text-generation"], size_categories=[size_category(len(refined))],
                           tags=["hadron_hf", "autoreason", "synthetic"], **meta)
    loader = f"load_dataset({repo_id!r}, split=\"train\")" if repo_id else "load_from_disk(\"path/to/refined\")"
    stats = summarize(refined)
    card = DatasetCard.from_template(
        data, template_path=str(CARD_DIR / "refined.md.j2"), pretty_name="AutoReason refined prompts",
        source=lineage.source, split=lineage.split, sampling=sampling, loader=loader,
        output_columns=list(col.OUTPUT_COLUMNS), generation=list(generation_settings(refined, config).items()),
        statistics=_statistics(stats), hadron_version=package_version(),
    )
    return DatasetCard(_redact(str(card), _secrets(config)))


def _statistics(s: Any) -> list[tuple[str, str]]:
    items = [
        ("rows", f"{s.rows} ({s.ok} refined, {s.errors} failed)"),
        ("converged", f"{s.converged_pct:.1f}%"),
        ("mean iterations", f"{s.mean_iterations:.2f}"),
        ("mean Borda margin", "n/a" if s.mean_margin is None else f"{s.mean_margin:.2f}"),
        ("judge votes parsed", f"{s.votes_parsed} / {s.votes}"),
        ("model calls", f"{s.calls} ({s.cached_calls} from cache)"),
        ("tokens (prompt / completion)", f"{s.prompt_tokens} / {s.completion_tokens}"),
    ]
    if s.cost_usd is not None:
        items.append(("cost", f"${s.cost_usd:.4f}"))
    return items


def describe_model(m: ModelConfig) -> str:
    """``model at endpoint``, without any credential: the base URL, the OpenAI API, or the local backend."""
    if m.backend != "openai":
        return f"{m.model} at {m.backend}:{m.model_path or 'bundled'}"
    return f"{m.model} at {strip_credentials(m.base_url or OPENAI_API_URL)}"


def strip_credentials(url: str) -> str:
    """``url`` without a ``user:password@`` part."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def _model_name(m: ModelConfig) -> str:
    return f"{m.model} ({m.backend})"


def _secrets(config: AutoReasonConfig | None) -> list[str]:
    """Values that must never reach a card: resolved API keys and credentials inside base URLs."""
    if config is None:
        return []
    found = []
    for m in config.all_models():
        found.append(m.resolve_api_key() or "")
        parts = urlsplit(m.base_url or "")
        found += [parts.username or "", parts.password or ""]
    return [s for s in found if len(s) >= 4]


def _redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def package_version() -> str:
    """The installed hadron_hf version (``"dev"`` in a source tree that was never installed)."""
    try:
        return importlib.metadata.version("hadron_hf")
    except importlib.metadata.PackageNotFoundError:
        return "dev"

