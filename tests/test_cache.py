"""The request cache: hits, resume, concurrent writers, damaged files, and no secrets on disk."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import sqlite3
from dataclasses import asdict
from pathlib import Path

import pytest
from datasets import Dataset

from hadron_hf import AutoReasonConfig, ModelConfig, autoreason_map
from hadron_hf.chat import Completion, Message, SamplingParams
from hadron_hf.engine.cache import CachedChatModel, RequestCache, SQLiteStore, decode_entry, request_key
from hadron_hf.errors import ServerError
from hadron_hf.testing import FakeOpenAIServer, ScriptedChatModel

MSGS: list[Message] = [{"role": "user", "content": "What is 2 + 2?"}]
PARAMS = SamplingParams(temperature=0.5, max_tokens=32, seed=11)


def counting_model(fail_first: int = 0) -> ScriptedChatModel:
    """A fake ``ChatModel`` that answers after a short await (recording each call) and fails the first ones."""

    def answer(messages: list[Message], params: SamplingParams) -> str:
        return f"<think>because</think>answer to {messages[-1]['content']} (seed {params.seed})"

    return ScriptedChatModel([ServerError("server error (503): overloaded") for _ in range(fail_first)],
                             default=answer, model="m", latency=0.01, prompt_tokens=5, completion_tokens=7)


def make_config(url: str, cache_dir: Path | str, api_key_env: str | None = None) -> AutoReasonConfig:
    return AutoReasonConfig(model=ModelConfig(base_url=url, model="m", api_key_env=api_key_env),
                            judges=3, converge_k=2, max_iterations=2, seed=0, cache_dir=str(cache_dir),
                            progress=False)


def refine(ds: Dataset, cfg: AutoReasonConfig, **kw: object) -> Dataset:
    return ds.map(autoreason_map, batched=True, fn_kwargs={"config": cfg}, **{"batch_size": 4, **kw})  # type: ignore[arg-type]


def prompts(n: int) -> Dataset:
    return Dataset.from_dict({"prompt": [f"cache question {i}" for i in range(n)]})


async def test_miss_then_hit(tmp_path: Path) -> None:
    store, inner = SQLiteStore(tmp_path / "c.sqlite"), counting_model()
    model = CachedChatModel(inner, store, "openai|http://h/v1|m")
    first = await model.chat(MSGS, PARAMS)
    again = await model.chat(MSGS, PARAMS)
    other_seed = await model.chat(MSGS, SamplingParams(temperature=0.5, max_tokens=32, seed=12))
    assert len(inner.calls) == 2 and not first.cached and again.cached and not other_seed.cached
    assert asdict(again) == {**asdict(first), "cached": True}
    assert (store.stats.hits, store.stats.misses, await store.count()) == (1, 2, 2)
    await store.aclose()


async def test_each_call_is_committed_at_once_and_survives_a_new_handle(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    writer = CachedChatModel(counting_model(), SQLiteStore(path), "id")
    done = await writer.chat(MSGS, PARAMS)
    # Another connection sees it before the writer is closed: nothing waits for a clean exit.
    reader, inner = SQLiteStore(path), counting_model()
    again = await CachedChatModel(inner, reader, "id").chat(MSGS, PARAMS)
    assert len(inner.calls) == 0 and again.cached and again.text == done.text
    await reader.aclose()
    await writer.store.aclose()


async def test_identical_calls_in_flight_are_sent_once(tmp_path: Path) -> None:
    inner = counting_model()
    model = CachedChatModel(inner, SQLiteStore(tmp_path / "c.sqlite"), "id")
    answers = await asyncio.gather(*(model.chat(MSGS, PARAMS) for _ in range(5)))
    assert len(inner.calls) == 1 and len({a.text for a in answers}) == 1
    assert sorted(a.cached for a in answers) == [False] + [True] * 4


async def test_when_the_shared_call_fails_the_waiters_make_their_own(tmp_path: Path) -> None:
    inner = counting_model(fail_first=1)
    model = CachedChatModel(inner, SQLiteStore(tmp_path / "c.sqlite"), "id")
    outcomes = await asyncio.gather(*(model.chat(MSGS, PARAMS) for _ in range(3)), return_exceptions=True)
    assert isinstance(outcomes[0], ServerError)
    assert all(isinstance(o, Completion) for o in outcomes[1:]) and len(inner.calls) == 2


def test_request_key_covers_identity_messages_and_every_param() -> None:
    base = request_key("id", MSGS, PARAMS)
    assert base == request_key("id", [dict(m) for m in MSGS], SamplingParams(0.5, 32, 11))  # type: ignore[misc]
    variants = [
        request_key("other-id", MSGS, PARAMS),
        request_key("id", [{"role": "user", "content": "What is 2 + 3?"}], PARAMS),
        request_key("id", MSGS, SamplingParams(0.6, 32, 11)),
        request_key("id", MSGS, SamplingParams(0.5, 33, 11)),
        request_key("id", MSGS, SamplingParams(0.5, 32, 12)),
        request_key("id", MSGS, SamplingParams(0.5, 32, 11, ("a", "b"))),
    ]
    assert len({base, *variants}) == 7


def test_endpoint_identity_holds_no_credentials() -> None:
    cfg = ModelConfig(base_url="https://user:sk-in-url-123@api.example.com/v1", model="m",
                      api_key="sk-field-456")  # type: ignore[arg-type]
    assert cfg.identity() == "openai|https://api.example.com/v1|m"


def test_a_garbage_file_is_moved_aside_and_replaced(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "c.sqlite"
    path.write_bytes(os.urandom(8192))
    cache = RequestCache(path)
    assert cache.get("k") is None
    cache.put("k", Completion("fresh"))
    assert cache.get("k") == Completion("fresh") and cache.count() == 1
    assert [p.name.split(".corrupt-")[0] for p in tmp_path.glob("c.sqlite.corrupt-*")] == ["c.sqlite"]
    assert "unreadable" in caplog.text


def test_a_truncated_file_never_crashes(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    cache = RequestCache(path)
    for i in range(2000):
        cache.put(f"k{i}", Completion("x" * 200))
    with cache._db() as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    cache.close()
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)
    damaged = RequestCache(path)
    found = [damaged.get(f"k{i}") for i in (0, 1999)]
    damaged.put("new", Completion("y"))
    assert all(f is None or f.text == "x" * 200 for f in found)
    assert damaged.get("new") == Completion("y")


def test_bad_entries_are_ignored_and_recomputed(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    cache = RequestCache(path)
    good = Completion("ok", prompt_tokens=1)
    for key in ("not-json", "wrong-type", "missing-field", "list", "good"):
        cache.put(key, good)
    with sqlite3.connect(path) as conn:
        for key, value in [("not-json", "{'text': "), ("wrong-type", '{"text": 5}'),
                           ("missing-field", '{"text": "ok"}'), ("list", "[1, 2]")]:
            conn.execute("UPDATE calls SET value = ? WHERE key = ?", (value, key))
    assert [cache.get(k) for k in ("not-json", "wrong-type", "missing-field", "list")] == [None] * 4
    assert cache.get("good") == good and cache.stats.bad_entries == 4
    assert decode_entry(None) is None and decode_entry(b"\xff") is None


async def test_a_bad_entry_is_recomputed_and_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    inner = counting_model()
    model = CachedChatModel(inner, SQLiteStore(path), "id")
    first = await model.chat(MSGS, PARAMS)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE calls SET value = 'garbage'")
    again = await model.chat(MSGS, PARAMS)
    third = await model.chat(MSGS, PARAMS)
    assert len(inner.calls) == 2 and again.text == first.text and not again.cached and third.cached


def test_an_unusable_cache_folder_warns_and_the_run_goes_on(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    cache = RequestCache(blocker / "c.sqlite")
    assert cache.get("k") is None
    cache.put("k", Completion("x"))
    assert cache.count() == 0 and cache.stats.write_failures == 1
    assert "unavailable" in caplog.text and "pay for it again" in caplog.text


def _put_many(path: str, prefix: str, n: int) -> None:
    cache = RequestCache(path)
    for i in range(n):
        cache.put(f"{prefix}{i}", Completion(f"{prefix} answer {i}"))
        assert cache.get(f"{prefix}{i // 2}") is not None


def test_two_processes_writing_at_once(tmp_path: Path) -> None:
    path = str(tmp_path / "c.sqlite")
    ctx = multiprocessing.get_context("fork")  # no threads are running here; spawn would re-import datasets
    procs = [ctx.Process(target=_put_many, args=(path, p, 300)) for p in ("a", "b")]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
    assert [proc.exitcode for proc in procs] == [0, 0]
    cache = RequestCache(path)
    assert cache.count() == 600 and cache.get("a299") == Completion("a answer 299")


def test_num_proc_two_share_one_cache_and_a_rerun_sends_nothing(server: FakeOpenAIServer, tmp_path: Path) -> None:
    cfg = make_config(server.url, tmp_path)
    first = refine(prompts(8), cfg, batch_size=2, num_proc=2)
    sent = server.log.requests
    stored = RequestCache(cfg.cache_path()).count()
    second = refine(prompts(8), cfg, batch_size=2)
    assert first["autoreason_status"] == ["ok"] * 8 and stored == sent == sum(server.log.answered.values())
    assert server.log.requests == sent and server.log.repeated == 0
    assert all(u["cached_calls"] == u["calls"] > 0 for u in second["autoreason_usage"])
    assert second["refined"] == first["refined"]


def test_a_corrupted_cache_file_does_not_stop_a_map(server: FakeOpenAIServer, tmp_path: Path) -> None:
    cfg = make_config(server.url, tmp_path)
    cfg.cache_path().write_bytes(b"SQLite format 3\x00" + os.urandom(4096))
    out = refine(prompts(4), cfg)
    assert out["autoreason_status"] == ["ok"] * 4
    assert RequestCache(cfg.cache_path()).count() == server.log.requests


def test_keys_and_headers_are_never_stored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           caplog: pytest.LogCaptureFixture) -> None:
    key = "sk-cache-test-7d1e9b3f5a"
    monkeypatch.setenv("HADRON_CACHE_TEST_KEY", key)
    caplog.set_level(logging.DEBUG)
    with FakeOpenAIServer(api_key=key) as srv:
        cfg = make_config(srv.url, tmp_path, api_key_env="HADRON_CACHE_TEST_KEY")
        out = refine(prompts(4), cfg)
    assert out["autoreason_status"] == ["ok"] * 4 and f"Bearer {key}" in srv.log.keys_seen
    files = list(tmp_path.glob("requests.sqlite*"))
    assert files and RequestCache(cfg.cache_path()).count() == srv.log.requests
    for path in files:
        data = path.read_bytes()
        for secret in (key, "Bearer", "Authorization", "HADRON_CACHE_TEST_KEY"):
            assert secret.encode() not in data, (path.name, secret)
    assert key not in caplog.text


def test_cache_location_follows_config_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HADRON_HF_CACHE", str(tmp_path / "env"))
    assert AutoReasonConfig().cache_path() == tmp_path / "env" / "requests.sqlite"
    assert AutoReasonConfig(cache_dir=str(tmp_path / "cfg")).cache_path() == tmp_path / "cfg" / "requests.sqlite"


def test_reprs_hold_no_secrets(tmp_path: Path) -> None:
    model = CachedChatModel(counting_model(), SQLiteStore(tmp_path / "c.sqlite"), "openai|http://h/v1|m")
    assert repr(model) == "CachedChatModel('openai|http://h/v1|m')" and "c.sqlite" in repr(model.store)
