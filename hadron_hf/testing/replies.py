"""What the fake servers answer: deterministic, role-shaped replies derived from the request, so that a
re-run with the same seed gets the same replies (import them from ``hadron_hf.testing``)."""

from __future__ import annotations

import random
import re

from hadron_hf.core import prompts


def role_of(messages: list[dict[str, str]]) -> str:
    """Which tournament role sent ``messages`` (``teacher`` when none of our system prompts is there)."""
    system = next((m["content"] for m in messages if m["role"] == "system"), "")
    user = messages[-1]["content"] if messages else ""
    if system == prompts.JUDGE_SYSTEM:
        return "judge"
    if system == prompts.CRITIC_SYSTEM:
        return "critic"
    if system == prompts.AUTHOR_SYSTEM:
        return "author_b"
    if system == prompts.SYNTH_SYSTEM:
        return "synthesizer"
    return "judge" if "RANKING:" in user else "teacher"


def scripted_reply(role: str, messages: list[dict[str, str]], digest: str, no_flaws_rate: float = 0.3) -> str:
    """A deterministic, role-shaped reply derived from the request digest."""
    rng = random.Random(digest)
    if role == "judge":
        labels = sorted(set(re.findall(r'id="(X\d)"', messages[-1]["content"]))) or ["X1", "X2", "X3"]
        rng.shuffle(labels)
        return f"All three address the task; {labels[0]} is the most precise.\nRANKING: {' > '.join(labels)}"
    if role == "critic":
        if "NO FLAWS" in messages[-1]["content"] and rng.random() < no_flaws_rate:
            return "NO FLAWS"
        return f"1. \"the answer\" is vague about step {rng.randint(1, 9)}.\n2. It omits an example."
    words = ["clear", "precise", "careful", "complete", "short", "direct", "worked", "checked"]
    return f"{role} answer {digest[:8]}: a {rng.choice(words)} and {rng.choice(words)} explanation."
