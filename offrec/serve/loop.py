r"""The closed loop: serve, log, learn, estimate, deploy only what the estimate supports.

One run (``offrec loop pipelines/closed_loop.toml --out DIR``):

1. a world (bandit mode) and an initial policy (uniform random) are saved; ``offrec
   serve`` is started on it **as a separate process** with a random admin token;
2. each round, ``users_per_round`` simulated users of the world ask the service for a
   recommendation **over HTTP** (``concurrency`` requests in flight), click with the
   world's true probability :math:`q(u, a)`, and the clicks go back as feedback over HTTP;
3. the service compacts its write-ahead log into the Parquet log (admin endpoint);
4. the log so far (every round, every deployment: several loggers, each row with its own
   propensity) is split by decision id (:func:`holdout_rows`: the same decisions are held
   out in every round): a seeded ``1 - holdout`` share trains a new
   policy (``learner`` with an epsilon-greedy head, so that it keeps exploring when
   deployed: the next rounds need propensities > 0 everywhere); the ``holdout`` share,
   never seen by the learner, scores it against the serving policy off-policy: the
   *paired* difference :math:`\hat V(\pi_{new}) - \hat V(\pi_{serving})` by
   ``estimator`` with its ``1 - alpha`` interval (:meth:`offrec.ope.OPEResult.compare`);
5. the new policy is deployed (admin endpoint, no downtime) **only if the interval's
   lower bound is above 0**;
6. the report shows per round the serving policy's true CTR (exact, from the world), the
   CTR the users produced, the estimated lift with its interval, the true lift, and what
   was deployed; a deployment whose true lift is negative is flagged.

Also reported: the multiple-logger view (:mod:`offrec.ope.multi_logger`): the balanced
IPS estimate of the candidate's value against the mixture of the deployed loggers.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from offrec.core.errors import InputError
from offrec.core.validation import check_scalar

LOOP_ESTIMATORS = ("ips", "snips", "dr", "sndr")
"""Paired-lift estimators the loop may use (DR-type: a cross-fitted reward model)."""


@dataclass(frozen=True)
class LoopConfig:
    """A closed-loop run (``pipelines/closed_loop.toml`` holds the defaults)."""

    seed: int = 0
    rounds: int = 5
    users_per_round: int = 3000
    n_items: int = 30
    n_users: int = 2000
    learner: str = "linucb"
    epsilon: float = 0.2
    holdout: float = 0.5
    estimator: str = "dr"
    alpha: float = 0.05
    concurrency: int = 16

    def __post_init__(self) -> None:
        for name in ("seed",):
            check_scalar(getattr(self, name), name, int, min=0)
        for name in ("rounds", "users_per_round", "n_items", "n_users", "concurrency"):
            check_scalar(getattr(self, name), name, int, min=1)
        check_scalar(self.epsilon, "epsilon", float, min=0.0, max=1.0, min_inclusive=False)
        check_scalar(
            self.holdout,
            "holdout",
            float,
            min=0.0,
            max=1.0,
            min_inclusive=False,
            max_inclusive=False,
        )
        check_scalar(self.alpha, "alpha", float, min=0.0, max=0.5, min_inclusive=False)
        from offrec.policies.registry import BANDIT_LEARNERS
        from offrec.rl.algos import learner_name

        object.__setattr__(self, "learner", learner_name(self.learner))  # old spellings
        if self.learner not in BANDIT_LEARNERS:
            raise InputError(
                f"learner must be one of {list(BANDIT_LEARNERS)}; got {self.learner!r}"
            )
        if self.estimator not in LOOP_ESTIMATORS:
            raise InputError(
                f"estimator must be one of {list(LOOP_ESTIMATORS)}; got {self.estimator!r}"
            )

    @classmethod
    def from_toml(cls, path: str | Path, **overrides: Any) -> LoopConfig:
        """Read ``[loop]`` from a TOML file; unknown keys are errors listing the valid ones."""
        try:
            raw = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise InputError(f"cannot read {path}: {exc}") from None
        extra = sorted(set(raw) - {"loop"})
        if extra:
            raise InputError(f"{path}: unknown section or key {extra[0]!r}; valid: ['loop']")
        return cls.from_dict({**raw.get("loop", {}), **overrides}, where=str(path))

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str = "loop config") -> LoopConfig:
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(raw) - set(valid))
        if unknown:
            raise InputError(f"{where}: unknown key {unknown[0]!r}; valid keys: {valid}")
        return cls(**raw)


@dataclass(frozen=True)
class RoundResult:
    """One round of the loop (see the module docstring)."""

    round: int
    serving: str
    true_ctr: float
    observed_ctr: float
    n_logged: int
    candidate_true_ctr: float
    estimate: float
    low: float
    high: float
    balanced_ips: float
    deployed: bool
    worse_deployed: bool


def _start_server(model: Path, log: Path, token: str) -> tuple[subprocess.Popen[bytes], str]:
    ready = log.parent / "server-ready.json"
    ready.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "offrec.cli",
        "serve",
        str(model),
        "--log",
        str(log),
        "--port",
        "0",
        "--ready-file",
        str(ready),
        "--window",
        "3600",
        "--compact-every",
        "3600",
        "--seed",
        "0",
    ]
    errors = open(log.parent / "server.stderr", "w")  # noqa: SIM115 - the child keeps it
    env = {**os.environ, "OFFREC_SERVE_TOKEN": token}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=errors, env=env)
    deadline = time.monotonic() + 120
    while not ready.is_file():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(
                f"offrec serve did not start: {(log.parent / 'server.stderr').read_text()}"
            )
        time.sleep(0.05)
    return proc, json.loads(ready.read_text())["url"]


async def _round_traffic(
    url: str, token: str, obs: np.ndarray, clicks_for: Any, concurrency: int
) -> tuple[np.ndarray, np.ndarray]:
    """Users ask over HTTP, click, send their clicks back; (decision ids, items)."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"}
    n = obs.shape[0]
    ids = np.zeros(n, np.int64)
    items = np.zeros(n, np.int64)
    sem = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=limits, timeout=30
    ) as client:

        async def ask(i: int) -> None:
            async with sem:
                r = await client.post(
                    "/v1/recommend", json={"context": obs[i].tolist(), "user_id": i}
                )
                r.raise_for_status()
                d = r.json()
                ids[i], items[i] = d["decision_id"], d["items"][0]

        await asyncio.gather(*(ask(i) for i in range(n)))
        clicked = clicks_for(items)

        async def click(i: int) -> None:
            async with sem:
                r = await client.post(
                    "/v1/feedback", json={"decision_id": int(ids[i]), "reward": 1}
                )
                r.raise_for_status()

        await asyncio.gather(*(click(int(i)) for i in np.flatnonzero(clicked)))
    return ids, clicked


def run_loop(config: LoopConfig, out: str | Path, *, progress: Any = None) -> list[RoundResult]:
    """Run the closed loop into ``out`` (module docstring); return the rounds and write
    ``out/loop.json`` and ``out/report.md``."""
    import httpx

    from offrec.core.policy import Head, UniformPolicy
    from offrec.logs.reader import read_logs
    from offrec.ope import estimate_policy_value, evaluate
    from offrec.policies.logged import fit_logged
    from offrec.policies.persist import save_policy
    from offrec.policies.registry import make_learner
    from offrec.recommend import write_world
    from offrec.serve.model import model_version
    from offrec.sim import World, WorldConfig

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    world = World(WorldConfig(n_items=config.n_items, n_users=config.n_users), seed=config.seed)
    rng = np.random.default_rng(config.seed)
    model_dir = out / "models" / "round-0-uniform"
    serving: Any = UniformPolicy(world.n_actions)
    save_policy(serving, model_dir, overwrite=True)
    write_world(model_dir, world)
    serving_version = model_version(model_dir)
    loggers = {serving_version: serving}
    token = secrets.token_hex(16)
    log_dir = out / "log"
    proc, url = _start_server(model_dir, log_dir, token)
    admin = {"Authorization": f"Bearer {token}"}
    results: list[RoundResult] = []
    try:
        for r in range(1, config.rounds + 1):
            batch = world.new_sessions(config.users_per_round, rng)
            obs = world.observe(batch)
            coin = rng.random(config.users_per_round)

            def clicks_for(
                items: np.ndarray, batch: Any = batch, coin: np.ndarray = coin
            ) -> np.ndarray:
                return coin < world.click_prob(batch, items)

            _, clicked = asyncio.run(
                _round_traffic(url, token, obs, clicks_for, config.concurrency)
            )
            httpx.post(
                f"{url}/v1/admin/compact", json={"force": True}, headers=admin, timeout=120
            ).raise_for_status()
            data = read_logs(log_dir)
            split = holdout_rows(data.session_id, config.seed, config.holdout)
            train, test = data.subset(~split), data.subset(split)
            learner = make_learner(config.learner, world.n_actions, world.context_dim)
            fit_logged(learner, train)
            candidate = learner.exploit(Head("epsilon_greedy", epsilon=config.epsilon))
            res = evaluate(
                test,
                {"candidate": candidate, "serving": serving},
                estimators=[config.estimator],
                interval="bootstrap",
                seed=config.seed + r,
                alpha=config.alpha,
            )
            lift = res.compare("candidate", "serving", estimator=config.estimator)
            versions = np.asarray(read_version_column(log_dir, data))[split]
            balanced = balanced_value(test, candidate, loggers, versions, estimate_policy_value)
            true_serving = world.true_value(serving).value
            true_candidate = world.true_value(candidate).value
            deploy = bool(lift.low > 0)
            row = RoundResult(
                r,
                serving_version,
                true_serving,
                float(clicked.mean()),
                data.n_rows,
                true_candidate,
                lift.value,
                lift.low,
                lift.high,
                balanced,
                deploy,
                deploy and true_candidate < true_serving,
            )
            if deploy:
                model_dir = out / "models" / f"round-{r}-{config.learner}"
                save_policy(candidate, model_dir, overwrite=True)
                write_world(model_dir, world)
                httpx.post(
                    f"{url}/v1/admin/deploy",
                    json={"model": str(model_dir)},
                    headers=admin,
                    timeout=120,
                ).raise_for_status()
                serving_version = model_version(model_dir)
                loggers[serving_version] = candidate
                serving = candidate
            results.append(row)
            if progress is not None:
                progress(row)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    final = {"serving_true_ctr": world.true_value(serving).value}
    (out / "loop.json").write_text(
        json.dumps(
            {"config": asdict(config), "rounds": [asdict(x) for x in results], **final}, indent=2
        )
    )
    (out / "report.md").write_text(report(config, results, final["serving_true_ctr"]))
    return results


HOLDOUT_SALT = 0x5E7E
"""Salt of the holdout hash (:func:`holdout_rows`)."""


def holdout_rows(decision_ids: np.ndarray, seed: int, share: float) -> np.ndarray:
    """(n,) bool: the rows kept out of training, a pure function of ``(seed, decision id)``
    (:func:`offrec.core.hashing.hash_uniform` below ``share``).

    A decision is in the holdout in *every* round or in none, so no policy the loop
    evaluates (neither the candidate nor the serving policy, trained in an earlier round)
    was fitted on a holdout row. A fresh random split per round would let the serving
    policy be scored on rows it was trained on, where its estimate is optimistic, and the
    candidate's lift would come out biased low: the loop would decline improvements."""
    from offrec.core.hashing import hash_uniform, row_keys

    return hash_uniform(row_keys(np.asarray(decision_ids)), seed, HOLDOUT_SALT) < share


def read_version_column(log_dir: Path, data: Any) -> list[str]:
    """The ``model_version`` of each row of ``data`` (read from ``log_dir`` in the same
    order as :func:`offrec.logs.read_logs`)."""
    import pyarrow.parquet as pq

    from offrec.logs.reader import log_files
    from offrec.logs.schema import MODEL_VERSION

    out: list[str] = []
    for f in log_files(log_dir):
        out += pq.read_table(f, columns=[MODEL_VERSION]).column(0).to_pylist()
    if len(out) != data.n_rows:  # pragma: no cover - same files, same order
        raise InputError("model_version column does not line up with the log's rows")
    return out


def balanced_value(
    data: Any, target: Any, loggers: dict[str, Any], versions: np.ndarray, estimate: Any
) -> float:
    r"""Balanced IPS of ``target`` on ``data``: the weight against
    :math:`\pi_{avg} = \sum_k \rho_k \pi_k`, the deployed loggers mixed by their share of rows."""
    names, counts = np.unique(versions, return_counts=True)
    rows = np.arange(data.n_rows)
    avg = np.zeros(data.n_rows)
    for name, n in zip(names, counts, strict=True):
        avg += (n / data.n_rows) * loggers[str(name)].action_dist(data.context)[rows, data.action]
    return float(
        estimate(
            "multi-balanced-ips",
            reward=data.reward,
            action=data.action,
            pscore=data.pscore,
            pscore_avg=avg,
            action_dist=target.action_dist(data.context),
        )
    )


def report(config: LoopConfig, rounds: list[RoundResult], final_ctr: float) -> str:
    """The loop's Markdown report: one line per round."""
    lines = [
        "# Closed loop",
        "",
        f"seed {config.seed}, {config.rounds} rounds of {config.users_per_round} users over HTTP, "
        f"{config.n_items} items; learner {config.learner} (epsilon {config.epsilon}); "
        f"deploy when the lower bound of the {1 - config.alpha:.0%} interval of the paired "
        f"{config.estimator} lift on a {config.holdout:.0%} holdout is > 0.",
        "",
        "| round | serving | true CTR | users' CTR | rows logged | candidate true CTR | "
        "estimated lift [interval] | true lift | balanced IPS of candidate | deployed |",
        "|---:|---|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for x in rounds:
        flag = " (truly worse!)" if x.worse_deployed else ""
        lines.append(
            f"| {x.round} | {x.serving} | {x.true_ctr:.4f} | {x.observed_ctr:.4f} | {x.n_logged} | "
            f"{x.candidate_true_ctr:.4f} | {x.estimate:+.4f} [{x.low:+.4f}, {x.high:+.4f}] | "
            f"{x.candidate_true_ctr - x.true_ctr:+.4f} | {x.balanced_ips:.4f} | "
            f"{'yes' + flag if x.deployed else 'no'} |"
        )
    lines += ["", f"true CTR of the policy serving at the end: {final_ctr:.4f}", ""]
    return "\n".join(lines)


__all__ = ["LoopConfig", "RoundResult", "balanced_value", "holdout_rows", "report", "run_loop"]
