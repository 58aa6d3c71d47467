"""Throughput of ``autoreason_map`` against the physical bound ``min(C / L, RPM / 60)``.

A loopback OpenAI-compatible server answers every call after ``L`` seconds; ``Dataset.map`` runs the
tournament over N rows with ``max_concurrency=C``. The script prints, per C, the achieved calls/s as a
ratio of the bound, the server's peak number of requests in flight and rows/min, and, for attribution,
the same ratio for bare ``AsyncOpenAI`` loops (httpx and aiohttp transports) and a raw aiohttp loop
replaying the map's own requests with the same C and L (``map_vs_raw_aiohttp``: the map's calls/s over
the raw aiohttp loop's). ``--backend openai_sdk`` measures the opt-in SDK transport instead of the default
aiohttp one. ``client_cpu_capacity`` is the calls/s one free
core could drive at the measured client CPU per call, over the bound: below 1, the client cannot reach
the bound on this machine, however idle.

A row's calls depend on each other (L × (1 + 4 × iterations) in the paper variant), so the dataset must
be large enough that C calls are always waiting; by default N = 4 × C / (calls a row has in flight on
average). The line ``ratio ..._of_floor`` also accounts for the slowest row's critical path.

Run:
    python bench/throughput.py                      # C=64 and C=256, L=200 ms
    python bench/throughput.py --quick              # smaller N, a minute or so
    python bench/throughput.py -c 64 --profile      # where the client's CPU time goes
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import math
import pstats
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402
    BenchServer,
    Timing,
    bare_openai_loop,
    bench_prompts,
    describe_machine,
    make_config,
    print_ratio,
    raw_aiohttp_loop,
)
from profiling import print_profile  # noqa: E402


@dataclass
class MapRun:
    """One measured ``Dataset.map`` run."""

    rows: int
    calls: int
    wall: float
    cpu: float
    peak_in_flight: int
    critical_steps: int
    errors: int
    server_cpu: float | None
    stats: pstats.Stats | None = None


def calls_in_flight_per_row(judges: int, iterations: int, variant: str) -> float:
    """Average calls a row has outstanding: its calls over its dependent steps."""
    per_round, steps_per_round = (2 + judges, 3) if variant == "hadron" else (3 + judges, 4)
    return (1 + iterations * per_round) / (1 + iterations * steps_per_round)


def default_rows(concurrency: int, judges: int, iterations: int, variant: str, factor: float, batch: int) -> int:
    """Enough rows that ``concurrency`` calls are always waiting: ``factor × C / in-flight-per-row``."""
    rows = factor * concurrency / calls_in_flight_per_row(judges, iterations, variant)
    return int(math.ceil(rows / batch) * batch)


def row_steps(trace: dict[str, Any]) -> int:
    """Dependent call steps of one row: the teacher, then per round critic, B, AB, judges (fewer in hadron)."""
    steps = 1
    for rnd in trace["rounds"]:
        if rnd["no_flaws"]:
            steps += 1
        else:
            steps += 3 if trace["variant"] == "hadron" else 4
    return steps


def run_map(server: BenchServer, cfg: Any, rows: int, batch_size: int, profile: bool) -> MapRun:
    """Refine ``rows`` prompts with ``Dataset.map`` and read the server's counters."""
    from datasets import Dataset

    from hadron_hf import autoreason_map

    ds = Dataset.from_dict({"prompt": bench_prompts(rows)})
    server.reset()
    profiler = cProfile.Profile() if profile else None
    wall, cpu = time.perf_counter(), time.process_time()
    if profiler:
        profiler.enable()
    out = ds.map(autoreason_map, batched=True, batch_size=batch_size, fn_kwargs={"config": cfg})
    if profiler:
        profiler.disable()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    seen = server.stats()
    traces = [t for t in out["autoreason_trace"] if t is not None]
    errors = sum(s != "ok" for s in out["autoreason_status"])
    steps = max((row_steps(t) for t in traces), default=0)
    return MapRun(rows, seen.requests, wall, cpu, seen.peak_in_flight, steps, errors, seen.cpu,
                  pstats.Stats(profiler) if profiler else None)


def measure(args: argparse.Namespace, server: BenchServer, concurrency: int) -> None:
    """Run and report one concurrency level."""
    bound = concurrency / args.latency
    if args.rpm:
        bound = min(bound, args.rpm / 60)
    rows = args.rows or default_rows(concurrency, args.judges, args.max_iterations, args.variant,
                                     2 if args.quick else 4, args.batch_size)
    cfg = make_config(server.url, concurrency=concurrency, rpm=args.rpm, judges=args.judges,
                      max_iterations=args.max_iterations, variant=args.variant, cache=False, seed=concurrency,
                      backend=args.backend)
    run = run_map(server, cfg, rows, args.batch_size, args.profile)
    rate = run.calls / run.wall
    floor = max(run.calls / bound, run.critical_steps * args.latency)
    print(f"C={concurrency} L={args.latency * 1000:g}ms rpm={args.rpm or '-'}: {run.rows} rows, {run.calls} calls "
          f"({run.calls / run.rows:.1f}/row) in {run.wall:.1f}s, {rate:.1f} calls/s (bound {bound:.1f}), "
          f"peak in flight {run.peak_in_flight}, {60 * run.rows / run.wall:.0f} rows/min, "
          f"slowest row {run.critical_steps} steps, {run.errors} failed rows")
    busy = f"client CPU {1000 * run.cpu / run.calls:.2f} ms/call, busy {run.cpu / run.wall:.0%} of the run"
    if run.server_cpu is not None:
        busy += (f"; server CPU {1000 * run.server_cpu / run.calls:.2f} ms/call, busy "
                 f"{run.server_cpu / run.wall:.0%} (its one thread is the bottleneck when this nears what "
                 "a core can give it)")
    print(busy)
    print_ratio(f"throughput_c{concurrency}", rate / bound, f"calls/s {rate:.1f} of bound {bound:.1f}")
    print_ratio(f"throughput_c{concurrency}_of_floor", floor / run.wall,
                f"best possible {floor:.1f}s given the bound and the slowest row's critical path")
    print_ratio(f"peak_in_flight_c{concurrency}", run.peak_in_flight / concurrency,
                f"peak {run.peak_in_flight} of C={concurrency}")
    capacity = run.calls / run.cpu
    print_ratio(f"client_cpu_capacity_c{concurrency}", capacity / bound,
                f"one free core at {1000 * run.cpu / run.calls:.2f} CPU ms/call sustains {capacity:.0f} calls/s; "
                "below 1 the client cannot reach the bound here, whatever the load")
    if run.stats is not None:
        print_profile(run.stats, f"throughput C={concurrency} (cProfile on, so the ratio above is lower)")
    if args.reference:
        requests = server.requests(min(run.calls, max(concurrency * 4, int(rate * args.reference_seconds))))
        loops = reference_loops(server.url, concurrency, requests)
        for name, timing in loops:
            print_ratio(f"{name}_c{concurrency}", timing.rate / bound,
                        f"{timing.rate:.1f} calls/s, client CPU {timing.cpu_ms_per_call:.2f} ms/call, "
                        f"replaying the map's first {timing.calls} requests, same C and L")
        raw = dict(loops)["raw_aiohttp"]
        print_ratio(f"map_vs_raw_aiohttp_c{concurrency}", rate / raw.rate,
                    f"the map's {rate:.1f} calls/s over a raw aiohttp loop's {raw.rate:.1f} on the same requests")


def reference_loops(url: str, concurrency: int, requests: list[dict[str, Any]]) -> list[tuple[str, Timing]]:
    """Bare ``AsyncOpenAI`` loops (default httpx transport, then aiohttp) and a raw aiohttp loop replaying
    ``requests`` with the same concurrency, for attribution."""
    return [
        ("bare_openai", asyncio.run(bare_openai_loop(url, concurrency, requests))),
        ("bare_openai_aiohttp", asyncio.run(bare_openai_loop(url, concurrency, requests, "aiohttp"))),
        ("raw_aiohttp", asyncio.run(raw_aiohttp_loop(url, concurrency, requests))),
    ]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-c", "--concurrency", type=int, nargs="+", default=[64, 256], help="max_concurrency values")
    p.add_argument("-l", "--latency", type=float, default=0.2, help="server latency in seconds (default 0.2)")
    p.add_argument("--rpm", type=float, default=None, help="ModelConfig.rpm (default: none)")
    p.add_argument("-n", "--rows", type=int, default=None, help="rows (default: 4 × C / in-flight per row)")
    p.add_argument("--judges", type=int, default=3)
    p.add_argument("--max-iterations", type=int, default=3)
    p.add_argument("--variant", choices=["paper", "hadron"], default="paper")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--completion-chars", type=int, default=600, help="length of drafted answers")
    p.add_argument("--server", choices=["process", "thread"], default="process",
                   help="fake server in a child process (default) or in this process's GIL")
    p.add_argument("--no-reference", dest="reference", action="store_false",
                   help="skip the bare AsyncOpenAI and aiohttp loops")
    p.add_argument("--reference-seconds", type=float, default=8.0,
                   help="length of each reference loop, at the map's rate")
    p.add_argument("--profile", action="store_true", help="run the map under cProfile and print where time went")
    p.add_argument("--backend", choices=["openai", "openai_sdk"], default="openai",
                   help="ModelConfig.backend: openai (aiohttp, the default) or openai_sdk (the openai SDK)")
    p.add_argument("--quick", action="store_true", help="half the default rows")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns the exit code."""
    args = parse_args(argv)
    import datasets

    datasets.disable_progress_bars()
    print(describe_machine())
    print(f"server: fake OpenAI-compatible, {args.server}, latency {args.latency * 1000:g} ms, "
          f"answers of {args.completion_chars} chars; {args.variant} variant, {args.judges} judges, "
          f"≤{args.max_iterations} rounds, cache off, backend {args.backend}")
    with BenchServer(args.latency, args.completion_chars, args.server) as server:
        for concurrency in args.concurrency:
            measure(args, server, concurrency)
    return 0


if __name__ == "__main__":
    sys.exit(main())
