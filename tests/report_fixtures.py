"""Refined datasets for the report tests, made without models: through ``autoreason_map`` against a
loopback ``FakeOpenAIServer`` with role-shaped replies, or built row by row for the 10,000-row check."""

from __future__ import annotations

import hashlib
import json
import random
import re
from typing import Any

from datasets import Dataset

from hadron_hf import AutoReasonConfig, ModelConfig, autoreason_map
from hadron_hf.sources import bundled_prompts
from hadron_hf.testing import FakeOpenAIServer

SENTENCES = [
    "Light from the sun is made of many colours mixed together.",
    "Air molecules scatter short blue wavelengths far more than long red ones.",
    "That scattered blue light reaches our eyes from every direction of the sky.",
    "At sunset the light crosses much more air, so the blue is scattered away first.",
    "A process owns its memory, while threads inside it share that memory.",
    "Switching between threads is cheaper because no address space changes.",
    "TCP slow start doubles the congestion window every round trip until loss appears.",
    "After a loss the sender halves its window and grows it linearly again.",
    "A worked example makes the idea concrete: start with one packet, then two, then four.",
    "In short, the rule trades early caution for fast growth once the path is known.",
    "Measure first, then change one thing at a time, and write down what happened.",
    "The key step is to check the edge case where the input is empty.",
]
EDITS = ["roughly", "clearly", "in practice", "for example", "quickly", "notably", "carefully"]
CATEGORIES = ["explain", "code", "math", "advice", "creative"]


def _rng(*parts: Any) -> random.Random:
    return random.Random(hashlib.sha256("\x00".join(map(str, parts)).encode()).hexdigest())


def paragraph(seed: str, sentences: int = 5) -> str:
    """A deterministic multi-sentence answer."""
    rng = _rng(seed)
    return " ".join(rng.choice(SENTENCES) for _ in range(sentences))


def edit(text: str, seed: str) -> str:
    """A light revision: a few words inserted or replaced and one sentence added (a readable word diff)."""
    rng = _rng(seed, "edit")
    words = text.split(" ")
    for _ in range(3):
        words.insert(rng.randrange(len(words)), rng.choice(EDITS))
    return " ".join(words) + " " + rng.choice(SENTENCES)


def _versions(content: str, tag: str) -> list[str]:
    return re.findall(rf'<{tag} id="X\d">\n(.*?)\n</{tag}>', content, re.S)


def tournament_responder(positional_judges: bool = False):  # type: ignore[no-untyped-def]
    """Replies per role: B rewrites from scratch, AB revises A lightly, judges vary (or vote by position).

    Rows whose prompt mentions "topic 3" get unreadable judge replies, so their rounds have no counted vote.
    """
    def respond(role: str, messages: list[dict[str, str]], body: dict[str, Any]) -> str | None:
        content = messages[-1]["content"]
        seed = f"{content}|{body.get('seed')}"
        if role == "teacher":
            return paragraph(content, 4)
        if role == "critic":
            if "NO FLAWS" in content and "topic 5" in content:  # the hadron variant's critic may pass A
                return "NO FLAWS"
            step = _rng(seed).randint(1, 6)
            return f"1. The second sentence is vague about step {step}.\n2. It gives no worked example.\n3. Too long."
        if role == "author_b":
            return "Instead, " + paragraph(seed, 5)
        if role == "synthesizer":
            versions = [v for v in _versions(content, "version") if not v.startswith("Instead,")]
            answer = re.search(r"<answer>\n(.*?)\n</answer>", content, re.S)
            base = versions[0] if versions else answer.group(1) if answer else paragraph(seed)
            return edit(base, seed)
        if role == "judge":
            labels = re.findall(r'<candidate id="(X\d)">', content) or ["X1", "X2", "X3"]
            if "topic 3" in content:
                return "They all look fine to me."
            if positional_judges:
                return "RANKING: " + " > ".join(sorted(labels))
            texts = dict(zip(labels, _versions(content, "candidate"), strict=False))
            # Mostly prefer the light revision (AB), with judge-to-judge noise.
            rng = _rng(seed, "judge")
            order = sorted(labels, key=lambda x: (texts.get(x, "").startswith("Instead,"), rng.random()))
            if rng.random() < 0.3:
                rng.shuffle(order)
            return f"{order[0]} is the most precise.\nRANKING: {' > '.join(order)}"
        return None
    return respond


def refine(ds: Dataset, *, judges: int = 3, max_iterations: int = 3, variant: str = "paper", seed: int = 0,
           positional_judges: bool = False, model: str = "fake-model",
           max_prompt_chars: int | None = None) -> tuple[Dataset, dict[str, Any]]:
    """Refine ``ds`` against a loopback fake server; return the dataset and a matching ``run.json``."""
    with FakeOpenAIServer(reasoning="reasoning", responder=tournament_responder(positional_judges),
                          max_prompt_chars=max_prompt_chars) as server:
        cfg = AutoReasonConfig(
            model=ModelConfig(base_url=server.url, model=model, api_key_env="HADRON_TEST_KEY",
                              price_input_per_mtok=0.5, price_output_per_mtok=2.0),
            judges=judges, max_iterations=max_iterations, variant=variant, seed=seed,  # type: ignore[arg-type]
            cache=False, progress=False,
        )
        out = ds.map(autoreason_map, batched=True, batch_size=16, fn_kwargs={"config": cfg})
        at = f"{model} at {server.url}"
    run = {
        "hadron_hf_version": "0.1.0", "created": "2026-12-03T10:15:00Z", "input": "prompts/forty.jsonl",
        "split": "train", "rows": len(out), "config": json.loads(cfg.model_dump_json()),
        "roles": {"teacher": at, "critic": at, "author": at, "synthesizer": at, "judges": [at] * judges},
        "summary": {},
    }
    return out, run


def forty_rows() -> tuple[Dataset, dict[str, Any]]:
    """40 rows, up to 3 rounds, 3 judges, ``category`` and ``id`` input columns, and two error rows (a missing
    prompt, and one too long for the server). Judges of prompts naming "topic 3" never give a counted vote."""
    prompts: list[str | None] = [f"Explain topic {i} to a new engineer, with one example." for i in range(38)]
    prompts += [None, "Explain topic 39, quoting this whole log: " + "log line\n" * 800]
    ds = Dataset.from_dict({"id": [f"q{i:03d}" for i in range(40)], "prompt": prompts,
                            "category": [CATEGORIES[i % 5] for i in range(40)]})
    return refine(ds, judges=3, max_iterations=3, max_prompt_chars=6000)


def demo_like() -> tuple[Dataset, dict[str, Any]]:
    """Like ``hadron-hf demo``: bundled prompts, 3 judges voting purely by position, 2 rounds."""
    ds = bundled_prompts().shuffle(seed=0).select(range(6))
    out, run = refine(ds, judges=3, max_iterations=2, positional_judges=True,
                      model="SmolLM2-135M-Instruct.Q4_1.gguf")
    run["input"] = "hadron_hf bundled prompts"
    return out, run


def synthetic_rows(n: int, rounds: int = 3, judges: int = 3) -> list[dict[str, Any]]:
    """``n`` refined rows built directly (no server): realistic text sizes, votes, usage and reasoning.

    The tournaments repeat every 100 rows (it keeps building 10,000 rows quick); prompts, categories and
    margins differ per row, and every row is written out in full.
    """
    rows = [_synthetic_row(i, rounds, judges) for i in range(min(n, 100))]
    for i in range(len(rows), n):
        row = dict(rows[i % 100])
        row.update(prompt=f"Question {i}: " + SENTENCES[i % len(SENTENCES)], category=CATEGORIES[i % 5],
                   preference={**row["preference"], "score_rejected": float(i % 5), "margin": float(6 - i % 5)})
        rows.append(row)
    return rows


def _synthetic_row(i: int, rounds: int, judges: int) -> dict[str, Any]:
    rng = _rng("row", i)
    draft = paragraph(f"draft{i}", 6)
    a, source, history = draft, "draft", []
    for k in range(1, rounds + 1):
        b, ab = "Instead, " + paragraph(f"b{i}.{k}", 6), edit(a, f"ab{i}.{k}")
        votes = []
        for j in range(judges):
            shown = rng.sample(["A", "B", "AB"], 3)
            ranking = sorted(shown, key=lambda c: (c == "B", rng.random()))
            votes.append({"judge": j, "model": f"judge-{j % 2}", "shown": shown, "ranking": ranking,
                          "parsed": True, "constrained": False,
                          "raw": "RANKING: " + " > ".join(f"X{shown.index(c) + 1}" for c in ranking), "error": None})
        scores = {c: sum(2 - v["ranking"].index(c) for v in votes) for c in ("A", "B", "AB")}
        winner = max(scores, key=lambda c: (scores[c], c == "A"))
        history.append({"iteration": k, "A": a, "critique": "1. Vague.\n2. No example.", "B": b, "AB": ab,
                        "no_flaws": False, "merge_order": ["A", "B"], "votes": votes, "scores": scores,
                        "winner": winner, "fail_safe": False, "votes_skipped": 0})
        if winner != "A":
            a, source = (ab if winner == "AB" else b), winner
    return {
        "prompt": f"Question {i}: " + paragraph(f"p{i}", 1), "category": CATEGORIES[i % 5],
        "draft": draft, "refined": a,
        "autoreason_trace": {"variant": "paper", "converged": rng.random() < 0.5, "iterations": rounds,
                             "winner_source": source, "rounds": history},
        "preference": {"chosen": a, "rejected": draft, "score_chosen": 6.0, "score_rejected": float(i % 5),
                       "margin": float(6 - i % 5)},
        "autoreason_usage": {"calls": 1 + rounds * (3 + judges), "cached_calls": 0, "prompt_tokens": 4000,
                             "completion_tokens": 1200, "cost_usd": 0.001},
        "reasoning_traces": [{"role": "teacher", "model": "teacher-m", "iteration": 0, "reasoning": None,
                              "answer": draft}],
        "autoreason_status": "ok", "autoreason_error": None,
    }
