"""Throughput and latency of `cpf serve` through the real snapstate-sdk client.

Run by hand from the repository root (needs the dev extra for snapstate-sdk):

    .venv/bin/python bench/bench_serve.py                  # default sizes
    .venv/bin/python bench/bench_serve.py --seconds 5 --clients 1 8 32

It starts `cpf serve` on 127.0.0.1 (a free port, rate limit off) over a fresh SQLite
store in a temporary CHECKPOINTFLOW_BASE_DIR, creates a key with `cpf keys create`, and
measures:

- saves/s and p50/p99 latency at 1, 8 and 32 concurrent clients, with ~1 KB and
  ~100 KB states (each client saves consecutive steps of its own workflow, through
  `SnapStateClient.save`);
- resume and replay (limit 100) latency and rate at 1 and 8 clients.

Clients are threads spread over several processes (so the client side's GIL does not
cap the server), all on this machine: server and clients share its cores. Every
response is checked (a failed call aborts the run). Prints a Markdown table.
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
    base_url: str,
    key: str,
    kind: str,
    client_ids: list[int],
    size: int,
    seconds: float,
    start_at: float,
    out: mp.Queue,
) -> None:
    from snapstate_sdk import SnapStateClient

    results: list[tuple[int, list[float], int]] = []
    lock = threading.Lock()

    def worker(cid: int) -> None:
        client = SnapStateClient(api_key=key, base_url=base_url, max_retries=1, timeout=60)
        lat: list[float] = []
        state = _state(size, cid)
        wf = f"bench-{kind}-{size}-{os.getpid()}-{cid}-{int(start_at)}"
        step = 0
        if kind != "save":
            wf = f"read-{size}"
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
    for t in threads:
        t.join()
    out.put(results)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), or NaN elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_case(
    base_url: str, key: str, kind: str, clients: int, size: int, seconds: float, pid: int = 0
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
            args=(base_url, key, kind, g, size, seconds, start_at, out),
        )
        for g in groups
        if g
    ]
    for p in procs:
        p.start()
    # Server CPU over the measured window: a figure less sensitive to a busy machine.
    time.sleep(max(0.0, start_at - time.time()))
    cpu0 = _cpu_seconds(pid)
    time.sleep(seconds)
    cpu1 = _cpu_seconds(pid)
    lat: list[float] = []
    errors = 0
    for _ in procs:
        for _cid, ls, errs in out.get():
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
        "cpu_ms": (cpu1 - cpu0) / n * 1000 if n else float("nan"),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=4.0, help="duration of each case")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 100 * 1024])
    ap.add_argument("--cpf", default=_cpf(), help="the cpf executable to serve with")
    args = ap.parse_args()

    base = Path(tempfile.mkdtemp(prefix="cpf-bench-serve-"))
    env = dict(os.environ)
    env.pop("CPF_DATABASE_URL", None)
    env["CHECKPOINTFLOW_BASE_DIR"] = str(base)
    created = subprocess.run(
        [args.cpf, "keys", "create", "--account", "bench"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    key = json.loads(created.stdout)["result"]["api_key"]
    port = _free_port()
    server = subprocess.Popen(
        [args.cpf, "serve", "--host", "127.0.0.1", "--port", str(port), "--rate-limit", "0"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        import httpx

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

        rows = []
        for size in args.sizes:
            for c in args.clients:
                rows.append(run_case(base_url, key, "save", c, size, args.seconds, server.pid))
                print(_fmt(rows[-1]), file=sys.stderr, flush=True)
        # A 100-checkpoint workflow of ~1 KB states to resume and replay.
        from snapstate_sdk import SnapStateClient

        client = SnapStateClient(api_key=key, base_url=base_url)
        state = _state(1024, 0)
        for step in range(100):
            client.save(workflow_id="read-1024", step=step, state={**state, "run": step})
        client.close()
        for kind in ("resume", "replay"):
            for c in (1, 8):
                rows.append(run_case(base_url, key, kind, c, 1024, args.seconds, server.pid))
                print(_fmt(rows[-1]), file=sys.stderr, flush=True)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(base, ignore_errors=True)

    print(
        f"\n`cpf serve` via snapstate-sdk, SQLite store, {platform.system()} "
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{args.seconds:g} s per case\n"
    )
    print("| operation | state | clients | ops/s | p50 ms | p99 ms | server CPU ms/op |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        what = r["kind"] + (" (limit 100)" if r["kind"] == "replay" else "")
        print(
            f"| {what} | {_size(r['size'])} | {r['clients']} | {r['rate']:.0f} | "
            f"{r['p50']:.1f} | {r['p99']:.1f} | {r['cpu_ms']:.2f} |"
        )
    return 0


def _size(n: int) -> str:
    return f"{n // 1024} KB" if n >= 1024 else f"{n} B"


def _fmt(r: dict) -> str:
    return (
        f"{r['kind']:7} {_size(r['size']):>7} x{r['clients']:<3} {r['rate']:8.0f}/s "
        f"p50 {r['p50']:7.1f} ms p99 {r['p99']:7.1f} ms  server cpu {r['cpu_ms']:.2f} ms/op"
    )


if __name__ == "__main__":
    raise SystemExit(main())
