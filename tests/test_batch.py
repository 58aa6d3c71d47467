"""Batch mode: ``BatchChatModel`` against the loopback batch API (``FakeBatchServer``), end to end.

No mocks and no clocks: every test runs a real aiohttp fake of ``/v1/files`` + ``/v1/batches`` and a real
SQLite request cache, and counts what the fake was sent.
"""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import batch_kill_job as job
import openai
import pytest
from datasets import Dataset

from hadron_hf import AutoReasonConfig, ModelConfig, autoreason_map
from hadron_hf.backends.batch import BatchChatModel, BatchOptions, batch_progress
from hadron_hf.backends.batch_api import batch_failure
from hadron_hf.backends.batch_store import BatchStore
from hadron_hf.backends.openai import OpenAIChatModel
from hadron_hf.chat import Message, SamplingParams
from hadron_hf.cli import build_parser
from hadron_hf.cli import main as cli_main
from hadron_hf.cli.options import config_from_args
from hadron_hf.engine.progress import PriceTable, ProgressSnapshot
from hadron_hf.errors import (
    AuthenticationError,
    ConfigError,
    ModelNotFoundError,
    RateLimitError,
    RequestRejectedError,
)
from hadron_hf.testing import BatchFaults, FakeBatchServer, comparable_rows, dependent_steps, role_of

HERE = Path(__file__).parent
FAST = {"batch_poll_s": 0.02, "batch_idle_s": 0.05}


def config(url: str, cache_dir: str | Path, mode: str = "batch", **overrides: Any) -> AutoReasonConfig:
    fields: dict[str, Any] = {"api_key_env": None, "mode": mode, "max_concurrency": 2, **FAST,
                              **overrides.pop("model", {})}
    model = ModelConfig(base_url=url, model="m", **fields)
    settings: dict[str, Any] = {"judges": 3, "max_iterations": 3, "seed": 5, "progress": False, **overrides}
    return AutoReasonConfig(model=model, cache_dir=str(cache_dir), **settings)


def prompts(n: int) -> Dataset:
    return Dataset.from_dict({"prompt": [f"Batch question {i}: how does idea {i} work?" for i in range(n)]})


def refine(ds: Dataset, cfg: AutoReasonConfig) -> list[dict[str, Any]]:
    out = ds.map(autoreason_map, batched=True, batch_size=len(ds), fn_kwargs={"config": cfg},
                 load_from_cache_file=False)
    rows: list[dict[str, Any]] = out.to_list()
    return rows


def dependent_steps_of(rows: list[dict[str, Any]]) -> int:
    """The longest chain of dependent calls over the rows."""
    return max(dependent_steps(row["autoreason_trace"]) for row in rows)


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 120  # a hang guard, not a speed check
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.mark.parametrize("variant", ["paper", "hadron"])
def test_batch_job_equals_live_job_with_one_batch_per_dependent_step(tmp_path: Path, variant: str) -> None:
    ds = prompts(8)
    with FakeBatchServer(completion_delay=0.1, no_flaws_rate=0.5) as srv:
        live = refine(ds, config(srv.url, tmp_path / "live", "live", variant=variant))
        batched = refine(ds, config(srv.url, tmp_path / "batch", variant=variant))
        statuses = dict(srv.batch_log.statuses)
        first_batch = srv.batch_log.sizes[0]
    steps = dependent_steps_of(batched)
    calls = sum(r["autoreason_usage"]["calls"] for r in batched)
    print(f"\n{variant}: {len(statuses)} batches for {steps} dependent steps, {calls} calls")
    assert all(r["autoreason_status"] == "ok" for r in batched)
    assert comparable_rows(batched) == comparable_rows(live)
    assert len(statuses) == steps and set(statuses.values()) == {"completed"}
    # Every request went out exactly once, and max_concurrency=2 did not hold the batch back.
    assert srv.batch_log.lines == calls and srv.batch_log.resubmitted == 0 and first_batch == len(ds)
    if variant == "hadron":
        assert any(rnd["no_flaws"] for r in batched for rnd in r["autoreason_trace"]["rounds"])


def test_judges_in_a_batch_get_the_ranking_constraint_like_live_judges(tmp_path: Path) -> None:
    with FakeBatchServer(completion_delay=0.05, no_flaws_rate=0.0) as srv:
        rows = refine(prompts(2), config(srv.url, tmp_path, model={"judge_constraint": "gbnf"}, max_iterations=1))
        bodies = list(srv.log.bodies)  # every request the batches carried, as the live route would see it
    judges = [b for b in bodies if role_of(b["messages"]) == "judge"]
    assert judges and all("grammar" in b for b in judges)
    assert not any("grammar" in b for b in bodies if b not in judges)
    votes = [v for r in rows for rnd in r["autoreason_trace"]["rounds"] for v in rnd["votes"]]
    assert votes and all(v["parsed"] and v["constrained"] for v in votes)


def test_failed_and_expired_requests_are_retried_in_the_next_batch(tmp_path: Path) -> None:
    ds = prompts(6)
    faults = BatchFaults(fail_lines={2: 500, 3: 429, 9: 503}, expire={2}, expire_done=0.5)
    with FakeBatchServer(completion_delay=0.1, batch_faults=faults) as srv:
        live = refine(ds, config(srv.url, tmp_path / "live", "live", max_iterations=2))
        answered_live = sum(srv.log.answered.values())
        rows = refine(ds, config(srv.url, tmp_path / "batch", max_iterations=2))
        log = srv.batch_log
    assert all(r["autoreason_status"] == "ok" for r in rows)
    assert comparable_rows(rows) == comparable_rows(live)
    assert "expired" in log.statuses.values()
    # The three failed lines and the half of batch 2 that never ran went out once more; nothing else did.
    assert log.statuses[log.batches[1]] == "expired" and log.failed >= 2 + log.sizes[1] - log.sizes[1] // 2
    assert log.resubmitted == log.failed
    assert sum(srv.log.answered.values()) - answered_live == sum(r["autoreason_usage"]["calls"] for r in rows)


def test_bad_request_fails_only_its_row_with_the_providers_message(tmp_path: Path) -> None:
    with FakeBatchServer(completion_delay=0.05, batch_faults=BatchFaults(fail_lines={1: 400})) as srv:
        rows = refine(prompts(4), config(srv.url, tmp_path, max_iterations=1))
    failed = [r for r in rows if r["autoreason_status"] == "error"]
    assert len(failed) == 1 and sum(r["autoreason_status"] == "ok" for r in rows) == 3
    assert failed[0]["autoreason_error"] == (f"RequestRejectedError: model 'm' at {srv.url} (batch): "
                                             "request rejected (400): Invalid request.")
    assert srv.batch_log.resubmitted == 0  # a rejected request is not bought again


@pytest.mark.parametrize("case", ["wrong_key", "unknown_model"])
def test_fatal_errors_stop_the_job(tmp_path: Path, case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCH_TEST_KEY", "sk-wrong-0123456789")
    kwargs: dict[str, Any] = {"api_key": "sk-right-0123456789"} if case == "wrong_key" else {"models": ("real",)}
    with FakeBatchServer(completion_delay=0.05, **kwargs) as srv:
        cfg = config(srv.url, tmp_path, model={"api_key_env": "BATCH_TEST_KEY"})
        expected = AuthenticationError if case == "wrong_key" else ModelNotFoundError
        with pytest.raises(expected) as caught:
            refine(prompts(3), cfg)
    assert "sk-wrong-0123456789" not in str(caught.value)
    assert ("401" in str(caught.value)) if case == "wrong_key" else ("'m' does not exist" in str(caught.value))


def test_the_size_limit_splits_a_step_into_several_batches(tmp_path: Path) -> None:
    with FakeBatchServer(completion_delay=0.05) as srv:
        rows = refine(prompts(7), config(srv.url, tmp_path, max_iterations=1, model={"batch_max_requests": 3}))
        sizes = srv.batch_log.sizes
    assert all(r["autoreason_status"] == "ok" for r in rows)
    assert sizes[:3] == [3, 3, 1] and max(sizes) == 3
    assert sum(sizes) == sum(r["autoreason_usage"]["calls"] for r in rows)


@pytest.mark.parametrize("recorded", [True, False], ids=["batch-recorded", "killed-before-record"])
async def test_a_new_process_reattaches_to_a_batch_in_flight(tmp_path: Path, recorded: bool) -> None:
    db = tmp_path / "requests.sqlite"
    options = BatchOptions(poll_s=0.02, idle_s=0.02)
    messages: list[list[Message]] = [[{"role": "user", "content": f"reattach {i}"}] for i in range(4)]
    with FakeBatchServer(completion_delay=0.5) as srv:
        first = BatchChatModel("m", srv.url, None, db, options)
        calls = [asyncio.create_task(first.chat(m, SamplingParams(seed=i))) for i, m in enumerate(messages)]
        while not await asyncio.to_thread(first.store.batches):
            await asyncio.sleep(0.01)
        for call in calls:
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
        await first.aclose()
        if not recorded:  # as if killed after creating the batch, before recording it: only the file id is known
            with sqlite3.connect(db) as conn:
                rows = conn.execute("SELECT key, file_id FROM batch_requests").fetchall()
                conn.execute("DELETE FROM batch_jobs")
            BatchStore(db, first.endpoint).mark_submitting([k for k, _ in rows], rows[0][1])
        second = BatchChatModel("m", srv.url, None, db, options)
        answers = await asyncio.gather(*(second.chat(m, SamplingParams(seed=i)) for i, m in enumerate(messages)))
        await second.aclose()
        live = OpenAIChatModel("m", srv.url, None)
        expected = [await live.chat(m, SamplingParams(seed=i)) for i, m in enumerate(messages)]
        await live.aclose()
    assert [a.text for a in answers] == [e.text for e in expected]
    assert len(srv.batch_log.batches) == 1 and srv.batch_log.resubmitted == 0
    assert second.counters.reattached == 1 and second.counters.batches_submitted == 0


async def test_answers_read_from_a_batch_are_kept_for_the_next_run(tmp_path: Path) -> None:
    db = tmp_path / "requests.sqlite"
    options = BatchOptions(poll_s=0.02, idle_s=0.02)
    messages: list[Message] = [{"role": "user", "content": "keep me"}]
    with FakeBatchServer(completion_delay=0.05) as srv:
        first = BatchChatModel("m", srv.url, None, db, options)
        done = await first.chat(messages, SamplingParams(seed=1))
        await first.aclose()
        second = BatchChatModel("m", srv.url, None, db, options)
        again = await second.chat(messages, SamplingParams(seed=1))
        await second.aclose()
    assert again == done and second.counters.answered_from_records == 1 and srv.batch_log.lines == 1


def test_kill_9_mid_job_then_rerun_buys_no_request_twice(tmp_path: Path) -> None:
    cache_dir, out = tmp_path / "cache", tmp_path / "rows.pkl"
    with FakeBatchServer(completion_delay=0.3) as srv:
        live = job.run_job(srv.url, str(tmp_path / "live"), "live")
        cmd = [sys.executable, str(HERE / "batch_kill_job.py"), srv.url, str(cache_dir), str(out)]
        with open(tmp_path / "first.log", "wb") as log:
            first = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            # Killed while its third batch is in flight and recorded (batches 1 and 2 are answered and cached).
            wait_for(lambda: first.poll() is not None or _recorded_batches(cache_dir) >= 3, "a third recorded batch")
            assert first.poll() is None, (tmp_path / "first.log").read_text()[-2000:]
            os.kill(first.pid, signal.SIGKILL)
            first.wait(60)
        finally:
            first.kill()
        before = srv.batch_log.lines
        with open(tmp_path / "second.log", "wb") as log:
            second = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=300)
        assert second.returncode == 0, (tmp_path / "second.log").read_text()[-3000:]
        rows = pickle.loads(out.read_bytes())
        lines, resubmitted = srv.batch_log.lines, srv.batch_log.resubmitted
    calls = sum(r["autoreason_usage"]["calls"] for r in rows)
    print(f"\nkill -9 after {before} submitted requests; the re-run submitted {lines - before}; "
          f"submitted twice: {resubmitted}")
    assert first.returncode == -signal.SIGKILL and 0 < before < calls
    assert resubmitted == 0 and lines == calls
    assert comparable_rows(rows) == comparable_rows(live)


def _recorded_batches(cache_dir: Path) -> int:
    try:
        with sqlite3.connect(cache_dir / "requests.sqlite", timeout=5) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM batch_jobs").fetchone()[0])
    except sqlite3.Error:
        return 0


async def test_the_fake_speaks_openais_shapes_to_the_official_client() -> None:
    line = {"custom_id": "r1", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "m", "messages": [{"role": "user", "content": "hi"}], "seed": 3}}
    with FakeBatchServer(completion_delay=0.05, batch_faults=BatchFaults(fail_lines={2: 500})) as srv:
        client = openai.AsyncOpenAI(base_url=srv.url, api_key="k", max_retries=0)
        two = (json.dumps(line) + "\n" + json.dumps({**line, "custom_id": "r2"}) + "\n").encode()
        upload = await client.files.create(file=("in.jsonl", two), purpose="batch")
        batch = await client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                            completion_window="24h")
        assert batch.status == "validating" and batch.request_counts and batch.request_counts.total == 2
        while (batch := await client.batches.retrieve(batch.id)).status != "completed":
            await asyncio.sleep(0.02)
        listed = await client.batches.list(limit=5)
        assert batch.output_file_id and batch.error_file_id and [b.id for b in listed.data] == [batch.id]
        output = [json.loads(x) for x in (await client.files.content(batch.output_file_id)).text.splitlines()]
        errors = [json.loads(x) for x in (await client.files.content(batch.error_file_id)).text.splitlines()]
        cancel_upload = await client.files.create(file=("in.jsonl", two), purpose="batch")
        later = await client.batches.create(input_file_id=cancel_upload.id, endpoint="/v1/chat/completions",
                                            completion_window="24h")
        cancelling = await client.batches.cancel(later.id)
        cancelled = await client.batches.retrieve(later.id)
        await client.close()
    assert set(output[0]) == {"id", "custom_id", "response", "error"} and output[0]["custom_id"] == "r1"
    assert set(output[0]["response"]) == {"status_code", "request_id", "body"} and output[0]["error"] is None
    assert output[0]["response"]["body"]["choices"][0]["message"]["content"]
    assert errors[0]["custom_id"] == "r2" and errors[0]["response"]["status_code"] == 500
    assert batch.request_counts is not None and (batch.request_counts.completed, batch.request_counts.failed) == (1, 1)
    assert cancelling.status == "cancelling" and cancelled.status == "cancelled"


async def test_progress_shows_each_batch_state_and_counts(tmp_path: Path) -> None:
    with FakeBatchServer(completion_delay=1.0) as srv:
        model = BatchChatModel("m", srv.url, None, tmp_path / "db.sqlite", BatchOptions(poll_s=0.02, idle_s=0.02))
        calls = [asyncio.create_task(model.chat([{"role": "user", "content": f"p{i}"}], SamplingParams()))
                 for i in range(5)]
        while not any(s.status == "in_progress" for s in model.batches()):
            await asyncio.sleep(0.02)
        line = batch_progress([object(), model])
        await asyncio.gather(*calls)
        after = batch_progress([model])
        await model.aclose()
    assert line.startswith("batches: in_progress ") and line.endswith("/5")
    assert after == "batches: 1 done"
    snap = ProgressSnapshot(1, 2, 0, 0, 0, 0, 0, 0, None, False, batches=line)
    assert snap.describe().endswith(line)


@pytest.mark.parametrize(("code", "expected"), [("model_not_found", ModelNotFoundError),
                                               ("token_limit_exceeded", RateLimitError),
                                               ("invalid_json_line", RequestRejectedError)])
def test_a_batch_refused_as_a_whole_maps_to_our_errors(code: str, expected: type[Exception]) -> None:
    error = batch_failure({"status": "failed", "errors": {"object": "list", "data": [{"code": code, "message": "m"}]}})
    assert type(error) is expected and str(error).endswith(": m")


def test_batch_mode_config_pricing_and_cli(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mode 'batch' needs an OpenAI-compatible endpoint"):
        AutoReasonConfig.from_dict({"model": {"backend": "llama_cpp", "mode": "batch"}})
    with pytest.raises(ConfigError, match="batch mode needs an OpenAI-compatible endpoint"):
        AutoReasonConfig().with_batch_api()
    live = ModelConfig(base_url="http://x/v1", model="g", price_input_per_mtok=2.0, price_output_per_mtok=8.0)
    cfg = AutoReasonConfig(model=live)
    batch = cfg.with_batch_api()
    assert not cfg.uses_batch_api() and batch.uses_batch_api() and batch.model.mode == "batch"
    assert PriceTable.from_config(batch).price_of("g").cost(1_000_000, 1_000_000) == 5.0  # type: ignore[union-attr]
    args = build_parser().parse_args(["refine", "in.jsonl", "--base-url", "http://x/v1", "--model", "g", "--batch"])
    assert config_from_args(args).model.mode == "batch"


@pytest.mark.parametrize("command", ["refine", "build"])
def test_cli_batch_flag_puts_every_row_in_one_batch(tmp_path: Path, command: str) -> None:
    rows = tmp_path / "prompts.jsonl"
    rows.write_text("".join(json.dumps({"prompt": f"CLI batch question {i}"}) + "\n" for i in range(5)))
    with FakeBatchServer(completion_delay=0.05) as srv:
        settings = tmp_path / "cfg.json"
        settings.write_text(json.dumps({"model": {"base_url": srv.url, "model": "m", "api_key_env": None, **FAST},
                                        "cache_dir": str(tmp_path / "cache"), "progress": False}))
        extra = ["--no-views"] if command == "refine" else ["--views", "sft"]
        code = cli_main([command, str(rows), "--config", str(settings), "--batch", "--batch-size", "2", "--judges",
                         "3", "--max-iterations", "1", "--output", str(tmp_path / "out"), *extra])
        sizes = srv.batch_log.sizes
    assert code == 0 and srv.log.requests == 0
    assert sizes[0] == 5  # --batch chose one map batch for all rows, so the five teacher calls share a batch
