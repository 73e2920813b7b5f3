"""The report in a real browser (headless Chromium): images decode, nothing overflows.

Skipped, with the reason, when no Chromium is installed (Debian: ``apt-get install
chromium``; or point ``OFFREC_CHROMIUM`` at one).
"""

import struct

import pandas as pd
import pytest

from offrec.report import Plot, Table, plot_curves, plot_value_bars, write_report
from offrec.report.browser import BrowserUnavailable, check_report, find_chromium

pytestmark = pytest.mark.skipif(
    find_chromium() is None,
    reason="no Chromium found (apt-get install chromium, or set OFFREC_CHROMIUM)",
)


def _report(tmp_path, extra_html=""):
    rows = [
        (f"policy with a rather long name #{p}", f"est{e}", 0.1 + 0.01 * p, 0.09, 0.12, 0.1, 1e-3)
        for p in range(8)
        for e in range(7)
    ]
    t = pd.DataFrame(
        rows, columns=["policy", "estimator", "value", "low", "high", "truth", "truth_stderr"]
    )
    t["ess"], t["ess_share"], t["max_weight"] = 1234.5, 1.26e-05, 2636.0
    t["support"], t["covered"] = 0.95, True
    t["warnings"] = "ESS is 0.23% of the rows; max weight 2,636 is more than 1% of the rows"
    values = plot_value_bars(t, tmp_path / "plots" / "values.png")
    loss = plot_curves(
        {"DQN": ([0, 100, 200], [0.1, 0.3, 0.35])},
        tmp_path / "plots" / "l.png",
        xlabel="gradient steps",
        ylabel="TD loss",
        title="loss",
    )
    _, html = write_report(
        tmp_path,
        title="browser check",
        headline=["Recommended: x.", "Lift: +0.1."],
        sections=[
            ("Trust", Table(t)),
            ("Plots", [Plot(values, "values"), Plot(loss, "loss", "why")]),
        ],
    )
    if extra_html:
        html.write_text(html.read_text().replace("</body>", extra_html + "</body>"))
    return html


def test_report_renders_in_chromium(tmp_path):
    html = _report(tmp_path)
    check = check_report(html)
    assert [i["alt"] for i in check.images] == ["values", "loss"]
    assert all(i["natural_width"] > 0 for i in check.images), check.images
    # plots are drawn at their own size, not squeezed into the column
    assert all(i["drawn_width"] == i["natural_width"] for i in check.images), check.images
    assert check.overflowing == [] and check.scroll_width <= check.viewport_width
    assert check.ok, check.problems


@pytest.mark.slow
def test_full_page_screenshot(tmp_path):
    check = check_report(_report(tmp_path), screenshot=tmp_path / "shot.png")
    w, h = struct.unpack(">II", (tmp_path / "shot.png").read_bytes()[16:24])
    assert w == 1280 and h == check.page_height > 1000


@pytest.mark.slow
def test_the_check_catches_a_broken_image_and_an_overflow(tmp_path):
    html = _report(
        tmp_path,
        '<img alt="broken" src="data:image/png;base64,AAAA">'
        '<div style="width:3000px">too wide</div>',
    )
    check = check_report(html)
    assert not check.ok
    assert [i["alt"] for i in check.images if not i["natural_width"]] == ["broken"]
    assert any(o.startswith("div right=") for o in check.overflowing), check.overflowing
    assert check.scroll_width > check.viewport_width


def test_missing_chromium_is_a_clear_error(tmp_path):
    html = _report(tmp_path)
    with pytest.raises(BrowserUnavailable, match="could not run"):
        check_report(html, chromium=str(tmp_path / "no-such-chromium"))


@pytest.mark.slow
def test_quickstart_report_in_chromium(tmp_path):
    from offrec.pipeline import run_pipeline

    res = run_pipeline("pipelines/quickstart.toml", tmp_path / "qs")
    check = check_report(res.out / "report.html", screenshot=res.out / "report.png")
    assert len(check.images) >= 2 and check.ok, check.problems
