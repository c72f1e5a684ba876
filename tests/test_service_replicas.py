"""Two `cpf serve` replicas over one store, driven by the real snapstate-sdk.

Each backend gets two replicas (separate processes, ports on 127.0.0.1) sharing one
database: PostgreSQL when `CPF_TEST_POSTGRES_URL` names a server database whose role
may create databases (a fresh database per module; skipped without it), and one SQLite
file. What must hold whichever replica serves a request:

- If-Match is a compare-and-swap on the workflow head across replicas: of two saves
  based on the same head, one wins and the other gets 409; head, total and the stored
  steps stay consistent;
- every webhook delivery is POSTed once (the replicas' workers claim, never share);
- an expired workflow is expired, and announced, by one replica only;
- the rate limit is one limit per key for all replicas, with a true `Retry-After`.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from snapstate_sdk import ConflictError
from test_service_support import Receiver, ServeProcess, run_cpf

ADMIN_URL = os.environ.get("CPF_TEST_POSTGRES_URL")
BACKENDS = [
    "sqlite",
    pytest.param(
        "postgresql",
        marks=pytest.mark.skipif(not ADMIN_URL, reason="CPF_TEST_POSTGRES_URL is not set"),
    ),
]
TRIALS = 30


def _libpq(url: str) -> str:
    # SQLAlchemy's "postgresql+psycopg://" is psycopg's "postgresql://".
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _admin(sql: str) -> None:
    import psycopg

    assert ADMIN_URL is not None
    with psycopg.connect(_libpq(ADMIN_URL), autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], str]]:
    """database(backend) -> a store URL of this module (one per backend)."""
    made: dict[str, str] = {}
    pg_name = f"cpf_replicas_{uuid.uuid4().hex[:12]}"

    def url_for(backend: str) -> str:
        if backend not in made:
            if backend == "postgresql":
                from sqlalchemy.engine import make_url

                assert ADMIN_URL is not None
                _admin(f'CREATE DATABASE "{pg_name}"')
                made[backend] = make_url(ADMIN_URL).set(database=pg_name).render_as_string(False)
            else:
                path = tmp_path_factory.mktemp("replicas-sqlite") / "shared.db"
                made[backend] = f"sqlite:///{path}"
        return made[backend]

    yield url_for
    if "postgresql" in made:
        _admin(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')


class Replicas:
    """Two `cpf serve` processes over one store URL."""

    def __init__(self, root: Path, url: str, *, rate_limit: int, env: dict[str, str]) -> None:
        env = {
            "CPF_DATABASE_URL": url,
            # Deliveries go to a receiver on 127.0.0.1 (an opt-in once private
            # addresses are refused by default).
            "CPF_WEBHOOK_ALLOW_PRIVATE": "1",
            **env,
        }
        self.servers: list[ServeProcess] = []
        try:
            for name in ("a", "b"):
                self.servers.append(ServeProcess(root / name, rate_limit=rate_limit, env=env))
        except BaseException:
            self.stop()
            raise
        self.a, self.b = self.servers

    def key(self, account: str) -> str:
        return self.a.key(account)

    def stop(self) -> None:
        for s in self.servers:
            code = s.stop()
            logs = s.logs()
            assert code == 0 and "Traceback" not in logs, logs


@pytest.fixture(scope="module", params=BACKENDS)
def pair(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    database: Callable[[str], str],
) -> Iterator[Replicas]:
    url = database(request.param)
    replicas = Replicas(
        tmp_path_factory.mktemp(f"pair-{request.param}"),
        url,
        rate_limit=0,
        env={"CPF_SWEEP_INTERVAL": "0.2"},
    )
    yield replicas
    replicas.stop()


def wid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def race(*calls: Callable[[], Any]) -> list[Any]:
    """Run the calls at once (released together); each result or raised exception."""
    gate = threading.Barrier(len(calls))

    def run(call: Callable[[], Any]) -> Any:
        gate.wait()
        try:
            return call()
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def test_if_match_is_one_compare_and_swap_across_replicas(pair: Replicas) -> None:
    key = pair.key("race")
    ca, cb = pair.a.client(key, max_retries=1), pair.b.client(key, max_retries=1)
    try:
        for trial in range(TRIALS):
            wf = wid(f"race{trial}")
            base = ca.save(wf, 0, {"n": 0})
            results = race(
                lambda wf=wf, etag=base.etag: ca.save(wf, 1, {"n": 1}, if_match=etag),
                lambda wf=wf, etag=base.etag: cb.save(wf, 2, {"n": 2}, if_match=etag),
            )
            won = [r for r in results if not isinstance(r, Exception)]
            lost = [r for r in results if isinstance(r, Exception)]
            assert len(won) == 1 and len(lost) == 1, results
            assert isinstance(lost[0], ConflictError), lost[0]
            winner = won[0]
            # Both replicas see the same workflow: the winner is the head, two
            # checkpoints are counted and stored, the loser's step does not exist.
            for client in (ca, cb):
                resumed = client.resume(wf)
                assert resumed.latest_checkpoint.step == winner.step
                assert resumed.latest_checkpoint.etag == winner.etag
                assert resumed.total_checkpoints == 2
                assert [c.step for c in client.replay(wf).checkpoints] == [0, winner.step]
            # The loser may retry on the new head: that one succeeds.
            loser_step = 3 - winner.step
            retried = cb.save(wf, loser_step, {"n": loser_step}, if_match=winner.etag)
            assert ca.resume(wf).latest_checkpoint.etag == retried.etag
            assert ca.resume(wf).total_checkpoints == 3
    finally:
        ca.close()
        cb.close()


def test_compare_and_swap_chain_under_contention(pair: Replicas) -> None:
    """Clients on both replicas extend one chain with If-Match on the head they read:
    every 201 extends the head it saw, so the steps are 0..n without gaps or forks,
    and head and total agree with what was stored."""
    key = pair.key("chain")
    wf = wid("chain")
    pair.a.client(key).save(wf, 0, {"by": "seed"})
    wins: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    target, deadline = 24, time.monotonic() + 90

    def client_loop(server: ServeProcess, n: int) -> None:
        client = server.client(key, max_retries=1)
        try:
            while time.monotonic() < deadline and len(wins) < target:
                head = client.resume(wf).latest_checkpoint
                try:
                    saved = client.save(wf, head.step + 1, {"by": n}, if_match=head.etag)
                except ConflictError:
                    continue
                with lock:
                    wins.append(saved.step)
        except BaseException as exc:  # reported below, with the others
            errors.append(exc)
        finally:
            client.close()

    threads = [
        threading.Thread(target=client_loop, args=(pair.a if n % 2 else pair.b, n))
        for n in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(wins) >= target
    assert sorted(wins) == list(range(1, len(wins) + 1))  # no step won twice, no gap
    for server in pair.servers:
        client = server.client(key)
        resumed = client.resume(wf)
        assert resumed.latest_checkpoint.step == len(wins)
        assert resumed.total_checkpoints == len(wins) + 1
        steps = [c.step for c in client.replay(wf, limit=1000).checkpoints]
        assert steps == list(range(len(wins) + 1))
        client.close()


def test_concurrent_saves_keep_head_and_total(pair: Replicas) -> None:
    """Blind saves of distinct steps from both replicas: none lost, the count exact,
    the head the most recently written one."""
    key = pair.key("blind")
    wf = wid("blind")
    per_client = 12

    def saves(server: ServeProcess, n: int) -> list[str]:
        client = server.client(key, max_retries=1)
        try:
            return [
                client.save(wf, n * per_client + i, {"n": n, "i": i}).created_at
                for i in range(per_client)
            ]
        finally:
            client.close()

    results = race(*[lambda n=n: saves(pair.servers[n % 2], n) for n in range(6)])
    assert not [r for r in results if isinstance(r, Exception)], results
    total = 6 * per_client
    client = pair.b.client(key)
    resumed = client.resume(wf)
    assert resumed.total_checkpoints == total
    replay = client.replay(wf, limit=1000).checkpoints
    assert [c.step for c in replay] == list(range(total))
    latest = max(replay, key=lambda c: c.created_at)
    assert resumed.latest_checkpoint.step == latest.step
    client.close()


def test_each_delivery_is_posted_once(pair: Replicas) -> None:
    rx = Receiver()
    key = pair.key("hooks")
    ca, cb = pair.a.client(key, max_retries=1), pair.b.client(key, max_retries=1)
    try:
        hook_id = ca.register_webhook(rx.url, ["checkpoint.saved"])["webhook_id"]
        saves = 200

        def save_some(client: Any, n: int) -> None:
            for i in range(saves // 4):
                client.save(wid(f"hook{n}"), i, {"i": i})

        results = race(*[lambda n=n: save_some(ca if n % 2 else cb, n) for n in range(4)])
        assert not [r for r in results if isinstance(r, Exception)], results
        rx.wait_for(lambda bodies: len({b["delivery_id"] for b in bodies}) >= saves, 60)
        time.sleep(1.5)  # time for a duplicate to arrive, if any were sent
        bodies = rx.bodies()
        ids = [b["delivery_id"] for b in bodies]
        assert len(ids) == len(set(ids)) == saves
        assert all(b["attempt"] == 1 for b in bodies)
        log = pair.b.http("GET", f"/webhooks/{hook_id}/deliveries?limit=1000", key).json()
        assert len(log["deliveries"]) == saves
        assert {(d["status"], d["attempts"]) for d in log["deliveries"]} == {("delivered", 1)}
    finally:
        ca.close()
        cb.close()
        rx.close()


def test_expiry_is_announced_once(pair: Replicas) -> None:
    """Both replicas sweep every 0.2 s; each expired workflow goes, and is announced,
    once."""
    rx = Receiver()
    key = pair.key("ttl")
    ca = pair.a.client(key)
    try:
        ca.register_webhook(rx.url, ["workflow.expired"])
        workflows = [wid("ttl") for _ in range(12)]
        for i, wf in enumerate(workflows):
            server = pair.servers[i % 2]
            r = server.http(
                "POST",
                "/checkpoints",
                key,
                json={"workflow_id": wf, "step": 0, "state": {}},
                headers={"X-Checkpoint-TTL": "1"},
            )
            assert r.status_code == 201, r.text
        rx.wait_for(lambda bodies: len(bodies) >= len(workflows), 30)
        time.sleep(1.5)  # both sweepers run several more times
        expired = [b["data"]["workflow_id"] for b in rx.bodies()]
        assert sorted(expired) == sorted(workflows)
        for wf in workflows:
            r = pair.b.http("GET", f"/workflows/{wf}/resume", key)
            assert r.status_code == 404
    finally:
        ca.close()
        rx.close()


LIMIT = 20
WINDOW = 8


@pytest.fixture(scope="module", params=BACKENDS)
def limited(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    database: Callable[[str], str],
) -> Iterator[Replicas]:
    replicas = Replicas(
        tmp_path_factory.mktemp(f"limited-{request.param}"),
        database(request.param),
        rate_limit=LIMIT,
        env={"CPF_RATE_LIMIT_WINDOW": str(WINDOW)},
    )
    yield replicas
    replicas.stop()


def test_rate_limit_is_one_limit_for_all_replicas(limited: Replicas) -> None:
    key, other = limited.key("rl-one"), limited.key("rl-two")
    clients = [httpx.Client(base_url=s.url, timeout=30) for s in limited.servers]
    auth = {"Authorization": f"Bearer {key}"}
    try:

        def hit(n: int) -> httpx.Response:
            return clients[n % 2].get(f"/workflows/w{n}/replay", headers=auth)

        with ThreadPoolExecutor(6) as pool:
            responses = list(pool.map(hit, range(3 * LIMIT)))
        codes = [r.status_code for r in responses]
        assert codes.count(200) == LIMIT, codes
        assert codes.count(429) == 2 * LIMIT, codes
        waits = [int(r.headers["Retry-After"]) for r in responses if r.status_code == 429]
        assert all(1 <= w <= WINDOW for w in waits), waits
        # Another key has its own count, on either replica.
        for server in limited.servers:
            assert server.http("GET", "/workflows/w/replay", other).status_code == 200
        # Retry-After is true: waiting it is enough, on either replica.
        r = clients[1].get("/workflows/w/replay", headers=auth)
        assert r.status_code == 429
        time.sleep(int(r.headers["Retry-After"]))
        assert clients[0].get("/workflows/w/replay", headers=auth).status_code == 200
        # The SDK, with its own retries, gets through a limited key.
        patient = limited.b.client(other, max_retries=4)
        for i in range(LIMIT):
            patient.save("after", i, {"i": i})
        patient.close()
    finally:
        for c in clients:
            c.close()


def test_in_process_scenario_agrees_on_postgres(tmp_path: Path) -> None:
    """The whole service API in-process: PostgreSQL answers as SQLite does."""
    if not ADMIN_URL:
        pytest.skip("CPF_TEST_POSTGRES_URL is not set")
    from sqlalchemy.engine import make_url
    from test_service_store import _scenario

    from core.service.api import CheckpointService
    from core.store.store import Store

    name = f"cpf_scenario_{uuid.uuid4().hex[:12]}"
    _admin(f'CREATE DATABASE "{name}"')
    try:
        answers = []
        for url in (
            f"sqlite:///{tmp_path / 'scenario.db'}",
            make_url(ADMIN_URL).set(database=name).render_as_string(False),
        ):
            store = Store(url)
            answers.append(_scenario(CheckpointService(store)))
            store.close()
        assert answers[0] == answers[1]
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_keys_of_one_new_account_created_at_once(database: Callable[[str], str]) -> None:
    """Concurrent first keys of one account (two hosts) on PostgreSQL: both are made
    (SQLite serializes them anyway)."""
    if not ADMIN_URL:
        pytest.skip("CPF_TEST_POSTGRES_URL is not set")
    env = dict(os.environ, CPF_DATABASE_URL=database("postgresql"))
    account = wid("acct")
    results = race(*[lambda: run_cpf(env, "keys", "create", "--account", account)] * 2)
    assert all(r["ok"] for r in results), results
    listed = run_cpf(env, "keys", "list", "--account", account)
    assert len(listed["result"]["keys"]) == 2


@pytest.fixture
def limited_database() -> Iterator[tuple[str, int]]:
    """A fresh PostgreSQL database that takes at most 5 connections of its (ordinary)
    owner: (SQLAlchemy URL, limit). Superusers are exempt from the limit."""
    if not ADMIN_URL:
        pytest.skip("CPF_TEST_POSTGRES_URL is not set")
    from sqlalchemy.engine import make_url

    suffix = uuid.uuid4().hex[:10]
    role, name, password, limit = f"cpf_pool_{suffix}", f"cpf_pool_{suffix}", "pool-pw", 5
    _admin(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    _admin(f'CREATE DATABASE "{name}" OWNER {role} CONNECTION LIMIT {limit}')
    url = make_url(ADMIN_URL).set(username=role, password=password, database=name)
    try:
        yield url.render_as_string(False), limit
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        _admin(f"DROP ROLE IF EXISTS {role}")


def test_bounded_pool_and_too_many_clients_retried(
    limited_database: tuple[str, int], tmp_path: Path
) -> None:
    """Two replicas of 2 connections each fit a database that allows 5 (one is left for
    `cpf keys`): a burst of 16 clients waits for connections instead of failing; when
    every connection is taken (and the replicas' own were cut), saves are retried until
    one frees up."""
    import psycopg

    url, limit = limited_database
    replicas = Replicas(tmp_path, url, rate_limit=0, env={"CPF_SERVE_POOL_SIZE": "2"})
    try:
        key = replicas.key("pool")

        def burst(n: int) -> int:
            client = replicas.servers[n % 2].client(key, max_retries=1)
            try:
                for i in range(8):
                    client.save(f"pool-{n}", i, {"i": i})
                return client.resume(f"pool-{n}").total_checkpoints
            finally:
                client.close()

        assert race(*[lambda n=n: burst(n) for n in range(16)]) == [8] * 16

        # Cut the replicas' connections and take every slot the database allows (their
        # background tasks may reconnect in between: then again).
        database = url.rsplit("/", 1)[1]
        hogs: list[Any] = []
        for _ in range(20):
            _admin(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{database}'"
            )
            hogs = []
            while len(hogs) < limit:
                try:
                    hogs.append(psycopg.connect(_libpq(url)))
                except psycopg.OperationalError:
                    break
            if len(hogs) == limit:
                break
            for h in hogs:
                h.close()
        assert len(hogs) == limit
        freed = threading.Timer(1.5, lambda: [h.close() for h in hogs])
        freed.start()
        try:
            client = replicas.a.client(key, max_retries=1)
            t0 = time.monotonic()
            saved = client.save("after-cut", 0, {"ok": True})
            assert saved.step == 0
            assert time.monotonic() - t0 >= 1.0  # it waited for a free connection
            assert replicas.b.client(key).resume("after-cut").total_checkpoints == 1
            client.close()
        finally:
            freed.join()
    finally:
        replicas.stop()
