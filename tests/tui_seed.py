"""A deterministic demo store for the TUI's snapshot tests and screenshots.

Fixed run ids and timestamps, written through the store API (this is test set-up: the
TUI itself only reads through `core.queries`). The running run names the current
process as its executor, so it reads as alive while the app runs in this process.
Show it with a frozen clock at `NOW`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

NOW = "2026-01-15T10:30:00.000000+00:00"

WORKFLOWS = {
    "hello.yaml": """\
schema_version: checkpointflow/v1
workflow:
  id: hello
  name: Hello
  description: Square a number, describe it, and greet.
  version: "1.0"
  inputs:
    type: object
    required: [name, number]
    properties:
      name: { type: string, title: Name }
      number: { type: integer, minimum: 0, maximum: 1000000 }
  steps:
    - id: square
      kind: cli
      command: |
        echo "squaring ${inputs.number}" >&2
        printf '{"square": %d}\\n' $(( ${inputs.number} * ${inputs.number} ))
    - id: describe
      kind: cli
      command: |
        n=${steps.square.outputs.square}
        if [ $((n % 2)) -eq 0 ]; then parity=even; else parity=odd; fi
        printf '{"parity": "%s"}\\n' "$parity"
    - id: done
      kind: end
      result:
        greeting: "Hello, ${inputs.name}!"
        square: ${steps.square.outputs.square}
""",
    "approval.yaml": """\
schema_version: checkpointflow/v1
workflow:
  id: approval
  name: Change approval
  description: Plan a change, ask for review, then apply or reject.
  version: "1.0"
  inputs:
    type: object
    required: [change, environment]
    properties:
      change: { type: string, minLength: 1 }
      environment: { type: string, enum: [staging, production] }
  steps:
    - id: plan
      kind: cli
      command: |
        echo "planning ${inputs.change}" >&2
        printf '{"plan_id": "plan-1", "files_changed": 3}\\n'
    - id: review
      kind: await_event
      audience: user
      event_name: change_review
      risk_level: high
      summary: "${inputs.change} on ${inputs.environment}"
      prompt: Review the plan and approve or reject it.
      input_schema:
        type: object
        required: [decision]
        properties:
          decision: { type: string, enum: [approve, reject] }
          comment: { type: string }
      transitions:
        - when: event.decision == "approve"
          next: apply
        - when: event.decision == "reject"
          next: rejected
    - id: apply
      kind: cli
      command: |
        echo '{"applied": true}'
    - id: applied
      kind: end
      result: { outcome: applied }
    - id: rejected
      kind: end
      result: { outcome: rejected }
""",
    "streaming.yaml": """\
schema_version: checkpointflow/v1
workflow:
  id: streaming
  name: Streaming output
  description: A slow step whose output can be followed while it runs.
  version: "1.0"
  inputs: { type: object }
  steps:
    - id: ticker
      kind: cli
      timeout_seconds: 60
      command: |
        i=1
        while [ "$i" -le 50 ]; do echo "tick $i of 50"; sleep 0.1; i=$((i + 1)); done
    - id: done
      kind: end
""",
    "flaky.yaml": """\
schema_version: checkpointflow/v1
workflow:
  id: flaky
  name: Flaky deploy
  version: "1.0"
  inputs: { type: object }
  steps:
    - id: build
      kind: cli
      command: |
        echo '{"artifact": "app.tar"}'
    - id: deploy
      kind: cli
      retry: { max_attempts: 3, backoff_seconds: 1 }
      command: exit 1
    - id: done
      kind: end
""",
    "broken.yaml": """\
schema_version: checkpointflow/v1
workflow:
  id: broken
  inputs: { type: object }
  steps:
    - id: one
      kind: cli
      comand: echo typo
""",
    "warns.yaml": """\
schema_version: checkpointflow/v1
workflow:
  id: warns
  name: Jumps to a missing step
  inputs: { type: object }
  steps:
    - id: ask
      kind: await_event
      event_name: go
      audience: user
      input_schema: { type: object }
      transitions:
        - when: event.ok == true
          next: finsh
    - id: finish
      kind: end
""",
}

IDS = {
    "hello": "11111111aaaa4aaa8aaa000000000001",
    "approval": "22222222bbbb4bbb8bbb000000000002",
    "streaming": "33333333cccc4ccc8ccc000000000003",
    "flaky": "44444444dddd4ddd8ddd000000000004",
    "cancelled": "55555555eeee4eee8eee000000000005",
}


def write_workflows(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, text in WORKFLOWS.items():
        path = folder / name
        path.write_text(text, encoding="utf-8")
        out[name] = path
    return out


def t(minutes: float, seconds: float = 0.0) -> str:
    """NOW minus `minutes` (and plus `seconds`) as the store's ISO text."""
    from datetime import datetime, timedelta

    base = datetime.fromisoformat(NOW)
    at = base - timedelta(minutes=minutes) + timedelta(seconds=seconds)
    return at.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def seed(folder: Path) -> dict[str, str]:
    """Write the demo workflows under `folder` and the demo runs into the current store
    (`$CHECKPOINTFLOW_BASE_DIR`). Returns the run ids by name."""
    from sqlalchemy import update

    from core.liveness import current_executor
    from core.store.store import CHECKPOINTS, CHUNKS, open_store
    from core.workflow.loader import sha256_file

    paths = write_workflows(folder)
    store = open_store()

    def run_row(key: str, wf: str, name: str, **values: Any) -> dict[str, Any]:
        path = paths[wf]
        row = {
            "run_id": IDS[key],
            "account": "local",
            "workflow_id": wf.removesuffix(".yaml"),
            "workflow_name": name,
            "workflow_version": "1.0",
            "workflow_path": str(path),
            "workflow_hash": sha256_file(path),
            "version": 5,
            "attempt_seq": 0,
            "checkpoint_step": -1,
            "step_outputs": {},
        }
        row.update(values)
        return row

    with store.write() as conn:
        # hello: completed in 1.2 s, half an hour ago.
        store.insert_run(
            conn,
            run_row(
                "hello",
                "hello.yaml",
                "Hello",
                status="completed",
                inputs={"name": "Ada", "number": 7},
                step_outputs={"square": {"square": 49}, "describe": {"parity": "odd"}},
                result={"greeting": "Hello, Ada!", "square": 49},
                current_step_id="done",
                created_at=t(30),
                updated_at=t(30, 1.2),
                finished_at=t(30, 1.2),
            ),
        )
        # approval: waiting for a high-risk review for 9 minutes.
        store.insert_run(
            conn,
            run_row(
                "approval",
                "approval.yaml",
                "Change approval",
                status="waiting",
                inputs={"change": "bump openssl", "environment": "production"},
                step_outputs={"plan": {"plan_id": "plan-1", "files_changed": 3}},
                current_step_id="review",
                wait={
                    "step_id": "review",
                    "event_name": "change_review",
                    "audience": "user",
                    "input_schema": {
                        "type": "object",
                        "required": ["decision"],
                        "properties": {
                            "decision": {"type": "string", "enum": ["approve", "reject"]},
                            "comment": {"type": "string"},
                        },
                    },
                    "prompt": "Review the plan and approve or reject it.",
                    "summary": "bump openssl on production: 3 files",
                    "risk_level": "high",
                    "timeout_at": None,
                },
                created_at=t(10),
                updated_at=t(9),
            ),
        )
        # streaming: running now, executed by this very process.
        store.insert_run(
            conn,
            run_row(
                "streaming",
                "streaming.yaml",
                "Streaming output",
                status="running",
                inputs={},
                current_step_id="ticker",
                executor=current_executor(),
                heartbeat_at=t(0),
                created_at=t(0, -42),
                updated_at=t(0, -41),
            ),
        )
        # flaky: failed after three attempts of `deploy`.
        store.insert_run(
            conn,
            run_row(
                "flaky",
                "flaky.yaml",
                "Flaky deploy",
                status="failed",
                inputs={},
                step_outputs={"build": {"artifact": "app.tar"}},
                current_step_id="deploy",
                error={
                    "code": "ERR_STEP_FAILED",
                    "message": "Step 'deploy' failed with exit code 1",
                    "step_id": "deploy",
                },
                created_at=t(120),
                updated_at=t(120, 5),
                finished_at=t(120, 5),
            ),
        )
        # cancelled: an approval nobody wanted any more.
        store.insert_run(
            conn,
            run_row(
                "cancelled",
                "approval.yaml",
                "Change approval",
                status="cancelled",
                inputs={"change": "rename bucket", "environment": "staging"},
                step_outputs={"plan": {"plan_id": "plan-0", "files_changed": 1}},
                current_step_id="review",
                error={"code": "ERR_CANCELLED", "message": "Cancelled by ada: superseded"},
                created_at=t(1440),
                updated_at=t(1435),
                finished_at=t(1435),
            ),
        )

        def attempt(run: str, seq: int, step: str, kind: str, status: str, **kw: Any) -> int:
            values = {
                "run_id": IDS[run],
                "seq": seq,
                "step_id": step,
                "step_kind": kind,
                "attempt": kw.pop("attempt", 1),
                "status": status,
            }
            values.update(kw)
            return store.insert_attempt(conn, values)

        a = {}
        a["hello.square"] = attempt(
            "hello",
            1,
            "square",
            "cli",
            "completed",
            outputs={"square": 49},
            exit_code=0,
            started_at=t(30, 0.1),
            finished_at=t(30, 0.5),
        )
        a["hello.describe"] = attempt(
            "hello",
            2,
            "describe",
            "cli",
            "completed",
            outputs={"parity": "odd"},
            exit_code=0,
            started_at=t(30, 0.5),
            finished_at=t(30, 1.0),
        )
        attempt(
            "hello",
            3,
            "done",
            "end",
            "completed",
            outputs={"greeting": "Hello, Ada!", "square": 49},
            started_at=t(30, 1.0),
            finished_at=t(30, 1.2),
        )
        a["approval.plan"] = attempt(
            "approval",
            1,
            "plan",
            "cli",
            "completed",
            outputs={"plan_id": "plan-1", "files_changed": 3},
            exit_code=0,
            started_at=t(10, 0.1),
            finished_at=t(9, 58),
        )
        attempt("approval", 2, "review", "await_event", "waiting", started_at=t(9))
        a["streaming.ticker"] = attempt(
            "streaming", 1, "ticker", "cli", "running", started_at=t(0, -41)
        )
        a["flaky.build"] = attempt(
            "flaky",
            1,
            "build",
            "cli",
            "completed",
            outputs={"artifact": "app.tar"},
            exit_code=0,
            started_at=t(120, 0.1),
            finished_at=t(120, 0.3),
        )
        for n in (1, 2, 3):
            a[f"flaky.deploy{n}"] = attempt(
                "flaky",
                1 + n,
                "deploy",
                "cli",
                "failed",
                attempt=n,
                exit_code=1,
                error_code="ERR_STEP_FAILED",
                error_message="Step 'deploy' failed with exit code 1",
                started_at=t(120, n + 0.3),
                finished_at=t(120, n + 0.4),
            )
        attempt(
            "cancelled",
            1,
            "plan",
            "cli",
            "completed",
            outputs={"plan_id": "plan-0", "files_changed": 1},
            exit_code=0,
            started_at=t(1440, 0.1),
            finished_at=t(1440, 0.4),
        )
        attempt(
            "cancelled",
            2,
            "review",
            "await_event",
            "cancelled",
            started_at=t(1440, 0.4),
            finished_at=t(1435),
        )

        for run in ("hello", "approval", "flaky", "cancelled", "streaming"):
            store.insert_event(
                conn,
                run_id=IDS[run],
                kind="start",
                data={"inputs": {}},
                actor="ada",
                surface="cli" if run != "approval" else "tui",
                created_at=t(
                    {
                        "hello": 30,
                        "approval": 10,
                        "flaky": 120,
                        "cancelled": 1440,
                        "streaming": 0.7,
                    }[run]
                ),
            )
        store.insert_event(
            conn,
            run_id=IDS["cancelled"],
            step_id="review",
            kind="cancel",
            data={"reason": "superseded"},
            actor="ada",
            surface="tui",
            created_at=t(1435),
        )

        def checkpoint(run: str, step: int, label: str, state: Any, previous: Any, status: str):
            store.insert_run_checkpoint(
                conn,
                run_id=IDS[run],
                step=step,
                label=label,
                state=state,
                previous_state=previous,
                metadata={"run_id": IDS[run], "status": status},
            )

        s0 = {"inputs": {"name": "Ada", "number": 7}, "step_outputs": {}}
        s1 = {"inputs": s0["inputs"], "step_outputs": {"square": {"square": 49}}}
        s2 = {
            "inputs": s0["inputs"],
            "step_outputs": {**s1["step_outputs"], "describe": {"parity": "odd"}},
        }
        s3 = {
            "inputs": s0["inputs"],
            "step_outputs": {
                **s2["step_outputs"],
                "done": {"greeting": "Hello, Ada!", "square": 49},
            },
        }
        checkpoint("hello", 0, "square", s1, s0, "running")
        checkpoint("hello", 1, "describe", s2, s1, "running")
        checkpoint("hello", 2, "done", s3, s2, "completed")
        p0 = {"inputs": {"change": "bump openssl", "environment": "production"}, "step_outputs": {}}
        p1 = {
            "inputs": p0["inputs"],
            "step_outputs": {"plan": {"plan_id": "plan-1", "files_changed": 3}},
        }
        checkpoint("approval", 0, "plan", p1, p0, "running")

    def output(run: str, key: str, step: str, batch: list[tuple[str, str]]) -> None:
        store.append_output(IDS[run], a[key], step, batch)

    output(
        "hello",
        "hello.square",
        "square",
        [("stderr", "squaring 7\n"), ("stdout", '{"square": 49}\n')],
    )
    output("hello", "hello.describe", "describe", [("stdout", '{"parity": "odd"}\n')])
    output(
        "approval",
        "approval.plan",
        "plan",
        [
            ("stderr", "planning bump openssl\n"),
            ("stdout", "\x1b[32mresolved\x1b[0m 3 files: ssl/a.c ssl/b.c ssl/c.h\n"),
            ("stdout", '{"plan_id": "plan-1", "files_changed": 3}\n'),
        ],
    )
    output(
        "streaming",
        "streaming.ticker",
        "ticker",
        [("stdout", "".join(f"tick {i} of 50\n" for i in range(1, 43)))],
    )
    output("flaky", "flaky.build", "build", [("stdout", '{"artifact": "app.tar"}\n')])
    for n in (1, 2, 3):
        output(
            "flaky",
            f"flaky.deploy{n}",
            "deploy",
            [("stderr", f"deploy attempt {n}: \x1b[31mconnection refused\x1b[0m\n")],
        )

    # The store stamps chunks and checkpoints with the wall clock: pin them.
    with store.write() as conn:
        conn.execute(update(CHUNKS).values(created_at=t(0, -1)))
        conn.execute(update(CHECKPOINTS).values(created_at=t(0, -1)))
    return dict(IDS)


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


# -- helpers for pilot tests ------------------------------------------------------------


async def wait_until(pilot: Any, predicate: Any, *, timeout: float = 30.0, what: str = "") -> None:
    """Let the app run until `predicate()` holds (polling, never a fixed sleep)."""
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        await pilot.pause(0.05)


async def settled(pilot: Any, *, timeout: float = 30.0) -> None:
    """Let the app come to rest before a picture: the first poll for waiting runs has
    answered (the Waiting badge), the hidden screens are built, and two frames 50 ms
    apart are the same (a loaded machine lays out or fills a widget a frame late)."""
    import time

    app = pilot.app
    await wait_until(
        pilot,
        lambda: getattr(app, "waiting_polled", True) and getattr(app, "warmed", True),
        timeout=timeout,
        what="the waiting poll and the warm-up",
    )
    deadline = time.monotonic() + timeout
    previous = None
    while time.monotonic() < deadline:
        await pilot.wait_for_scheduled_animations()
        await pilot.pause()
        frame = app.export_screenshot()
        if frame == previous:
            return
        previous = frame
        await pilot.pause(0.05)
    raise AssertionError(f"the screen still changed after {timeout}s")


def screen_ready(app: Any, cls: type) -> bool:
    return isinstance(app.screen, cls) and bool(getattr(app.screen, "loaded", False))
