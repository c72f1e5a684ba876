"""Feeds a LogPane from the store: the tail of a (possibly huge) log, then new chunks.

One feed per selection; a replaced feed is marked inactive so a late read never writes
into the pane it no longer owns. A whole-run feed marks where each attempt's output begins
with a header from `section_label`, the same whether the output arrives live or is read
again later (an attempt the feed has not seen yet is read before its header is written).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cpf_tui.widgets.logpane import LogPane
from cpf_tui.work import off_thread

# How many chunks one poll reads at most (a chunk is ~0.2 s of a step's output).
POLL_CHUNKS = 400


def section_label(attempt: dict[str, Any]) -> str:
    """The header over an attempt's output in a whole-run log: its context path (the
    foreach iteration or parallel branch), the step id and, after the first, the attempt."""
    where = f"{attempt['context']}/" if attempt.get("context") else ""
    again = f" · attempt {attempt['attempt']}" if attempt.get("attempt", 1) > 1 else ""
    return f"{where}{attempt['step_id']}{again}"


class LogFeed:
    def __init__(
        self,
        pane: LogPane,
        run_id: str,
        *,
        attempt_id: int | None = None,
        step_id: str | None = None,
        sections: bool = False,
        attempts: Iterable[dict[str, Any]] = (),
    ) -> None:
        self.pane = pane
        self.run_id = run_id
        self.attempt_id = attempt_id
        self.step_id = step_id
        # With `sections`, a header line marks where each attempt's output begins.
        self.sections = sections
        self.attempts: dict[int, dict[str, Any]] = {a["id"]: a for a in attempts}
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
        await self._learn(tail["chunks"])
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
            await self._learn(chunks)
        finally:
            self._busy = False
        if self.active and chunks:
            self._write(chunks)
        return len(chunks)

    async def _learn(self, chunks: list[dict[str, Any]]) -> None:
        """Read the run's attempts when a chunk belongs to one the feed does not know (a
        step that started after the owner last read them)."""
        from core import queries

        if self.sections and any(c["attempt_id"] not in self.attempts for c in chunks):
            rows = await off_thread(queries.attempts, self.run_id)
            self.attempts.update((a["id"], a) for a in rows)

    def _write(self, chunks: list[dict[str, Any]]) -> None:
        if not chunks:
            return
        view = self.pane.log_view
        batch: list[tuple[str, str]] = []
        for chunk in chunks:
            if self.sections and chunk["attempt_id"] != self._last_attempt:
                if batch:
                    view.write_chunks(batch)
                    batch = []
                self._last_attempt = chunk["attempt_id"]
                attempt = self.attempts.get(chunk["attempt_id"])
                label = section_label(attempt) if attempt else chunk["step_id"]
                view.write_meta(f"── {label} ──")
            batch.append((chunk["stream"], chunk["text"]))
        view.write_chunks(batch)
        self.after = chunks[-1]["id"]
