"""The report section "Online vs offline": what each approach costs in live interaction
with users and what it earns (true values from the simulator)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from offrec.policies.online import ValueCurve
    from offrec.sim import World

__all__ = ["online_vs_offline", "online_vs_offline_section"]


def online_vs_offline(
    world: World,
    targets: Mapping[str, Any],
    roles: Mapping[str, str],
    online_curves: Mapping[str, ValueCurve],
    train_rows: int,
    plot_path: Path,
    *,
    mode: str,
    n_sessions: int,
    seed: int,
    title: str,
) -> tuple[pd.DataFrame, str, Path]:
    """A table (CTR, clicks per session, session length of every target, with standard
    errors, :func:`~offrec.policies.online.session_stats` over ``n_sessions`` sessions), a
    note, and one learning-curve plot (online learners against their interactions;
    offline ones, ``roles[name] == "learned"`` without a curve, at the ``train_rows``
    logged rows they used; references as lines). ``mode`` (``"bandit"`` / ``"session"``)
    picks the metric: CTR or clicks per session."""
    from offrec.policies.online import session_stats
    from offrec.report.learning_curves import plot_value_curves

    rows = []
    for name, policy in targets.items():
        st = session_stats(world, policy, n_sessions=n_sessions, seed=seed)
        if name in online_curves:
            approach, live, logged = "online", int(online_curves[name].interactions[-1]), 0
        elif roles.get(name) == "learned":
            approach, live, logged = "offline", 0, train_rows
        else:
            approach, live, logged = "reference", 0, 0
        rows.append(
            {
                "policy": name,
                "approach": approach,
                "live interactions": live,
                "logged interactions": logged,
                **{k: v for k, v in st.items() if k != "exact"},
            }
        )
    table = pd.DataFrame(rows)
    metric = "clicks_per_session" if mode == "session" else "ctr"
    label = "clicks per session" if mode == "session" else "CTR"
    refs = table[table["approach"] == "reference"]
    best_ref = refs.loc[refs[metric].idxmax()] if len(refs) else None
    lines = []
    for d in table[table["approach"] != "reference"].to_dict("records"):
        cost = (
            f"{d['live interactions']:,} live interactions with users"
            if d["approach"] == "online"
            else f"no live interaction: trained on {d['logged interactions']:,} logged decisions"
        )
        share = (
            f", {d[metric] / best_ref[metric]:.0%} of the {best_ref['policy']}"
            if best_ref is not None and best_ref[metric] > 0
            else ""
        )
        lines.append(
            f"- **{d['policy']}**: costs {cost}; earns "
            f"{d[metric]:.3f} ± {d[metric + '_se']:.3f} {label}{share}."
        )
    note = (
        "Online learners pay for what they learn with live traffic (their curve shows the "
        "policy they would deploy after each number of interactions); offline learners use "
        "only the logger's decisions and pay nothing more before deployment. Values are the "
        f"simulator's truth over {n_sessions:,} sessions (± one standard error).\n\n"
        + "\n".join(lines)
    )
    points = {
        str(n): (float(train_rows), float(r[metric]), float(r[metric + "_se"]))
        for n, r in table.set_index("policy").iterrows()
        if r["approach"] == "offline"
    }
    references = {str(r["policy"]): float(r[metric]) for r in refs.to_dict("records")}
    path = plot_value_curves(
        dict(online_curves),
        plot_path,
        points=points,
        references=references,
        title=f"{title}: true {label} against interactions with users",
    )
    return table, note, path


def online_vs_offline_section(note: str, plot: Path, table: pd.DataFrame) -> tuple[str, Any]:
    """The report section of :func:`online_vs_offline`: the note, the plot, the table."""
    from offrec.report.render import Plot, Table

    return (
        "Online vs offline: what each approach costs and earns",
        [
            note,
            Plot(
                plot,
                "True value against interactions with users",
                "Online learners: the policy each would deploy after that many live interactions "
                "(band: ±2 standard errors). Offline learners: one point at the number of logged "
                "decisions they were trained on. Lines: the logger and the oracles.",
            ),
            Table(table, caption="True values from the simulator (± one standard error)."),
        ],
    )
