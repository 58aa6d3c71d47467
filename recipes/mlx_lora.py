"""Write the SFT view of a refined dataset as the data folder ``mlx_lm.lora --data DIR`` reads (train,
valid and test JSONL in chat ``messages`` form, split by prompt with a seed).

    python recipes/mlx_lora.py --input hadron-hf-output/demo/refined --output out/mlx --ratios 0.8,0.1,0.1
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from hadron_hf.errors import HadronError
from hadron_hf.mlx_export import add_mlx_arguments, run_mlx_export


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments and run the export; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    add_mlx_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_mlx_export(args)
    except HadronError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
