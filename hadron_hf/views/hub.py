"""Publishing a dataset to the Hugging Face Hub: the data first, then its card.

``push_to_hub`` writes ``configs`` (and ``dataset_info``) into the repo's README. Pushing the card after the
data, built from the metadata the data push left, keeps every config; the other order can drop them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from datasets import Dataset
from huggingface_hub import DatasetCard, constants
from huggingface_hub.errors import HfHubHTTPError

from hadron_hf.errors import ConfigError


def push_with_card(dataset: Dataset, repo_id: str, make_card: Callable[[dict[str, Any]], DatasetCard], *,
                   config_name: str = "default", private: bool = True, split: str = "train") -> str:
    """Push ``dataset`` as one config of a Hub dataset repo, then its card.

    Args:
        dataset: the rows to publish.
        repo_id: ``namespace/name`` of the dataset repo (created when missing).
        make_card: builds the card from the repo's card metadata after the data push.
        config_name: the dataset config the rows go under.
        private: create the repo private (an existing repo keeps its visibility).
        split: the split name.

    Returns:
        The repo's URL.

    Raises:
        ConfigError: the Hub refused the push (bad token, bad repo name, no permission).
    """
    try:
        dataset.push_to_hub(repo_id, config_name=config_name, split=split, private=private)
        current = DatasetCard.load(repo_id, repo_type="dataset").data.to_dict()
        make_card(current).push_to_hub(repo_id, repo_type="dataset",
                                       commit_message=f"Dataset card for config {config_name}")
    except HfHubHTTPError as exc:
        raise ConfigError(f"cannot push to the Hub dataset {repo_id}: {exc}") from None
    return f"{constants.ENDPOINT}/datasets/{repo_id}"
