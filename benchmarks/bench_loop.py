"""The closed loop over several seeds: how often it deployed, declined, and deployed a
truly worse policy.

Runs ``offrec loop`` (:func:`offrec.serve.loop.run_loop`, each seed a separate process
with its own ``offrec serve``) for ``--seeds`` with the defaults of
``pipelines/closed_loop.toml``, ``--parallel`` at a time, and prints one line per seed
(true CTR of the first and the final serving policy, rounds deployed / declined, truly
worse deployments, wall time) and the totals. The bar (issue #25): no truly worse policy
deployed over 5 seeds.

    python -m benchmarks.bench_loop --seeds 0,1,2,3,4 --parallel 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--parallel", type=int, default=1, help="seeds run at the same time")
    ap.add_argument("--config", type=Path, default=ROOT / "pipelines" / "closed_loop.toml")
    a = ap.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    print(f"closed loop, {a.config.name}, seeds {seeds}, load {os.getloadavg()[0]:.1f}")
    print(
        "| seed | true CTR at start | at the end | deployed (rounds) | declined | truly worse "
        "deployed | wall s |"
    )
    print("|---:|---:|---:|---|---:|---:|---:|")
    totals = {"rounds": 0, "deployed": 0, "declined": 0, "worse": 0}
    with tempfile.TemporaryDirectory() as tmp:
        pending = list(seeds)
        running: dict[int, tuple[subprocess.Popen[bytes], float]] = {}
        while pending or running:
            while pending and len(running) < a.parallel:
                s = pending.pop(0)
                cmd = [
                    sys.executable,
                    "-m",
                    "offrec.cli",
                    "loop",
                    str(a.config),
                    "--out",
                    f"{tmp}/seed-{s}",
                    "--seed",
                    str(s),
                    "--quiet",
                ]
                running[s] = (
                    subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL),
                    time.time(),
                )
            for s, (proc, t0) in list(running.items()):
                if proc.poll() is None:
                    continue
                del running[s]
                if proc.returncode != 0:
                    raise SystemExit(f"seed {s}: offrec loop exited with {proc.returncode}")
                saved = json.loads(Path(f"{tmp}/seed-{s}/loop.json").read_text())
                rounds = saved["rounds"]
                dep = [r["round"] for r in rounds if r["deployed"]]
                worse = sum(r["worse_deployed"] for r in rounds)
                totals["rounds"] += len(rounds)
                totals["deployed"] += len(dep)
                totals["declined"] += len(rounds) - len(dep)
                totals["worse"] += worse
                print(
                    f"| {s} | {rounds[0]['true_ctr']:.4f} | {saved['serving_true_ctr']:.4f} | "
                    f"{len(dep)} ({', '.join(map(str, dep)) or '-'}) | {len(rounds) - len(dep)} | "
                    f"{worse} | {time.time() - t0:.0f} |",
                    flush=True,
                )
            time.sleep(0.2)
    print(
        f"\ntotal: {totals['deployed']} deployed and {totals['declined']} declined of "
        f"{totals['rounds']} rounds; truly worse deployed: {totals['worse']}; "
        f"load {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
