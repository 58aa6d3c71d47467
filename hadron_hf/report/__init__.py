"""The report (the ``hadron-hf report`` command is ``hadron_hf.cli.report``): one self-contained, offline
HTML file showing why each round of a refined dataset was won and whether its judges can be trusted.

Example:
    >>> write_report(load_refined("hadron-hf-output/demo"), "report.html")  # doctest: +SKIP
"""

from hadron_hf.report.html import render_report, write_report

__all__ = ["render_report", "write_report"]
