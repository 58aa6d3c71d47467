"""Hadron's default workload against its dependent-call floor, and the same workload under mixed faults.

The workload: 20 prompts, 7 judges, up to 15 rounds, k = 2, hadron variant, server latency L = 200 ms.
A row cannot finish faster than L times its dependent steps: 1 (the draft) plus 3 per full round
(critic; B and AB in parallel; the judges in parallel) and 1 per round the critic ends with NO FLAWS. The
job cannot finish before its slowest row, so the floor is ``L × max(steps)`` and the ratio is
``wall / floor`` (target ≤ 1.1).

With ``--faults RATE`` (default 0.2 in the second part) the server injects 429 (``Retry-After: 1``), 503,
dropped connections, malformed and empty replies on that share of requests, on 60 rows; it prints the
rows lost and the wall against the fault-free run of the same rows (target: 0 lost, ≤ 2×).

Usage: ``python bench/hadron_workload.py [--quick] [--rows 20] [--fault-rows 60] [--latency 0.2]``
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from harness import BenchServer, bench_prompts, describe_machine, print_ratio  # noqa: E402

from hadron_hf import AutoReasonConfig, ModelConfig, autoreason_map  # noqa: E402
from hadron_hf.testing import FakeOpenAIServer, Faults, dependent_steps  # noqa: E402

FAULT_KINDS = ("429", "503", "drop", "malformed", "empty")


def workload_config(url: str, cache_dir: str, **model: Any) -> AutoReasonConfig:
    """Hadron's defaults: 7 judges, ≤ 15 rounds, k = 2, hadron variant; the cache off-path (fresh folder)."""
    return AutoReasonConfig(model=ModelConfig(base_url=url, model="fake", api_key_env=None, **model),
                            judges=7, max_iterations=15, converge_k=2, variant="hadron", seed=0,
                            cache_dir=cache_dir, progress=False)


def run(url: str, rows: int, **model: Any) -> tuple[float, Any]:
    """Refine ``rows`` prompts once (fresh cache); returns the wall seconds and the output."""
    from datasets import Dataset

    ds = Dataset.from_dict({"prompt": bench_prompts(rows)})
    with tempfile.TemporaryDirectory() as cache:
        cfg = workload_config(url, cache, **model)
        started = time.perf_counter()
        out = ds.map(autoreason_map, batched=True, batch_size=max(1, rows), fn_kwargs={"config": cfg})
        return time.perf_counter() - started, out


def floor_part(latency: float, rows: int, concurrency: int) -> None:
    """The workload against its dependent-call floor, with ``concurrency`` calls in flight at most."""
    # The server in a process of its own, as a real one would be: in this process it would share the GIL
    # with the client being measured and add its own CPU to every step of the chain.
    with BenchServer(latency, completion_chars=0, mode="process") as srv:
        run(srv.url, 2)  # warm-up: imports, first connections
        srv.reset()
        wall, out = run(srv.url, rows, max_concurrency=concurrency)
        requests = srv.stats().requests
    steps = [dependent_steps(t) for t in out["autoreason_trace"]]
    floor = latency * max(steps)
    print(f"workload: {rows} rows, {requests} calls, max_concurrency {concurrency}, "
          f"steps per row {min(steps)}..{max(steps)}, "
          f"wall {wall:.2f} s, floor {floor:.2f} s")
    print_ratio("hadron_workload_of_floor", wall / floor, f"wall {wall:.2f} s / floor {floor:.2f} s")


def faults_part(latency: float, rows: int, rate: float) -> None:
    """The workload on ``rows`` rows with and without ``rate`` mixed faults."""
    with FakeOpenAIServer(latency=latency) as clean:
        clean_wall, clean_out = run(clean.url, rows)
    faults = Faults(rate=rate, kinds=FAULT_KINDS, retry_after=1.0, seed=3)
    with FakeOpenAIServer(latency=latency, faults=faults) as faulty:
        wall, out = run(faulty.url, rows, max_retries=10, timeout=30)
        injected = dict(faulty.log.faults)
        requests = faulty.log.requests
    lost = sum(status != "ok" for status in out["autoreason_status"])
    same = out["refined"] == clean_out["refined"]
    print(f"faults: {rows} rows, {requests} requests, injected {injected}, rows lost {lost}, "
          f"same refined answers as fault-free: {same}")
    print_ratio("faults_rows_lost", float(lost))
    print_ratio("faults_wall_vs_clean", wall / clean_wall, f"{wall:.2f} s vs {clean_wall:.2f} s fault-free")


def main(argv: Sequence[str] | None = None) -> int:
    """Run both parts and print their ratios."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=None, help="rows of the floor part (default 20, quick 8)")
    p.add_argument("--fault-rows", type=int, default=None, help="rows of the faults part (default 60, quick 16)")
    p.add_argument("--faults", type=float, default=0.2, help="share of requests that get a fault (default 0.2)")
    p.add_argument("-l", "--latency", type=float, default=0.2)
    p.add_argument("-c", "--concurrency", type=int, default=64, help="max_concurrency of the floor part (default 64)")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    logging.getLogger("datasets").setLevel(logging.ERROR)
    logging.getLogger("hadron_hf").setLevel(logging.ERROR)
    print(describe_machine())
    floor_part(args.latency, args.rows or (8 if args.quick else 20), args.concurrency)
    faults_part(args.latency, args.fault_rows or (16 if args.quick else 60), args.faults)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
