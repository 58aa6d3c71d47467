"""Build the reward-model view of a refined dataset (chosen/rejected conversations with margins), write
it with its dataset card, and optionally push it to the Hub.

    python recipes/reward.py --input hadron-hf-output/demo/refined --output out/reward [--pairs all]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from hadron_hf.errors import HadronError
from hadron_hf.recipe import add_recipe_arguments, run_recipe


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments and run the recipe; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    add_recipe_arguments(parser, "reward")
    args = parser.parse_args(argv)
    try:
        return run_recipe(args)
    except HadronError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
