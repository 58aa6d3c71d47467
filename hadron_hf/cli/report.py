"""The ``hadron-hf report`` subcommand (a CLI plugin: ``cli`` calls ``add_subcommand``)."""

from __future__ import annotations

import argparse
from typing import Any

from hadron_hf.report.html import write_report
from hadron_hf.report.source import locate, read_run_file


def add_subcommand(subparsers: Any) -> None:
    """Add ``hadron-hf report PATH -o report.html`` to the CLI."""
    parser = subparsers.add_parser("report", help="write a self-contained HTML report of a refined dataset")
    parser.add_argument("dataset", metavar="PATH",
                        help="a refine/demo output folder, a save_to_disk folder, or a .jsonl/.parquet file")
    parser.add_argument("-o", "--output", default="report.html", help="the HTML file to write (default report.html)")
    parser.add_argument("--split", default="train", help="split of a DatasetDict folder")
    parser.add_argument("--limit", type=int, default=None, help="only the first N rows")
    parser.add_argument("--title", default=None, help="page title (default: from the run's input name)")
    parser.add_argument("--prompt-column", default="prompt", help="column holding the prompt")
    parser.set_defaults(func=run_report)


def run_report(args: argparse.Namespace) -> int:
    """``hadron-hf report``: load a refined dataset (and its ``run.json``) and write the HTML report."""
    from hadron_hf.views import load_refined

    data_path, run_path = locate(args.dataset)
    ds = load_refined(str(data_path), split=args.split)
    if args.limit is not None:
        ds = ds.select(range(min(args.limit, len(ds))))
    path = write_report(ds, args.output, args.title, args.prompt_column, run=read_run_file(run_path),
                        source=str(data_path))
    note = "" if run_path else " (no run.json found beside it: models, seed and date are shown as unknown)"
    print(f"Wrote {path} ({len(ds):,} rows){note}; open it in any browser, no network needed.")
    return 0

