"""Write the SFT view of a refined dataset as the data folder ``mlx_lm.lora --data DIR`` reads (train,
valid and test JSONL in chat ``messages`` form, split by prompt with a seed).

    python recipes/mlx_lora.py --input hadron-hf-output/demo/refined --output out/mlx --ratios 0.8,0.1,0.1
"""

from __future__ import annotations

from collections.abc import Sequence

from hadron_hf.cli import run_script
from hadron_hf.cli.export import add_mlx_arguments, run_mlx_export


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments and run the export; returns the exit code."""
    return run_script(__doc__, add_mlx_arguments, run_mlx_export, argv)


if __name__ == "__main__":
    raise SystemExit(main())
