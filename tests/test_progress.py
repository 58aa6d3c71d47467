import asyncio
import os
import pty
import sys
import threading

import pytest
from datasets import Dataset

from hadron_hf import AutoReasonConfig, ModelConfig, autoreason_map
from hadron_hf.core.tournament import CallRecord
from hadron_hf.engine.progress import PROGRESS_ENV, Price, PriceTable, ProgressSnapshot, progress_for, should_show
from hadron_hf.engine.runtime import use_runtime
from hadron_hf.summary import summarize
from hadron_hf.testing import FakeOpenAIServer

PROMPTS = [f"Question {i}: explain topic {i}." for i in range(6)]


def make_config(url: str, cache_dir: str, **kw: object) -> AutoReasonConfig:
    model = ModelConfig(base_url=url, model="m", api_key_env="HADRON_TEST_KEY",
                        price_input_per_mtok=0.5, price_output_per_mtok=2.0)
    return AutoReasonConfig(model=model, judges=3, max_iterations=3, cache_dir=cache_dir, **kw)  # type: ignore[arg-type]


def call(model: str, prompt_tokens: int = 1_000_000, completion_tokens: int = 0) -> CallRecord:
    return CallRecord("teacher", model, 0, "a", None, prompt_tokens, completion_tokens, False)


def test_price_table_matches_names_dated_names_and_a_single_price() -> None:
    cfg = AutoReasonConfig(
        model=ModelConfig(model="gpt-4o", price_input_per_mtok=2.5, price_output_per_mtok=10),
        judge_models=[ModelConfig(model="gpt-4o-mini", price_input_per_mtok=0.15, price_output_per_mtok=0.6),
                      ModelConfig(model="free")],
    )
    table = PriceTable.from_config(cfg)
    assert table.price_of("gpt-4o") == Price(2.5, 10)
    assert table.price_of("gpt-4o-mini-2024-07-18") == Price(0.15, 0.6)  # the longest matching name wins
    assert table.price_of("free") is None and table.price_of("other") is None
    assert table.calls_cost([call("gpt-4o"), call("gpt-4o-mini", 0, 1_000_000)]) == pytest.approx(2.5 + 0.6)
    assert table.calls_cost([call("gpt-4o"), call("free")]) is None  # an unpriced call makes the row unknown
    single = PriceTable.from_config(AutoReasonConfig(model=ModelConfig(model="x", price_output_per_mtok=4)))
    assert single.price_of("whatever-the-server-says") == Price(0.0, 4.0)
    assert not PriceTable.from_config(AutoReasonConfig()) and PriceTable.from_config(AutoReasonConfig()).calls_cost(
        [call("m")]) is None


def test_rows_carry_their_cost_and_the_summary_totals_it(server: FakeOpenAIServer, cache_dir: str) -> None:
    cfg = make_config(server.url, cache_dir, progress=False)
    out = Dataset.from_dict({"prompt": PROMPTS}).map(autoreason_map, batched=True, batch_size=4,
                                                     fn_kwargs={"config": cfg})
    costs = []
    for usage in out["autoreason_usage"]:
        expected = (usage["prompt_tokens"] * 0.5 + usage["completion_tokens"] * 2.0) / 1e6
        assert usage["cost_usd"] == pytest.approx(expected) and expected > 0
        costs.append(usage["cost_usd"])
    summary = summarize(out)
    assert summary.cost_usd == pytest.approx(sum(costs))
    assert f"${sum(costs):.4f}" in summary.render()
    unpriced = cfg.model_copy(update={"model": ModelConfig(base_url=server.url, model="m", api_key_env="K")})
    again = Dataset.from_dict({"prompt": PROMPTS[:2]}).map(autoreason_map, batched=True,
                                                          fn_kwargs={"config": unpriced})
    assert [u["cost_usd"] for u in again["autoreason_usage"]] == [None, None]
    assert summarize(again).cost_usd is None


async def test_one_progress_per_loop_counts_rows_and_calls_across_batches(server: FakeOpenAIServer,
                                                                          cache_dir: str) -> None:
    cfg = make_config(server.url, cache_dir, cache=False)
    batches = [{"prompt": PROMPTS[:4]}, {"prompt": PROMPTS[4:]}]
    async with use_runtime(cfg) as runtime:  # held open, so its counters can be read after the batches
        await asyncio.gather(*(autoreason_map(b, cfg) for b in batches))
        progress = progress_for(cfg, runtime)
        snap = progress.snapshot()
    assert (snap.rows_done, snap.rows_total, snap.in_flight, progress.active_batches) == (6, 6, 0, 0)
    assert snap.calls_done == server.log.requests and snap.retries == 0 and snap.failed == 0
    usage_cost = (snap.prompt_tokens * 0.5 + snap.completion_tokens * 2.0) / 1e6
    assert snap.cost_usd == pytest.approx(usage_cost) and snap.cost_complete
    assert progress.show is False  # pytest's stderr is not a terminal


def test_snapshot_line_reads_well() -> None:
    snap = ProgressSnapshot(3, 10, 7, 1234, 1, 5, 1_250_000, 4_200, 0.0123, False)
    assert snap.describe() == "7 in flight, 1234 calls, 5 retries, 1 failed, tok 1.2M in/4.2k out, ≥$0.0123"


def test_forced_progress_draws_counts_and_leaves_no_thread(server: FakeOpenAIServer, cache_dir: str,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(PROGRESS_ENV, "1")
    cfg = make_config(server.url, cache_dir)
    assert should_show(cfg) and not should_show(cfg.model_copy(update={"progress": False}))
    Dataset.from_dict({"prompt": PROMPTS}).map(autoreason_map, batched=True, batch_size=2,
                                               fn_kwargs={"config": cfg})
    err = capsys.readouterr().err
    final = err.replace("\r", "\n").strip().splitlines()[-1]
    assert final.startswith("AutoReason: 6/6 rows") and "0 in flight" in final and "$" in final
    assert f"{server.log.requests} calls" in final
    assert not [t for t in threading.enumerate() if t.name == "hadron-hf-progress"]


@pytest.mark.parametrize("env,progress", [("", True), ("0", True), ("1", False)], ids=["no-tty", "env-off", "cfg-off"])
def test_progress_stays_silent_when_off(server: FakeOpenAIServer, cache_dir: str, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str], env: str, progress: bool) -> None:
    monkeypatch.setenv(PROGRESS_ENV, env)
    cfg = make_config(server.url, cache_dir, progress=progress)
    assert not should_show(cfg)
    Dataset.from_dict({"prompt": PROMPTS[:2]}).map(autoreason_map, batched=True, fn_kwargs={"config": cfg})
    assert "AutoReason" not in capsys.readouterr().err


def test_progress_shows_on_a_terminal_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    master, slave = pty.openpty()
    try:
        with os.fdopen(slave, "w") as terminal:
            monkeypatch.setattr(sys, "stderr", terminal)
            monkeypatch.delenv(PROGRESS_ENV, raising=False)
            assert should_show(AutoReasonConfig())
            assert not should_show(AutoReasonConfig(progress=False))
    finally:
        os.close(master)


async def test_the_total_is_known_from_the_start_and_cancelled_rows_mark_an_interruption(
        server: FakeOpenAIServer, cache_dir: str) -> None:
    cfg = make_config(server.url, cache_dir).model_copy(update={"progress_total": 40})
    async with use_runtime(cfg) as runtime:
        progress = progress_for(cfg, runtime)
        assert progress.snapshot().rows_total == 40  # before any batch arrived
        progress.start_batch(8)
        assert progress.snapshot().rows_total == 40

        async def row() -> None:
            await asyncio.sleep(3600)

        done, cancelled = asyncio.ensure_future(asyncio.sleep(0)), asyncio.ensure_future(row())
        await done
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        progress.row_done(done)
        progress.row_done(cancelled)
        assert progress.snapshot().rows_done == 1 and progress.interrupted
        progress.end_batch()
