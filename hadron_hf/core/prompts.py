"""The role prompts of the AutoReason tournament, written for hadron_hf.

Each function returns the chat messages for one role. Judges see candidates only under neutral
labels, and the paper-variant synthesizer sees two versions under shuffled labels, never the critique.
"""

from __future__ import annotations

from collections.abc import Sequence

from hadron_hf.chat import Message

CRITIC_SYSTEM = (
    "You are a demanding reviewer. You find what is wrong with an answer; you never rewrite it."
)
AUTHOR_SYSTEM = (
    "You are a skilled writer who improves answers. You take criticism seriously but judge it yourself."
)
SYNTH_SYSTEM = "You are an editor who merges the strongest parts of several drafts into one answer."
JUDGE_SYSTEM = "You are an impartial judge. You compare answers on substance, not on length or style."

NO_FLAWS = "NO FLAWS"


def task_text(task: Sequence[Message]) -> str:
    """Render the user's conversation as plain text for the roles that quote it."""
    turns = [m for m in task if m["role"] != "system"]
    if len(turns) == 1:
        return turns[0]["content"]
    return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in turns)


def teacher_messages(task: Sequence[Message], system_prompt: str | None = None) -> list[Message]:
    """The teacher answers the task as it stands (the single-shot draft)."""
    head: list[Message] = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return head + list(task)


def critic_messages(task: str, answer: str, allow_no_flaws: bool) -> list[Message]:
    """The critic lists concrete problems in ``answer``, each quoting the words at fault."""
    escape = (
        f"\nIf you find no real problem at all, reply with exactly {NO_FLAWS} and nothing else."
        if allow_no_flaws
        else ""
    )
    user = (
        f"<task>\n{task}\n</task>\n\n<answer>\n{answer}\n</answer>\n\n"
        "Review the answer to the task. List each concrete problem as a numbered item: quote the exact "
        "words that are wrong, unclear, missing context or off-task, and say why it matters. Cover "
        "factual errors, faulty reasoning, gaps the task asks for, and needless padding. Do not write a "
        f"corrected answer.{escape}"
    )
    return [{"role": "system", "content": CRITIC_SYSTEM}, {"role": "user", "content": user}]


def author_messages(task: str, answer: str, critique: str) -> list[Message]:
    """Author B writes a competing revision from the task, the answer and the critique."""
    user = (
        f"<task>\n{task}\n</task>\n\n<current_answer>\n{answer}\n</current_answer>\n\n"
        f"<review>\n{critique}\n</review>\n\n"
        "Write a new, complete answer to the task that fixes every valid point of the review. Ignore "
        "points that are mistaken. You may restructure freely; the aim is the best possible answer, not "
        "a light edit. Reply with the answer only, without commentary about the changes."
    )
    return [{"role": "system", "content": AUTHOR_SYSTEM}, {"role": "user", "content": user}]


def merge_messages(task: str, versions: Sequence[tuple[str, str]]) -> list[Message]:
    """The paper-variant synthesizer merges labelled versions (labels shuffled by the caller)."""
    shown = "\n\n".join(f"<version id=\"{label}\">\n{text}\n</version>" for label, text in versions)
    user = (
        f"<task>\n{task}\n</task>\n\n{shown}\n\n"
        "Write one complete answer to the task that keeps the strongest content of each version and "
        "drops what is wrong or redundant. Where they disagree, keep what is correct. Reply with the "
        "merged answer only."
    )
    return [{"role": "system", "content": SYNTH_SYSTEM}, {"role": "user", "content": user}]


def repair_messages(task: str, answer: str, critique: str) -> list[Message]:
    """The hadron-variant synthesizer repairs ``answer`` with the smallest edits the critique needs."""
    user = (
        f"<task>\n{task}\n</task>\n\n<answer>\n{answer}\n</answer>\n\n<review>\n{critique}\n</review>\n\n"
        "Repair the answer: change only what the valid review points require and keep everything else "
        "as it is. Reply with the repaired answer only."
    )
    return [{"role": "system", "content": SYNTH_SYSTEM}, {"role": "user", "content": user}]


def judge_messages(task: str, candidates: Sequence[tuple[str, str]], reason_first: bool) -> list[Message]:
    """A judge ranks labelled candidates and ends with one ``RANKING:`` line."""
    shown = "\n\n".join(f"<candidate id=\"{label}\">\n{text}\n</candidate>" for label, text in candidates)
    order = " > ".join(label for label, _ in candidates)
    how = (
        "Think it through briefly first: weigh correctness, completeness and clarity. Then end with "
        "one final line of the form"
        if reason_first
        else "Answer with one line only, of the form"
    )
    user = (
        f"<task>\n{task}\n</task>\n\n{shown}\n\n"
        f"Rank all {len(candidates)} candidates from best to worst as answers to the task. {how}\n"
        f"RANKING: {order}\n"
        "with the candidate ids in your order, best first, each id exactly once."
    )
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]
