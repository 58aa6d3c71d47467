"""What refinement costs: calls and tokens per row by variant, judge count and early-stopped judging.

Runs ``Dataset.map(autoreason_map)`` against a scripted loopback server (no latency, cache off) for every
combination of variant (paper, hadron), panel size (3, 5, 7) and ``early_stop_judging`` (off, on; on
only where this build has the flag). Prints a table of calls/row, calls per round (the number of rounds
varies with the judges' draws, so compare panel sizes per round), tokens/row, rounds/row and each
role's share of the calls (from the ``reasoning_traces`` column), and ``ratio`` lines: the judges'
share of calls and what early stopping saves.

The scripted judges are ``--judge-agreement`` consistent: with that probability a judge ranks the
candidates by a fixed preference derived from their texts (so judges of one round tend to agree, as
real ones do), otherwise at random. Token counts are the server's estimate (characters / 4);
drafted answers are ``--completion-chars`` long.

Run:
    python bench/cost.py             # 24 rows per cell, 12 cells
    python bench/cost.py --quick     # 8 rows per cell
"""

from __future__ import annotations

import argparse
import hashlib
import random
import re
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import bench_prompts, describe_machine, has_field, make_config, padded_reply, print_ratio  # noqa: E402

from hadron_hf.testing import FakeOpenAIServer  # noqa: E402

ROLES = ("teacher", "critic", "author_b", "synthesizer", "judge")
_CANDIDATE = re.compile(r'<candidate id="(X\d)">\n(.*?)\n</candidate>', re.DOTALL)


@dataclass
class Cell:
    """The measured cost of one configuration."""

    variant: str
    judges: int
    early_stop: bool
    rows: int
    calls: float
    prompt_tokens: float
    completion_tokens: float
    rounds: float
    skipped: float
    roles: dict[str, float]


class ScriptedReplies:
    """Replies for the cost server: long drafted answers and judges that agree with some probability.

    Args:
        agreement: probability that a judge ranks by the shared preference rather than at random.
        completion_chars: length of teacher, author and synthesizer answers.
    """

    def __init__(self, agreement: float, completion_chars: int) -> None:
        self.agreement = agreement
        self.completion_chars = completion_chars

    def __call__(self, role: str, messages: list[dict[str, str]], body: dict[str, Any]) -> str | None:
        if role != "judge":
            return padded_reply(role, messages, body, self.completion_chars)
        shown = _CANDIDATE.findall(messages[-1]["content"])
        if len(shown) < 2:
            return None
        rng = random.Random(body.get("seed"))
        if rng.random() < self.agreement:
            labels = [label for label, text in sorted(shown, key=lambda s: hashlib.sha256(s[1].encode()).digest())]
        else:
            labels = [label for label, _ in shown]
            rng.shuffle(labels)
        return f"{labels[0]} is the most complete and precise.\nRANKING: {' > '.join(labels)}"


def measure(server: FakeOpenAIServer, variant: str, judges: int, early_stop: bool, args: argparse.Namespace) -> Cell:
    """Refine the rows with one configuration and tally its calls and tokens."""
    from datasets import Dataset

    from hadron_hf import autoreason_map

    fields: dict[str, Any] = {"variant": variant, "judges": judges, "max_iterations": args.max_iterations,
                              "cache": False, "seed": args.seed}
    if early_stop:
        fields["early_stop_judging"] = True
    cfg = make_config(server.url, concurrency=64, **fields)
    out = Dataset.from_dict({"prompt": bench_prompts(args.rows)}).map(
        autoreason_map, batched=True, batch_size=8, fn_kwargs={"config": cfg})
    ok = [i for i, s in enumerate(out["autoreason_status"]) if s == "ok"]
    n = max(len(ok), 1)
    usage = [out["autoreason_usage"][i] for i in ok]
    traces = [out["autoreason_trace"][i] for i in ok]
    roles = Counter(call["role"] for i in ok for call in out["reasoning_traces"][i])
    total = sum(roles.values()) or 1
    return Cell(
        variant, judges, early_stop, len(ok),
        calls=sum(u["calls"] for u in usage) / n,
        prompt_tokens=sum(u["prompt_tokens"] for u in usage) / n,
        completion_tokens=sum(u["completion_tokens"] for u in usage) / n,
        rounds=sum(t["iterations"] for t in traces) / n,
        skipped=sum(r.get("votes_skipped", 0) or 0 for t in traces for r in t["rounds"]) / n,
        roles={r: roles[r] / total for r in ROLES},
    )


def print_table(cells: list[Cell]) -> None:
    """The cost table, one line per configuration (Markdown)."""
    head = ["variant", "judges", "early stop", "calls/row", "calls/round", "prompt tok/row", "completion tok/row",
            "rounds/row", "judge calls skipped/row", *[f"{r} share" for r in ROLES]]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for c in cells:
        per_round = (c.calls - 1) / c.rounds if c.rounds else 0.0  # the teacher's draft is once per row
        values = [c.variant, str(c.judges), "on" if c.early_stop else "off", f"{c.calls:.1f}", f"{per_round:.2f}",
                  f"{c.prompt_tokens:.0f}", f"{c.completion_tokens:.0f}", f"{c.rounds:.2f}", f"{c.skipped:.2f}",
                  *[f"{c.roles[r]:.0%}" for r in ROLES]]
        print("| " + " | ".join(values) + " |")


def print_ratios(cells: list[Cell]) -> None:
    """Headline ratios: judges' share of calls, and early-stopped calls and tokens against full panels."""
    full = {(c.variant, c.judges): c for c in cells if not c.early_stop}
    for c in cells:
        tag = f"{c.variant}_j{c.judges}"
        if not c.early_stop:
            print_ratio(f"judge_share_{tag}", c.roles["judge"], f"{c.calls:.1f} calls/row")
            continue
        base = full[(c.variant, c.judges)]
        print_ratio(f"early_stop_calls_{tag}", c.calls / base.calls,
                    f"{c.calls:.1f} vs {base.calls:.1f} calls/row with every judge")
        print_ratio(f"early_stop_tokens_{tag}", (c.prompt_tokens + c.completion_tokens)
                    / (base.prompt_tokens + base.completion_tokens), "tokens/row with early stopping vs without")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", "--rows", type=int, default=None, help="rows per configuration (default 24, quick 8)")
    p.add_argument("--judges", type=int, nargs="+", default=[3, 5, 7])
    p.add_argument("--variants", nargs="+", choices=["paper", "hadron"], default=["paper", "hadron"])
    p.add_argument("--max-iterations", type=int, default=10)
    p.add_argument("--judge-agreement", type=float, default=0.8,
                   help="probability a judge follows the shared preference (0: all random)")
    p.add_argument("--completion-chars", type=int, default=600)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="8 rows per configuration")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns the exit code."""
    args = parse_args(argv)
    args.rows = args.rows or (8 if args.quick else 24)
    import datasets

    datasets.disable_progress_bars()
    stops = [False, True] if has_field("early_stop_judging") else [False]
    print(describe_machine())
    print(f"scripted server: {args.rows} rows per configuration, ≤{args.max_iterations} rounds, converge k=2, "
          f"judge agreement {args.judge_agreement:g}, answers of {args.completion_chars} chars, cache off")
    if len(stops) == 1:
        print("early-stopped judging: this build has no AutoReasonConfig.early_stop_judging; measuring without")
    replies = ScriptedReplies(args.judge_agreement, args.completion_chars)
    with FakeOpenAIServer(responder=replies) as server:
        cells = [measure(server, v, j, s, args) for v in args.variants for j in args.judges for s in stops]
    print_table(cells)
    print_ratios(cells)
    return 0


if __name__ == "__main__":
    sys.exit(main())
