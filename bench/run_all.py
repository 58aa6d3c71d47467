"""Run every benchmark, one after another in fresh processes, and sum up their ``ratio`` lines.

Run:
    python bench/run_all.py --quick           # about 3 minutes on 2 cores (6 when they are busy)
    python bench/run_all.py                   # the full sizes, overhead profiled (about 10 minutes)
    python bench/run_all.py --only cost       # one benchmark
    python bench/run_all.py --smoke           # tiny sizes, to check the scripts still work (used by tests)

Each script's output is passed through as it runs; the summary at the end lists every ratio. The exit
code is 0 when every script succeeded or was skipped (the embedded benchmark needs ``hadron_hf[local]``).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
SKIPPED = 3
RATIO_LINE = re.compile(r"^ratio (\S+): (-?\d+(?:\.\d+)?)", re.MULTILINE)

BENCHMARKS = ("throughput", "overhead", "embedded", "cost", "batch", "speculate", "hadron_workload", "kill_resume")
PROFILES: dict[str, dict[str, list[str]]] = {
    "full": {"throughput": [], "overhead": ["--profile"], "embedded": [], "cost": [], "batch": [], "speculate": [],
             "hadron_workload": [], "kill_resume": []},
    "quick": {name: ["--quick"] for name in BENCHMARKS},
    "smoke": {
        "throughput": ["-c", "4", "-n", "6", "--latency", "0.01", "--max-iterations", "1", "--server", "thread",
                       "--completion-chars", "80", "--reference-seconds", "0.5"],
        "overhead": ["-c", "4", "-n", "24", "--rows", "2", "--repeats", "1"],
        "embedded": ["--rows", "1", "--judges", "1", "--max-iterations", "1", "--max-tokens", "4",
                     "--judge-max-tokens", "4", "--n-ctx", "1024", "--threads", "1", "--repeats", "1",
                     "--no-warmup"],
        "cost": ["-n", "2", "--judges", "3", "--max-iterations", "2", "--completion-chars", "80"],
        "batch": ["--rows", "3", "--delay", "0.05", "--poll", "0.01", "--idle", "0.02", "--max-iterations", "1",
                  "--no-kill"],
        "speculate": ["-n", "2", "--judges", "3", "--max-iterations", "3", "--latency", "0.01",
                      "--completion-chars", "80", "--early-stop", "off"],
        "hadron_workload": ["--rows", "2", "--fault-rows", "2", "--latency", "0.01"],
        "kill_resume": ["--rows", "4", "--trials", "1", "--latency", "0.05"],
    },
}


def run_one(name: str, extra: list[str]) -> tuple[int, str]:
    """Run ``bench/<name>.py`` with ``extra`` arguments, echoing its output; returns (exit code, stdout)."""
    cmd = [sys.executable, str(HERE / f"{name}.py"), *extra]
    print(f"\n=== {name}: {' '.join(cmd[1:])}", flush=True)
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=HERE.parent)
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        print(line, end="", flush=True)
        lines.append(line)
    code = proc.wait()
    print(f"=== {name}: exit {code} after {time.perf_counter() - started:.0f}s", flush=True)
    return code, "".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks; returns the exit code."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_const", dest="profile", const="quick", help="smaller sizes")
    size.add_argument("--smoke", action="store_const", dest="profile", const="smoke", help="tiny sizes")
    p.add_argument("--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS))
    args = p.parse_args(argv)
    profile = PROFILES[args.profile or "full"]
    failed, summary = [], []
    for name in args.only:
        code, out = run_one(name, profile[name])
        if code == SKIPPED:
            summary.append(f"{name}: skipped")
        elif code != 0:
            failed.append(name)
            summary.append(f"{name}: FAILED (exit {code})")
        summary += [f"{name}: {ratio} = {value}" for ratio, value in RATIO_LINE.findall(out)]
    print("\n=== summary")
    print("\n".join(summary))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
