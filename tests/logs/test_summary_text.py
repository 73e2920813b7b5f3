import pandas as pd

from offrec.logs.query import LogSummary


def test_summary_text_prints_counts_as_integers_and_keeps_small_propensities():
    overall = pd.DataFrame(
        [
            {
                "rows": 100000,
                "sessions": 100000,
                "ctr": 0.19654,
                "clicks_per_session": 0.19654,
                "pscore_min": 1.26e-05,
                "pscore_max": 0.9,
                "distinct_actions": 100,
                "ess_uniform": 1234.56,
                "ess_fraction": 0.0123456,
            }
        ]
    )
    by_step = pd.DataFrame({"step": [0], "rows": [100000.0], "ctr": [0.19654]})
    by_topic = pd.DataFrame({"topic": ["news"], "rows": [100000], "ctr": [0.2], "share": [1.0]})
    text = LogSummary(overall, by_step, by_topic).to_text()
    lines = text.splitlines()
    cells = {ln.split()[0]: ln.split()[1] for ln in lines[1:10]}
    assert cells["rows"] == "100,000" and cells["distinct_actions"] == "100"
    assert cells["pscore_min"] == "1.26e-05" and cells["ess_fraction"] == "0.01235"
    assert len({len(ln) for ln in lines[1:10]}) == 1  # values right-aligned in one column
    assert "0.0000" not in text and "100000.0" not in text
    assert lines[lines.index("by step") + 2].split() == ["0", "100,000", "0.1965"]
    assert lines[lines.index("by topic") + 2].split() == ["news", "100,000", "0.2000", "1.000"]
    # the legend explains the less obvious columns
    assert any(ln.startswith("  ess_uniform: Kish effective sample size") for ln in lines)
