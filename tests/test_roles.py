"""Per-role models, judge pools, teacher routes, reasoning traces and config errors, on the loopback server.

The server logs ``(role, model)`` for every request it receives, so each test can check who was asked.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from datasets import Dataset, load_from_disk

from hadron_hf import AutoReasonConfig, ConfigError, ModelConfig, TeacherRoute, autoreason_map
from hadron_hf.cli import main
from hadron_hf.columns import REASONING, TRACE, USAGE
from hadron_hf.engine.runtime import use_runtime
from hadron_hf.testing import FakeOpenAIServer

PROMPTS = [f"Explain idea number {i} in two sentences." for i in range(4)]
POOL = ("judge-1", "judge-2", "judge-3")
ROLE_MODEL = {"teacher": "teacher-m", "critic": "critic-m", "author_b": "author-m", "synthesizer": "synth-m"}


def endpoint(url: str, name: str, **kw: Any) -> ModelConfig:
    return ModelConfig(base_url=url, model=name, api_key_env="HADRON_TEST_KEY", **kw)


def per_role_config(url: str, cache_dir: str, **kw: Any) -> AutoReasonConfig:
    settings: dict[str, Any] = {"judges": 3, "max_iterations": 2, "converge_k": 3, "seed": 0, **kw}
    return AutoReasonConfig(
        model=endpoint(url, "default-m"), teacher=endpoint(url, "teacher-m"), critic=endpoint(url, "critic-m"),
        author=endpoint(url, "author-m"), synthesizer=endpoint(url, "synth-m"),
        judge_models=[endpoint(url, m) for m in POOL], cache_dir=cache_dir, progress=False, **settings,
    )


def refine(prompts: list[str], cfg: AutoReasonConfig) -> Dataset:
    ds = Dataset.from_dict({"prompt": prompts})
    return ds.map(autoreason_map, batched=True, batch_size=8, fn_kwargs={"config": cfg})


def panels(out: Dataset) -> list[list[str]]:
    return [[v["model"] for v in rnd["votes"]] for row in out for rnd in row[TRACE]["rounds"]]


def test_each_role_goes_to_its_model_and_round_robin_judges_cover_the_pool(
        server: FakeOpenAIServer, cache_dir: str) -> None:
    out = refine(PROMPTS, per_role_config(server.url, cache_dir))
    asked: dict[str, set[str]] = {}
    for role, model in server.log.models:
        asked.setdefault(role, set()).add(model)
    assert asked == {**{r: {m} for r, m in ROLE_MODEL.items()}, "judge": set(POOL)}
    # converge_k=3 > max_iterations=2: every row plays both rounds.
    assert len(panels(out)) == len(PROMPTS) * 2
    assert all(sorted(panel) == list(POOL) for panel in panels(out))
    for row in out:
        assert row["autoreason_status"] == "ok"
        traces = row[REASONING]
        assert len(traces) == row[USAGE]["calls"] == 1 + 2 * (3 + 3)
        assert Counter(t["role"] for t in traces) == {"teacher": 1, "critic": 2, "author_b": 2, "synthesizer": 2,
                                                       "judge": 6}
        for t in traces:
            assert t["model"] in POOL if t["role"] == "judge" else t["model"] == ROLE_MODEL[t["role"]]
        assert traces[0]["answer"] == row["draft"] and traces[0]["iteration"] == 0


def test_random_judges_are_drawn_with_the_row_seed(server: FakeOpenAIServer, cache_dir: str) -> None:
    prompts = [f"Question {i}: why is the sky blue?" for i in range(6)]
    cfg = per_role_config(server.url, cache_dir, judge_pool="random", cache=False)
    first, second = panels(refine(prompts, cfg)), panels(refine(prompts, cfg))
    assert first == second  # no cache: the draws themselves repeat
    drawn = [m for panel in first for m in panel]
    assert set(drawn) == set(POOL) and len(drawn) == 6 * 2 * 3
    assert any(len(set(panel)) < 3 for panel in first)  # with replacement, unlike round-robin
    assert {m for role, m in server.log.models if role == "judge"} == set(POOL)


def test_teacher_routes_first_match_wins(server: FakeOpenAIServer, cache_dir: str) -> None:
    routes = [TeacherRoute(pattern=r"(?i)\bpython\b", model=endpoint(server.url, "python-m")),
              TeacherRoute(pattern=r"(?i)code|python", model=endpoint(server.url, "code-m"))]
    cfg = per_role_config(server.url, cache_dir, teacher_routes=routes, max_iterations=1)
    expected = {"Write Python code to sort a list.": "python-m", "Review this code for bugs.": "code-m",
                "Write a poem about autumn.": "teacher-m"}
    out = refine(list(expected), cfg)
    for row in out:
        teacher = [t for t in row[REASONING] if t["role"] == "teacher"]
        assert [t["model"] for t in teacher] == [expected[row["prompt"]]]
        assert {t["model"] for t in row[REASONING] if t["role"] == "critic"} == {"critic-m"}
    sent = {body["messages"][-1]["content"]: body["model"] for body in server.log.bodies
            if body["messages"][-1]["content"] in expected}
    assert sent == expected


async def test_roles_naming_one_endpoint_share_its_limiter(cache_dir: str) -> None:
    url = "http://127.0.0.1:9/v1"
    shared = endpoint(url, "shared", max_concurrency=2)
    cfg = AutoReasonConfig(model=shared, critic=endpoint(url, "shared", max_concurrency=2),
                           judge_models=[shared, endpoint(url, "judge-x")],
                           teacher_routes=[TeacherRoute(pattern="code", model=endpoint(url, "coder"))],
                           cache_dir=cache_dir, progress=False)
    async with use_runtime(cfg) as runtime:
        assert sorted(runtime.endpoints) == [f"openai|{url}|{m}" for m in ("coder", "judge-x", "shared")]
        roles = runtime.roles
        assert roles.teacher is roles.critic is roles.author is roles.synthesizer is roles.judges[0]
        assert runtime.roles_for("write code").teacher is not roles.teacher
        assert runtime.roles_for("write code").critic is roles.critic
        assert runtime.roles_for("a poem") is roles


def test_shared_endpoint_caps_concurrency_across_roles(cache_dir: str) -> None:
    with FakeOpenAIServer(latency=0.02) as srv:
        one = endpoint(srv.url, "shared", max_concurrency=2)
        cfg = AutoReasonConfig(model=one, critic=endpoint(srv.url, "shared", max_concurrency=2),
                               judge_models=[one], judges=3, max_iterations=1, cache_dir=cache_dir, progress=False)
        refine(PROMPTS, cfg)
    assert srv.log.requests == len(PROMPTS) * (1 + 3 + 3)
    assert srv.log.peak_in_flight <= 2


@pytest.mark.parametrize("style", ["reasoning", "reasoning_content", "think", None],
                         ids=["reasoning-field", "reasoning_content-field", "think-tags", "none"])
def test_reasoning_traces_column(style: str | None, cache_dir: str) -> None:
    with FakeOpenAIServer(reasoning=style) as srv:
        cfg = AutoReasonConfig(model=endpoint(srv.url, "m"), judges=3, max_iterations=1, cache_dir=cache_dir,
                               progress=False)
        out = refine(PROMPTS[:2], cfg)
    for row in out:
        traces = row[REASONING]
        assert len(traces) == row[USAGE]["calls"] == 7
        for t in traces:
            thought = f"Thinking as the {t['role']} about the request."
            assert t["reasoning"] == (thought if style else None)
            assert "<think>" not in t["answer"] and thought not in t["answer"] and t["model"] == "m"
        (rnd,) = row[TRACE]["rounds"]
        by_role = {t["role"]: t["answer"] for t in traces}
        assert (by_role["teacher"], by_role["critic"], by_role["author_b"], by_role["synthesizer"]) == (
            row["draft"], rnd["critique"], rnd["B"], rnd["AB"])
        assert sorted(t["answer"] for t in traces if t["role"] == "judge") == sorted(v["raw"] for v in rnd["votes"])


def test_capture_reasoning_off_leaves_the_column_empty(cache_dir: str) -> None:
    with FakeOpenAIServer(reasoning="reasoning") as srv:
        cfg = AutoReasonConfig(model=endpoint(srv.url, "m"), max_iterations=1, capture_reasoning=False,
                               cache_dir=cache_dir, progress=False)
        out = refine(PROMPTS[:2], cfg)
    assert out[REASONING] == [[], []]
    assert [row[USAGE]["calls"] for row in out] == [7, 7]


def test_bad_route_pattern_is_a_clear_config_error() -> None:
    with pytest.raises(ConfigError, match=r"teacher_routes\.0\.pattern: not a valid regular expression"):
        AutoReasonConfig.from_dict({"teacher_routes": [{"pattern": "(unclosed", "model": {"model": "x"}}]})


@pytest.mark.parametrize(
    ("text", "expected"),
    [("jduges: 3\n", ["jduges: unknown field"]),
     ("critic:\n  modle: x\n", ["critic.modle: unknown field"]),
     ("judges: -1\n", ["judges: Input should be greater than or equal to 1"]),
     ("judge_models: []\n", ["judge_models: List should have at least 1 item"]),
     ("teacher_routes:\n  - pattern: 'def '\n", ["teacher_routes.0.model: Field required"]),
     ("critic:\n  backend: mlx\n", ["critic: an mlx model needs model_path"]),
     ("judges: [\n", ["is not valid yaml"])],
    ids=["unknown-field", "nested-unknown-field", "negative-judges", "empty-judge-pool", "route-without-model",
         "mlx-without-path", "broken-yaml"],
)
def test_cli_config_errors_are_short_and_exit_2(text: str, expected: list[str], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "in.jsonl").write_text(json.dumps({"prompt": "hi"}) + "\n")
    (tmp_path / "bad.yaml").write_text(text)
    code = main(["refine", str(tmp_path / "in.jsonl"), "--config", str(tmp_path / "bad.yaml"),
                 "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("hadron-hf: error: ") and "Traceback" not in err
    assert len(err.strip().splitlines()) <= 4
    for part in expected:
        assert part in err
    assert not (tmp_path / "out").exists()


def test_cli_negative_judges_flag_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "in.jsonl").write_text(json.dumps({"prompt": "hi"}) + "\n")
    code = main(["refine", str(tmp_path / "in.jsonl"), "--base-url", "http://127.0.0.1:9/v1", "--judges", "-2"])
    err = capsys.readouterr().err
    assert code == 2 and "judges: Input should be greater than or equal to 1" in err and "Traceback" not in err


def test_cli_runs_a_judge_pool_and_separate_critic_from_yaml(server: FakeOpenAIServer, cache_dir: str,
                                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HADRON_TEST_KEY", "test-key")  # a variable the config names must be set (check_keys)

    def model(name: str) -> dict[str, str]:
        return {"base_url": server.url, "model": name, "api_key_env": "HADRON_TEST_KEY"}

    config = {"model": model("default-m"), "critic": model("critic-m"), "judge_models": [model(m) for m in POOL],
              "judges": 3, "max_iterations": 1, "cache_dir": cache_dir, "progress": False}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS[:2]))
    code = main(["refine", str(tmp_path / "in.jsonl"), "--config", str(tmp_path / "cfg.yaml"),
                 "--output", str(tmp_path / "out")])
    assert code == 0
    out = load_from_disk(str(tmp_path / "out" / "refined"))
    assert all(sorted(panel) == list(POOL) for panel in panels(out))
    assert {m for role, m in server.log.models if role == "critic"} == {"critic-m"}
    assert {m for role, m in server.log.models if role in ("teacher", "author_b", "synthesizer")} == {"default-m"}


def test_readme_yaml_example_is_a_valid_config() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("## Per-role models and judge pools", 1)[1]
    block = re.search(r"```yaml\n(.*?)```\n", section, re.DOTALL)
    assert block is not None
    cfg = AutoReasonConfig.from_dict(yaml.safe_load(block[1]), source="README example")
    assert [m.model for m in cfg.judge_pool_models()] == [
        "meta-llama/llama-3.3-70b-instruct", "google/gemma-3-27b-it", "mistralai/mistral-small-3.2-24b-instruct"]
    assert cfg.critic is not None and cfg.critic.resolve_api_key() is None
    assert re.search(cfg.teacher_routes[0].pattern, "Fix this Python function")
    assert not re.search(cfg.teacher_routes[0].pattern, "Write a poem")
