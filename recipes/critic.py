"""Build the critic view of a refined dataset (draft, critique, revision per improving round), write it
with its dataset card, and optionally push it to the Hub.

    python recipes/critic.py --input hadron-hf-output/demo/refined --output out/critic [--form messages]
"""

from __future__ import annotations

from collections.abc import Sequence

from hadron_hf.cli import run_script
from hadron_hf.cli.recipe import add_recipe_arguments, run_recipe


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments and run the recipe; returns the exit code."""
    return run_script(__doc__, lambda parser: add_recipe_arguments(parser, "critic"), run_recipe, argv)


if __name__ == "__main__":
    raise SystemExit(main())
