"""Fallback models: against a loopback server that only answers 429, a dead port, and a healthy server."""

from __future__ import annotations

import socket
from collections import Counter

import pytest
from datasets import Dataset

from hadron_hf import AutoReasonConfig, ModelConfig, autoreason_map
from hadron_hf.backends.openai import OpenAIChatModel
from hadron_hf.chat import Message, SamplingParams
from hadron_hf.engine.fallback import FallbackChatModel
from hadron_hf.engine.resilience import Limits, ResilientChatModel
from hadron_hf.errors import AuthenticationError, EndpointDownError, RateLimitError
from hadron_hf.testing import FakeOpenAIServer, Faults, ScriptedChatModel

PROMPTS = [f"Explain topic {i} in one line." for i in range(6)]
HELLO: list[Message] = [{"role": "user", "content": "hello"}]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def refine(primary_url: str, fallback_url: str, cache_dir: str) -> Dataset:
    backup = ModelConfig(base_url=fallback_url, model="backup-m", api_key_env=None)
    model = ModelConfig(base_url=primary_url, model="primary-m", api_key_env=None, max_retries=1,
                        fallbacks=[backup])
    cfg = AutoReasonConfig(model=model, judges=3, max_iterations=2, cache_dir=cache_dir, progress=False)
    return Dataset.from_dict({"prompt": PROMPTS}).map(autoreason_map, batched=True, fn_kwargs={"config": cfg})


def answered_by(out: Dataset) -> Counter[str]:
    models: Counter[str] = Counter()
    for row in out:
        models.update(call["model"] for call in row["reasoning_traces"])
        models.update(v["model"] for r in row["autoreason_trace"]["rounds"] for v in r["votes"])
    return models


def test_a_primary_that_only_answers_429_falls_back(server: FakeOpenAIServer, cache_dir: str) -> None:
    with FakeOpenAIServer(faults=Faults(rate=1.0, kinds=("429",), retry_after=0.01)) as limited:
        out = refine(limited.url, server.url, cache_dir)
    assert out["autoreason_status"] == ["ok"] * len(PROMPTS)
    assert limited.log.faults["429"] >= 2 and sum(limited.log.answered.values()) == 0
    models = answered_by(out)
    assert set(models) == {"backup-m"} and models["backup-m"] == sum(len(r) for r in out["reasoning_traces"]) + sum(
        len(rnd["votes"]) for t in out["autoreason_trace"] for rnd in t["rounds"])
    assert {m for _, m in server.log.models} == {"backup-m"}


def test_a_dead_primary_does_not_stop_the_job(server: FakeOpenAIServer, cache_dir: str) -> None:
    out = refine(f"http://127.0.0.1:{closed_port()}/v1", server.url, cache_dir)
    assert out["autoreason_status"] == ["ok"] * len(PROMPTS)
    assert set(answered_by(out)) == {"backup-m"}
    first = out[0]["reasoning_traces"][0]
    assert (first["role"], first["model"]) == ("teacher", "backup-m")


def test_a_fatal_error_of_every_model_still_stops_the_job(cache_dir: str) -> None:
    with pytest.raises(EndpointDownError, match="looks down"):
        refine(f"http://127.0.0.1:{closed_port()}/v1", f"http://127.0.0.1:{closed_port()}/v1", cache_dir)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_the_chain_comes_back_to_a_recovered_primary(server: FakeOpenAIServer) -> None:
    port = closed_port()
    dead = ModelConfig(base_url=f"http://127.0.0.1:{port}/v1", model="primary-m", api_key_env=None)
    clients = [OpenAIChatModel("primary-m", dead.base_url, None, 5.0),
               OpenAIChatModel("backup-m", server.url, None, 5.0)]
    try:
        await _come_back(port, *(ResilientChatModel(c, c.model, Limits(max_retries=1)) for c in clients))
    finally:
        for client in clients:
            await client.aclose()


async def _come_back(port: int, primary: ResilientChatModel, backup: ResilientChatModel) -> None:
    clock = Clock()
    chain = FallbackChatModel([primary, backup], ["primary-m", "backup-m"], cool_off=30, reopen=[primary.reopen, None],
                              clock=clock)
    params = SamplingParams(seed=1)
    assert (await chain.chat(HELLO, params)).model == "backup-m"
    assert isinstance(primary.fatal, EndpointDownError) and chain.is_down(0)
    clock.now = 29.0  # still cooling off: the primary is not even tried
    started = primary.stats.started
    assert (await chain.chat(HELLO, params)).model == "backup-m" and primary.stats.started == started
    with FakeOpenAIServer(port=port) as revived:
        clock.now = 31.0
        assert (await chain.chat(HELLO, params)).model == "primary-m"
        assert not chain.is_down(0) and primary.fatal is None
        assert (await chain.chat(HELLO, params)).model == "primary-m"
        assert revived.log.requests == 2
    assert chain.answered() == {"primary-m": 2, "backup-m": 2}


async def test_only_one_call_probes_and_configuration_errors_pass_through() -> None:
    clock = Clock()
    limited = ScriptedChatModel(default=RateLimitError("429"))
    chain = FallbackChatModel([limited, ScriptedChatModel(default="ok", model="b")], ["a", "b"], cool_off=10,
                              clock=clock)
    assert (await chain.chat(HELLO, SamplingParams())).model == "b" and len(limited.calls) == 1
    clock.now = 11.0
    assert (await chain.chat(HELLO, SamplingParams())).model == "b" and len(limited.calls) == 2  # probed, still 429
    assert (await chain.chat(HELLO, SamplingParams())).model == "b" and len(limited.calls) == 2  # cooling off again
    # a wrong key would fail on any model the same way: the job stops instead of hiding it
    bad_key = ScriptedChatModel(default=AuthenticationError("401"))
    backup = ScriptedChatModel(default=RateLimitError("429"))
    with pytest.raises(AuthenticationError):
        await FallbackChatModel([bad_key, backup], ["a", "b"], clock=clock).chat(HELLO, SamplingParams())
    assert backup.calls == []
    # every model gives up: the last error fails the call (the row), not the job
    with pytest.raises(RateLimitError):
        await FallbackChatModel([ScriptedChatModel(default=EndpointDownError("down")), backup], ["a", "b"],
                                clock=clock).chat(HELLO, SamplingParams())


def test_fallbacks_are_not_part_of_the_identity() -> None:
    plain = ModelConfig(base_url="http://127.0.0.1:1/v1", model="m")
    with_backup = ModelConfig(base_url="http://127.0.0.1:1/v1", model="m", fallbacks=[ModelConfig(model="b")])
    assert plain.identity() == with_backup.identity()
    loaded = AutoReasonConfig.from_dict({"model": {"model": "m", "fallbacks": [{"model": "b", "rpm": 5}]}})
    assert loaded.model.fallbacks[0].rpm == 5
