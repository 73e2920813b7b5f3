"""Reports: the decision (what to ship), the trust section, tables and plots for people,
Markdown/HTML rendering, and a headless-browser check of the HTML."""

from offrec.report.build import ReportInput, ReportOutput, build_report
from offrec.report.decision import Comparison, Decision, decide, disagreements, trust_table
from offrec.report.plots import plot_curves, plot_estimate_vs_truth, plot_value_bars
from offrec.report.render import Plot, Table, markdown_table, write_report

__all__ = [
    "Comparison",
    "Decision",
    "Plot",
    "ReportInput",
    "ReportOutput",
    "Table",
    "build_report",
    "decide",
    "disagreements",
    "markdown_table",
    "plot_curves",
    "plot_estimate_vs_truth",
    "plot_value_bars",
    "trust_table",
    "write_report",
]
