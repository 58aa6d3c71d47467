"""One autoreason map in a process of its own, for the kill-and-resume tests in ``test_faults.py``.

Usage: ``python tests/kill_resume_job.py URL CACHE_DIR OUT_PICKLE``. The test kills it part-way, runs it
again, and compares the pickled rows with an uninterrupted run of the same ``job_config``.
"""

from __future__ import annotations

import pickle
import signal
import sys
from typing import Any

from datasets import Dataset

from hadron_hf import AutoReasonConfig, ModelConfig, autoreason_map

ROWS = 8
BATCH_SIZE = 4
MAX_CONCURRENCY = 8


def job_config(url: str, cache_dir: str) -> AutoReasonConfig:
    """The job's config; only the server and cache folder vary between runs."""
    return AutoReasonConfig(
        model=ModelConfig(base_url=url, model="m", api_key_env=None, timeout=30, max_concurrency=MAX_CONCURRENCY),
        judges=3, converge_k=2, max_iterations=2, seed=7, cache_dir=cache_dir, progress=False,
    )


def job_dataset() -> Dataset:
    """The job's input rows."""
    return Dataset.from_dict({"prompt": [f"Kill-test question {i}: explain idea {i}." for i in range(ROWS)]})


def run_job(url: str, cache_dir: str) -> list[dict[str, Any]]:
    """Refine ``job_dataset()`` and return the rows."""
    out = job_dataset().map(autoreason_map, batched=True, batch_size=BATCH_SIZE,
                            fn_kwargs={"config": job_config(url, cache_dir)})
    return out.to_list()


if __name__ == "__main__":
    # A shell may start us with SIGINT ignored (background jobs); Ctrl+C must raise KeyboardInterrupt here.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    server_url, cache, out_path = sys.argv[1:4]
    rows = run_job(server_url, cache)
    with open(out_path, "wb") as f:
        pickle.dump(rows, f)
