"""The ranking constraint in each server's form: request bodies on a loopback server, replies read back."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from datasets import Dataset

from hadron_hf import AutoReasonConfig, ModelConfig, autoreason_map
from hadron_hf import columns as col
from hadron_hf.backends.constraints import (
    MODES,
    decode_reply,
    gbnf,
    honoured,
    json_schema,
    reasoning_chars,
    regex,
    request_fields,
    resolve_mode,
)
from hadron_hf.chat import SamplingParams
from hadron_hf.core.borda import ranking_choices
from hadron_hf.errors import ConfigError
from hadron_hf.testing import FakeOpenAIServer, role_of

CHOICES = ranking_choices()
ONE_LINE = SamplingParams(0.3, 512, 1, CHOICES)
REASONING = SamplingParams(0.3, 512, 1, CHOICES, choices_after_text=True)
FIELD = {"gbnf": "grammar", "guided_choice": "guided_choice", "guided_regex": "guided_regex",
         "structured_outputs": "structured_outputs", "json_schema": "response_format",
         "json_object": "response_format"}


def judge_reply(role: str, messages: list[dict[str, str]], body: dict[str, Any]) -> str | None:
    """A judge that answers in whatever shape the request asked for."""
    if role != "judge":
        return None
    if "response_format" in body:
        schema = body["response_format"].get("schema") or body["response_format"]["json_schema"]["schema"]
        reply = {"answer": "RANKING: X2 > X1 > X3"}
        if "reasoning" in schema["properties"]:
            reply = {"reasoning": "X2 is the most complete.", **reply}
        return json.dumps(reply)
    if "one line only" in messages[-1]["content"]:  # the hadron variant's judges give the line alone
        return "RANKING: X2 > X1 > X3"
    return "X2 is the most complete.\nRANKING: X2 > X1 > X3"


@pytest.mark.parametrize("variant", ["paper", "hadron"])
@pytest.mark.parametrize("mode", [m for m in MODES if m != "auto"])
def test_judges_get_the_constraint_in_the_servers_form(server: FakeOpenAIServer, cache_dir: str, mode: str,
                                                       variant: str) -> None:
    server.responder, server.no_flaws_rate = judge_reply, 0.0
    model = ModelConfig(base_url=server.url, model="m", api_key_env=None, judge_constraint=mode)  # type: ignore[arg-type]
    cfg = AutoReasonConfig(model=model, judges=3, max_iterations=1, variant=variant, cache_dir=cache_dir,
                           progress=False)  # type: ignore[arg-type]
    (row,) = Dataset.from_dict({"prompt": ["Explain TCP slow start."]}).map(
        autoreason_map, batched=True, fn_kwargs={"config": cfg})
    judges = [b for b in server.log.bodies if role_of(b["messages"]) == "judge"]
    others = [b for b in server.log.bodies if role_of(b["messages"]) != "judge"]
    assert len(judges) == 3 and others
    assert not any(set(FIELD.values()) & set(b) for b in others)
    votes = row[col.TRACE]["rounds"][0]["votes"]
    assert all(v["parsed"] and v["ranking"][0] == v["shown"][1] for v in votes)
    if mode == "none":
        assert not any(set(FIELD.values()) & set(b) for b in judges)
        assert not any(v["constrained"] for v in votes)
        return
    reasoning = variant == "paper"
    # A choice list cannot hold reasoning: vLLM then gets the same constraint as a regular expression.
    field = "guided_regex" if mode == "guided_choice" and reasoning else FIELD[mode]
    assert all(field in b for b in judges) and all(v["constrained"] for v in votes)
    if mode in ("json_schema", "json_object"):
        # The JSON reply is read back as text: the reasoning, then the ranking line.
        assert all(v["raw"].endswith("\nRANKING: X2 > X1 > X3") == reasoning for v in votes)


def test_auto_means_json_schema_for_openai_and_nothing_for_other_servers() -> None:
    assert resolve_mode("auto", None) == "json_schema"
    assert resolve_mode("auto", "http://127.0.0.1:8080/v1") == "none"
    assert resolve_mode("gbnf", "http://127.0.0.1:8080/v1") == "gbnf"
    with pytest.raises(ValueError, match="unknown judge_constraint"):
        resolve_mode("grammar", None)
    with pytest.raises(ConfigError, match="judge_constraint"):
        AutoReasonConfig.from_dict({"model": {"base_url": "http://x/v1", "judge_constraint": "grammar"}})
    assert request_fields(SamplingParams(), "gbnf") == {}  # only constrained calls carry a constraint


def test_grammars_compile_in_llama_cpp_and_bound_the_reasoning() -> None:
    llama_grammar = pytest.importorskip("llama_cpp.llama_grammar")
    assert reasoning_chars(ONE_LINE) == 0 and reasoning_chars(REASONING) == 512 - 21 - 1 - 4
    assert reasoning_chars(SamplingParams(0.3, 24, 1, CHOICES, choices_after_text=True)) == 0  # no room: line only
    for params in (ONE_LINE, REASONING):
        llama_grammar.LlamaGrammar.from_string(gbnf(params), verbose=False)
    assert "{1,486}" in gbnf(REASONING) and "text" not in gbnf(ONE_LINE)


def test_regex_and_json_schema_accept_exactly_the_constrained_shapes() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    one, reasoned = re.compile(regex(ONE_LINE)), re.compile(regex(REASONING))
    assert one.fullmatch("RANKING: X3 > X1 > X2") and not one.fullmatch("I think\nRANKING: X3 > X1 > X2")
    assert reasoned.fullmatch("I think X3 is best.\nRANKING: X3 > X1 > X2")
    assert not reasoned.fullmatch("I think X3 is best.\nRANKING: X3 > X3 > X2")
    jsonschema.validate({"reasoning": "because", "answer": CHOICES[0]}, json_schema(REASONING, bounded=True))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"answer": "RANKING: X1"}, json_schema(ONE_LINE))
    assert json_schema(REASONING, bounded=True)["properties"]["reasoning"]["maxLength"] == reasoning_chars(REASONING)


def test_decoding_and_checking_replies() -> None:
    reply = json.dumps({"reasoning": " X1 wins. ", "answer": CHOICES[0]})
    assert decode_reply(reply, REASONING, "json_schema") == f"X1 wins.\n{CHOICES[0]}"
    assert decode_reply(reply, REASONING, "gbnf") == reply  # only JSON modes are decoded
    assert decode_reply("not json", REASONING, "json_object") == "not json"
    assert honoured(CHOICES[0], ONE_LINE) and not honoured("x\n" + CHOICES[0], ONE_LINE)
    assert honoured("x\n" + CHOICES[0], REASONING) and not honoured("x", REASONING)
