"""Sample a prompt collection (Hub dataset, local file or folder), refine it with AutoReason, and write (and
optionally push) the refined dataset and its SFT, DPO and critic views, each with its dataset card.

    python recipes/build.py bundled --limit 8 --output out/build [--push-to-hub me/autoreason]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from hadron_hf.build import add_build_arguments, run_build
from hadron_hf.errors import HadronError


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments and run the build; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    add_build_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_build(args)
    except HadronError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted; completed calls are in the request cache, re-run to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
