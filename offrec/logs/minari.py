r"""Farama Minari datasets (``pip install 'offrec[minari]'``): a session log written as a
Minari dataset (:func:`export_minari`) and a discrete-action Minari dataset read as a log
(:func:`import_minari`). d3rlpy, TorchRL and other offline RL libraries read Minari.

Layout of an exported dataset (one Minari episode per session, ``T`` steps):

=====================  ===================================================================
Minari field           offrec log
=====================  ===================================================================
``observations``       ``context`` of the ``T`` rows, (T + 1, d) float32; the log has no
                       observation after the last step, so the last context is repeated
                       (row ``T``; :func:`import_minari` drops it)
``actions``            ``action``, (T,) int64, a ``Discrete(n_actions)`` space
``rewards``            ``reward``, (T,) float64
``terminations``       ``terminated``; ``truncations``: ``truncated``, (T,) bool
``infos["pscore"]``    ``pscore``, (T + 1,) float64: entry ``t`` is the logging policy's
                       probability of the action taken at observation ``t`` (Minari keeps
                       one info per observation); entry ``T`` is nan (no action there)
``infos[...]``         ``session_id``, ``step``, ``user_id``, ``position`` (int64) and, when
                       the log has them, ``logging_dist`` (T + 1, n_actions) float32 and
                       ``true_ctr``; their entry ``T`` repeats entry ``T - 1``
=====================  ===================================================================

The dataset's metadata (``data/metadata.json``) carries the log's offrec metadata (world
config, logging policy, seed, reward domain) as JSON under ``offrec_metadata``; an
import restores it.

Where datasets live: Minari keeps dataset ``ID`` (``[namespace/]name-v<k>``) at
``ROOT/ID`` with ``ROOT`` the ``MINARI_DATASETS_PATH`` environment variable, else
``~/.minari/datasets``; ``minari.load_dataset(ID)`` reads it from there, offline.
:func:`export_minari` writes to ``root/ID`` (``root`` defaults to that same place) and
:func:`import_minari` takes an ``ID`` (looked up there) or the path of a dataset folder.

Memory: export streams whole sessions batch by batch (Minari's writers take one episode
at a time, so there is one Python step per episode, not per row); import holds the
imported log in memory, as the other importers do.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from offrec.core.errors import InputError, OutputExistsError
from offrec.logs.data import LoggedData

INFO_KEYS = ("session_id", "step", "user_id", "position")
"""Integer row keys carried in each episode's ``infos`` (so a round trip is row for row)."""

_EPISODES_PER_WRITE = 1024  # episodes handed to Minari's writer at once


def require_minari() -> Any:
    try:
        import minari
    except ImportError:
        raise InputError(
            "Minari support needs the minari package: pip install 'offrec[minari]'"
        ) from None
    return minari


def datasets_root(root: str | Path | None = None) -> Path:
    """Where Minari keeps datasets: ``root``, else ``MINARI_DATASETS_PATH``, else
    ``~/.minari/datasets`` (Minari's own rule)."""
    if root is not None:
        return Path(root)
    env = os.environ.get("MINARI_DATASETS_PATH")
    return Path(env) if env else Path.home() / ".minari" / "datasets"


def check_dataset_id(dataset_id: str) -> str:
    """``dataset_id`` if Minari accepts it (``[namespace/]name-v<k>``), else InputError."""
    require_minari()
    from minari.dataset.minari_dataset import parse_dataset_id

    try:
        parse_dataset_id(dataset_id)
        if any(part in ("", ".", "..") for part in dataset_id.split("/")):
            raise ValueError("empty, '.' or '..' parts would leave the datasets folder")
    except (ValueError, AssertionError) as exc:
        raise InputError(
            f"Minari dataset id must look like [namespace/]name-v0; got {dataset_id!r} ({exc})"
        ) from None
    return dataset_id


@dataclass(frozen=True)
class MinariSummary:
    """What an export or import did."""

    dataset: str
    path: Path
    episodes: int
    steps: int
    propensities: bool

    def line(self) -> str:
        has = "with" if self.propensities else "without"
        return f"{self.episodes:,} episodes ({self.steps:,} steps) {has} propensities"


def export_minari(
    log: str | Path,
    dataset_id: str,
    *,
    root: str | Path | None = None,
    overwrite: bool = False,
    data_format: str = "hdf5",
    batch_size: int = 65_536,
) -> MinariSummary:
    """Write the log at ``log`` as the Minari dataset ``dataset_id`` under ``root``
    (module docstring: layout, and where ``root`` defaults to).

    The dataset is written to a temporary folder beside ``root/dataset_id`` and renamed
    into place when complete: a failed export leaves nothing behind. ``overwrite``
    replaces an existing dataset folder only if offrec wrote it (its metadata says so).

    Raises:
        InputError: a bad id, a log that cannot be read, or an existing dataset.
    """
    require_minari()
    import gymnasium as gym
    from minari.dataset.minari_storage import MinariStorage

    from offrec.logs.scan import iter_sessions, open_log

    check_dataset_id(dataset_id)
    source = open_log(log)
    out = datasets_root(root).absolute() / dataset_id  # absolute: Minari sizes files by walking
    _check_replaceable(out, overwrite)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        batches = iter_sessions(source, batch_size=batch_size, columns=list(source.columns))
        first = next(batches)
        n_actions = first.data.n_actions
        obs_space = gym.spaces.Box(-np.inf, np.inf, (first.data.context_dim,), np.float32)
        storage = MinariStorage.new(
            tmp / "data",
            observation_space=obs_space,
            action_space=gym.spaces.Discrete(n_actions),
            data_format=data_format,
        )
        counts = {"episodes": 0, "steps": 0}

        def all_batches() -> Iterator[LoggedData]:
            yield first.data
            for b in batches:
                yield b.data

        chunk: list[Any] = []
        for data in all_batches():
            for episode in _episodes(data, counts["episodes"]):
                chunk.append(episode)
                counts["episodes"] += 1
                counts["steps"] += len(episode.rewards)
                if len(chunk) >= _EPISODES_PER_WRITE:
                    storage.update_episodes(chunk)
                    chunk = []
        if chunk:
            storage.update_episodes(chunk)
        import minari

        storage.update_metadata(
            {
                "dataset_id": dataset_id,
                "minari_version": minari.__version__,
                "algorithm_name": "offrec logging policy",
                "author": {"offrec"},
                "description": "An offrec log exported by `offrec export --format minari`: "
                "one episode per session; the logging propensities are in infos['pscore'].",
                "offrec_metadata": json.dumps(_jsonable(source.metadata)),
            }
        )
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return MinariSummary(dataset_id, out, counts["episodes"], counts["steps"], True)


def _jsonable(meta: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in meta.items():
        try:
            json.dumps(v)
        except TypeError:
            v = str(v)
        out[k] = v
    return out


def _check_replaceable(out: Path, overwrite: bool) -> None:
    if not out.exists():
        return
    if not overwrite:
        raise OutputExistsError(
            f"Minari dataset folder {out} already exists; pass --overwrite to replace it"
        )
    meta = out / "data" / "metadata.json"
    try:
        written = "offrec_metadata" in json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        written = False
    if not written:
        raise OutputExistsError(
            f"{out} holds something offrec did not write (no offrec_metadata in "
            f"{meta.name}); not replacing it"
        )


def _episodes(data: LoggedData, first_id: int) -> Iterator[Any]:
    """One Minari ``EpisodeBuffer`` per session of ``data`` (whole sessions, in order)."""
    from minari.data_collector import EpisodeBuffer

    sid = data.session_id
    starts = np.flatnonzero(np.concatenate([[True], sid[1:] != sid[:-1]]))
    stops = np.append(starts[1:], data.n_rows)
    # one extra entry per session (Minari: T + 1 observations and infos): the rows of
    # ``data`` with each session's last row repeated, built once for the whole batch
    ext = np.insert(np.arange(data.n_rows), stops, stops - 1)
    ext_starts = starts + np.arange(starts.size)
    context = np.asarray(data.context, np.float32)[ext]
    pscore = data.pscore[ext].astype(np.float64)
    pscore[ext_starts + (stops - starts)] = np.nan  # no action at the final observation
    infos: dict[str, np.ndarray] = {
        k: np.asarray(getattr(data, k), np.int64)[ext] for k in INFO_KEYS
    }
    infos["pscore"] = pscore
    if data.logging_dist is not None:
        infos["logging_dist"] = np.asarray(data.logging_dist, np.float32)[ext]
    if data.true_ctr is not None:
        infos["true_ctr"] = np.asarray(data.true_ctr, np.float64)[ext]
    action = data.action.astype(np.int64)
    reward = data.reward.astype(np.float64)
    for j, (lo, hi) in enumerate(zip(starts, stops, strict=True)):
        e_lo, e_hi = int(ext_starts[j]), int(ext_starts[j] + (hi - lo) + 1)
        yield EpisodeBuffer(
            id=first_id + j,
            observations=context[e_lo:e_hi],
            actions=action[lo:hi],
            rewards=reward[lo:hi],
            terminations=data.terminated[lo:hi],
            truncations=data.truncated[lo:hi],
            infos={k: v[e_lo:e_hi] for k, v in infos.items()},
        )


def resolve_dataset(src: str | Path, root: str | Path | None = None) -> Path:
    """The ``data`` folder of the Minari dataset ``src``: a dataset folder (holding
    ``data/metadata.json``), its ``data`` folder, or a dataset id under the root."""
    p = Path(src)
    for cand in (p / "data", p):
        if (cand / "metadata.json").is_file():
            return cand
    by_id = datasets_root(root) / str(src) / "data"
    if (by_id / "metadata.json").is_file():
        return by_id
    raise InputError(
        f"no Minari dataset at {src}: neither a dataset folder (with data/metadata.json) nor "
        f"a dataset id under {datasets_root(root)}; set MINARI_DATASETS_PATH to look elsewhere"
    )


def import_minari(
    src: str | Path,
    out: str | Path,
    *,
    root: str | Path | None = None,
    uniform_pscore: bool = False,
    overwrite: bool = False,
) -> MinariSummary:
    """Read the discrete-action Minari dataset ``src`` (an id or a folder, see
    :func:`resolve_dataset`) into an offrec log at ``out`` (one session per episode).

    Observations must be a ``Box`` (flattened to the context; the final observation of
    each episode, which no action follows, is dropped) and actions ``Discrete``. The
    propensities come from ``infos["pscore"]`` (and ``infos["logging_dist"]`` when
    present); ``session_id`` / ``step`` / ``user_id`` / ``position`` from ``infos`` when
    present (a dataset offrec exported), else the episode's index, the step within the
    episode, -1 and 0. The offrec metadata of an exported log is restored.

    Without ``infos["pscore"]`` there are no propensities, and an offrec log needs them:
    the error says so and which estimators do not (DM, FQE). ``uniform_pscore`` states
    that the logger was uniform over the actions: ``pscore = 1 / n_actions``.
    """
    require_minari()
    from minari import MinariDataset

    from offrec.logs.importers import write_logged_data

    data_path = resolve_dataset(src, root)
    try:
        ds = MinariDataset(str(data_path))
    except (ValueError, KeyError, OSError) as exc:
        raise InputError(f"cannot read Minari dataset {src}: {exc}") from None
    import gymnasium as gym

    if not isinstance(ds.action_space, gym.spaces.Discrete):
        raise InputError(
            f"Minari dataset {src}: actions must be Discrete (one item per decision); "
            f"got {ds.action_space}"
        )
    if not isinstance(ds.observation_space, gym.spaces.Box):
        raise InputError(
            f"Minari dataset {src}: observations must be a Box (a context vector); "
            f"got {ds.observation_space}"
        )
    k = int(ds.action_space.n)
    parts: dict[str, list[np.ndarray]] = {}
    has_pscore = has_dist = has_keys = has_ctr = None
    for ep in ds.iterate_episodes():
        t = len(ep.rewards)
        infos = ep.infos or {}
        if has_pscore is None:
            has_pscore, has_dist = "pscore" in infos, "logging_dist" in infos
            has_keys, has_ctr = all(c in infos for c in INFO_KEYS), "true_ctr" in infos
        obs = np.asarray(ep.observations, np.float32).reshape(t + 1, -1)[:t]
        cols = {
            "context": obs,
            "action": np.asarray(ep.actions).reshape(t),
            "reward": np.asarray(ep.rewards, np.float64).reshape(t),
            "terminated": np.asarray(ep.terminations, bool).reshape(t),
            "truncated": np.asarray(ep.truncations, bool).reshape(t),
        }
        if has_keys:
            cols.update({c: np.asarray(infos[c], np.int64)[:t] for c in INFO_KEYS})
        else:
            cols.update(session_id=np.full(t, ep.id, np.int64), step=np.arange(t, dtype=np.int64))
        if has_pscore:
            if "pscore" not in infos:
                raise InputError(f"Minari dataset {src}: episode {ep.id} has no infos['pscore']")
            cols["pscore"] = np.asarray(infos["pscore"], np.float64)[:t]
        if has_dist:
            cols["logging_dist"] = np.asarray(infos["logging_dist"], np.float32)[:t]
        if has_ctr:
            cols["true_ctr"] = np.asarray(infos["true_ctr"], np.float64)[:t]
        for c, v in cols.items():
            parts.setdefault(c, []).append(v)
    if not parts:
        raise InputError(f"Minari dataset {src} has no episodes")
    if not has_pscore and not uniform_pscore:
        raise InputError(
            f"Minari dataset {src} has no propensities (infos['pscore']): IPS, SNIPS, DR, "
            "PDIS, WPDIS and the other weighted estimators need the logging policy's "
            "probability of each action, and an offrec log keeps one per row; DM and FQE "
            "do not use them. Pass --uniform-pscore if the data was logged by a uniform "
            f"random policy over the {k} actions"
        )
    col = {c: np.concatenate(v) for c, v in parts.items()}
    n = col["reward"].shape[0]
    meta = json.loads(ds.storage.metadata.get("offrec_metadata", "{}"))
    domain = meta.get("reward_domain")
    data = LoggedData.from_arrays(
        col["context"],
        col["action"],
        col["reward"],
        col["pscore"] if has_pscore else np.full(n, 1.0 / k),
        n_actions=k,
        session_id=col["session_id"],
        step=col["step"],
        position=col.get("position"),
        user_id=col.get("user_id"),
        terminated=col["terminated"],
        truncated=col["truncated"],
        logging_dist=col.get("logging_dist"),
        true_ctr=col.get("true_ctr"),
        metadata=meta,
    )
    if isinstance(domain, str):
        domain = json.loads(domain)
    if isinstance(domain, dict):
        data = dataclasses.replace(data, reward_domain=domain)
    extra = {**_carried(meta), "source": f"minari:{ds.spec.dataset_id}"}
    write_logged_data(data, out, overwrite=overwrite, extra_metadata=extra)
    return MinariSummary(str(ds.spec.dataset_id), Path(out), ds.total_episodes, n, bool(has_pscore))


def _carried(meta: dict[str, Any]) -> dict[str, Any]:
    """The exported log's metadata entries the log writer stores again (``offrec.*``)."""
    skip = {"reward_domain", "action_map", "version", "schema_version", "source"}
    return {k: v for k, v in meta.items() if k not in skip}
