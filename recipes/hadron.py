"""Turn a refined dataset into the original Hadron's rows (``generation``, ``autoreason_trace``, ...) so
scripts written for it keep working.

    python recipes/hadron.py --input hadron-hf-output/demo/refined --output out/hadron.jsonl
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from hadron_hf.errors import HadronError
from hadron_hf.migrate import add_migration_arguments, run_migration


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments and run the migration; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    add_migration_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_migration(args)
    except HadronError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
