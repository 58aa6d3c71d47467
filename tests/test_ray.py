"""``hadron_hf.scale.ray_engine`` and ``hadron_hf.scale.cluster_limiter`` on a local Ray instance against the
loopback server."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ray", reason='hadron_hf.scale.ray_engine needs Ray: pip install "hadron_hf[ray]"')

import ray  # noqa: E402
import ray.data  # noqa: E402
from datasets import load_from_disk  # noqa: E402

from hadron_hf import AutoReasonConfig, ModelConfig, autoreason_map  # noqa: E402
from hadron_hf.cli import build_parser, main  # noqa: E402
from hadron_hf.cli.options import config_from_args  # noqa: E402
from hadron_hf.columns import OUTPUT_COLUMNS  # noqa: E402
from hadron_hf.engine.cache import RequestCache  # noqa: E402
from hadron_hf.scale.cluster_limiter import BudgetWindow, EndpointBudget  # noqa: E402
from hadron_hf.scale.ray_engine import RayOptions, refine_ray  # noqa: E402
from hadron_hf.sources import load_prompts  # noqa: E402
from hadron_hf.testing import FakeOpenAIServer  # noqa: E402

# Ray Data warns about its own deprecated fields on every DataContext it creates (ray 2.60), whatever the settings.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A local Ray instance for the whole module; yields its address for other drivers."""
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=128 * 1024**2, logging_level=logging.WARNING)
    # Start dispatching only once the whole pool is up, so every worker gets rows.
    ray.data.DataContext.get_current().wait_for_min_actors_s = 120
    try:
        yield str(ray.get_runtime_context().gcs_address)
    finally:
        ray.shutdown()


def make_config(url: str, cache_dir: Path, **model: Any) -> AutoReasonConfig:
    return AutoReasonConfig(
        model=ModelConfig(base_url=url, model="m", api_key_env="HADRON_TEST_KEY", **model),
        judges=3, converge_k=2, max_iterations=3, seed=0, cache_dir=str(cache_dir),
    )


def prompts(n: int) -> list[str]:
    return [f"Question {i}: explain topic number {i} in two sentences." for i in range(n)]


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("budget", "grants", "now", "tokens", "expected"),
    [
        (EndpointBudget(rpm=3), [0.0, 1.0, 2.0], 2.5, 1, 7.5),
        (EndpointBudget(rpm=3), [0.0, 1.0, 2.0], 10.0, 1, 0.0),
        (EndpointBudget(rpm=0.5), [0.0], 15.0, 1, 5.0),
        (EndpointBudget(tpm=100), [(0.0, 60), (1.0, 30)], 2.0, 20, 8.0),
        (EndpointBudget(tpm=100), [(0.0, 60), (1.0, 30)], 2.0, 10, 0.0),
        (EndpointBudget(tpm=100), [], 0.0, 10_000, 0.0),
        (EndpointBudget(max_concurrency=2, lease_s=30.0), [0.0, 1.0], 5.0, 1, 25.0),
        (EndpointBudget(max_concurrency=2, lease_s=30.0), [0.0, 1.0], 30.0, 1, 0.0),
    ],
    ids=["rpm-full", "rpm-window-passed", "rpm-below-one", "tpm-full", "tpm-fits", "tpm-one-huge-call",
         "slots-full", "dead-holder-lease-reclaimed"],
)
def test_budget_window_arithmetic(budget: EndpointBudget, grants: list[Any], now: float, tokens: float,
                                  expected: float) -> None:
    window = BudgetWindow(budget, window_s=10.0)
    for lease, grant in enumerate(grants):
        at, spent = grant if isinstance(grant, tuple) else (grant, 1)
        window.grant(at, spent, lease)
    assert window.delay(now, tokens) == pytest.approx(expected)


def test_budget_window_release_and_cool_down() -> None:
    window = BudgetWindow(EndpointBudget(max_concurrency=1), window_s=60.0)
    window.grant(0.0, 1, lease=7)
    assert window.delay(1.0, 1) > 0
    window.release(7)
    assert window.delay(1.0, 1) == 0
    window.cool_until = 4.0
    assert window.delay(1.0, 1) == pytest.approx(3.0)


def test_cli_ray_engine_gives_dataset_map_columns_and_values(cluster: str, server: FakeOpenAIServer, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "prompts.jsonl"
    source.write_text("".join(json.dumps({"prompt": p, "id": i}) + "\n" for i, p in enumerate(prompts(50))))
    argv = ["refine", str(source), "--base-url", server.url, "--model", "m", "--judges", "3", "--max-iterations", "2",
            "--seed", "0", "--batch-size", "8", "--output", str(tmp_path / "out")]
    monkeypatch.setenv("HADRON_HF_CACHE", str(tmp_path / "ray-cache"))  # read on the driver, by the cache actor
    assert main([*argv, "--engine", "ray", "--num-workers", "2"]) == 0
    got = load_from_disk(str(tmp_path / "out" / "refined"))

    cfg = config_from_args(build_parser().parse_args(argv)).model_copy(update={"cache_dir": str(tmp_path / "map")})
    expected = load_prompts(str(source)).map(autoreason_map, batched=True, batch_size=8, fn_kwargs={"config": cfg})
    assert got.column_names == ["prompt", "id", *OUTPUT_COLUMNS]
    assert got.features == expected.features
    assert got["autoreason_status"] == ["ok"] * 50
    assert got.to_list() == expected.to_list()
    assert server.log.repeated == server.log.requests // 2  # each run sent every call once, and the same calls
    assert RequestCache(tmp_path / "ray-cache" / "requests.sqlite").count() == server.log.requests // 2


def test_rate_limit_holds_across_all_workers(cluster: str, server: FakeOpenAIServer, tmp_path: Path) -> None:
    rpm, window_s = 16, 2.0  # "per minute" scaled down to a 2 s window so the test takes seconds
    cfg = make_config(server.url, tmp_path, rpm=rpm).model_copy(update={"max_iterations": 1})
    source = ray.data.from_items([{"prompt": p} for p in prompts(8)])
    options = RayOptions(num_workers=2, batch_size=1, window_s=window_s, cache="local", run_id="rpm-test")
    out = refine_ray(source, cfg, options)
    rows = out.take_all()
    stats = ray.get(ray.get_actor("hadron_hf-limiter-rpm-test").stats.remote())
    assert [r["autoreason_status"] for r in rows] == ["ok"] * 8
    arrivals = sorted(server.log.arrivals)
    assert len(arrivals) == sum(stats["granted"].values())  # every request the server saw had a permit
    assert len(stats["granted"]) == 2  # taken by both workers, from the one budget
    assert len(arrivals) >= 3 * rpm  # long enough for the budget to bind over several windows
    busiest = max(sum(1 for t in arrivals[i:] if t < start + window_s) for i, start in enumerate(arrivals))
    assert busiest <= rpm
    assert RequestCache(cfg.cache_path()).count() == len(arrivals)  # "local": workers share the file


KILLED_JOB = """
import json, sys, ray, ray.data
from hadron_hf import AutoReasonConfig
from hadron_hf.scale.ray_engine import RayOptions, refine_ray
address, config_json, prompts_json = sys.argv[1:4]
ray.init(address=address, logging_level="ERROR")
source = ray.data.from_items([{"prompt": p} for p in json.loads(prompts_json)])
refine_ray(source, AutoReasonConfig.model_validate_json(config_json),
           RayOptions(num_workers=2, batch_size=2, run_id="killed")).materialize()
"""


def test_resume_after_killed_job_resends_no_completed_call(cluster: str, tmp_path: Path) -> None:
    rows = 6
    # Past 40 answers the server holds every new request, so the kill lands at a known point.
    with FakeOpenAIServer(latency=0.002, hold_after=40) as server:
        cfg = make_config(server.url, tmp_path)
        cache = RequestCache(cfg.cache_path())
        log_file = (tmp_path / "killed-job.log").open("w")
        job = subprocess.Popen([sys.executable, "-c", KILLED_JOB, cluster, cfg.model_dump_json(),
                                json.dumps(prompts(rows))], stdout=log_file, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: server.log.held > 0 or job.poll() is not None, "the server to hold requests")
            assert job.poll() is None, (tmp_path / "killed-job.log").read_text()[-3000:]
            # Every delivered answer is in the cache before the kill: only held, unanswered calls are lost.
            wait_for(lambda: server.log.in_flight == server.log.held and cache.count() >= len(server.log.answered),
                     "answered calls to reach the cache")
            assert "hadron_hf-limiter-killed" in str(ray.util.list_named_actors(all_namespaces=True))
        finally:
            job.kill()
            job.wait()
            log_file.close()
        # A held request is dropped when its client dies: once none is left, no worker of that job is.
        wait_for(lambda: server.log.in_flight == 0, "the killed job's workers to die")
        wait_for(lambda: "hadron_hf-limiter-killed" not in str(ray.util.list_named_actors(all_namespaces=True)),
                 "the killed job's limiter to die")
        server.release()
        stored = cache.count()
        assert 0 < stored and sum(server.log.answered.values()) == stored

        out = refine_ray(ray.data.from_items([{"prompt": p} for p in prompts(rows)]), cfg,
                         RayOptions(num_workers=2, batch_size=2)).take_all()
        assert [r["autoreason_status"] for r in out] == ["ok"] * rows
        assert server.log.repeated == 0
        assert sum(r["autoreason_usage"]["cached_calls"] for r in out) == stored
        assert cache.count() == sum(r["autoreason_usage"]["calls"] for r in out) > stored  # killed part-way
        cache.close()
