"""One batch-mode autoreason map in a process of its own, for the kill-and-resume test in ``test_batch.py``.

Usage: ``python tests/batch_kill_job.py URL CACHE_DIR OUT_PICKLE MODE``. The test kills it while a batch
is in flight, runs it again, and compares the pickled rows with a live run of the same ``job_config``.
"""

from __future__ import annotations

import pickle
import sys
from typing import Any, Literal

from datasets import Dataset

from hadron_hf import AutoReasonConfig, ModelConfig, autoreason_map

ROWS = 6


def job_config(url: str, cache_dir: str, mode: Literal["live", "batch"] = "batch") -> AutoReasonConfig:
    """The job's config; only the server, cache folder and mode vary between runs."""
    return AutoReasonConfig(
        model=ModelConfig(base_url=url, model="m", api_key_env=None, timeout=30, mode=mode, max_concurrency=2,
                          batch_poll_s=0.02, batch_idle_s=0.05),
        judges=3, converge_k=2, max_iterations=2, seed=11, cache_dir=cache_dir, progress=False,
    )


def job_dataset() -> Dataset:
    """The job's input rows."""
    return Dataset.from_dict({"prompt": [f"Batch kill-test question {i}: explain idea {i}." for i in range(ROWS)]})


def run_job(url: str, cache_dir: str, mode: Literal["live", "batch"] = "batch") -> list[dict[str, Any]]:
    """Refine ``job_dataset()`` with every row in one map batch, and return the rows."""
    ds = job_dataset()
    cfg = job_config(url, cache_dir, mode)
    out = ds.map(autoreason_map, batched=True, batch_size=len(ds), fn_kwargs={"config": cfg})
    rows: list[dict[str, Any]] = out.to_list()
    return rows


if __name__ == "__main__":
    server_url, cache, out_path = sys.argv[1:4]
    rows = run_job(server_url, cache)
    with open(out_path, "wb") as f:
        pickle.dump(rows, f)
