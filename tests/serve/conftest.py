"""Shared fixtures of the serving tests: a small world and saved models trained in it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from offrec.core.policy import Head, UniformPolicy
from offrec.logs.reader import read_logs
from offrec.logs.writer import collect
from offrec.policies.bandits import LinUCB
from offrec.policies.logged import fit_logged
from offrec.policies.persist import save_policy
from offrec.recommend import write_world
from offrec.sim import World, WorldConfig

ROOT = Path(__file__).resolve().parents[2]


def small_world(n_items: int = 20) -> World:
    return World(WorldConfig(n_items=n_items, n_users=500), seed=0)


def save_model(folder: Path, world: World, epsilon: float, n_sessions: int = 2000) -> Path:
    """A LinUCB model with an epsilon-greedy head, trained on a uniform log of ``world``."""
    log = folder.parent / f"{folder.name}-train-log"
    collect(world, UniformPolicy(world.n_actions), out=log, n_sessions=n_sessions, seed=1)
    learner = LinUCB(world.n_actions, world.context_dim)
    fit_logged(learner, read_logs(log))
    save_policy(learner.exploit(Head("epsilon_greedy", epsilon=epsilon)), folder)
    write_world(folder, world)
    return folder


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("models")
    world = small_world()
    return {
        "a": save_model(base / "model-a", world, 0.3),
        "b": save_model(base / "model-b", world, 0.6, n_sessions=500),
    }


class Server:
    """``offrec serve`` in a real subprocess; ``url`` once it is ready."""

    def __init__(self, model: Path, log: Path, *args: str) -> None:
        self.ready = log.parent / f"ready-{time.monotonic_ns()}.json"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        # stderr to a file: a pipe nobody reads fills up (uvicorn warns on each bad request)
        self.stderr_path = self.ready.with_suffix(".stderr")
        self._stderr = open(self.stderr_path, "w")  # noqa: SIM115 - closed in stop()/kill()
        self.proc = subprocess.Popen(
            [
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
                str(self.ready),
                *args,
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            text=True,
        )
        deadline = time.monotonic() + 60
        while not self.ready.is_file():
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.stderr_path.read_text()}")
            if time.monotonic() > deadline:
                self.proc.kill()
                raise RuntimeError("server did not start in 60 s")
            time.sleep(0.05)
        self.info: dict[str, Any] = json.loads(self.ready.read_text())
        self.url: str = self.info["url"]

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self._stderr.close()

    def stop(self) -> str:
        """SIGTERM, wait; the server's stderr."""
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        self._stderr.close()
        return self.stderr_path.read_text()


def context(world: World, n: int, seed: int = 0) -> np.ndarray:
    """Start-of-session observations of ``n`` random users of ``world``."""
    return world.observe(world.new_sessions(n, np.random.default_rng(seed)))
