"""Rows/min of ``hadron_hf.scale.ray_engine.refine_ray`` with 1, 2 and 4 worker actors against the loopback server.

The server runs in a child process at a fixed latency. Each worker holds at most
``batch_size * 4 * tasks_per_worker`` rows at once (Ray Data runs 4 batches of an async function per task),
so one worker's rate is capped by that and the latency, and more workers should scale it. Every call goes
the default way: a permit from the cluster limiter (``max_concurrency`` set high so it never binds) and
the cache actor on this node (empty each run).

Rows/min is measured over the server's span (first request to last answer), which leaves out the few
seconds Ray needs to start the actors; the end-to-end rate is printed too.

Run:
    python bench/ray_scaling.py                 # 64 rows, latency 1 s, 1/2/4 workers
    python bench/ray_scaling.py --latency 0.2 --rows 128   # where a 2-core machine runs out of CPU
    python bench/ray_scaling.py --quick         # 32 rows, 1 and 2 workers
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import os
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import bench_prompts, describe_machine, print_ratio  # noqa: E402

from hadron_hf.config import AutoReasonConfig, ModelConfig  # noqa: E402
from hadron_hf.testing import FakeOpenAIServer  # noqa: E402

ASYNC_BATCHES_PER_TASK = 4  # Ray Data's default concurrency for an async map_batches function
SKIPPED = 3  # the exit code bench/run_all.py reads as "skipped"


def _serve(conn: Connection, latency: float) -> None:
    with FakeOpenAIServer(latency=latency) as server:
        conn.send(server.url)
        while conn.recv() != "stop":
            conn.send((server.log.requests, list(server.log.arrivals)))
            server.log = type(server.log)()
        conn.send(None)


class ServerProcess:
    """``FakeOpenAIServer`` in a child process (its own interpreter), reporting its arrivals."""

    def __init__(self, latency: float) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, latency), daemon=True)
        self._proc.start()
        self.url: str = self._conn.recv()

    def take_log(self) -> tuple[int, list[float]]:
        """Requests and arrival times since the last call, then a fresh log."""
        self._conn.send("log")
        requests, arrivals = self._conn.recv()
        return int(requests), list(arrivals)

    def close(self) -> None:
        """Stop the server and its process."""
        self._conn.send("stop")
        self._conn.recv()
        self._proc.join(10)


def run_once(url: str, workers: int, rows: int, batch_size: int, max_iterations: int) -> float:
    """Refine ``rows`` rows with ``workers`` actors; returns the end-to-end seconds."""
    import ray.data

    from hadron_hf.scale.ray_engine import RayOptions, refine_ray

    cfg = AutoReasonConfig(
        model=ModelConfig(base_url=url, model="fake", api_key="bench", max_concurrency=10_000, timeout=600),
        judges=3, converge_k=2, max_iterations=max_iterations, seed=0, cache_dir=tempfile.mkdtemp(),
    )
    per_task = batch_size * ASYNC_BATCHES_PER_TASK
    source = ray.data.from_items([{"prompt": p} for p in bench_prompts(rows)],
                                 override_num_blocks=max(1, rows // per_task))
    options = RayOptions(num_workers=workers, batch_size=batch_size, tasks_per_worker=1, worker_cpus=0.5)
    started = time.perf_counter()
    out = refine_ray(source, cfg, options).materialize()
    wall = time.perf_counter() - started
    ok = sum(r == "ok" for r in out.to_pandas()["autoreason_status"])
    if ok != rows:
        raise SystemExit(f"only {ok} of {rows} rows refined")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--latency", type=float, default=1.0, help="seconds per server reply")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-iterations", type=int, default=2)
    parser.add_argument("--workers", default="1,2,4", help="comma-separated actor counts")
    parser.add_argument("--quick", action="store_true", help="32 rows, 1 and 2 workers")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.workers = 32, "1,2"
    counts = [int(n) for n in args.workers.split(",")]
    try:
        import ray
    except ModuleNotFoundError:
        print('skipped: needs Ray (pip install "hadron_hf[ray]")')
        raise SystemExit(SKIPPED) from None

    os.environ.setdefault("HADRON_HF_PROGRESS", "0")
    ray.init(num_cpus=max(2, max(counts)), include_dashboard=False, logging_level=logging.WARNING,
             object_store_memory=256 * 1024**2)
    ray.data.DataContext.get_current().wait_for_min_actors_s = 300
    ray.data.DataContext.get_current().enable_progress_bars = False
    server = ServerProcess(args.latency)
    print(describe_machine())
    print(f"rows={args.rows} latency={args.latency}s batch_size={args.batch_size} max_iterations={args.max_iterations} "
          f"rows in flight per worker <= {args.batch_size * ASYNC_BATCHES_PER_TASK}")
    rates: dict[int, float] = {}
    try:
        for workers in counts:
            server.take_log()
            wall = run_once(server.url, workers, args.rows, args.batch_size, args.max_iterations)
            requests, arrivals = server.take_log()
            span = max(arrivals) - min(arrivals) + args.latency
            rates[workers] = 60 * args.rows / span
            print(f"workers={workers}: {rates[workers]:.0f} rows/min over the server span ({span:.1f} s, "
                  f"{requests} calls); end to end {60 * args.rows / wall:.0f} rows/min ({wall:.1f} s)", flush=True)
    finally:
        server.close()
        ray.shutdown()
    base = counts[0]
    for workers in counts[1:]:
        print_ratio(f"ray_{workers}_over_{base}_workers", rates[workers] / rates[base],
                    f"ideal {workers / base:.0f}")


if __name__ == "__main__":
    main()
