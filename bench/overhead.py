"""Per-call overhead of hadron_hf's model stack at zero latency, against a bare ``AsyncOpenAI`` loop.

With the server answering at once (L=0, in its own process), calls/s is set by the client's CPU time per
call. Every variant sends the same requests to the same server with the same concurrency:

- ``bare_openai``: ``AsyncOpenAI(max_retries=0)`` and a semaphore, nothing else (the baseline);
- ``stack_nocache`` / ``stack_cache``: ``runtime_for(config)``'s teacher model (retries, limits and, with
  the cache on, a fresh SQLite request cache) called directly with the same requests;
- ``cache_hits``: the same calls again, all answered from the cache (no server);
- ``tournament_nocache`` / ``tournament_cache``: ``Dataset.map(autoreason_map)`` over rows, counting the
  calls the server saw, against ``bare_openai`` replaying exactly those requests (tournament requests
  carry the answers being judged, so they cost the SDK more than the small ones above).

``*_cpu_ms`` lines give each loop's own client CPU per call, all layers included (the target for the
stack and the tournament is ≤ 0.5 ms), and ``*_vs_raw`` its calls/s over the raw aiohttp loop's.

Overhead per call is reported twice: from wall time (``1/rate - 1/bare_rate``) and from this process's
CPU time, which is much less disturbed by other jobs on a shared machine. ``raw_aiohttp`` is the same
loop without the SDK: the ceiling of any Python client here; ``bare_openai_aiohttp`` is the SDK on its
aiohttp transport (``openai.DefaultAioHttpClient``).

Run:
    python bench/overhead.py            # 3000 calls each, C=64, best of 2
    python bench/overhead.py --quick    # 800 calls each, once
    python bench/overhead.py --profile  # also where the stack's and the tournament's CPU time goes
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import tempfile
import time
from collections.abc import Sequence
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
    teacher_like_requests,
)
from profiling import print_profile  # noqa: E402


async def stack_loop(cfg: Any, requests: list[dict[str, Any]], profiler: cProfile.Profile | None = None) -> Timing:
    """``requests`` through the config's full model stack (its teacher), all started at once.

    The stack's own semaphore holds them to ``max_concurrency``, as it does inside a tournament.
    """
    from hadron_hf.chat import SamplingParams
    from hadron_hf.engine.runtime import runtime_for

    model = runtime_for(cfg).roles.teacher

    def call(body: dict[str, Any]) -> Any:
        return model.chat(body["messages"], SamplingParams(body["temperature"], body["max_tokens"], body["seed"]))

    warm = cfg.model.max_concurrency
    await asyncio.gather(*map(call, teacher_like_requests(warm, -warm)))
    wall, cpu = time.perf_counter(), time.process_time()
    if profiler:
        profiler.enable()
    await asyncio.gather(*map(call, requests))
    if profiler:
        profiler.disable()
    return Timing(len(requests), time.perf_counter() - wall, time.process_time() - cpu)


def tournament_run(server: BenchServer, cfg: Any, rows: int, profiler: cProfile.Profile | None = None
                   ) -> tuple[Timing, list[dict[str, Any]]]:
    """``Dataset.map(autoreason_map)`` over ``rows`` rows; calls are those the server saw, which it returns."""
    from datasets import Dataset

    from hadron_hf import autoreason_map

    ds = Dataset.from_dict({"prompt": bench_prompts(rows)})
    server.reset()
    wall, cpu = time.perf_counter(), time.process_time()
    if profiler:
        profiler.enable()
    ds.map(autoreason_map, batched=True, batch_size=16, fn_kwargs={"config": cfg})
    if profiler:
        profiler.disable()
    done = Timing(server.stats().requests, time.perf_counter() - wall, time.process_time() - cpu)
    return done, server.requests(done.calls)


def best(timings: list[Timing]) -> Timing:
    """The repeat with the least CPU per call (the one least disturbed by other jobs)."""
    return min(timings, key=lambda t: t.cpu_ms_per_call)


def report(name: str, timing: Timing, bare: Timing, raw: Timing | None = None) -> None:
    """Print one variant's rate, its ratio to the bare loop (and to the raw aiohttp one) and its CPU per call."""
    wall_ms = 1000 * (1 / timing.rate - 1 / bare.rate) if timing.rate and bare.rate else float("nan")
    cpu_ms = timing.cpu_ms_per_call - bare.cpu_ms_per_call
    print(f"{name}: {timing.calls} calls in {timing.wall:.2f}s, {timing.rate:.0f} calls/s, "
          f"CPU {timing.cpu_ms_per_call:.3f} ms/call; vs bare: {wall_ms:+.3f} ms/call (wall), "
          f"{cpu_ms:+.3f} ms/call (CPU)")
    print_ratio(f"{name}_vs_bare", timing.rate / bare.rate, f"calls/s {timing.rate:.0f} vs {bare.rate:.0f}")
    print_ratio(f"{name}_overhead_ms", cpu_ms, "client CPU ms per call above the bare SDK loop")
    print_ratio(f"{name}_cpu_ms", timing.cpu_ms_per_call, "client CPU ms per call, all layers")
    if raw is not None:
        print_ratio(f"{name}_vs_raw", timing.rate / raw.rate,
                    f"calls/s {timing.rate:.0f} vs raw aiohttp {raw.rate:.0f}; CPU "
                    f"{timing.cpu_ms_per_call - raw.cpu_ms_per_call:+.3f} ms/call")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-c", "--concurrency", type=int, default=64)
    p.add_argument("-n", "--calls", type=int, default=None, help="calls per loop (default 3000, quick 800)")
    p.add_argument("--rows", type=int, default=None, help="tournament rows (default: calls / 16)")
    p.add_argument("--repeats", type=int, default=None, help="interleaved repeats, best kept (default 2, quick 1)")
    p.add_argument("--server", choices=["process", "thread"], default="process")
    p.add_argument("--profile", action="store_true",
                   help="then profile the cached stack and the tournament (separate passes)")
    p.add_argument("--quick", action="store_true", help="800 calls per loop, one repeat")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns the exit code."""
    args = parse_args(argv)
    calls = args.calls or (800 if args.quick else 3000)
    repeats = args.repeats or (1 if args.quick else 2)
    rows = args.rows or max(4, calls // 16)
    import datasets

    datasets.disable_progress_bars()
    print(describe_machine())
    print(f"server: fake OpenAI-compatible, {args.server}, latency 0; C={args.concurrency}, {calls} calls per "
          f"loop, best of {repeats} interleaved repeats")
    small = teacher_like_requests(calls)
    results: dict[str, list[Timing]] = {}
    with BenchServer(0.0, 600, args.server) as server, tempfile.TemporaryDirectory() as tmp:
        common = {"concurrency": args.concurrency, "judges": 3, "max_iterations": 3}
        nocache = make_config(server.url, cache=False, **common)
        url, c = server.url, args.concurrency
        # The first loop in a process pays one-time costs (lazy imports, first allocations): throw one away.
        asyncio.run(bare_openai_loop(url, c, teacher_like_requests(min(calls, 400), -10_000)))
        for r in range(repeats):
            cached = make_config(url, cache=True, cache_dir=f"{tmp}/{r}", **common)
            map_cached = make_config(url, cache=True, cache_dir=f"{tmp}/map{r}", seed=1, **common)
            loops = {
                "bare_openai": bare_openai_loop(url, c, small),
                "bare_openai_aiohttp": bare_openai_loop(url, c, small, "aiohttp"),
                "raw_aiohttp": raw_aiohttp_loop(url, c, small),
                "stack_nocache": stack_loop(nocache, small),
                "stack_cache": stack_loop(cached, small),
                "cache_hits": stack_loop(cached, small),  # the same calls again: all hits
            }
            for name, loop in loops.items():
                results.setdefault(name, []).append(asyncio.run(loop))
            for name, cfg in (("tournament_nocache", nocache), ("tournament_cache", map_cached)):
                done, sent = tournament_run(server, cfg, rows)
                results.setdefault(name, []).append(done)
                results.setdefault(f"{name}:bare", []).append(asyncio.run(bare_openai_loop(url, c, sent)))
                results.setdefault(f"{name}:raw", []).append(asyncio.run(raw_aiohttp_loop(url, c, sent)))
        bare = best(results.pop("bare_openai"))
        print(f"bare_openai: {bare.calls} calls in {bare.wall:.2f}s, {bare.rate:.0f} calls/s, "
              f"CPU {bare.cpu_ms_per_call:.3f} ms/call")
        hits = best(results.pop("cache_hits"))
        raw = best(results["raw_aiohttp"])
        for name, timings in results.items():
            if name.startswith("tournament_") and ":" not in name:
                replay, raw_replay = best(results[f"{name}:bare"]), best(results[f"{name}:raw"])
                print(f"bare_openai replaying {name}'s {replay.calls} requests: {replay.rate:.0f} calls/s, "
                      f"CPU {replay.cpu_ms_per_call:.3f} ms/call; raw aiohttp: {raw_replay.rate:.0f} calls/s, "
                      f"CPU {raw_replay.cpu_ms_per_call:.3f} ms/call")
                report(name, best(timings), replay, raw_replay)
            elif ":" not in name:
                report(name, best(timings), bare, None if name == "raw_aiohttp" else raw)
        print(f"cache_hits: {hits.calls} calls in {hits.wall:.2f}s, {hits.rate:.0f} calls/s, "
              f"CPU {hits.cpu_ms_per_call:.3f} ms/call (no server)")
        if args.profile:
            profiler = cProfile.Profile()
            asyncio.run(stack_loop(make_config(url, cache=True, cache_dir=f"{tmp}/p", **common), small, profiler))
            print_profile(pstats.Stats(profiler), "stack_cache (cProfile pass)",
                          cpu_ms_per_call=best(results["stack_cache"]).cpu_ms_per_call)
            profiler = cProfile.Profile()
            tournament_run(server, make_config(url, cache=True, cache_dir=f"{tmp}/pm", seed=2, **common),
                           rows, profiler)
            print_profile(pstats.Stats(profiler), "tournament_cache (cProfile pass)",
                          cpu_ms_per_call=best(results["tournament_cache"]).cpu_ms_per_call)
    return 0


if __name__ == "__main__":
    sys.exit(main())
