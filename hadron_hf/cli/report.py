"""``hadron-hf report``: write a self-contained HTML report of a refined dataset (``hadron_hf.report``)."""

from __future__ import annotations

import argparse
from typing import Any

from hadron_hf.cli.options import REFINED_INPUT, add_input_arguments, add_output_arguments
from hadron_hf.report.html import write_report
from hadron_hf.sources import check_output, load_refined, read_run_info, refined_location


def add_subcommand(subparsers: Any) -> None:
    """Add ``hadron-hf report INPUT -o report.html`` to the CLI."""
    text = "write a self-contained HTML report of a refined dataset"
    parser = subparsers.add_parser("report", help=text, description=text[0].upper() + text[1:] + ".")
    add_input_arguments(parser, REFINED_INPUT)
    add_output_arguments(parser, "report.html", "the HTML file to write")
    parser.add_argument("--title", default=None, help="page title (default: from the run's input name)")
    parser.add_argument("--prompt-column", default="prompt", help="column holding the prompt")
    parser.set_defaults(func=run_report)


def run_report(args: argparse.Namespace) -> int:
    """``hadron-hf report``: load a refined dataset (and its ``run.json``) and write the HTML report."""
    check_output(args.output, args.overwrite)
    ds = load_refined(args.input, split=args.split, limit=args.limit)
    run = read_run_info(args.input)
    path = write_report(ds, args.output, args.title, args.prompt_column, run=run,
                        source=refined_location(args.input))
    note = "" if run else " (no run.json found beside it: models, seed and date are shown as unknown)"
    print(f"Wrote {path} ({len(ds):,} rows){note}; open it in any browser, no network needed.")
    return 0
