"""The engine between the tournament and the network: identity, cache above fallbacks, stop, probe, cache I/O.

Every test runs whole jobs against real loopback servers and counts what the servers saw.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from datasets import Dataset

from hadron_hf import AutoReasonConfig, ConfigError, ModelConfig, autoreason_map
from hadron_hf.chat import SamplingParams
from hadron_hf.cli import main
from hadron_hf.engine.cache import CachedChatModel, RequestCache, SQLiteStore
from hadron_hf.engine.runtime import open_job, use_runtime
from hadron_hf.errors import AuthenticationError, EndpointDownError
from hadron_hf.testing import FakeOpenAIServer, Faults, ScriptedChatModel, role_of

PROMPTS = [f"Engine question {i}: explain idea {i} briefly." for i in range(4)]


def model(url: str, name: str = "m", **kw: Any) -> ModelConfig:
    return ModelConfig(base_url=url, model=name, api_key_env=None, **kw)


def config(m: ModelConfig, cache_dir: str, **kw: Any) -> AutoReasonConfig:
    settings: dict[str, Any] = {"judges": 3, "max_iterations": 1, "seed": 0, "progress": False, **kw}
    return AutoReasonConfig(model=m, cache_dir=cache_dir, **settings)


def refine(cfg: AutoReasonConfig, prompts: list[str] = PROMPTS) -> Dataset:
    return Dataset.from_dict({"prompt": prompts}).map(autoreason_map, batched=True, batch_size=2,
                                                      fn_kwargs={"config": cfg})


def test_a_changed_extra_body_sends_new_calls_instead_of_stale_answers(server: FakeOpenAIServer,
                                                                       cache_dir: str) -> None:
    first = refine(config(model(server.url, extra_body={"top_k": 20}), cache_dir))
    sent = server.log.requests
    again = refine(config(model(server.url, extra_body={"top_k": 20}), cache_dir))
    assert server.log.requests == sent  # same request shape: every call from the cache
    changed = refine(config(model(server.url, extra_body={"top_k": 40}), cache_dir))
    calls = sum(u["calls"] for u in changed["autoreason_usage"])
    assert server.log.requests == 2 * sent == sent + calls
    assert sum(u["cached_calls"] for u in changed["autoreason_usage"]) == 0
    assert [b["top_k"] for b in server.log.bodies] == [20] * sent + [40] * sent
    assert all(u["cached_calls"] == u["calls"] for u in again["autoreason_usage"]) and first["refined"]


async def test_roles_differing_only_in_extra_body_get_two_request_shapes_and_one_limiter(cache_dir: str) -> None:
    with FakeOpenAIServer(latency=0.02) as srv:
        plain = model(srv.url, max_concurrency=2)
        thinking = model(srv.url, max_concurrency=2, extra_body={"reasoning": {"effort": "high"}})
        cfg = config(plain, cache_dir, critic=thinking, judges=3)
        async with use_runtime(cfg) as runtime:
            assert list(runtime.endpoints) == [f"openai|{srv.url}|m"]  # one limiter
            assert runtime.roles.critic is not runtime.roles.teacher  # two request shapes
            await asyncio.gather(*(autoreason_map({"prompt": [p]}, cfg) for p in PROMPTS))
            stats = runtime.stats()
    critic_bodies = [b for b in srv.log.bodies if role_of(b["messages"]) == "critic"]
    other_bodies = [b for b in srv.log.bodies if b not in critic_bodies]
    assert critic_bodies and all(b["reasoning"] == {"effort": "high"} for b in critic_bodies)
    assert other_bodies and all("reasoning" not in b for b in other_bodies)
    assert srv.log.peak_in_flight <= 2 and stats.succeeded == srv.log.requests


def test_one_endpoint_configured_with_two_limits_is_a_config_error(server: FakeOpenAIServer, cache_dir: str) -> None:
    cfg = config(model(server.url, max_concurrency=8), cache_dir, critic=model(server.url, max_concurrency=16, rpm=60))
    with pytest.raises(ConfigError, match=r"max_concurrency 8 vs 16; rpm None vs 60"):
        refine(cfg)
    assert server.log.requests == 0


def test_a_fallback_run_replays_from_the_cache_when_the_primary_is_back(server: FakeOpenAIServer,
                                                                       cache_dir: str) -> None:
    backup = model(server.url, "backup-m")
    with FakeOpenAIServer(faults=Faults(rate=1.0, kinds=("429",), retry_after=0.01)) as limited:
        primary = model(limited.url, "primary-m", max_retries=1, fallbacks=[backup])
        first = refine(config(primary, cache_dir))
        port = limited.port
    sent = server.log.requests
    with FakeOpenAIServer(port=port) as healthy:  # the primary, back and answering
        again = refine(config(model(healthy.url, "primary-m", max_retries=1, fallbacks=[backup]), cache_dir))
    assert sent > 0 and healthy.log.requests == 0 and server.log.requests == sent
    assert again.remove_columns("autoreason_usage").to_list() == first.remove_columns("autoreason_usage").to_list()
    assert {t["model"] for row in again["reasoning_traces"] for t in row} == {"backup-m"}  # who answered


def test_answers_in_flight_when_the_job_stops_are_cached(cache_dir: str) -> None:
    # Each panel has a judge on a slow healthy server and one on a dead port: the dead endpoint stops the
    # job (after its probe's quick retries) while the slow judges are in flight; they land and are cached.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    with FakeOpenAIServer(latency=0.3) as good:
        cfg = config(model(good.url), cache_dir, judge_models=[model(good.url), model(dead, "gone")],
                     judges=2, variant="paper")
        with pytest.raises(EndpointDownError, match="gone at .* looks down"):
            refine(cfg)
    answered = sum(good.log.answered.values())
    judged = [r for r, _ in good.log.models].count("judge")
    print(f"\nstop with calls in flight: {answered} answers delivered ({judged} judges), "
          f"{RequestCache(cfg.cache_path()).count()} cached, {good.log.abandoned} abandoned")
    assert judged == len(PROMPTS) and answered == len(PROMPTS) * 5 and good.log.abandoned == 0
    assert RequestCache(cfg.cache_path()).count() == answered


def test_a_server_that_dies_mid_run_stops_the_job_and_the_cli_fails(tmp_path: Path, cache_dir: str,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    # After 6 requests every connection is dropped: the server stopped answering with two rows pending.
    dying = Faults(at={n: "drop" for n in range(7, 5000)})
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS[:2]))
    with FakeOpenAIServer(latency=0.005, faults=dying) as srv:
        settings = {"model": {"base_url": srv.url, "model": "m", "api_key_env": None, "max_retries": 2},
                    "judges": 3, "max_iterations": 1, "cache_dir": cache_dir, "progress": False}
        (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(settings))
        argv = ["refine", str(tmp_path / "in.jsonl"), "--config", str(tmp_path / "cfg.yaml"),
                "--output", str(tmp_path / "out")]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "looks down: it stopped answering" in err and "run the same map again to resume" in err
        assert not (tmp_path / "out" / "refined").exists()  # no empty views written
        cached = RequestCache(Path(cache_dir) / "requests.sqlite").count()
        assert cached == sum(srv.log.answered.values()) == 6
        srv.faults.at = {}  # the server is back
        assert main(argv) == 0
    assert srv.log.repeated == 0 and (tmp_path / "out" / "refined").exists()


def test_a_wrong_key_costs_one_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HADRON_ENGINE_KEY", "sk-wrong-key-0123456789")
    with FakeOpenAIServer(api_key="sk-right-key-9876543210") as srv:
        cfg = config(ModelConfig(base_url=srv.url, model="m", api_key_env="HADRON_ENGINE_KEY"), str(tmp_path))
        with pytest.raises(AuthenticationError, match=r"refused the API key \(401\)"):
            refine(cfg, [f"row {i}" for i in range(100)])
    assert srv.log.requests == 1


async def test_a_locked_cache_database_never_blocks_the_event_loop(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    store = SQLiteStore(path)
    RequestCache(path).count()  # create the file
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    answer = ScriptedChatModel(default="fresh", model="m", prompt_tokens=0, completion_tokens=0)
    clock = asyncio.ensure_future(ticker())
    call = asyncio.ensure_future(CachedChatModel(answer, store, "id").chat([{"role": "user", "content": "q"}],
                                                                         SamplingParams()))
    while ticks < 40:  # the loop keeps running while the write waits for the lock
        await asyncio.sleep(0.005)
    assert not call.done()
    blocker.execute("COMMIT")
    done = await call
    clock.cancel()
    blocker.close()
    assert done.text == "fresh" and await store.count() == 1
    await store.aclose()


def test_open_job_shares_one_stack_across_maps_and_closes_it(server: FakeOpenAIServer, cache_dir: str) -> None:
    cfg = config(model(server.url), cache_dir)
    with open_job(cfg) as job:
        first = refine(cfg, PROMPTS[:2])
        second = refine(cfg, PROMPTS[2:])
        runtimes = list(job._runtimes.values())
    assert first["autoreason_status"] == second["autoreason_status"] == ["ok", "ok"]
    assert len(runtimes) == 2 and all(rt.closed for rt in runtimes)  # one per map's event loop, all closed


@pytest.fixture(autouse=True)
def _quiet_datasets() -> Iterator[None]:
    logging.getLogger("datasets").setLevel(logging.ERROR)
    yield
