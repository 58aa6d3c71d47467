"""What speculative critique (``speculate``) buys: wall time against a run without it, at what extra calls.

For each variant and ``early_stop_judging`` (off, on), refines the same rows three times against a
scripted loopback server that answers after ``--latency`` seconds: ``speculate="off"``, ``"incumbent"``
and ``"all"`` (cache off, so every call reaches the server). Prints a table and ``ratio`` lines:

- ``speculate_wall_<variant>_<mode>_es<on|off>``: wall time over the same run without speculation;
- ``speculate_extra_calls_<...>``: discarded speculative calls over the run's own calls;
- ``speculate_identical_<...>``: 1.000 when every output row equals the run without speculation's, apart
  from the speculative usage and trace fields (the script exits 1 otherwise).

The workload is Hadron's default (20 prompts, 7 judges, ≤ 15 rounds, k = 2) with judges that follow a
shared preference with probability ``--judge-agreement`` (0.8), as in ``bench/cost.py``. The job's wall
time is that of its slowest row's chain of dependent calls, which is what speculation shortens: in
``incumbent`` mode a round saves one step when the incumbent keeps its place (it wins, the round is
undecided, or the hadron critic finds no flaws), in ``all`` mode whichever candidate wins.

Run:
    python bench/speculate.py            # 20 rows, ≤ 15 rounds, both variants, early stopping off and on
    python bench/speculate.py --quick    # 6 rows, ≤ 6 rounds
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cost import ScriptedReplies  # noqa: E402
from harness import bench_prompts, describe_machine, make_config, print_ratio  # noqa: E402

from hadron_hf.testing import FakeOpenAIServer, without_speculation  # noqa: E402

MODES = ("off", "incumbent", "all")


@dataclass
class Run:
    """One refinement of the rows."""

    variant: str
    early_stop: bool
    mode: str
    wall: float
    requests: int
    calls: int
    speculative: int
    hits: int
    rounds: float
    rows: list[dict[str, Any]]


def refine(server: FakeOpenAIServer, variant: str, early_stop: bool, mode: str, args: argparse.Namespace) -> Run:
    """Refine the rows once with one setting; time it and count its calls."""
    from datasets import Dataset

    from hadron_hf import autoreason_map

    cfg = make_config(server.url, concurrency=args.concurrency, variant=variant, judges=args.judges,
                      max_iterations=args.max_iterations, converge_k=args.converge_k, cache=False,
                      seed=args.seed, early_stop_judging=early_stop, speculate=mode)
    ds = Dataset.from_dict({"prompt": bench_prompts(args.rows)})
    before = server.log.requests
    started = time.perf_counter()
    out = ds.map(autoreason_map, batched=True, batch_size=args.rows, fn_kwargs={"config": cfg},
                 load_from_cache_file=False)
    wall = time.perf_counter() - started
    rows = out.to_list()
    usage = [r["autoreason_usage"] for r in rows if r["autoreason_usage"]]
    traces = [r["autoreason_trace"] for r in rows if r["autoreason_trace"]]
    return Run(variant, early_stop, mode, wall, server.log.requests - before,
               calls=sum(u["calls"] for u in usage), speculative=sum(u.get("speculative_calls") or 0 for u in usage),
               hits=sum(u.get("speculative_hits") or 0 for u in usage),
               rounds=sum(t["iterations"] for t in traces) / max(len(traces), 1), rows=rows)


def print_table(runs: list[Run], base: dict[tuple[str, bool], Run]) -> None:
    """One line per run (Markdown)."""
    head = ["variant", "early stop", "speculate", "wall s", "wall ratio", "calls", "speculative (discarded)",
            "extra calls", "critiques kept from speculation", "rounds/row", "identical"]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for r in runs:
        b = base[(r.variant, r.early_stop)]
        same = [without_speculation(x) for x in r.rows] == [without_speculation(x) for x in b.rows]
        print("| " + " | ".join([r.variant, "on" if r.early_stop else "off", r.mode, f"{r.wall:.2f}",
                                  f"{r.wall / b.wall:.3f}", str(r.calls), str(r.speculative),
                                  f"{r.speculative / max(r.calls, 1):.1%}", str(r.hits), f"{r.rounds:.2f}",
                                  "yes" if same else "NO"]) + " |")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", "--rows", type=int, default=None, help="prompts (default 20, quick 6)")
    p.add_argument("--judges", type=int, default=7, help="judges per panel (default 7)")
    p.add_argument("--max-iterations", type=int, default=None, help="cap on rounds (default 15, quick 6)")
    p.add_argument("--converge-k", type=int, default=2, help="rounds the incumbent must win to stop (default 2)")
    p.add_argument("--variants", nargs="+", choices=["paper", "hadron"], default=["paper", "hadron"],
                   help="tournament variants (default both)")
    p.add_argument("--early-stop", nargs="+", choices=["off", "on"], default=["off", "on"],
                   help="early_stop_judging settings to measure (default both)")
    p.add_argument("-l", "--latency", type=float, default=0.2, help="seconds per reply (default 0.2)")
    p.add_argument("-c", "--concurrency", type=int, default=64, help="max_concurrency (default 64)")
    p.add_argument("--judge-agreement", type=float, default=0.8,
                   help="probability a judge follows the shared preference (default 0.8)")
    p.add_argument("--completion-chars", type=int, default=600, help="length of drafted answers (default 600)")
    p.add_argument("--seed", type=int, default=0, help="config seed (default 0)")
    p.add_argument("--quick", action="store_true", help="6 rows, at most 6 rounds")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns the exit code (1 when some run's outputs differ from the plain run's)."""
    args = parse_args(argv)
    args.rows = args.rows or (6 if args.quick else 20)
    args.max_iterations = args.max_iterations or (6 if args.quick else 15)
    import datasets

    datasets.disable_progress_bars()
    print(describe_machine())
    print(f"scripted server: L={args.latency:g} s, {args.rows} rows, {args.judges} judges, ≤{args.max_iterations} "
          f"rounds, k={args.converge_k}, judge agreement {args.judge_agreement:g}, max_concurrency "
          f"{args.concurrency}, cache off")
    runs: list[Run] = []
    base: dict[tuple[str, bool], Run] = {}
    identical = True
    with FakeOpenAIServer(latency=args.latency, responder=ScriptedReplies(args.judge_agreement,
                                                                           args.completion_chars)) as server:
        for variant in args.variants:
            for early_stop in (s == "on" for s in args.early_stop):
                for mode in MODES:
                    run = refine(server, variant, early_stop, mode, args)
                    runs.append(run)
                    if mode == "off":
                        base[(variant, early_stop)] = run
    print_table(runs, base)
    for r in runs:
        if r.mode == "off":
            continue
        b = base[(r.variant, r.early_stop)]
        tag = f"{r.variant}_{r.mode}_es{'on' if r.early_stop else 'off'}"
        same = [without_speculation(x) for x in r.rows] == [without_speculation(x) for x in b.rows]
        identical &= same and r.calls == b.calls and r.requests == b.requests + r.speculative
        print_ratio(f"speculate_wall_{tag}", r.wall / b.wall, f"{r.wall:.2f} s vs {b.wall:.2f} s without")
        print_ratio(f"speculate_extra_calls_{tag}", r.speculative / max(r.calls, 1),
                    f"{r.speculative} discarded on top of {r.calls}; {r.hits} critiques kept from speculation")
        print_ratio(f"speculate_identical_{tag}", float(same), "every output row equals the run without")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
