"""The service in process, over its ASGI app: API, validation, feedback window, compaction,
deployment, propensities."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from offrec.logs.reader import read_logs
from offrec.serve.app import make_app
from offrec.serve.compact import late_feedback_total
from offrec.serve.model import plackett_luce
from offrec.serve.service import Service, ServiceConfig
from tests.serve.conftest import context, small_world

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def parts(log: Path) -> pd.DataFrame:
    """The log's rows as pandas reads them (its part files; ``dataset.json`` sits beside them)."""
    return pd.read_parquet(sorted(log.glob("*.parquet")))


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


class Client:
    """A service and an httpx client over its app (no sockets)."""

    def __init__(self, model: Path, log: Path, **cfg: Any) -> None:
        self.service = Service(model, log, ServiceConfig(**{"window_s": 30.0, **cfg}))
        self.service.open()
        app = make_app(self.service, token=TOKEN, max_body=4096)
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")

    async def post(
        self, path: str, body: Any, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        content = body if isinstance(body, bytes | str) else json.dumps(body)
        return await self.http.post(
            path, content=content, headers=AUTH if headers is None else headers
        )

    async def close(self) -> None:
        await self.http.aclose()
        self.service.close()


def test_recommend_feedback_compaction_round_trip(models: dict[str, Path], tmp_path: Path) -> None:
    world = small_world()
    x = context(world, 40, seed=3)

    async def go() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        c = Client(models["a"], tmp_path / "log")
        answers = []
        for i, row in enumerate(x):
            r = await c.post(
                "/v1/recommend", {"context": row.tolist(), "user_id": i, "request_id": f"r{i}"}
            )
            assert r.status_code == 200, r.text
            answers.append(r.json())
        for a in answers[::3]:
            r = await c.post("/v1/feedback", {"decision_id": a["decision_id"], "reward": 1})
            assert r.json() == {"status": "joined", "decision_id": a["decision_id"]}
        await c.service.compact(force=True)
        health = (await c.http.get("/v1/health")).json()
        await c.close()
        return answers, health

    answers, health = _run(go())
    assert [a["request_id"] for a in answers] == [f"r{i}" for i in range(40)]
    table = parts(tmp_path / "log")
    assert len(table) == 40 and table.session_id.is_unique
    by_id = table.set_index("session_id")
    for a in answers:
        row = by_id.loc[a["decision_id"]]
        assert row.action == a["items"][0] and row.pscore == a["propensities"][0]
        assert row.model_version == a["model_version"] == models_version(models["a"])
    clicked = {a["decision_id"] for a in answers[::3]}
    np.testing.assert_array_equal(
        by_id.reward.to_numpy(), [float(i in clicked) for i in by_id.index]
    )
    np.testing.assert_allclose(
        np.stack(by_id.context.to_numpy()), x[np.argsort([a["decision_id"] for a in answers])]
    )
    assert health["compacted"]["feedback_joined"] == len(clicked)
    data = read_logs(tmp_path / "log")  # the log reader's checks pass
    assert data.n_rows == 40 and data.n_actions == world.n_actions


def models_version(folder: Path) -> str:
    from offrec.serve.model import model_version

    return model_version(folder)


def test_late_feedback_is_counted_not_joined(models: dict[str, Path], tmp_path: Path) -> None:
    async def go() -> list[dict[str, Any]]:
        c = Client(models["a"], tmp_path / "log", window_s=0.2, grace_s=0.0)
        r = (
            await c.post("/v1/recommend", {"context": context(small_world(), 1)[0].tolist()})
        ).json()
        await asyncio.sleep(0.4)
        late = await c.post("/v1/feedback", {"decision_id": r["decision_id"], "reward": 1})
        await c.service.compact(force=True)
        await c.close()
        return [r, late.json()]

    decision, late = _run(go())
    assert late["status"] == "late"
    df = parts(tmp_path / "log")
    assert df.reward.tolist() == [0.0]
    assert late_feedback_total(tmp_path / "log") == 1


BAD = [
    (b"{not json", 400, "body must be a JSON object"),
    (b"[1, 2]", 400, "body must be a JSON object; got list"),
    ({"context": [0.0] * 3}, 400, "context must be a list of 18 numbers; got 3 values"),
    ({"context": "abc"}, 400, "context must be a list of 18 numbers; got str"),
    ({"context": [0.0] * 17 + ["x"]}, 400, "context must hold numbers only; got 'x'"),
    (b'{"context": [' + b"0, " * 17 + b"1e400]}", 400, "number is infinity"),
    ({"context": [0.0] * 17 + [float("nan")]}, 400, "body must be a JSON object"),
    ({"context": [0.0] * 18, "k": 0}, 400, "k must be"),
    ({"context": [0.0] * 18, "k": 21}, 400, "k must be"),
    ({"context": [0.0] * 18, "k": "3"}, 400, "k must be int; got '3'"),
    ({"context": [0.0] * 18, "colour": 1}, 400, "unknown field 'colour'"),
    ({}, 400, "give exactly one of context or profile"),
    ({"profile": {"nope": 1}}, 400, "profile: unknown topic 'nope'"),
    ({"profile": {"sports": -1}}, 400, "profile['sports'] must be a finite number >= 0; got -1"),
    (b"x" * 5000, 413, "request body must be at most 4096 bytes"),
]


@pytest.mark.parametrize(("body", "status", "message"), BAD)
def test_bad_requests_get_a_clear_4xx(
    models: dict[str, Path], tmp_path: Path, body: Any, status: int, message: str
) -> None:
    async def go() -> httpx.Response:
        c = Client(models["a"], tmp_path / "log")
        r = await c.post("/v1/recommend", body)
        await c.close()
        return r

    r = _run(go())
    assert r.status_code == status and message in r.json()["error"], r.text


def test_feedback_errors_and_tokens(models: dict[str, Path], tmp_path: Path) -> None:
    async def go() -> dict[str, tuple[int, str]]:
        c = Client(models["a"], tmp_path / "log")
        d = (await c.post("/v1/recommend", {"profile": {"sports": 1.0}, "k": 2})).json()
        out = {}
        for name, path, body, headers in [
            ("unknown", "/v1/feedback", {"decision_id": d["decision_id"] + 1, "reward": 1}, None),
            ("reward", "/v1/feedback", {"decision_id": d["decision_id"], "reward": 0.5}, None),
            (
                "position",
                "/v1/feedback",
                {"decision_id": d["decision_id"], "reward": 1, "position": 2},
                None,
            ),
            ("missing", "/v1/feedback", {"reward": 1}, None),
            ("no token", "/v1/recommend", {"profile": {"sports": 1.0}}, {}),
            (
                "bad token",
                "/v1/recommend",
                {"profile": {"sports": 1.0}},
                {"Authorization": "Bearer x"},
            ),
            (
                "slot 1",
                "/v1/feedback",
                {"decision_id": d["decision_id"], "reward": 1, "position": 1},
                None,
            ),
        ]:
            r = await c.post(path, body, headers)
            out[name] = (r.status_code, r.text)
        out["health without token"] = ((await c.http.get("/v1/health")).status_code, "")
        await c.close()
        return out

    got = _run(go())
    assert got["unknown"][0] == 404 and "unknown decision_id" in got["unknown"][1]
    assert got["reward"][0] == 400 and "reward must be 0 or 1" in got["reward"][1]
    assert got["position"][0] == 400 and "position must be < k=2" in got["position"][1]
    assert got["missing"][0] == 400 and "missing field 'decision_id'" in got["missing"][1]
    assert got["no token"][0] == got["bad token"][0] == 401
    assert got["slot 1"][0] == 200 and got["health without token"][0] == 200


def test_admin_endpoints_need_a_configured_token(models: dict[str, Path], tmp_path: Path) -> None:
    async def go() -> int:
        service = Service(models["a"], tmp_path / "log")
        service.open()
        app = make_app(service)  # no token: open API, admin disabled
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as h:
            status = (await h.post("/v1/admin/deploy", content="{}")).status_code
            ok = (await h.post("/v1/recommend", content='{"profile": {"news": 1}}')).status_code
        service.close()
        return status * 1000 + ok

    assert _run(go()) == 403 * 1000 + 200


def test_deploy_swaps_models_and_in_flight_requests_finish_on_the_old_one(
    models: dict[str, Path], tmp_path: Path
) -> None:
    world = small_world()
    x = context(world, 2)
    va, vb = models_version(models["a"]), models_version(models["b"])

    async def go() -> tuple[str, str, str, dict[str, Any]]:
        c = Client(models["a"], tmp_path / "log", window_s=0.0, grace_s=0.0)
        in_flight = asyncio.create_task(c.service.recommend(x[0], 1))
        await asyncio.sleep(0)  # the request has drawn its items and waits for the fsync
        r = await c.post("/v1/admin/deploy", {"model": str(models["b"])})
        first = (await in_flight).model_version
        after = (await c.post("/v1/recommend", {"context": x[1].tolist()})).json()["model_version"]
        bad = await c.post("/v1/admin/deploy", {"model": str(tmp_path / "nothing")})
        await c.service.compact(force=True)
        await c.close()
        return first, r.json()["version"], after, {"status": bad.status_code, **bad.json()}

    first, deployed, after, bad = _run(go())
    assert (first, deployed, after) == (va, vb, vb)
    assert bad["status"] == 400 and "no model folder" in bad["error"]
    df = parts(tmp_path / "log").sort_values("session_id")
    assert df.model_version.tolist() == [va, vb]


def test_restart_recovers_decisions_whose_window_is_open(
    models: dict[str, Path], tmp_path: Path
) -> None:
    """Decisions still in the write-ahead log at shutdown take feedback after a restart."""
    x = context(small_world(), 1)[0]

    async def first() -> int:
        c = Client(models["a"], tmp_path / "log", window_s=30.0)
        d = await c.service.recommend(x, 1)
        await c.close()  # window open: nothing compacted
        return d.decision_id

    did = _run(first())
    assert not list((tmp_path / "log").glob("*.parquet"))

    async def second() -> str:
        c = Client(models["a"], tmp_path / "log", window_s=30.0)
        status = await c.service.feedback(did, 1)
        await c.service.compact(force=True)
        await c.close()
        return status

    assert _run(second()) == "joined"
    df = parts(tmp_path / "log")
    assert df.session_id.tolist() == [did] and df.reward.tolist() == [1.0]


def test_same_seed_same_decisions(models: dict[str, Path], tmp_path: Path) -> None:
    x = context(small_world(), 30)

    async def run(i: int) -> list[list[int]]:
        c = Client(models["a"], tmp_path / f"log{i}", seed=7)
        out = [(await c.service.recommend(row, 3)).items for row in x]
        await c.close()
        return out

    assert _run(run(0)) == _run(run(1))


def test_plackett_luce_draws_and_propensities_are_exact() -> None:
    dist = np.array([0.5, 0.3, 0.15, 0.05])
    n = 200_000
    items, p = plackett_luce(np.tile(dist, (n, 1)), 2, np.random.default_rng(0))
    # the logged propensities are the exact conditionals, row by row
    np.testing.assert_allclose(p[:, 0], dist[items[:, 0]])
    np.testing.assert_allclose(p[:, 1], dist[items[:, 1]] / (1 - dist[items[:, 0]]))
    # frequencies of the ordered pairs match the Plackett-Luce probabilities (4-sigma)
    pairs = items[:, 0] * 4 + items[:, 1]
    freq = np.bincount(pairs, minlength=16) / n
    exact = np.array(
        [dist[i] * dist[j] / (1 - dist[i]) if i != j else 0.0 for i in range(4) for j in range(4)]
    )
    assert np.all(np.abs(freq - exact) <= 4 * np.sqrt(exact * (1 - exact) / n) + 1e-12)
    with pytest.raises(
        ValueError,
        match="k must be at most the number of items with positive probability; k=3 but row 0 has 2",
    ):
        plackett_luce(np.array([[0.5, 0.5, 0.0]]), 3, np.random.default_rng(0))


def test_concurrent_requests_are_decided_in_one_batch_and_each_logged_once(
    models: dict[str, Path], tmp_path: Path
) -> None:
    world = small_world()
    x = context(world, 50, seed=7)

    async def go() -> tuple[list[Any], dict[str, Any], int, list[int]]:
        c = Client(models["a"], tmp_path / "log")
        before = c.service.wal.batches
        # 50 requests queued in one turn of the loop (k differs: one decide() per k)
        decisions = await asyncio.gather(
            *(c.service.recommend(row, 1 + i % 3, i) for i, row in enumerate(x))
        )
        batches = c.service.wal.batches - before
        wrong = await c.http.get("/v1/recommend", headers=AUTH)
        await c.service.compact(force=True)
        await c.close()
        return decisions, c.service.health(), batches, [wrong.status_code]

    decisions, health, batches, wrong = _run(go())
    assert batches == 1  # one group commit for the whole batch
    assert wrong == [405]
    ids = [d.decision_id for d in decisions]
    assert len(set(ids)) == 50
    assert [len(d.items) for d in decisions] == [1 + i % 3 for i in range(50)]
    assert health["served"]["decisions"] == 50
    df = parts(tmp_path / "log")
    assert set(df.session_id) == set(ids) and len(df) == sum(1 + i % 3 for i in range(50))
    # each row's context is its own request's (the batch did not mix them up)
    first = df[df.position == 0].set_index("session_id").loc[ids]
    np.testing.assert_allclose(np.stack(first.context.to_numpy()), x, rtol=1e-6)
    assert first.user_id.tolist() == list(range(50))
