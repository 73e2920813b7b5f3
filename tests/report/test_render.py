import struct
import subprocess
import sys

import numpy as np
import pandas as pd

from offrec.report import Plot, Table, plot_curves, plot_value_bars, write_report
from offrec.report.plots import DPI, WIDTH_IN


def _png_size(path):
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def _ope_table(n_policies, n_estimators=7):
    rows = []
    for p in range(n_policies):
        for e in range(n_estimators):
            v = 0.1 + 0.02 * p + 0.001 * e
            rows.append(
                (
                    f"a policy with a long name #{p}",
                    f"est{e}",
                    v,
                    v - 0.01,
                    v + 0.01,
                    0.1 + 0.02 * p,
                    0.001,
                )
            )
    return pd.DataFrame(
        rows, columns=["policy", "estimator", "value", "low", "high", "truth", "truth_stderr"]
    )


def test_value_chart_keeps_report_width_and_grows_with_policies(tmp_path):
    small = _png_size(plot_value_bars(_ope_table(3), tmp_path / "s.png"))
    large = _png_size(plot_value_bars(_ope_table(12), tmp_path / "l.png"))
    width = round(WIDTH_IN * DPI)
    # never wider than the 1100 px report column, so never squeezed: labels stay legible
    assert small[0] == large[0] == width <= 1100
    # height grows with the number of rows drawn (policies x (estimators + truth))
    assert large[1] > 3 * small[1] * 0.8


def test_single_point_curve_is_drawn_with_a_marker_from_step_zero(tmp_path):
    # one evaluation at step 10000: visible as a dot, x axis from 0 (not 9600-10400)
    from matplotlib.figure import Figure

    seen = {}
    orig = Figure.savefig

    def spy(self, *a, **k):
        ax = self.axes[0]
        seen["xlim"] = ax.get_xlim()
        seen["marker"] = ax.lines[0].get_marker()
        return orig(self, *a, **k)

    Figure.savefig = spy
    try:
        plot_curves(
            {"DQN": ([10000], [2.5])},
            tmp_path / "c.png",
            xlabel="gradient steps",
            ylabel="clicks per session",
            title="t",
            hlines={"logger": 2.0},
        )
    finally:
        Figure.savefig = orig
    assert seen["xlim"][0] == 0 and seen["xlim"][1] > 10000
    assert seen["marker"] not in (None, "None", "")


def test_plots_leave_pyplot_and_the_backend_alone(tmp_path):
    # the raw rcParams entry: matplotlib.get_backend() itself would import pyplot
    code = (
        "import matplotlib, sys; raw = lambda: dict.__getitem__(matplotlib.rcParams, 'backend'); "
        "b = raw(); "
        "import pandas as pd; from offrec.report import plot_value_bars; "
        "t = pd.DataFrame({'policy': ['a'], 'estimator': ['ips'], 'value': [0.1], "
        "'low': [0.05], 'high': [0.15]}); "
        f"plot_value_bars(t, r'{tmp_path / 'v.png'}'); "
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'; "
        "assert raw() == b, 'backend changed'"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-500:]


def test_tables_are_formatted_for_people_with_a_legend(tmp_path):
    summary = pd.DataFrame([{"rows": 100000, "pscore_min": 1.26e-05, "ess_uniform_target": 12.5}])
    flags = pd.DataFrame({"policy": ["a", "b"], "covered": [True, False], "rank_ope": [1, 2]})
    plot = plot_curves(
        {"x": ([1, 2], [3, 4])}, tmp_path / "p.png", xlabel="steps", ylabel="loss", title="t"
    )
    md, html = write_report(
        tmp_path,
        title="T",
        headline=["Recommended: a.", "Lift: +0.1."],
        sections=[
            ("Data", Table(summary)),
            ("Flags", [flags, Plot(plot, "Loss", "Not divergence.")]),
            ("Text", "One.\n\n- item 1\n- item 2"),
        ],
    )
    text, page = md.read_text(), html.read_text()
    assert "| 100,000 | 1.26e-05 | 12.50 |" in text
    assert "0.0000" not in text and "100000" not in text
    assert "| a | ✓ | 1 |" in text and "| b | ✗ | 2 |" in text
    assert "`ess_uniform_target`: ESS of the weights (1/K) / pscore" in text
    # headline first, in its box, before any section
    assert page.index('class="headline"') < page.index("<h2>")
    assert "<p>Recommended: a.</p>" in page
    assert '<td class="num">1.26e-05</td>' in page
    assert "<figcaption>Not divergence.</figcaption>" in page
    assert "<ul><li>item 1</li><li>item 2</li></ul>" in page
    assert np.isclose(float(text.split("| 100,000 | ")[1].split(" |")[0]), 1.26e-05)


def test_learning_curve_note_calls_out_a_fall_after_the_peak(tmp_path):
    from offrec.report.build import ReportInput, _training_plots

    curve = {
        "steps": [1, 2],
        "losses": {"loss": [0.1, 0.2]},
        "eval_steps": [2000, 4000, 6000],
        "eval_value": [1.0, 1.4, 1.1],
        "eval_stderr": [0.02, 0.02, 0.02],
    }
    flat = {**curve, "eval_value": [1.0, 1.4, 1.38]}  # within noise: no claim
    inp = ReportInput(
        name="t",
        description="",
        mode="session",
        value_label="clicks per session",
        ope=pd.DataFrame(),
        truth={},
        roles={},
        data=None,
        train_rows=1,
        eval_rows=1,
        curves={"DQN": curve, "CQL": flat},
    )
    blocks = _training_plots(inp, tmp_path, {}, {"clicks_per_session": 0.9, "ctr": 0.1})
    notes = {b.title: b.caption for b in blocks}
    assert (
        "peaked at step 4,000 (1.400) and then fell by 0.3000"
        in notes["Online value during training: DQN"]
    )
    assert "peaked" not in notes["Online value during training: CQL"]
    assert "not divergence" in notes["Training loss: DQN"]


def test_estimate_vs_truth_has_one_panel_per_estimator_with_its_coverage(tmp_path):
    from matplotlib.figure import Figure

    from offrec.report import plot_estimate_vs_truth

    t = _ope_table(3, n_estimators=5)
    t.loc[t["estimator"] == "est1", ["low", "high"]] = (0.5, 0.6)  # misses every truth
    seen = {}
    orig = Figure.savefig

    def spy(self, *a, **k):
        seen["titles"] = [ax.get_title() for ax in self.axes if ax.get_visible()]
        return orig(self, *a, **k)

    Figure.savefig = spy
    try:
        size = _png_size(plot_estimate_vs_truth(t, tmp_path / "e.png"))
    finally:
        Figure.savefig = orig
    assert seen["titles"] == [
        "est0: 3/3 cover",
        "est1: 0/3 cover",
        "est2: 3/3 cover",
        "est3: 3/3 cover",
        "est4: 3/3 cover",
    ]
    assert size[0] == round(WIDTH_IN * DPI)


def test_one_word_text_cells_do_not_break_at_their_hyphen():
    from offrec.report.render import html_table

    page = html_table(pd.DataFrame({"role": ["hand-made"], "value": [-1.26e-05]}))
    assert '<td class="txt">hand\u2011made</td>' in page
    assert '<td class="num">-1.26e-05</td>' in page  # numbers keep a plain minus
