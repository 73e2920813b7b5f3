"""``report.md`` and a self-contained ``report.html`` (plots embedded) from report blocks.

A report is a title, an optional headline (a few sentences shown first, in a box) and
sections. A section's body is Markdown-ish text (paragraphs split on blank lines, lines
starting with ``- `` become a list), a :class:`Table`, a :class:`Plot` or a list of them.
Every number goes through :func:`offrec.core.fmt.format_number` (significant digits,
integers as integers, ✓/✗), and every table is followed by a legend of the column names
it uses that :data:`COLUMN_HELP` explains.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np
import pandas as pd

from offrec.core.atomic import atomic_write_text
from offrec.core.fmt import format_number, is_number

COLUMN_HELP: dict[str, str] = {
    "policy": "the policy scored",
    "role": "learned (trained from the log), hand-made (a rule), logger (the logging "
    "policy, what runs today) or oracle (knows the true click model; a reference only)",
    "estimator": "the off-policy estimator",
    "value": "the off-policy estimate of the policy's value",
    "low": "lower end of the estimate's interval",
    "high": "upper end of the estimate's interval",
    "truth": "the true online value, from running the policy in the simulator",
    "true value": "the true online value, from running the policy in the simulator",
    "stderr": "Monte-Carlo standard error of the true value (0 when exact)",
    "exact": "✓ when the true value is computed exactly rather than by simulation",
    "rel_error": "|estimate - truth| / truth",
    "covered": "✓ when the interval contains the true value",
    "rank_ope": "rank of the policy by this estimator (1 = best)",
    "rank_true": "rank of the policy by its true value among the policies scored (1 = best)",
    "rank": "rank by true value (1 = best)",
    "ess": "effective sample size of the importance weights, Kish's (sum w)^2 / sum w^2: "
    "how many logged rows the estimate is worth",
    "ess_share": "ess / rows scored",
    "max_weight": "largest importance weight pi_e(a|x) / pscore",
    "support": "share of the target policy's probability mass on actions the logger can "
    "take (1 = full support)",
    "warnings": "what the evaluation flags about this estimate",
    "spearman": "rank correlation between estimated and true values over the policies",
    "regret": "true value of the best policy minus that of the policy the estimator picks",
    "picked": "the policy with the highest estimate",
    "picked_deployable": "the deployable (learned or hand-made) policy with the highest estimate",
    "mean_rel_error": "mean of rel_error over the policies",
    "difference": "estimate of policy minus estimate of versus",
    "versus": "the policy compared against",
    "verdict": "which is better at the interval's level, or cannot tell apart",
    "method": "paired: the interval of the difference itself, both estimates on the same "
    "rows; independent approximation: from the two standard errors, too wide when the "
    "estimates are correlated",
    "rows": "logged decisions",
    "train_rows": "rows the policies were trained on",
    "eval_rows": "held-out rows the estimates use",
    "sessions": "sessions (users) in the log",
    "ctr": "mean reward per logged decision",
    "clicks_per_session": "total reward / sessions",
    "pscore_min": "smallest logging propensity (a tiny one means a huge importance weight)",
    "pscore_max": "largest logging propensity",
    "ess_uniform_target": "ESS of the weights (1/K) / pscore of a uniform-random target "
    "over the K items: how many rows an IPS estimate of a policy unlike the logger is worth",
}
"""Column name -> what it means, printed under every table that uses it."""

INTEGER_COLUMNS: frozenset[str] = frozenset(
    {"rows", "train_rows", "eval_rows", "sessions", "rank", "rank_ope", "rank_true", "n"}
)


@dataclass
class Table:
    """A table block: ``df`` formatted for people, an optional caption, and a legend of
    its columns (:data:`COLUMN_HELP` plus ``legend``)."""

    df: pd.DataFrame
    caption: str = ""
    legend: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Plot:
    """An image block: a PNG file, its title, and a caption shown next to it."""

    path: Path
    title: str
    caption: str = ""


Body = Union[str, pd.DataFrame, Table, Plot, Sequence["Body"]]  # noqa: UP007


def cell(value: Any, column: str = "") -> str:
    """One table cell as text (see :mod:`offrec.core.fmt`)."""
    if isinstance(value, np.generic):
        value = value.item()
    return format_number(value, integer=column in INTEGER_COLUMNS)


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table, numbers formatted by :func:`cell`."""
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    num = [_numeric(df[c]) for c in df.columns]
    sep = "|" + "|".join("---:" if n else "---" for n in num) + "|"
    rows = [
        "| "
        + " | ".join(
            cell(v, str(c)).replace("|", "\\|") for v, c in zip(row, df.columns, strict=True)
        )
        + " |"
        for row in df.itertuples(index=False)
    ]
    return "\n".join([head, sep, *rows])


def html_table(df: pd.DataFrame) -> str:
    """An HTML table, numbers formatted by :func:`cell` and right-aligned."""
    num = [_numeric(df[c]) for c in df.columns]
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = []
    for row in df.itertuples(index=False):
        tds = "".join(
            f'<td class="num">{html.escape(cell(v, str(c)))}</td>'
            if n
            else f'<td class="txt">{html.escape(_nobreak(cell(v, str(c))))}</td>'
            for v, c, n in zip(row, df.columns, num, strict=True)
        )
        body.append(f"<tr>{tds}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _nobreak(text: str) -> str:
    """One-word cells ("hand-made", "switch-dr") keep their hyphen from breaking a line."""
    return text.replace("-", "\u2011") if " " not in text and len(text) <= 16 else text


def _numeric(col: pd.Series) -> bool:
    return bool(len(col)) and all(is_number(v) for v in col)


def legend_for(columns: Sequence[str], extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The entries of :data:`COLUMN_HELP` (overridden by ``extra``) for ``columns``."""
    helps = {**COLUMN_HELP, **(extra or {})}
    return {str(c): helps[str(c)] for c in columns if str(c) in helps}


def _blocks(body: Body) -> list[str | Table | Plot]:
    if isinstance(body, pd.DataFrame):
        return [Table(body)]
    if isinstance(body, str | Table | Plot):
        return [body]
    return [b for item in body for b in _blocks(item)]


def _text_md(text: str) -> list[str]:
    return [text, ""]


def _text_html(text: str) -> str:
    out = []
    for para in text.split("\n\n"):
        lines = para.strip().split("\n")
        if lines and all(line.startswith("- ") for line in lines):
            items = "".join(f"<li>{html.escape(line[2:])}</li>" for line in lines)
            out.append(f"<ul>{items}</ul>")
        elif para.strip():
            out.append(f"<p>{html.escape(para.strip())}</p>")
    return "".join(out)


STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}
.headline{border:2px solid #0072B2;background:#f2f8fc;border-radius:6px;padding:.6em 1.2em;
font-size:1.05em}.headline p{margin:.4em 0}.headline p:first-child{font-size:1.2em;font-weight:600}
.tablewrap{max-width:100%;overflow-x:auto}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
td,th{border:1px solid #ccc;padding:3px 7px;overflow-wrap:break-word}
th{background:#f3f3f3;text-align:center;white-space:nowrap}td.num{text-align:right;white-space:nowrap;
font-variant-numeric:tabular-nums}td.txt{text-align:left;max-width:24em}
.legend{font-size:.8em;color:#555;margin:.2em 0 1em 0}.legend dt{font-weight:600;display:inline}
.legend dd{display:inline;margin:0 0 0 .3em}.legend dd:after{content:"";display:block}
figure{margin:1em 0}figure img{max-width:100%;height:auto;display:block}
figcaption{font-size:.9em;color:#333;margin-top:.3em;max-width:60em}
.caption{font-size:.9em;color:#444}
"""


def write_report(
    out_dir: str | Path,
    *,
    title: str,
    sections: Sequence[tuple[str, Body]],
    plots: Mapping[str, Path] | None = None,
    headline: Sequence[str] = (),
) -> tuple[Path, Path]:
    """Write ``report.md`` (plots linked) and ``report.html`` (plots embedded as base64).

    Args:
        out_dir: the report folder; plots inside it are linked by relative path.
        title: the page title.
        sections: ``(heading, body)`` pairs, body as described in the module docstring.
        plots: ``{title: png path}``, appended as a last "Plots" section (kept for
            callers that pass plots apart; :class:`Plot` blocks in sections are preferred).
        headline: sentences shown first, in a box; the first one in bold.
    """
    out = Path(out_dir)
    md = [f"# {title}", ""]
    body_html = [f"<h1>{html.escape(title)}</h1>"]
    if headline:
        md += [f"> **{headline[0]}**", ">"] + [f"> {s}\n>" for s in headline[1:]] + [""]
        paras = "".join(f"<p>{html.escape(s)}</p>" for s in headline)
        body_html.append(f'<div class="headline">{paras}</div>')
    all_sections = list(sections)
    if plots:
        all_sections.append(("Plots", [Plot(Path(p), name) for name, p in plots.items()]))
    for heading, body in all_sections:
        md += [f"## {heading}", ""]
        body_html.append(f"<h2>{html.escape(heading)}</h2>")
        for block in _blocks(body):
            if isinstance(block, Table):
                legend = legend_for(list(block.df.columns), block.legend)
                if block.caption:
                    md += [block.caption, ""]
                    body_html.append(f'<p class="caption">{html.escape(block.caption)}</p>')
                md += [markdown_table(block.df), ""]
                body_html.append(f'<div class="tablewrap">{html_table(block.df)}</div>')
                if legend:
                    md += ["Columns: " + "; ".join(f"`{k}`: {v}" for k, v in legend.items()), ""]
                    items = "".join(
                        f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>"
                        for k, v in legend.items()
                    )
                    body_html.append(f'<dl class="legend">{items}</dl>')
            elif isinstance(block, Plot):
                path = Path(block.path)
                rel = path.relative_to(out) if path.is_relative_to(out) else path
                md += [f"### {block.title}", "", f"![{block.title}]({rel.as_posix()})", ""]
                if block.caption:
                    md += [block.caption, ""]
                data = base64.b64encode(path.read_bytes()).decode()
                cap = (
                    f"<figcaption>{html.escape(block.caption)}</figcaption>"
                    if block.caption
                    else ""
                )
                body_html.append(
                    f'<h3>{html.escape(block.title)}</h3><figure><img alt="{html.escape(block.title)}" '
                    f'src="data:image/png;base64,{data}">{cap}</figure>'
                )
            else:
                md += _text_md(block)
                body_html.append(_text_html(block))
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
        f"<body>{''.join(body_html)}</body></html>"
    )
    md_path, html_path = out / "report.md", out / "report.html"
    atomic_write_text(md_path, "\n".join(md))
    atomic_write_text(html_path, page)
    return md_path, html_path
