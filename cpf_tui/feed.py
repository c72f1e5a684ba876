"""Feeds a LogPane from the store: the tail of a (possibly huge) log, then new chunks.

One feed per selection; a replaced feed is marked inactive so a late read never writes
into the pane it no longer owns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cpf_tui.widgets.logpane import LogPane
from cpf_tui.work import off_thread

# How many chunks one poll reads at most (a chunk is ~0.2 s of a step's output).
POLL_CHUNKS = 400


class LogFeed:
    def __init__(
        self,
        pane: LogPane,
        run_id: str,
        *,
        attempt_id: int | None = None,
        step_id: str | None = None,
        describe: Callable[[int], str] | None = None,
    ) -> None:
        self.pane = pane
        self.run_id = run_id
        self.attempt_id = attempt_id
        self.step_id = step_id
        # With `describe`, a header line marks where each attempt's output begins.
        self.describe = describe
        self.after = 0
        self.active = True
        self.loaded = False
        self._last_attempt: int | None = None
        self._busy = False

    async def load(self) -> None:
        from core import queries

        self._busy = True
        try:
            tail = await off_thread(
                queries.output_tail,
                self.run_id,
                step_id=self.step_id,
                attempt_id=self.attempt_id,
                max_lines=self.pane.log_view.max_lines,
            )
        finally:
            self._busy = False
        if not self.active:
            return
        view = self.pane.log_view
        view.clear()
        if not tail["complete"]:
            view.write_meta("… earlier output is in the store (cpf logs --run-id …)")
        self._write(tail["chunks"])
        self.loaded = True

    async def poll(self) -> int:
        """Read what arrived since the last read; returns the number of chunks."""
        from core import queries

        if not self.loaded or self._busy:
            return 0
        self._busy = True
        try:
            chunks = await off_thread(
                queries.output,
                self.run_id,
                after_id=self.after,
                step_id=self.step_id,
                attempt_id=self.attempt_id,
                limit=POLL_CHUNKS,
            )
        finally:
            self._busy = False
        if self.active and chunks:
            self._write(chunks)
        return len(chunks)

    def _write(self, chunks: list[dict[str, Any]]) -> None:
        if not chunks:
            return
        view = self.pane.log_view
        batch: list[tuple[str, str]] = []
        for chunk in chunks:
            if self.describe is not None and chunk["attempt_id"] != self._last_attempt:
                if batch:
                    view.write_chunks(batch)
                    batch = []
                self._last_attempt = chunk["attempt_id"]
                label = self.describe(chunk["attempt_id"]) or chunk["step_id"]
                view.write_meta(f"── {label} ──")
            batch.append((chunk["stream"], chunk["text"]))
        view.write_chunks(batch)
        self.after = chunks[-1]["id"]
