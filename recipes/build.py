"""Sample a prompt collection (Hub dataset, local file or folder), refine it with AutoReason, and write (and
optionally push) the refined dataset and its SFT, DPO and critic views, each with its dataset card.

    python recipes/build.py bundled --limit 8 --output out/build [--push-to-hub me/autoreason]
"""

from __future__ import annotations

from collections.abc import Sequence

from hadron_hf.cli import run_script
from hadron_hf.cli.build import add_build_arguments, run_build


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments and run the build; returns the exit code."""
    return run_script(__doc__, add_build_arguments, run_build, argv)


if __name__ == "__main__":
    raise SystemExit(main())
