"""Reports: tables, plots (PNG) and Markdown/HTML rendering."""

from offrec.report.plots import plot_curves, plot_estimate_vs_truth, plot_value_bars
from offrec.report.render import markdown_table, write_report

__all__ = [
    "markdown_table",
    "plot_curves",
    "plot_estimate_vs_truth",
    "plot_value_bars",
    "write_report",
]
