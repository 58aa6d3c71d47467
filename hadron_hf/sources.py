"""Loading prompt datasets from files, ``save_to_disk`` folders, the bundled set or the Hub."""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path

from datasets import Dataset, DatasetDict, load_dataset, load_from_disk

from hadron_hf.errors import InputError

_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet", ".txt": "text"}


def bundled_prompts(limit: int | None = None) -> Dataset:
    """The prompts shipped with hadron_hf (explanations, code, math, advice, creative), with a ``category``."""
    text = importlib.resources.files("hadron_hf").joinpath("data/prompts.jsonl").read_text()
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    ds = Dataset.from_list(rows)
    return ds.select(range(min(limit, len(ds)))) if limit is not None else ds


def load_prompts(source: str, split: str = "train", limit: int | None = None) -> Dataset:
    """Load a dataset from a local file, a ``save_to_disk`` folder or a Hub dataset name.

    A ``.txt`` file is read as one prompt per line into a ``prompt`` column.

    Args:
        source: path (``.jsonl``, ``.json``, ``.csv``, ``.parquet``, ``.txt``), folder, or Hub name.
        split: the split to use when the source has several.
        limit: keep only the first ``limit`` rows.

    Raises:
        InputError: the source does not exist, cannot be read, or lacks the split.
    """
    path = Path(source)
    try:
        if path.is_dir():
            loaded = load_from_disk(str(path))
        elif path.is_file():
            if path.suffix.lower() == ".txt":
                lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
                loaded = Dataset.from_dict({"prompt": lines})
            elif path.suffix.lower() in _FORMATS:
                loaded = load_dataset(_FORMATS[path.suffix.lower()], data_files=str(path), split="train")
            else:
                raise InputError(f"{path}: unknown file type {path.suffix!r}; use one of {sorted(_FORMATS)}")
        elif path.suffix.lower() in _FORMATS or source.startswith((".", "/", "~")):
            raise InputError(f"{source}: no such file or folder")
        else:
            loaded = load_dataset(source, split=split)
    except InputError:
        raise
    except Exception as exc:  # datasets raises many unrelated types for unreadable input
        raise InputError(f"cannot load {source!r}: {type(exc).__name__}: {exc}") from None
    if isinstance(loaded, DatasetDict):
        if split not in loaded:
            raise InputError(f"{source} has no split {split!r}; its splits are {sorted(loaded)}")
        loaded = loaded[split]
    if not isinstance(loaded, Dataset):
        raise InputError(f"{source} did not load as a dataset")
    return loaded.select(range(min(limit, len(loaded)))) if limit is not None else loaded
