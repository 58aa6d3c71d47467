"""The command line behaves the same everywhere: positional input, -o, --limit, --overwrite, --quiet,
--version, help with defaults, model options that need --base-url, key variables checked before any request,
one-line network failures, --estimate, and eval's baseline by the refinement's own teacher."""

from __future__ import annotations

import argparse
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from datasets import load_from_disk

from hadron_hf import AutoReasonConfig, ModelConfig, cli
from hadron_hf.pipeline import config_as_json
from hadron_hf.testing import FakeOpenAIServer
from hadron_hf.views.cards import describe_model

TOURNAMENT = ["--judges", "2", "--max-iterations", "1"]


@pytest.fixture(autouse=True)
def _private_cache(cache_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HADRON_HF_CACHE", cache_dir)


def prompts_file(tmp_path: Path, rows: list[dict[str, object]]) -> str:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def parsers(parser: argparse.ArgumentParser, name: str = "hadron-hf") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child_name, child in action.choices.items():
                yield from parsers(child, f"{name} {child_name}")


def test_top_level_help_lists_every_command_with_one_line_and_a_real_description(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    assert "``" not in text and "AutoReason tournament" in text
    listed = text.split("  COMMAND\n")[1].split("\n\n")[0].splitlines()
    assert [line.split()[0] for line in listed] == ["demo", "refine", "recipe", "report", "eval", "build"]
    assert all(len(line.split()) > 3 for line in listed)  # each command's help fits on its own line


def test_every_option_has_help_and_shows_a_non_trivial_default() -> None:
    for name, parser in parsers(cli.build_parser()):
        formatter = parser._get_formatter()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction) or action.dest in ("help", "version"):
                continue
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"
            shown = formatter._get_help_string(action) or ""  # type: ignore[attr-defined]
            if action.default not in (None, False, True, argparse.SUPPRESS) and action.nargs != 0:
                assert "default" in shown, f"{name} {action.option_strings}: default {action.default!r} not shown"


def test_every_command_takes_a_positional_input_and_short_output() -> None:
    for name, parser in parsers(cli.build_parser()):
        options = {s for a in parser._actions for s in a.option_strings}
        if "--output" in options:
            assert "-o" in options and "--overwrite" in options, name
        if name not in ("hadron-hf", "hadron-hf demo", "hadron-hf recipe") and "--output" in options:
            assert any(not a.option_strings and a.dest == "input" for a in parser._actions), name


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        cli.main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.startswith("hadron-hf ")


@pytest.mark.parametrize("flag", [["--model", "gpt"], ["--api-key-env", "MY_KEY"]], ids=["model", "api-key-env"])
def test_model_options_without_base_url_are_an_error(flag: list[str], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    src = prompts_file(tmp_path, [{"prompt": "p"}])
    assert cli.main(["refine", src, *flag, "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"{flag[0]} needs --base-url" in err and "Traceback" not in err


def test_an_unset_key_variable_is_named_before_any_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("HADRON_TEST_UNSET_KEY", raising=False)
    src = prompts_file(tmp_path, [{"prompt": "p"}])
    with FakeOpenAIServer(api_key="sk-right") as server:
        rc = cli.main(["refine", src, "--base-url", server.url, "--api-key-env", "HADRON_TEST_UNSET_KEY",
                       "-o", str(tmp_path / "o")])
        assert server.log.requests == 0
    assert rc == 2 and "HADRON_TEST_UNSET_KEY is not set" in capsys.readouterr().err
    # The OpenAI API always needs one; a loopback server may not (the tests' servers take none).
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert cli.main(["refine", src, "--base-url", "https://api.openai.com/v1", "-o", str(tmp_path / "o")]) == 2
    assert "OPENAI_API_KEY is not set" in capsys.readouterr().err


def test_an_existing_output_is_refused_unless_overwrite(tmp_path: Path, server: FakeOpenAIServer,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    big = prompts_file(tmp_path, [{"prompt": f"Question {i}?"} for i in range(4)])
    out = tmp_path / "out"
    args = ["refine", big, "--base-url", server.url, *TOURNAMENT, "--no-views", "-o", str(out)]
    assert cli.main(args) == 0
    assert cli.main([*args, "--limit", "1"]) == 2
    assert "already exists and is not empty" in capsys.readouterr().err and "--overwrite" in capsys.readouterr().err \
        or len(load_from_disk(str(out / "refined"))) == 4
    assert len(load_from_disk(str(out / "refined"))) == 4  # the 4-row output is still there
    assert cli.main([*args, "--limit", "1", "--overwrite"]) == 0
    assert len(load_from_disk(str(out / "refined"))) == 1


def test_an_input_column_named_like_an_output_is_an_error_naming_it(tmp_path: Path, server: FakeOpenAIServer,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    src = prompts_file(tmp_path, [{"prompt": "Why?", "refined": "a gold answer"}])
    out = tmp_path / "out"
    assert cli.main(["refine", src, "--base-url", server.url, *TOURNAMENT, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "['refined']" in err and "--overwrite-columns" in err and "rename" in err.lower()
    assert server.log.requests == 0 and not out.exists()
    assert cli.main(["refine", src, "--base-url", server.url, *TOURNAMENT, "-o", str(out), "--no-views",
                     "--overwrite-columns"]) == 0
    assert load_from_disk(str(out / "refined"))["refined"] != ["a gold answer"]


def test_quiet_prints_only_the_paths_written(tmp_path: Path, server: FakeOpenAIServer,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    src = prompts_file(tmp_path, [{"prompt": "Why?"}])
    assert cli.main(["-q", "refine", src, "--base-url", server.url, *TOURNAMENT, "-o", str(tmp_path / "o")]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines and all(line.startswith("Wrote ") for line in lines) and captured.err == ""
    assert any(str(tmp_path / "o" / "run.json") in line for line in lines)
    assert cli.main(["refine", src, "--base-url", server.url, *TOURNAMENT, "-o", str(tmp_path / "p"), "-q"]) == 0
    assert all(line.startswith("Wrote ") for line in capsys.readouterr().out.splitlines())


def test_a_network_failure_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from huggingface_hub import HfApi

    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = argparse.Namespace(func=lambda _: HfApi(endpoint=f"http://127.0.0.1:{port}").whoami())
    assert cli.run_command(args, "hadron-hf") == 2
    err = capsys.readouterr().err
    assert err.startswith("hadron-hf: error: network or Hub failure:") and err.count("\n") == 1


def test_a_mistyped_path_is_no_such_file_not_a_hub_lookup(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("./prompts", "data/prompts.parquet", "~/nothing-here.jsonl", "no such/folder/x"):
        assert cli.main(["refine", name, "-o", str(tmp_path / "o")]) == 2
        assert "no such file or folder" in capsys.readouterr().err, name


def test_estimate_refines_a_sample_and_extrapolates(tmp_path: Path, server: FakeOpenAIServer,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "priced.yaml").write_text(json.dumps({"model": {
        "base_url": server.url, "model": "m", "price_input_per_mtok": 1.0, "price_output_per_mtok": 2.0}}))
    src = prompts_file(tmp_path, [{"prompt": f"Question {i}?"} for i in range(30)])
    out = tmp_path / "out"
    assert cli.main(["refine", src, "--config", str(tmp_path / "priced.yaml"), *TOURNAMENT, "--estimate",
                     "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Estimate for 30 rows, from a sample of 3" in printed
    calls = server.log.requests
    assert f"calls   ~{calls * 10} ({calls / 3:.1f} per row)" in printed
    assert "cost    ~$" in printed and "time    ~" in printed and not out.exists()


def test_the_summary_lists_failed_rows_with_their_reasons(tmp_path: Path, server: FakeOpenAIServer,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    src = prompts_file(tmp_path, [{"prompt": "Why?"}, {"prompt": ""}, {"prompt": "How?"}])
    assert cli.main(["refine", src, "--base-url", server.url, *TOURNAMENT, "-o", str(tmp_path / "o")]) == 0
    printed = capsys.readouterr().out
    assert "failed rows" in printed and "row 1: InputError: prompt is empty" in printed


def test_refine_writes_run_json_without_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = "sk-run-json-SECRET-0123456789"
    monkeypatch.setenv("HADRON_TEST_KEY", key)
    src = prompts_file(tmp_path, [{"prompt": "Why?"}, {"prompt": "How?"}])
    with FakeOpenAIServer(api_key=key) as server:
        assert cli.main(["refine", src, "--base-url", server.url, "--model", "m", "--api-key-env", "HADRON_TEST_KEY",
                         *TOURNAMENT, "-o", str(tmp_path / "o"), "--limit", "1"]) == 0
    text = (tmp_path / "o" / "run.json").read_text()
    info = json.loads(text)
    assert set(info) == {"hadron_hf_version", "created", "input", "split", "rows", "config", "roles", "summary"}
    assert info["input"] == src and info["split"] == "train" and info["rows"] == 1
    assert info["created"].endswith("+00:00") and info["summary"]["rows"] == 1
    assert info["roles"]["teacher"] == f"m at {server.url}" and info["roles"]["judges"] == [f"m at {server.url}"]
    assert info["config"]["model"]["api_key_env"] == "HADRON_TEST_KEY" and "api_key" not in info["config"]["model"]
    assert key not in text
    # Credentials inside a base URL and keys given inline are cut too.
    config = AutoReasonConfig(model=ModelConfig(base_url="http://alice:hunter2@127.0.0.1:9/v1", api_key=key),
                              judge_models=[ModelConfig(model="j", api_key=key)])
    dumped = json.dumps(config_as_json(config))
    assert key not in dumped and "hunter2" not in dumped and "alice" not in dumped and "api_key\"" not in dumped
    assert describe_model(config.model) == "default at http://127.0.0.1:9/v1"
    assert describe_model(config.judge_pool_models()[0]) == "j at https://api.openai.com/v1"


def test_eval_writes_its_baseline_with_the_refinements_own_teacher(tmp_path: Path, server: FakeOpenAIServer,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    src = prompts_file(tmp_path, [{"prompt": f"Question {i}?"} for i in range(3)])
    run = tmp_path / "run"
    assert cli.main(["refine", src, "--base-url", server.url, "--model", "teacher-m", *TOURNAMENT, "--no-views",
                     "-o", str(run)]) == 0
    before = len(server.log.models)
    assert cli.main(["eval", str(run), "--judge-base-url", server.url, "--judge-model", "external", "--judges", "3",
                     "--baseline", "-o", str(tmp_path / "eval")]) == 0
    baseline = {model for role, model in server.log.models[before:] if role in ("critic", "author_b")}
    assert baseline == {"teacher-m"}
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["baseline_model"] == f"teacher-m at {server.url}"
    assert f"baseline written by | teacher-m at {server.url}" in capsys.readouterr().out
    # Without run.json the teacher is not known here: say so instead of using the embedded model.
    assert cli.main(["eval", str(run / "refined.jsonl"), "--judge-base-url", server.url, "--judge-model", "j",
                     "--baseline", "-o", str(tmp_path / "eval2")]) == 2
    err = capsys.readouterr().err
    assert "no run.json" in err and "teacher-m" in err and "--base-url" in err
