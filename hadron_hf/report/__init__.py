"""``hadron-hf report``: one self-contained, offline HTML file showing why each round of a refined
dataset was won and whether its judges can be trusted.

Example:
    >>> write_report(load_refined("hadron-hf-output/demo"), "report.html")  # doctest: +SKIP
"""

from hadron_hf.report.command import add_subcommand, run_report
from hadron_hf.report.html import render_report, write_report

__all__ = ["add_subcommand", "render_report", "run_report", "write_report"]
