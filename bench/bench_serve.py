"""Throughput and latency of `cpf serve` through the real snapstate-sdk client.

Run by hand from the repository root (needs the dev extra for snapstate-sdk):

    .venv/bin/python bench/bench_serve.py                  # default sizes
    .venv/bin/python bench/bench_serve.py --seconds 5 --clients 1 8 32
    .venv/bin/python bench/bench_serve.py --database-url postgresql+psycopg://u:p@host/db \
        --replicas 2 --clients 1 8 --sizes 1024

It starts `cpf serve` on 127.0.0.1 (a free port, rate limit off) over a fresh SQLite
store in a temporary CHECKPOINTFLOW_BASE_DIR, or over `--database-url` (an existing,
preferably empty database; workflow ids are unique per run), creates a key with
`cpf keys create`, and measures:

- saves/s and p50/p99 latency at 1, 8 and 32 concurrent clients, with ~1 KB and
  ~100 KB states (each client saves consecutive steps of its own workflow, through
  `SnapStateClient.save`);
- resume and replay (limit 100) latency and rate at 1 and 8 clients.

`--replicas N` starts N servers over the same store and spreads the clients over them
(client i talks to replica i mod N), as a load balancer would.

`--against URL --against-key KEY` measures another SnapState server (the reference,
already running) side by side in the same run, with the same clients and cases: each
case alternates between `cpf serve` and it for `--rounds` rounds (who goes first swaps
every round), so both see the same minutes of a machine whose speed drifts. The table
then gives each server's medians over the rounds and the ratio cpf / other (the median
of the rounds' ratios). `--against-pids` names its processes (say node and redis-server)
for its CPU column; its database's CPU is counted when it shares the cluster of
`--database-url`.

Clients are threads spread over several processes (so the client side's GIL does not
cap the server), all on this machine: server and clients share its cores. Every
response is checked (a failed call aborts the run). Prints a Markdown table with the
CPU per operation of the servers, of the database's processes (a PostgreSQL on this
machine: its backends and background writers) and of the benchmark's own clients
(the snapstate-sdk and httpx): how the shared cores are spent.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _cpf() -> str:
    exe = Path(sys.executable).parent / "cpf"
    return str(exe) if exe.exists() else (shutil.which("cpf") or "cpf")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _state(size: int, salt: int) -> dict:
    # A realistic nested state of about `size` bytes of compact JSON.
    items = []
    n = max(1, size // 64)
    for i in range(n):
        items.append({"id": i, "name": f"item-{salt}-{i}", "done": i % 3 == 0, "score": i * 1.5})
    state = {"run": salt, "items": items, "meta": {"owner": "bench", "tags": ["a", "b"]}}
    text = json.dumps(state, separators=(",", ":"))
    while len(text) > size and len(items) > 1:
        items.pop()
        text = json.dumps(state, separators=(",", ":"))
    return state


def _client_proc(
    base_urls: list[str],
    key: str,
    kind: str,
    client_ids: list[int],
    size: int,
    seconds: float,
    start_at: float,
    out: mp.Queue,
    read_workflow: str = "",
) -> None:
    from snapstate_sdk import SnapStateClient

    results: list[tuple[int, list[float], int]] = []
    lock = threading.Lock()

    def worker(cid: int) -> None:
        base_url = base_urls[cid % len(base_urls)]
        client = SnapStateClient(api_key=key, base_url=base_url, max_retries=1, timeout=60)
        lat: list[float] = []
        state = _state(size, cid)
        wf = f"bench-{kind}-{size}-{os.getpid()}-{cid}-{int(start_at)}"
        step = 0
        if kind != "save":
            wf = read_workflow
        # Wait for the common start so all clients overlap.
        while time.time() < start_at:
            time.sleep(0.001)
        deadline = start_at + seconds
        errors = 0
        while time.time() < deadline:
            t0 = time.perf_counter()
            try:
                if kind == "save":
                    state["run"] = step
                    client.save(workflow_id=wf, step=step, state=state)
                    step += 1
                elif kind == "resume":
                    client.resume(wf)
                else:
                    r = client.replay(wf, limit=100)
                    assert len(r.checkpoints) == 100
            except Exception as exc:
                errors += 1
                sys.stderr.write(f"client {cid}: {type(exc).__name__}: {exc}\n")
                if errors > 3:
                    break
                continue
            lat.append(time.perf_counter() - t0)
        client.close()
        with lock:
            results.append((cid, lat, errors))

    threads = [threading.Thread(target=worker, args=(c,)) for c in client_ids]
    for t in threads:
        t.start()
    # This process's CPU (all its client threads) over the measured window.
    time.sleep(max(0.0, start_at - time.time()))
    cpu0 = time.process_time()
    for t in threads:
        t.join()
    out.put((results, time.process_time() - cpu0))


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), or NaN elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _db_pids(database_url: str | None) -> list[int]:
    """The PostgreSQL server processes (backends and background workers) of the
    store's cluster, when it runs on this machine; [] for SQLite."""
    if not database_url or not database_url.startswith("postgresql"):
        return []
    import psycopg

    libpq_url = "postgresql:" + database_url.split(":", 1)[1]  # no +psycopg
    with psycopg.connect(libpq_url, autocommit=True) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid()")
        return [int(r[0]) for r in rows]


@dataclass
class Target:
    """A server under test: cpf serve's replicas, or the other server (--against)."""

    name: str
    base_urls: list[str]
    key: str
    pids: list[int]


def _median_row(rows: list[dict]) -> dict:
    """One row of a case's rounds: the median of each figure (the rounds' speeds drift)."""
    out = dict(rows[0])
    for k in ("rate", "p50", "p99", "mean", "cpu_ms", "db_cpu_ms", "clients_cpu_ms"):
        out[k] = statistics.median(r[k] for r in rows)
    return out


def run_case(
    base_urls: list[str],
    key: str,
    kind: str,
    clients: int,
    size: int,
    seconds: float,
    pids: list[int],
    read_workflow: str = "",
    database_url: str | None = None,
) -> dict:
    procs_n = min(clients, max(2, (os.cpu_count() or 2)))
    groups: list[list[int]] = [[] for _ in range(procs_n)]
    for c in range(clients):
        groups[c % procs_n].append(c)
    out: mp.Queue = mp.Queue()
    start_at = time.time() + 1.5 + 0.05 * clients  # time for the processes to start
    procs = [
        mp.Process(
            target=_client_proc,
            args=(base_urls, key, kind, g, size, seconds, start_at, out, read_workflow),
        )
        for g in groups
        if g
    ]
    for p in procs:
        p.start()
    # Server CPU over the measured window: a figure less sensitive to a busy machine.
    time.sleep(max(0.0, start_at - time.time()))
    cpu0 = sum(_cpu_seconds(pid) for pid in pids)
    db0 = {pid: _cpu_seconds(pid) for pid in _db_pids(database_url)}
    time.sleep(seconds)
    cpu1 = sum(_cpu_seconds(pid) for pid in pids)
    # A backend started during the window counts from zero (its start is part of it).
    db_pids = _db_pids(database_url)
    db = sum(_cpu_seconds(pid) - db0.get(pid, 0.0) for pid in db_pids) if db_pids else None
    lat: list[float] = []
    errors = 0
    clients_cpu = 0.0
    for _ in procs:
        results, cpu = out.get()
        clients_cpu += cpu
        for _cid, ls, errs in results:
            lat.extend(ls)
            errors += errs
    for p in procs:
        p.join()
    if errors:
        raise SystemExit(f"{kind} x{clients} ({size} B): {errors} failed calls")
    lat.sort()
    n = len(lat)
    return {
        "kind": kind,
        "clients": clients,
        "size": size,
        "ops": n,
        "rate": n / seconds,
        "p50": lat[n // 2] * 1000 if n else float("nan"),
        "p99": lat[min(n - 1, int(n * 0.99))] * 1000 if n else float("nan"),
        "mean": statistics.fmean(lat) * 1000 if n else float("nan"),
        "cpu_ms": (cpu1 - cpu0) / n * 1000 if n and pids else float("nan"),
        "db_cpu_ms": db / n * 1000 if n and db is not None else float("nan"),
        "clients_cpu_ms": clients_cpu / n * 1000 if n else float("nan"),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=4.0, help="duration of each case")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 100 * 1024])
    ap.add_argument("--cpf", default=_cpf(), help="the cpf executable to serve with")
    ap.add_argument(
        "--database-url",
        help="the store of the servers (CPF_DATABASE_URL); default a fresh SQLite file",
    )
    ap.add_argument("--replicas", type=int, default=1, help="servers over the one store")
    ap.add_argument(
        "--rate-limit", type=int, default=0, help="cpf serve --rate-limit (default 0: off)"
    )
    ap.add_argument("--no-reads", action="store_true", help="measure saves only")
    ap.add_argument("--against", metavar="URL", help="another SnapState server, side by side")
    ap.add_argument("--against-key", metavar="KEY", help="an API key of that server")
    ap.add_argument(
        "--against-pids", type=int, nargs="*", default=[], help="its processes, for CPU"
    )
    ap.add_argument(
        "--rounds", type=int, default=1, help="rounds per case (alternated with --against)"
    )
    args = ap.parse_args()
    if args.against and not args.against_key:
        raise SystemExit("--against needs --against-key")
    if args.replicas < 1:
        raise SystemExit("--replicas must be >= 1")

    base = Path(tempfile.mkdtemp(prefix="cpf-bench-serve-"))
    env = dict(os.environ)
    env.pop("CPF_DATABASE_URL", None)
    env["CHECKPOINTFLOW_BASE_DIR"] = str(base)
    if args.database_url:
        env["CPF_DATABASE_URL"] = args.database_url
    created = subprocess.run(
        [args.cpf, "keys", "create", "--account", "bench"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    key = json.loads(created.stdout)["result"]["api_key"]
    servers: list[subprocess.Popen] = []
    base_urls: list[str] = []
    run_tag = f"{os.getpid()}-{int(time.time())}"
    read_workflow = f"read-1024-{run_tag}"
    try:
        for _ in range(args.replicas):
            port = _free_port()
            servers.append(
                subprocess.Popen(
                    [
                        args.cpf,
                        "serve",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(port),
                        "--rate-limit",
                        str(args.rate_limit),
                    ],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
            base_urls.append(f"http://127.0.0.1:{port}")
        import httpx

        for server, base_url in zip(servers, base_urls, strict=True):
            deadline = time.time() + 60
            while True:
                try:
                    if httpx.get(base_url + "/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.time() > deadline or server.poll() is not None:
                    raise SystemExit("cpf serve did not start")
                time.sleep(0.1)
        targets = [Target("cpf", base_urls, key, [s.pid for s in servers])]
        if args.against:
            other = Target("other", [args.against.rstrip("/")], args.against_key, args.against_pids)
            targets.append(other)

        def measure(kind: str, clients: int, size: int) -> None:
            by_target: list[list[dict]] = [[] for _ in targets]
            for r in range(max(1, args.rounds)):
                order = list(enumerate(targets))
                for i, t in order if r % 2 == 0 else order[::-1]:
                    row = run_case(
                        t.base_urls,
                        t.key,
                        kind,
                        clients,
                        size,
                        args.seconds,
                        t.pids,
                        f"{read_workflow}-{t.name}",  # one store may serve both
                        database_url=args.database_url,
                    )
                    row["server"] = t.name
                    by_target[i].append(row)
                    print(f"{t.name:5} {_fmt(row)}", file=sys.stderr, flush=True)
            merged = [_median_row(rs) for rs in by_target]
            if len(merged) > 1:
                pairs = zip(by_target[0], by_target[1], strict=True)
                merged[0]["ratio"] = statistics.median(a["rate"] / b["rate"] for a, b in pairs)
            rows.extend(merged)

        rows: list[dict] = []
        for size in args.sizes:
            for c in args.clients:
                measure("save", c, size)
        if not args.no_reads:
            # A 100-checkpoint workflow of ~1 KB states to resume and replay, on each server.
            from snapstate_sdk import SnapStateClient

            state = _state(1024, 0)
            for t in targets:
                client = SnapStateClient(api_key=t.key, base_url=t.base_urls[0])
                for step in range(100):
                    client.save(
                        workflow_id=f"{read_workflow}-{t.name}",
                        step=step,
                        state={**state, "run": step},
                    )
                client.close()
            for kind in ("resume", "replay"):
                for c in (1, 8):
                    measure(kind, c, 1024)
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
        shutil.rmtree(base, ignore_errors=True)

    url = args.database_url or "sqlite:"
    store = url.split(":", 1)[0]
    store = "SQLite" if store == "sqlite" else "PostgreSQL" if "postgres" in store else store
    replicas = f", {args.replicas} replicas" if args.replicas > 1 else ""
    print(
        f"\n`cpf serve` via snapstate-sdk, {store} store{replicas}, {platform.system()} "
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{args.seconds:g} s per case\n"
    )
    side = len(targets) > 1
    rounds = f", medians of {args.rounds} rounds" if args.rounds > 1 else ""
    if side:
        print(f"Side by side: cpf serve and {args.against} (other), alternated{rounds}.\n")
    head = "| server " if side else ""
    tail = " cpf / other ops/s |" if side else ""
    print(
        f"{head}| operation | state | clients | ops/s | p50 ms | p99 ms | servers' CPU ms/op "
        f"| PostgreSQL CPU ms/op | clients' CPU ms/op |{tail}"
    )
    print(
        ("|---" if side else "")
        + "|---|---|---:|---:|---:|---:|---:|---:|---:|"
        + ("---:|" if side else "")
    )
    for r in rows:
        what = r["kind"] + (" (limit 100)" if r["kind"] == "replay" else "")
        ratio = f" {r['ratio']:.2f} |" if "ratio" in r else " |" if side else ""
        print(
            (f"| {r['server']} " if side else "")
            + f"| {what} | {_size(r['size'])} | {r['clients']} | {r['rate']:.0f} | "
            f"{r['p50']:.1f} | {r['p99']:.1f} | {_ms(r['cpu_ms'])} | {_ms(r['db_cpu_ms'])} "
            f"| {_ms(r['clients_cpu_ms'])} |{ratio}"
        )
    return 0


def _size(n: int) -> str:
    return f"{n // 1024} KB" if n >= 1024 else f"{n} B"


def _ms(value: float) -> str:
    return "-" if value != value else f"{value:.2f}"  # NaN: not measured (SQLite)


def _fmt(r: dict) -> str:
    return (
        f"{r['kind']:7} {_size(r['size']):>7} x{r['clients']:<3} {r['rate']:8.0f}/s "
        f"p50 {r['p50']:7.1f} ms p99 {r['p99']:7.1f} ms  server cpu {_ms(r['cpu_ms'])} ms/op"
        f"  db cpu {_ms(r['db_cpu_ms'])} ms/op  clients cpu {_ms(r['clients_cpu_ms'])} ms/op"
    )


if __name__ == "__main__":
    raise SystemExit(main())
