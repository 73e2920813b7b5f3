"""``report.md`` and a self-contained ``report.html`` (plots embedded) from metrics."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from offrec.core.atomic import atomic_write_text


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "" if v != v else f"{v:.4f}"  # nan -> empty
    return str(v)


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (floats with 4 decimals)."""
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    rows = ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *rows])


def write_report(
    out_dir: str | Path,
    *,
    title: str,
    sections: list[tuple[str, str | pd.DataFrame]],
    plots: Mapping[str, Path],
) -> tuple[Path, Path]:
    """Write ``report.md`` (plots linked) and ``report.html`` (plots embedded as base64).

    ``sections`` is a list of (heading, body) where body is Markdown text or a DataFrame.
    """
    out = Path(out_dir)
    md = [f"# {title}", ""]
    body_html = [f"<h1>{html.escape(title)}</h1>"]
    for heading, body in sections:
        md += [f"## {heading}", ""]
        body_html.append(f"<h2>{html.escape(heading)}</h2>")
        if isinstance(body, pd.DataFrame):
            md += [markdown_table(body), ""]
            body_html.append(
                body.to_html(index=False, float_format=lambda v: f"{v:.4f}", na_rep="")
            )
        else:
            md += [body, ""]
            body_html += [f"<p>{html.escape(p)}</p>" for p in body.split("\n\n")]
    if plots:
        md += ["## Plots", ""]
        body_html.append("<h2>Plots</h2>")
        for name, path in plots.items():
            rel = Path(path).relative_to(out) if Path(path).is_relative_to(out) else Path(path)
            md += [f"### {name}", "", f"![{name}]({rel.as_posix()})", ""]
            data = base64.b64encode(Path(path).read_bytes()).decode()
            body_html.append(
                f'<h3>{html.escape(name)}</h3><img alt="{html.escape(name)}" '
                f'src="data:image/png;base64,{data}" style="max-width:100%">'
            )
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;font-size:0.9em}td,th{border:1px solid #ccc;padding:3px 8px;"
        "text-align:right}th{background:#f3f3f3}"
    )
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>{''.join(body_html)}</body></html>"
    )
    md_path, html_path = out / "report.md", out / "report.html"
    atomic_write_text(md_path, "\n".join(md))
    atomic_write_text(html_path, page)
    return md_path, html_path
