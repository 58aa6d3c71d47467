"""Write a training view as a Hub-style folder with its card, publish it to the Hub, or write every view of a
refined dataset at once.

Example:
    >>> paths = write_views(refined, "out/views")  # doctest: +SKIP
    >>> paths["dpo"]  # doctest: +SKIP
    PosixPath('out/views/dpo')
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from datasets import Dataset

from hadron_hf.config import AutoReasonConfig
from hadron_hf.views.builders import OPTION_TYPES, VIEW_NAMES, ViewOptions, ViewResult, build_view
from hadron_hf.views.cards import Lineage, render_card


def write_view(result: ViewResult, refined: Dataset, output: Path, lineage: Lineage, *,
               config: AutoReasonConfig | None = None, license: str = "other", pretty_name: str | None = None) -> Path:
    """Write a view as a Hub-style folder (``README.md``, ``data/train-*.parquet``) that ``load_dataset`` reads.

    Returns:
        The folder.
    """
    data_dir = output / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    for stale in data_dir.glob("*.parquet"):
        stale.unlink()
    result.dataset.to_parquet(str(data_dir / "train-00000-of-00001.parquet"))
    card = render_card(result, refined, lineage, config=config, license=license, pretty_name=pretty_name)
    card.save(str(output / "README.md"))
    return output


def publish_view(result: ViewResult, refined: Dataset, repo_id: str, lineage: Lineage, *, private: bool = True,
                 config: AutoReasonConfig | None = None, license: str = "other", pretty_name: str | None = None,
                 config_name: str = "default") -> str:
    """Push a view to the Hub, data first, then its card. Returns the repo's URL."""
    from hadron_hf.views.hub import push_with_card

    def make_card(hub_metadata: dict[str, Any]) -> Any:
        return render_card(result, refined, lineage, config=config, license=license, pretty_name=pretty_name,
                           repo_id=repo_id, config_name=config_name, hub_metadata=hub_metadata)

    return push_with_card(result.dataset, repo_id, make_card, config_name=config_name, private=private)


def write_views(refined: Dataset, output_dir: str | Path, *, config: AutoReasonConfig | None = None,
                lineage: Lineage | None = None, options: dict[str, ViewOptions] | None = None,
                license: str = "other", prompt_column: str = "prompt") -> dict[str, Path]:
    """Write every view (sft, dpo, critic, reward, kto) of a refined dataset, each with its card.

    Args:
        refined: the output of ``autoreason_map``.
        output_dir: one sub-folder per view is written here.
        config: the config that refined it, for the cards.
        lineage: where ``refined`` came from (default: an in-memory dataset).
        options: per-view options; missing views use their defaults.
        license: the cards' license metadata.
        prompt_column: the prompt column, for views without explicit options.

    Returns:
        The folder of each view, by view name.
    """
    lineage = lineage or Lineage("in-memory refined dataset")
    paths = {}
    for view in VIEW_NAMES:
        chosen = (options or {}).get(view) or dataclasses.replace(OPTION_TYPES[view](), prompt_column=prompt_column)
        result = build_view(refined, view, chosen)
        paths[view] = write_view(result, refined, Path(output_dir) / view, lineage, config=config, license=license)
    return paths
