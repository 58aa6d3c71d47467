"""Prove the labels are better: a blind panel of external judges compares the refined answers with the
single-shot drafts (and optionally a critique-and-revise baseline), with a bootstrap confidence interval.

    python recipes/eval.py hadron-hf-output/demo --judge-base-url http://127.0.0.1:8000/v1 \
        --judge-model judge-a --judge-model judge-b --judges 7 --baseline --output out/eval
"""

from __future__ import annotations

from collections.abc import Sequence

from hadron_hf.cli import run_script
from hadron_hf.cli.evaluate import add_eval_arguments, run_eval


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments and run the evaluation; returns the exit code."""
    return run_script(__doc__, add_eval_arguments, run_eval, argv)


if __name__ == "__main__":
    raise SystemExit(main())
