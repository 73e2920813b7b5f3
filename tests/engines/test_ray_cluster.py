"""A real two-node Ray cluster made with ``ray start`` on this machine: ``offrec evaluate
--engine ray --ray-address`` and ``offrec train bandit --engine ray`` against it give the
local engine's numbers, and the test stops exactly the processes it started.

The commands are the README's cluster recipe ("Logs of any size: engines"), word for
word (:data:`RECIPE`, checked against the README by a fast test); the test only adds
flags that put two nodes on one machine without touching anyone else's Ray: a private
``--temp-dir`` and port, ``--node-ip-address 127.0.0.1``, and ``--block`` so that each
node is one process group, stopped by its group id (never ``ray stop``, which stops every
Ray on the machine).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

# The README's recipe; $HEAD, $PORT, $TOKEN_FILE, $LOG, $MODEL, $OUT are shell variables.
RECIPE = {
    "token": "python -c 'import secrets; print(secrets.token_hex(32))' > $TOKEN_FILE",
    "auth": "export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$TOKEN_FILE",
    "head": "ray start --head --port $PORT --num-cpus 1",
    "worker": "ray start --address $HEAD:$PORT --num-cpus 1",
    "evaluate": "offrec evaluate $LOG --policy $MODEL --engine ray --ray-address $HEAD:$PORT",
    "train": "RAY_ADDRESS=$HEAD:$PORT offrec train bandit $LOG --learner linucb --engine ray --out $OUT",
}
# added by the test only (see the module docstring)
HEAD_EXTRA = "--include-dashboard false"
NODE_EXTRA = "--node-ip-address 127.0.0.1 --temp-dir {temp} --disable-usage-stats --block"


def test_readme_holds_the_recipe_this_test_runs() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("### Logs of any size: engines", 1)[1].split("\n### ", 1)[0]
    for name, line in RECIPE.items():
        assert line in section, f"README's cluster recipe lacks the {name} line: {line}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop_group(proc: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    """SIGTERM the process group the test started (``ray start --block`` and the Ray
    processes it spawned), SIGKILL what is left of that group after ``grace`` s, then wait
    (up to 30 s) until the group is gone."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 30.0)):
        if not _group_alive(proc.pid):
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        deadline = time.monotonic() + wait
        while _group_alive(proc.pid) and time.monotonic() < deadline:
            proc.poll()  # reap the group leader (our child)
            time.sleep(0.5)
    proc.wait(timeout=30)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


class Cluster:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = _free_port()
        self.token = root / "token"
        self.env = {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "HEAD": "127.0.0.1",
            "PORT": str(self.port),
            "TOKEN_FILE": str(self.token),
        }
        self.env.pop("RAY_ADDRESS", None)
        self.nodes: list[subprocess.Popen[bytes]] = []

    def sh(self, *lines: str, **env: str) -> subprocess.CompletedProcess[str]:
        script = "\n".join(["set -e", RECIPE["auth"], *lines])
        return subprocess.run(
            ["bash", "-c", script],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=600,
        )

    def start_node(self, line: str, extra: str, name: str) -> None:
        log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 - kept open for the node
        script = "\n".join([RECIPE["auth"], f"exec {line} {extra}"])
        self.nodes.append(
            subprocess.Popen(
                ["bash", "-c", script],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )

    def alive_nodes(self) -> int:
        out = self.sh("ray status --address $HEAD:$PORT")
        active = out.stdout.split("Active:", 1)[-1].split("Pending:", 1)[0]
        return len(re.findall(r"\bnode_[0-9a-f]+", active)) if out.returncode == 0 else 0


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    if shutil.which("ray", path=str(BIN)) is None:
        pytest.skip("the ray extra is not installed (pip install 'offrec[ray]')")
    # a short path: Ray's Unix sockets live under --temp-dir (107-byte limit)
    root = Path(tempfile.mkdtemp(prefix="offrec-ray-", dir="/tmp"))
    c = Cluster(root)
    try:
        assert c.sh(RECIPE["token"]).returncode == 0
        c.start_node(RECIPE["head"], f"{HEAD_EXTRA} {NODE_EXTRA.format(temp=root / 'h')}", "head")
        deadline = time.monotonic() + 180
        while c.alive_nodes() < 1:
            assert c.nodes[0].poll() is None, (root / "head.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the head node did not come up in 180 s"
            time.sleep(2)
        c.start_node(RECIPE["worker"], NODE_EXTRA.format(temp=root / "w"), "worker")
        while c.alive_nodes() < 2:
            assert c.nodes[1].poll() is None, (root / "worker.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the worker node did not join in 180 s"
            time.sleep(2)
        yield c
    finally:
        for node in reversed(c.nodes):  # the worker first: the head drains it otherwise
            _stop_group(node)
        left = [p.pid for p in c.nodes if _group_alive(p.pid)]
        shutil.rmtree(root, ignore_errors=True)
        assert not left, f"process groups still alive after the test: {left}"


@pytest.mark.slow
def test_two_node_cluster_gives_the_local_numbers(cluster: Cluster) -> None:
    root = cluster.root
    log, model = root / "log", root / "linucb"
    ok = cluster.sh(
        f"offrec -q simulate --out {log} --n-decisions 20000 --n-items 20 --seed 1 --policy uniform",
        f"offrec -q train bandit {log} --learner linucb --head epsilon_greedy:0.1 --out {model}",
        f"offrec -q evaluate {log} --policy {model} --estimators ips,snips,dr --json {root / 'local.json'}",
    )
    assert ok.returncode == 0, ok.stderr
    assert cluster.alive_nodes() == 2
    env = {"LOG": str(log), "MODEL": str(model), "OUT": str(root / "linucb-ray")}
    ran = cluster.sh(
        f"{RECIPE['evaluate']} -q --estimators ips,snips,dr --json {root / 'ray.json'}", **env
    )
    assert ran.returncode == 0, ran.stderr
    local = json.loads((root / "local.json").read_text())["estimates"]
    remote = json.loads((root / "ray.json").read_text())["estimates"]
    assert [e["estimator"] for e in remote] == ["ips", "snips", "dr"]
    for a, b in zip(local, remote, strict=True):
        for col in ("value", "stderr", "ess", "max_weight"):
            np.testing.assert_allclose(b[col], a[col], rtol=1e-9, err_msg=col)
        for col in ("low", "high"):  # bootstrap: float32 block products round ~1e-7
            np.testing.assert_allclose(b[col], a[col], rtol=1e-6, err_msg=col)
    print(
        "\n2 nodes alive; ray cluster vs local engine (value):",  # shown with pytest -s
        ", ".join(
            f"{b['estimator']} {b['value']!r} vs {a['value']!r}"
            for a, b in zip(local, remote, strict=True)
        ),
    )
    ran = cluster.sh(f"{RECIPE['train']} -q --head epsilon_greedy:0.1", **env)
    assert ran.returncode == 0, ran.stderr
    files = sorted(f for f in model.iterdir() if not f.name.startswith("."))  # not the manifest
    assert {f.name for f in files} >= {"policy.json", "arrays.npz"}
    for f in files:  # the streamed ridge sums: the same model, byte for byte
        assert (root / "linucb-ray" / f.name).read_bytes() == f.read_bytes(), f.name
    assert cluster.alive_nodes() == 2  # both nodes stayed up throughout
