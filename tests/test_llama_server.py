"""Constrained judging over HTTP, against a real ``llama_cpp.server`` serving the embedded SmolLM2 GGUF.

The server is started here on a free loopback port with one thread (the model runs at tens of tokens per
second on a busy two-core machine), so every reply is kept short.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from datasets import Dataset

pytest.importorskip("llama_cpp", reason='llama-cpp-python is not installed (pip install "hadron_hf[test]")')
if importlib.util.find_spec("llama_cpp.server") is None or importlib.util.find_spec("uvicorn") is None:
    pytest.skip("llama_cpp.server needs llama-cpp-python[server] (in hadron_hf[test])", allow_module_level=True)

from hadron_hf import AutoReasonConfig, ModelConfig, autoreason_map  # noqa: E402
from hadron_hf import columns as col  # noqa: E402
from hadron_hf.backends.llama_cpp import default_model_path  # noqa: E402
from hadron_hf.summary import summarize  # noqa: E402

PROMPTS = ["What is 2 + 2?", "Name the capital of France."]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", default_model_path(), "--host", "127.0.0.1",
             "--port", str(port), "--n_threads", "1", "--n_threads_batch", "1", "--n_ctx", "4096",
             "--verbose", "False"], stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_until_up(url, proc, log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_until_up(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"llama_cpp.server did not come up: {log.read_text()[-2000:]}")


@pytest.mark.parametrize("variant", ["paper", "hadron"])
def test_gbnf_judges_parse_on_a_real_server(llama_server: str, cache_dir: str, variant: str) -> None:
    model = ModelConfig(base_url=llama_server, model="smollm2", api_key_env=None, judge_constraint="gbnf",
                        timeout=600, max_concurrency=4)
    # judge_max_tokens=64 leaves the paper variant's judges about 37 characters to reason before the line.
    cfg = AutoReasonConfig(model=model, judges=3, max_iterations=1, max_tokens=24, judge_max_tokens=64,
                           variant=variant, cache_dir=cache_dir, progress=False)  # type: ignore[arg-type]
    rows = list(Dataset.from_dict({"prompt": PROMPTS}).map(autoreason_map, batched=True,
                                                         fn_kwargs={"config": cfg}))
    summary = summarize(rows)
    votes = [v for r in rows for rnd in r[col.TRACE]["rounds"] for v in rnd["votes"]]
    print(f"\n{variant}: judge votes parsed {summary.votes_parsed}/{summary.votes} ({summary.parse_rate:.0%}), "
          f"shown order repeated {summary.position_votes}/{summary.votes_parsed}")
    assert all(r[col.STATUS] == "ok" for r in rows)
    assert summary.votes >= 3 and summary.parse_rate >= 0.95
    assert all(v["constrained"] for v in votes if v["parsed"])
    if variant == "paper":
        # The grammar lets them reason before the line: some text precedes the ranking.
        assert any("\n" in v["raw"] for v in votes)
