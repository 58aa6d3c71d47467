"""Turn a refined dataset into the original Hadron's rows (``generation``, ``autoreason_trace``, ...) so
scripts written for it keep working.

    python recipes/hadron.py --input hadron-hf-output/demo/refined --output out/hadron.jsonl
"""

from __future__ import annotations

from collections.abc import Sequence

from hadron_hf.cli import run_script
from hadron_hf.cli.export import add_migration_arguments, run_migration


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments and run the migration; returns the exit code."""
    return run_script(__doc__, add_migration_arguments, run_migration, argv)


if __name__ == "__main__":
    raise SystemExit(main())
