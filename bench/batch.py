"""Batch mode against the loopback batch API: batches per dependent step, wall time, kill -9 and resume.

For each variant (3 judges, at most 3 rounds) the same job runs live and then in batch mode against one
``FakeBatchServer`` whose batches take ``--delay`` D seconds. It prints:

- ``batches_per_step_<variant>``: batches submitted / the job's longest chain of dependent calls (1.0 is
  the goal: one batch per step);
- ``wall_per_step_delay_<variant>``: wall time / (steps × D) (1.0 is the floor; the rest is the idle
  window, polling and the client);
- ``batch_equals_live_<variant>``: 1.0 when the batch run's rows equal the live run's;
- ``kill9_resubmitted``: requests submitted twice after a ``kill -9`` mid-job and a re-run (goal 0), and
  ``kill9_equals_live``.

Run:
    python bench/batch.py --quick       # 16 rows, D = 0.5 s (about a minute)
    python bench/batch.py               # 64 rows, D = 2 s
"""

from __future__ import annotations

import argparse
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from datasets import Dataset

from hadron_hf import AutoReasonConfig, ModelConfig, autoreason_map
from hadron_hf.testing import FakeBatchServer, comparable_rows, dependent_steps

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import bench_prompts, describe_machine, print_ratio  # noqa: E402


def job_config(url: str, cache_dir: str, mode: str, variant: str, args: argparse.Namespace) -> AutoReasonConfig:
    """The benchmark job's config; mode, variant and cache vary."""
    model = ModelConfig(base_url=url, model="fake", api_key_env=None, mode=mode, batch_poll_s=args.poll,  # type: ignore[arg-type]
                        batch_idle_s=args.idle)
    return AutoReasonConfig(model=model, judges=args.judges, max_iterations=args.max_iterations, variant=variant,  # type: ignore[arg-type]
                            seed=3, cache_dir=cache_dir, progress=False)


def run_job(url: str, cache_dir: str, mode: str, variant: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Refine the benchmark prompts with every row in one map batch; returns the rows."""
    ds = Dataset.from_dict({"prompt": bench_prompts(args.rows)})
    out = ds.map(autoreason_map, batched=True, batch_size=len(ds), load_from_cache_file=False,
                 fn_kwargs={"config": job_config(url, cache_dir, mode, variant, args)})
    rows: list[dict[str, Any]] = out.to_list()
    return rows


def dependent_steps_of(rows: list[dict[str, Any]]) -> int:
    """The longest chain of dependent calls over the rows."""
    return max(dependent_steps(row["autoreason_trace"]) for row in rows)


def bench_variant(variant: str, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp, FakeBatchServer(completion_delay=args.delay) as srv:
        live = run_job(srv.url, f"{tmp}/live", "live", variant, args)
        started = time.perf_counter()
        rows = run_job(srv.url, f"{tmp}/batch", "batch", variant, args)
        wall = time.perf_counter() - started
        batches, resubmitted = len(srv.batch_log.batches), srv.batch_log.resubmitted
    steps = dependent_steps_of(rows)
    calls = sum(r["autoreason_usage"]["calls"] for r in rows)
    ok = sum(r["autoreason_status"] == "ok" for r in rows)
    print(f"{variant}: {args.rows} rows ({ok} ok), {calls} calls in {batches} batches, {steps} dependent steps, "
          f"wall {wall:.2f} s with D = {args.delay} s; requests submitted twice: {resubmitted}")
    print_ratio(f"batches_per_step_{variant}", batches / steps, f"{batches} batches / {steps} steps")
    print_ratio(f"wall_per_step_delay_{variant}", wall / (steps * args.delay),
                f"{wall:.2f} s / ({steps} × {args.delay} s)")
    print_ratio(f"batch_equals_live_{variant}", float(comparable_rows(rows) == comparable_rows(live)))


def bench_kill(args: argparse.Namespace) -> None:
    variant = "paper"
    with tempfile.TemporaryDirectory() as tmp, FakeBatchServer(completion_delay=args.delay) as srv:
        live = run_job(srv.url, f"{tmp}/live", "live", variant, args)
        out = Path(tmp) / "rows.pkl"
        cmd = [sys.executable, __file__, "--child", srv.url, f"{tmp}/cache", str(out), variant,
               "--rows", str(args.rows), "--delay", str(args.delay), "--poll", str(args.poll),
               "--idle", str(args.idle), "--judges", str(args.judges), "--max-iterations", str(args.max_iterations)]
        first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 600
        while _recorded(Path(tmp) / "cache" / "requests.sqlite") < 3 and first.poll() is None:
            if time.monotonic() > deadline:
                raise SystemExit("the job never recorded a third batch")
            time.sleep(0.02)
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        before = srv.batch_log.lines
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rows = pickle.loads(out.read_bytes())
        lines, resubmitted = srv.batch_log.lines, srv.batch_log.resubmitted
    print(f"kill -9 with the third batch in flight: {before} requests submitted before, {lines - before} by the "
          f"re-run, {resubmitted} submitted twice")
    print_ratio("kill9_resubmitted", float(resubmitted), "requests submitted twice over both runs")
    print_ratio("kill9_equals_live", float(comparable_rows(rows) == comparable_rows(live)))


def _recorded(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM batch_jobs").fetchone()[0])
    except sqlite3.Error:
        return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--delay", type=float, default=2.0, help="D: seconds each batch takes")
    parser.add_argument("--poll", type=float, default=0.05, help="batch_poll_s")
    parser.add_argument("--idle", type=float, default=0.1, help="batch_idle_s")
    parser.add_argument("--judges", type=int, default=3)
    parser.add_argument("--max-iterations", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="16 rows, D = 0.5 s")
    parser.add_argument("--no-kill", action="store_true", help="skip the kill -9 run")
    parser.add_argument("--child", nargs=4, metavar=("URL", "CACHE", "OUT", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.rows, args.delay = 16, 0.5
    if args.child:
        url, cache, out, variant = args.child
        Path(out).write_bytes(pickle.dumps(run_job(url, cache, "batch", variant, args)))
        return
    print(describe_machine())
    for variant in ("paper", "hadron"):
        bench_variant(variant, args)
    if not args.no_kill:
        bench_kill(args)


if __name__ == "__main__":
    main()
