"""The one input loader (files, ``save_to_disk`` folders, the bundled prompts, the Hub, streaming) and the
guard that keeps an output folder from being silently replaced.

Every command reads through here: ``refine``, ``demo`` and ``build`` their prompts (``open_dataset`` and
``load_prompts``), the recipes, ``eval`` and ``report`` a refined dataset (``load_refined``, which also takes
the output folder of ``refine``/``demo``/``build``, and ``read_run_info`` its ``run.json``).

A name that looks like a path (it starts with ``.``, ``/`` or ``~``, ends in a known extension, or is not a
valid Hub id) and does not exist is "no such file", never a Hub lookup with its retries.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict, IterableDataset, IterableDatasetDict, load_dataset, load_from_disk

from hadron_hf import columns as col
from hadron_hf.errors import ConfigError, InputError

_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet", ".txt": "text"}
BUNDLED = "bundled"
"""The input name that means the prompts shipped with hadron_hf."""
RUN_INFO = "run.json"
"""The file ``refine``/``demo``/``build`` write beside their outputs: version, input, config, roles, summary."""
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
_DISK_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")


def bundled_prompts(limit: int | None = None) -> Dataset:
    """The prompts shipped with hadron_hf (explanations, code, math, advice, creative), with a ``category``."""
    text = importlib.resources.files("hadron_hf").joinpath("data/prompts.jsonl").read_text()
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    ds = Dataset.from_list(rows)
    return ds.select(range(min(limit, len(ds)))) if limit is not None else ds


def looks_like_path(name: str) -> bool:
    """Whether ``name`` can only mean a local file or folder (so a missing one is not looked up on the Hub)."""
    return (name.startswith((".", "/", "~")) or Path(name).suffix.lower() in _FORMATS
            or (os.sep != "/" and os.sep in name) or not _HUB_ID.match(name))


def open_dataset(source: str, split: str = "train", *, streaming: bool = False) -> Dataset | IterableDataset:
    """Open a dataset from a local file, a ``save_to_disk`` folder, ``"bundled"`` or a Hub dataset name.

    A ``.txt`` file is read as one prompt per line into a ``prompt`` column.

    Args:
        source: path (``.jsonl``, ``.json``, ``.csv``, ``.parquet``, ``.txt``), folder, ``"bundled"`` or Hub name.
        split: the split to use when the source has several.
        streaming: stream a Hub dataset (an ``IterableDataset``: rows are read only as they are used).
            Local sources always load as a ``Dataset``.

    Raises:
        InputError: the source does not exist, cannot be read, or lacks the split. Hub and network
            failures are one line.
    """
    path = Path(source).expanduser()
    if source == BUNDLED and not path.exists():
        return bundled_prompts()
    try:
        if path.is_dir():
            loaded: Any = load_from_disk(str(path))
        elif path.is_file():
            loaded = _load_file(path)
        elif looks_like_path(source):
            raise InputError(f"{source}: no such file or folder")
        else:
            loaded = load_dataset(source, split=split, streaming=streaming)
    except InputError:
        raise
    except Exception as exc:  # datasets raises many unrelated types for unreadable input
        raise InputError(f"cannot load {source!r}: {one_line(exc)}") from None
    if isinstance(loaded, DatasetDict | IterableDatasetDict):
        if split not in loaded:
            raise InputError(f"{source} has no split {split!r}; its splits are {sorted(loaded)}")
        loaded = loaded[split]
    if not isinstance(loaded, Dataset | IterableDataset):
        raise InputError(f"{source} did not load as a dataset")
    return loaded


def load_prompts(source: str, split: str = "train", limit: int | None = None) -> Dataset:
    """Load a dataset from a local file, a ``save_to_disk`` folder, ``"bundled"`` or a Hub dataset name.

    Args:
        source: see ``open_dataset``.
        split: the split to use when the source has several.
        limit: keep only the first ``limit`` rows.

    Raises:
        InputError: the source does not exist, cannot be read, or lacks the split.
    """
    loaded = open_dataset(source, split)
    if not isinstance(loaded, Dataset):  # open_dataset streams only when asked
        raise InputError(f"{source} did not load as a dataset")
    return loaded.select(range(min(limit, len(loaded)))) if limit is not None else loaded


def refined_location(source: str) -> str:
    """The refined dataset inside an output folder of ``refine``/``demo``/``build`` (``refined/``), else ``source``."""
    path = Path(source).expanduser()
    if path.is_dir() and not any((path / m).exists() for m in _DISK_MARKERS) and (path / "refined").is_dir():
        return str(path / "refined")
    return source


def load_refined(source: str, split: str = "train", limit: int | None = None) -> Dataset:
    """Load a refined dataset: an output folder of ``refine``/``demo``/``build``, a ``save_to_disk`` folder, a
    parquet/jsonl file or a Hub repo.

    Args:
        source: where the refined dataset is (an output folder's ``refined/`` is used).
        split: the split of a source with several.
        limit: keep only the first ``limit`` rows.

    Raises:
        InputError: the source cannot be read, or it is not the output of ``autoreason_map``.
    """
    ds = load_prompts(refined_location(source), split=split, limit=limit)
    needed = (col.DRAFT, col.REFINED, col.TRACE, col.PREFERENCE, col.STATUS)
    if missing := [c for c in needed if c not in ds.column_names]:
        raise InputError(f"{source} is not a refined dataset: it lacks {missing} (its columns are "
                         f"{ds.column_names}). Make one with autoreason_map or `hadron-hf refine`.")
    return ds


def read_run_info(source: str) -> dict[str, Any] | None:
    """The ``run.json`` of an output folder of ``refine``/``demo``/``build`` (``source`` is the folder or its
    ``refined/``); ``None`` for any other source.

    Raises:
        InputError: the file is there but is not valid JSON.
    """
    path = Path(source).expanduser()
    for folder in (path, path.parent if path.name == "refined" else None):
        if folder is not None and (folder / RUN_INFO).is_file():
            try:
                info = json.loads((folder / RUN_INFO).read_text())
            except (OSError, ValueError) as exc:
                raise InputError(f"cannot read {folder / RUN_INFO}: {one_line(exc)}") from None
            return info if isinstance(info, dict) else None
    return None


def check_output(path: str | Path, overwrite: bool = False) -> None:
    """Refuse to write into an existing, non-empty output (a folder with files in it, or a file).

    Raises:
        ConfigError: ``path`` holds something and ``overwrite`` is false; the message names the way out.
    """
    target = Path(path).expanduser()
    occupied = target.is_file() or (target.is_dir() and any(target.iterdir()))
    if occupied and not overwrite:
        raise ConfigError(f"{target} already exists and is not empty; choose another --output, or pass "
                          "--overwrite to replace what is there")


def one_line(exc: BaseException) -> str:
    """An exception as ``Type: first line of its message`` (Hub and network errors span many lines)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _load_file(path: Path) -> Dataset:
    suffix = path.suffix.lower()
    if suffix == ".txt":
        lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        return Dataset.from_dict({"prompt": lines})
    if suffix not in _FORMATS:
        raise InputError(f"{path}: unknown file type {path.suffix!r}; use one of {sorted(_FORMATS)}")
    with quiet_progress_bars():  # the run has one progress display: datasets' own "Generating" bar is noise
        loaded = load_dataset(_FORMATS[suffix], data_files=str(path), split="train")
    if not isinstance(loaded, Dataset):
        raise InputError(f"{path} did not load as a dataset")
    return loaded


@contextlib.contextmanager
def quiet_progress_bars() -> Iterator[None]:
    """Hide ``datasets`` and ``huggingface_hub`` progress bars (saving, views, uploads) inside the block:
    the run has one progress display, the tournament's."""
    import datasets
    import huggingface_hub.utils as hub_utils

    was_off, hub_was_off = datasets.is_progress_bar_enabled() is False, hub_utils.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    hub_utils.disable_progress_bars()
    try:
        yield
    finally:
        if not was_off:
            datasets.enable_progress_bars()
        if not hub_was_off:
            hub_utils.enable_progress_bars()
