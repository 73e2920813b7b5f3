"""Offline RL training speed: d3rlpy's default against offrec's training setup, and
torch's thread count.

Run: ``.venv/bin/python -m benchmarks.bench_rl`` (add ``--threads`` for the 1-vs-2 thread
table, ``--threads-only`` for that table alone, ``--steps N`` to change the measured steps
per configuration, ``--compile`` for a row with ``torch.compile``'d Q-networks).

Data: a softmax-logger log of 100,000 decisions in the default session world
(``WorldConfig(horizon=10)``: 100 items, context dim 18). Training: batch 256, the
default ``RLConfig`` network (a (128, 128) MLP), one torch thread. Per algorithm:

- ``d3rlpy default``: d3rlpy's own ``ReplayBuffer`` sampler, float32 matmuls, d3rlpy's
  Adam and Q-function (``RLConfig(matmul_precision="highest", fused_adam=False,
  lean_q_function=False, sampler="default")``): the reference of the ratios;
- ``offrec sampler``: the same with offrec's vectorized sampler;
- ``+ bf16 matmul, fused Adam``: also bfloat16 matmuls during the update
  (``matmul_precision="medium"``) and a fused Adam (``fused_adam=True``);
- ``+ lean Q-function``: also the lean Q-function (``lean_q_function=True``,
  :mod:`offrec.rl.qfunction`: a repeated forward on the same batch shared, ``gather``
  for ``Q(s, a)``, one Huber op);
- ``offrec (default RLConfig)``: all of it, run as ``train_rl`` runs it: the batch
  handed to d3rlpy as tensors (``VectorizedReplayBuffer.sample_torch_batch``, then
  :func:`offrec.rl.q_learning.gradient_step`), without d3rlpy's per-step conversion;
- with ``--compile``, ``+ torch.compile Q-nets``: the default ``RLConfig`` with every
  Q-network compiled in place (``nn.Module.compile``, inductor, CPU); the first update's
  time (the compilation) is printed.

d3rlpy's own ``compile_graph=True`` is not a row: in d3rlpy 2.8.1 it applies only on a
CUDA device (``algo.compiled`` is ``compile_graph and "cuda" in device``), so on CPU it
changes nothing. Compiling the Q-networks ourselves was slower than not in every run
(before the lean Q-function, load 2.3: DQN 1.61 ms vs 1.44 ms median step, CQL 2.31 vs
2.11 ms, 23 s of compilation first; float32 matmuls compiled 1.72 / 2.52 ms; with it,
load 5.4: 1.85 vs 1.38 ms and 2.16 vs 1.58 ms, 20 s; with tensor batches too, load 3:
1.48 vs 1.16 ms and 2.67 vs 1.63 ms, 15 s cold for the first algorithm, 0.4 s for the
second). Each compiled call pays guard checks and a runtime wrapper, which eat what
fusing the bias and ReLU saves; the matrix products (extern kernels either way) are over
half of an update's CPU time.

The setups are measured in interleaved blocks of 50 steps inside one process, so a
change of load on the (shared) machine hits all of them alike. "sample" is the time to
draw a batch of 256 transitions (as numpy arrays, or as tensors for the last row),
"update" the time of ``gradient_step(algo, batch)`` (``algo.update(batch)`` for numpy
batches: conversion, forward, backward, Adam); steps/s is the number of steps over their
total time.

Two torch threads on this 2-core machine, while other jobs ran, made each step 30-40x
slower than one (the two OpenMP threads wait for each other at every barrier while the
scheduler hands their core to other processes): offrec trains with
``RLConfig.n_threads = 1`` by default (``--threads`` measures it again).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._table import print_table

BLOCK = 50


def _data(tmp: Path, n_rows: int) -> Any:
    import offrec.rl  # noqa: F401  (imports d3rlpy quietly first)
    from offrec.logs import collect, read_logs
    from offrec.policies.loggers import logging_policy
    from offrec.sim import World, WorldConfig

    world = World(WorldConfig(horizon=10), seed=0)
    collect(world, logging_policy(world, "softmax"), out=tmp / "log", n_decisions=n_rows, seed=0)
    return read_logs(tmp / "log")


# algo, buffer, torch threads, float32 matmul precision, torch batches (as train_rl) or not
Run = tuple[Any, Any, int, str, bool]


def _measure(runs: dict[str, Run], steps: int, batch_size: int) -> dict[str, dict[str, np.ndarray]]:
    """Interleaved blocks: for each name, (algo, buffer, threads, precision, torch batches)
    -> per-step timings (ms). The precision is set around the update only, as ``train_rl``
    does; with torch batches the step is ``train_rl``'s (``buffer.sample_torch_batch``, then
    ``gradient_step``), else ``algo.update(buffer.sample_transition_batch(...))``."""
    import torch

    from offrec.rl.config import matmul_precision
    from offrec.rl.q_learning import gradient_step

    def sampler(buf: Any, torch_batches: bool) -> Any:
        return buf.sample_torch_batch if torch_batches else buf.sample_transition_batch

    out: dict[str, dict[str, list[float]]] = {n: {"sample": [], "update": []} for n in runs}
    for algo, buf, n_threads, precision, torch_batches in runs.values():  # warm-up
        torch.set_num_threads(n_threads)
        for _ in range(10):
            with matmul_precision(precision):
                gradient_step(algo, sampler(buf, torch_batches)(batch_size))
    for _ in range(max(1, steps // BLOCK)):
        for name, (algo, buf, n_threads, precision, torch_batches) in runs.items():
            torch.set_num_threads(n_threads)
            sample = sampler(buf, torch_batches)
            for _ in range(BLOCK):
                t0 = time.perf_counter()
                batch = sample(batch_size)
                t1 = time.perf_counter()
                with matmul_precision(precision):
                    gradient_step(algo, batch)
                t2 = time.perf_counter()
                out[name]["sample"].append((t1 - t0) * 1e3)
                out[name]["update"].append((t2 - t1) * 1e3)
    torch.set_num_threads(1)
    return {n: {k: np.asarray(v) for k, v in d.items()} for n, d in out.items()}


def _compile_q_functions(algo: Any) -> None:
    """``torch.compile`` every Q-network (online and target) in place (``nn.Module.compile``,
    parameter names unchanged): the only route to inductor on CPU, as d3rlpy 2.8.1's
    ``compile_graph=True`` applies on CUDA devices only (``algo.compiled`` is False on CPU)."""
    for module in [*algo.impl.q_function, *algo.impl.modules.targ_q_funcs]:
        module.compile()


def _sampler_table(tr: Any, steps: int, batch: int, compile_row: bool = False) -> None:
    from offrec.rl import RLConfig, VectorizedReplayBuffer, to_replay_buffer
    from offrec.rl.config import build_algo, matmul_precision
    from offrec.rl.q_learning import gradient_step

    t = time.perf_counter()
    default_buf = to_replay_buffer(tr)
    t_d3 = time.perf_counter() - t
    vec_buf = VectorizedReplayBuffer(tr, seed=0)
    runs: dict[str, Run] = {}
    plain = {"matmul_precision": "highest", "fused_adam": False, "lean_q_function": False}
    variants = {  # name -> (buffer, RLConfig overrides, torch batches)
        "d3rlpy default": (default_buf, plain, False),
        "offrec sampler": (vec_buf, plain, False),
        "+ bf16 matmul, fused Adam": (vec_buf, {"lean_q_function": False}, False),
        "+ lean Q-function": (vec_buf, {}, False),
        "offrec (default RLConfig)": (vec_buf, {}, True),
    }
    if compile_row:
        variants["+ torch.compile Q-nets"] = (vec_buf, {}, True)
    compile_s: dict[str, float] = {}
    for algo_name in ("dqn", "cql"):
        for variant, (buf, overrides, torch_batches) in variants.items():
            cfg = RLConfig(algo=algo_name, **overrides)  # type: ignore[arg-type]
            algo = build_algo(cfg)
            algo.create_impl((tr.observation_dim,), tr.n_actions)
            if variant.startswith("+ torch.compile"):
                _compile_q_functions(algo)
                t = time.perf_counter()
                with matmul_precision(cfg.matmul_precision):  # compiles on first call
                    gradient_step(algo, buf.sample_torch_batch(batch))
                compile_s[algo_name] = time.perf_counter() - t
            runs[f"{algo_name}/{variant}"] = (
                algo,
                buf,
                1,
                cfg.matmul_precision,
                torch_batches,
            )
    res = _measure(runs, steps, batch)
    rows = []
    for name, d in res.items():
        algo_name, variant = name.split("/")
        step_ms = d["sample"] + d["update"]
        rows.append(
            [
                algo_name,
                variant,
                float(np.median(d["sample"])),
                float(np.median(d["update"])),
                float(np.median(step_ms)),
                1e3 * step_ms.size / step_ms.sum(),
            ]
        )
    print(f"\nd3rlpy ReplayBuffer from the log's episodes: {t_d3:.2f} s")
    for algo_name, seconds in compile_s.items():
        print(f"{algo_name}: torch.compile of the Q-nets, first update: {seconds:.1f} s")
    print_table(
        f"Training steps/s, batch {batch}, 100 items, context dim 18, default RLConfig "
        f"network, 1 thread ({steps // BLOCK * BLOCK} steps each, interleaved)",
        [
            "algo",
            "setup",
            "sample ms (median)",
            "update ms (median)",
            "step ms (median)",
            "steps/s (mean)",
        ],
        rows,
    )

    def total(d: dict[str, np.ndarray]) -> float:
        return float(d["sample"].sum() + d["update"].sum())

    for algo_name in ("dqn", "cql"):
        base = total(res[f"{algo_name}/d3rlpy default"])
        ratios = ", ".join(
            f"{v} {base / total(res[f'{algo_name}/{v}']):.2f}x" for v in list(variants)[1:]
        )
        print(f"{algo_name}: steps/s vs d3rlpy default: {ratios}")


def _threads_table(tr: Any, steps: int, batch: int) -> None:
    from offrec.rl import RLConfig, VectorizedReplayBuffer
    from offrec.rl.config import build_algo

    vec_buf = VectorizedReplayBuffer(tr, seed=0)
    runs: dict[str, Run] = {}
    for algo_name in ("dqn", "cql"):
        algo = build_algo(RLConfig(algo=algo_name))
        algo.create_impl((tr.observation_dim,), tr.n_actions)
        for n_threads in (1, 2):
            runs[f"{algo_name}/{n_threads}"] = (algo, vec_buf, n_threads, "medium", True)
    res = _measure(runs, steps, batch)
    rows = []
    for name, d in res.items():
        algo_name, threads_text = name.split("/")
        step_ms = d["sample"] + d["update"]
        rows.append(
            [
                algo_name,
                int(threads_text),
                float(np.median(step_ms)),
                float(np.percentile(step_ms, 90)),
                float(np.percentile(step_ms, 99)),
                float(step_ms.max()),
                1e3 * step_ms.size / step_ms.sum(),
            ]
        )
    print_table(
        f"torch threads (offrec sampler, batch {batch}; interleaved blocks of {BLOCK} steps)",
        ["algo", "threads", "median ms", "p90 ms", "p99 ms", "max ms", "steps/s (mean)"],
        rows,
    )


def main(
    steps: int = 600,
    n_rows: int = 100_000,
    threads: bool = False,
    samplers: bool = True,
    compile_row: bool = False,
) -> None:
    from offrec.rl import to_transitions

    tmp = Path(tempfile.mkdtemp(prefix="offrec-bench-rl-"))
    try:
        data = _data(tmp, n_rows)
        t = time.perf_counter()
        tr = to_transitions(data)
        print(
            f"log -> Transitions ({tr.n_transitions:,} rows, {tr.n_episodes:,} sessions): "
            f"{time.perf_counter() - t:.4f} s"
        )
        if samplers:
            _sampler_table(tr, steps, 256, compile_row)
        if threads:
            _threads_table(tr, steps, 256)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600, help="measured steps per configuration")
    parser.add_argument("--rows", type=int, default=100_000, help="logged decisions")
    parser.add_argument("--threads", action="store_true", help="also compare 1 vs 2 torch threads")
    parser.add_argument("--threads-only", action="store_true", help="only the threads table")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="add a row with torch.compile'd Q-networks (and print the compile time)",
    )
    args = parser.parse_args()
    main(
        args.steps,
        args.rows,
        args.threads or args.threads_only,
        not args.threads_only,
        args.compile,
    )
