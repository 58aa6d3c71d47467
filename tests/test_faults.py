"""The fault-injection suite: whole ``Dataset.map`` jobs against a loopback server that misbehaves.

Each test prints the figures it measured (run with ``-s`` to see them).
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kill_resume_job as job
import pytest
from datasets import Dataset

from hadron_hf import AutoReasonConfig, ModelConfig, autoreason_map
from hadron_hf.dataset_map import refine_row
from hadron_hf.engine.cache import RequestCache
from hadron_hf.engine.runtime import use_runtime
from hadron_hf.errors import AuthenticationError, EndpointDownError, ModelNotFoundError
from hadron_hf.testing import FakeOpenAIServer, Faults, comparable_rows

HERE = Path(__file__).parent
RETRYABLE = ("429", "503", "drop", "slow", "malformed", "empty")


def make_config(url: str, cache_dir: str, judges: int = 3, max_iterations: int = 2, **model: Any) -> AutoReasonConfig:
    settings = {"model": "m", "api_key_env": None, "timeout": 5.0, **model}
    return AutoReasonConfig(model=ModelConfig(base_url=url, **settings), judges=judges, converge_k=2,
                            max_iterations=max_iterations, seed=0, cache_dir=cache_dir, progress=False)


def refine(ds: Dataset, cfg: AutoReasonConfig, batch_size: int = 8) -> Dataset:
    return ds.map(autoreason_map, batched=True, batch_size=batch_size, fn_kwargs={"config": cfg})


def prompts(n: int, tag: str = "q") -> Dataset:
    return Dataset.from_dict({"prompt": [f"{tag} {i}: explain topic {i} in two sentences." for i in range(n)]})


def test_200_rows_under_20_percent_mixed_faults_all_ok(tmp_path: Path) -> None:
    # Every retryable fault at once, on 20% of requests. max_retries=10 because a call gives up only after
    # max_retries+1 faults in a row: 0.2**11 per call. One judge and one round keep it to 5 calls a row.
    faults = Faults(rate=0.2, kinds=RETRYABLE, retry_after=0.02, slow_seconds=2.5, seed=5)
    ds = prompts(200)
    with FakeOpenAIServer(faults=faults) as faulty, FakeOpenAIServer() as clean:
        cfg = make_config(faulty.url, str(tmp_path / "faulty"), 1, 1, timeout=1.5, max_retries=10, max_concurrency=32)
        out = refine(ds, cfg, 25)
        # Rows are independent, so a fault-free run of the first 50 is their reference.
        reference = refine(ds.select(range(50)), make_config(clean.url, str(tmp_path / "clean"), 1, 1), 25)
    log = faulty.log
    retries = sum(log.faults.values())  # each fault fails exactly one attempt, which is then retried
    print(f"\n200-row job: {log.requests} requests, fault rate {retries / log.requests:.1%}, "
          f"faults {dict(log.faults)}, retries {retries}, "
          f"rows ok {out['autoreason_status'].count('ok')}/{len(out)}, repeated answers {log.repeated}")
    assert len(out) == 200 and out["autoreason_status"] == ["ok"] * 200
    assert set(log.faults) == set(RETRYABLE) and 0.15 < retries / log.requests < 0.25
    # Faults cost retries, never answers: nothing answered twice, and the result is the fault-free one.
    assert log.repeated == 0
    assert sum(log.answered.values()) == log.requests - retries == 200 * 5
    assert comparable_rows(out.select(range(50)).to_list()) == comparable_rows(reference.to_list())


def test_garbage_judge_replies_drop_votes_not_rows(tmp_path: Path) -> None:
    faults = Faults(rate=0.3, kinds=("garbage_judge",), seed=1)
    with FakeOpenAIServer(faults=faults) as srv:
        out = refine(prompts(16), make_config(srv.url, str(tmp_path), max_iterations=1))
    votes = [v for trace in out["autoreason_trace"] for rnd in trace["rounds"] for v in rnd["votes"]]
    garbage = [v for v in votes if not v["parsed"]]
    print(f"\ngarbage judges: {len(garbage)}/{len(votes)} votes unparseable, rows ok "
          f"{out['autoreason_status'].count('ok')}/16")
    assert out["autoreason_status"] == ["ok"] * 16
    assert len(garbage) == srv.log.faults["garbage_judge"] > 0
    assert all(v["raw"] == "I think they are all fine, really." and v["error"] for v in garbage)
    assert all(sorted(v["ranking"]) == ["A", "AB", "B"] for v in votes if v["parsed"])


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """The kill test's job, run once without interruption on a server of its own and a fresh cache."""
    with FakeOpenAIServer(latency=0.01) as srv:
        rows = job.run_job(srv.url, str(tmp_path_factory.mktemp("reference-cache")))
    assert all(r["autoreason_status"] == "ok" for r in rows)
    return rows


def start_job(url: str, cache_dir: Path, out: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, str(HERE / "kill_resume_job.py"), url, str(cache_dir), str(out)]
    with open(out.with_suffix(".log"), "wb") as log:  # a file, not a pipe: a full pipe would block the job
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)


def job_output(out: Path) -> str:
    return out.with_suffix(".log").read_text(errors="replace")[-3000:]


def wait_for(condition: Any, what: str, proc: subprocess.Popen[bytes] | None = None, out: Path | None = None) -> None:
    deadline = time.monotonic() + 120  # a hang guard, not a speed check
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the job exited before {what}:\n{job_output(out) if out else ''}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_killed_job_resumes_without_repeating_a_completed_call(
    tmp_path: Path, uninterrupted: list[dict[str, Any]], sig: signal.Signals
) -> None:
    cache_dir, first_out, second_out = tmp_path / "cache", tmp_path / "first.pkl", tmp_path / "second.pkl"
    cache = RequestCache(cache_dir / "requests.sqlite")
    total = sum(r["autoreason_usage"]["calls"] for r in uninterrupted)
    # The server stops answering after 30 answers, so the job is frozen mid-way with calls in flight;
    # it is stopped once every answer it received is in its cache.
    with FakeOpenAIServer(latency=0.01, hold_after=30) as srv:
        first = start_job(srv.url, cache_dir, first_out)
        try:
            wait_for(lambda: srv.log.held > 0 and cache.count() == sum(srv.log.answered.values()),
                     "the server to hold a request", first, first_out)
            in_flight = srv.log.in_flight
            os.kill(first.pid, sig)
            first.wait(60)
        finally:
            first.kill()
        cached_at_stop = cache.count()
        wait_for(lambda: srv.log.in_flight == 0, "the server to see the stopped client go")
        answered_first, requests_first = sum(srv.log.answered.values()), srv.log.requests
        srv.release()
        if sig == signal.SIGKILL:
            second = start_job(srv.url, cache_dir, second_out)
            assert second.wait(300) == 0, job_output(second_out)
            rows = pickle.loads(second_out.read_bytes())
        else:  # the same check, re-run in this process to save a start-up
            rows = job.run_job(srv.url, str(cache_dir))
    cache.close()
    resent = srv.log.requests - requests_first
    print(f"\n{sig.name}: stopped after {cached_at_stop} of {total} calls with {in_flight} in flight; "
          f"the re-run sent {resent} requests; repeated answers over both runs: {srv.log.repeated}")
    assert first.returncode != 0 and 0 < cached_at_stop == answered_first < total and in_flight > 0
    if sig == signal.SIGINT:
        assert "KeyboardInterrupt" in job_output(first_out)
    # Zero completed calls sent again: no request was answered twice over both runs, and the re-run
    # sent exactly the calls that were missing.
    assert srv.log.repeated == 0
    assert resent == total - cached_at_stop and sum(srv.log.answered.values()) == total
    assert comparable_rows(rows) == comparable_rows(uninterrupted)
    assert sum(r["autoreason_usage"]["cached_calls"] for r in rows) == cached_at_stop


async def test_bad_rows_get_errors_and_the_rest_completes(tmp_path: Path) -> None:
    long_prompt = "tell me everything " * 300
    batch = {"prompt": [None, "", "   ", 42, ["not", "messages"], long_prompt, "fine prompt", "another fine one"]}
    with FakeOpenAIServer(max_prompt_chars=4000) as srv:
        cols = await autoreason_map(batch, make_config(srv.url, str(tmp_path)))
    status, errors = cols["autoreason_status"], cols["autoreason_error"]
    assert status == ["error"] * 6 + ["ok", "ok"]
    assert "missing" in errors[0] and "empty" in errors[1] and "empty" in errors[2]
    assert "got int" in errors[3] and "got list" in errors[4]
    assert errors[5].startswith("RequestRejectedError") and "400" in errors[5] and "context length" in errors[5]
    # The 400 was not retried: one request carried the long prompt.
    assert sum(long_prompt in str(body["messages"]) for body in srv.log.bodies) == 1
    assert cols["refined"][:6] == [None] * 6 and all(cols["refined"][6:])


def test_bad_rows_through_dataset_map(tmp_path: Path) -> None:
    ds = Dataset.from_dict({"prompt": ["fine one", None, "x" * 5000, "", "fine two", "fine three"]})
    with FakeOpenAIServer(max_prompt_chars=4000) as srv:
        out = refine(ds, make_config(srv.url, str(tmp_path)), batch_size=3)
    assert out["autoreason_status"] == ["ok", "error", "error", "error", "ok", "ok"]
    assert "400" in out["autoreason_error"][2]


def test_wrong_key_stops_the_job_fast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HADRON_FAULTS_KEY", "sk-wrong-key-0123456789")
    with FakeOpenAIServer(api_key="sk-right-key-9876543210") as srv:
        cfg = make_config(srv.url, str(tmp_path), api_key_env="HADRON_FAULTS_KEY", max_concurrency=4)
        with pytest.raises(AuthenticationError, match=r"refused the API key \(401\).*api_key_env"):
            refine(prompts(100), cfg, batch_size=10)
    # No retries and no grinding: at most the calls already in flight when the first 401 came back.
    assert srv.log.requests <= 4


def test_unknown_model_stops_the_job_fast(tmp_path: Path) -> None:
    with FakeOpenAIServer(models=("real-model",)) as srv:
        with pytest.raises(ModelNotFoundError, match="404"):
            refine(prompts(100), make_config(srv.url, str(tmp_path), max_concurrency=4), batch_size=10)
    assert srv.log.requests <= 4


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_dead_endpoint_stops_the_job_fast(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    cfg = make_config(url, str(tmp_path))
    with pytest.raises(EndpointDownError, match="looks down.*none has ever succeeded.*cannot reach the server"):
        refine(prompts(100), cfg, batch_size=10)


def test_always_failing_endpoint_raises_one_clear_error(tmp_path: Path) -> None:
    # A small retry budget keeps this test short; test_resilience checks the defaults' schedule.
    faults = Faults(rate=1.0, kinds=("503",))
    with FakeOpenAIServer(faults=faults) as srv:
        cfg = make_config(srv.url, str(tmp_path), max_retries=2, max_concurrency=8)
        # Calls already in flight may also give up before the stop lands, so at least 8 are counted.
        with pytest.raises(EndpointDownError, match=r"(\d+) call\(s\) in a row failed after 2 retries.*503") as info:
            refine(prompts(500), cfg, batch_size=10)
    assert 8 <= int(str(info.value).split(" call(s)")[0].rsplit(" ", 1)[1]) <= 16
    # Far fewer requests than the job's 500 teacher calls: it stopped instead of grinding on.
    print(f"\nalways-503: stopped after {srv.log.requests} requests")
    assert srv.log.requests <= (8 + 8) * 3


def test_no_api_key_in_outputs_cache_or_logs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             caplog: pytest.LogCaptureFixture) -> None:
    key = "sk-test-SECRET-4f9c2e7a1b"
    monkeypatch.setenv("HADRON_FAULTS_KEY", key)
    caplog.set_level(logging.DEBUG)
    faults = Faults(rate=0.2, kinds=RETRYABLE, retry_after=0.02, slow_seconds=2.5)
    cache_dir = tmp_path / "cache"
    with FakeOpenAIServer(api_key=key, faults=faults) as srv:
        cfg = make_config(srv.url, str(cache_dir), api_key_env="HADRON_FAULTS_KEY", timeout=1.5, max_retries=10)
        out = refine(prompts(6, "secret"), cfg)
        with pytest.raises(AuthenticationError) as refused:  # a wrong key's error must not echo either key
            monkeypatch.setenv("HADRON_FAULTS_KEY", key[::-1])
            refine(prompts(2, "other"), cfg)
    assert out["autoreason_status"] == ["ok"] * 6 and srv.log.keys_seen.count(f"Bearer {key}") > 6
    out.to_parquet(tmp_path / "out.parquet")
    texts = [repr(cfg), str(cfg.model_dump()), str(refused.value), caplog.text]
    assert all(key not in t and key[::-1] not in t for t in texts)
    assert "retrying" in caplog.text  # DEBUG logging was on and did record the retries
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name.startswith("requests.sqlite") for p in files)
    for path in files:
        data = path.read_bytes()
        assert key.encode() not in data and key[::-1].encode() not in data, path


async def test_fatal_error_in_one_row_stops_the_others_quickly(tmp_path: Path) -> None:
    # Rows sleeping in backoff wake up as soon as the endpoint is declared down.
    faults = Faults(rate=1.0, kinds=("503",))
    with FakeOpenAIServer(faults=faults) as srv:
        cfg = make_config(srv.url, str(tmp_path), max_retries=3, max_concurrency=16)
        async with use_runtime(cfg) as runtime:
            rows = [asyncio.ensure_future(refine_row(f"row {i}", cfg, runtime)) for i in range(16)]
            done = await asyncio.gather(*rows, return_exceptions=True)
    # The first 7 calls to give up fail their rows; the 8th stops the endpoint, and every row still
    # running stops with it, waking from its backoff instead of using up its retries.
    assert sum(isinstance(d, str) and "503" in d for d in done) == 7
    assert sum(isinstance(d, EndpointDownError) for d in done) == 9
    assert srv.log.requests < 16 * 4


@pytest.fixture(autouse=True)
def _quiet_datasets() -> Iterator[None]:
    logging.getLogger("datasets").setLevel(logging.ERROR)
    yield
