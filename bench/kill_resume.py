"""``kill -9`` at a random moment, then a re-run: how many answers the server had sent are bought again?

A job (40 rows, L = 50 ms by default) runs in a child process against a loopback server. It is killed with
SIGKILL at a random moment between 20% and 80% of an uninterrupted run's wall time, then run again on the
same cache. Every answer the server delivered before the kill should be in the cache: the share bought
again is ``repeated answers / answers delivered before the kill`` (target ≤ 0.02), and the re-run's output
must equal the uninterrupted run's.

Usage: ``python bench/kill_resume.py [--quick] [--rows 40] [--latency 0.05] [--trials 3] [--seed 0]``
"""

from __future__ import annotations

import argparse
import logging
import os
import pickle
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from harness import bench_prompts, describe_machine, print_ratio  # noqa: E402

from hadron_hf.testing import FakeOpenAIServer, comparable_rows  # noqa: E402


def run_job(url: str, cache_dir: str, rows: int) -> list[dict[str, Any]]:
    """The job: ``rows`` prompts, 3 judges, ≤ 3 rounds, through ``Dataset.map``."""
    from datasets import Dataset

    from hadron_hf import AutoReasonConfig, ModelConfig, autoreason_map

    cfg = AutoReasonConfig(model=ModelConfig(base_url=url, model="fake", api_key_env=None, max_concurrency=64),
                           judges=3, max_iterations=3, seed=0, cache_dir=cache_dir, progress=False)
    ds = Dataset.from_dict({"prompt": bench_prompts(rows)})
    return ds.map(autoreason_map, batched=True, batch_size=8, fn_kwargs={"config": cfg}).to_list()


def child(url: str, cache_dir: str, rows: int, out: str) -> None:
    """Entry point of the job process."""
    logging.getLogger("datasets").setLevel(logging.ERROR)
    result = run_job(url, cache_dir, rows)
    Path(out).write_bytes(pickle.dumps(result))


def start(url: str, cache_dir: str, rows: int, out: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, __file__, "--child", url, cache_dir, str(rows), str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def trial(latency: float, rows: int, rng: random.Random, reference: list[str], wall: float) -> tuple[int, int, bool]:
    """One kill and re-run; returns (answers delivered before the kill, answers bought again, same output)."""
    with tempfile.TemporaryDirectory() as tmp, FakeOpenAIServer(latency=latency) as srv:
        first = start(srv.url, f"{tmp}/cache", rows, Path(tmp) / "first.pkl")
        # From the first request on, not from the process start: imports take most of a short job's wall.
        while srv.log.requests == 0 and first.poll() is None:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.2, 0.8) * wall)
        if first.poll() is not None:
            raise RuntimeError("the job ended before the kill")
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        while srv.log.in_flight:
            time.sleep(0.01)
        delivered = sum(srv.log.answered.values())
        second = start(srv.url, f"{tmp}/cache", rows, Path(tmp) / "second.pkl")
        if second.wait(600) != 0:
            raise RuntimeError("the re-run failed")
        rows_out = pickle.loads((Path(tmp) / "second.pkl").read_bytes())
        return delivered, srv.log.repeated, comparable_rows(rows_out) == reference


def main(argv: Sequence[str] | None = None) -> int:
    """Measure the share of answers bought again over a few random kills."""
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=None, help="rows (default 40, quick 16)")
    p.add_argument("-l", "--latency", type=float, default=0.05)
    p.add_argument("--trials", type=int, default=None, help="kills (default 3, quick 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    rows, trials = args.rows or (16 if args.quick else 40), args.trials or (1 if args.quick else 3)
    print(describe_machine())
    with tempfile.TemporaryDirectory() as tmp, FakeOpenAIServer(latency=args.latency) as srv:
        reference = comparable_rows(run_job(srv.url, tmp, rows))
        wall = srv.log.arrivals[-1] - srv.log.arrivals[0]  # first to last request: imports excluded
        total = sum(srv.log.answered.values())
    rng = random.Random(args.seed)
    delivered = repeated = 0
    identical = True
    for i in range(trials):
        got, again, same = trial(args.latency, rows, rng, reference, wall)
        print(f"kill {i + 1}: {got} of {total} answers delivered before the kill, {again} bought again, "
              f"same output: {same}")
        delivered, repeated, identical = delivered + got, repeated + again, identical and same
    print_ratio("kill_rebought_share", repeated / delivered if delivered else 0.0,
                f"{repeated} of {delivered} answers bought again over {trials} kill(s)")
    print_ratio("kill_output_identical", float(identical))
    return 0


if __name__ == "__main__":
    logging.getLogger("datasets").setLevel(logging.ERROR)
    raise SystemExit(main())
