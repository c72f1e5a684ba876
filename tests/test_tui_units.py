"""Unit tests of the TUI's parts: the live log, the virtual table, time formatting,
settings, workflow discovery and the engine reads added for live views."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from textual.app import App, ComposeResult
from tui_seed import IDS, NOW, seed

from cpf_tui import clock
from cpf_tui.config import load_config
from cpf_tui.widgets.logpane import LogPane
from cpf_tui.widgets.logview import LogView, clean, plain
from cpf_tui.widgets.vtable import Column, Row, VirtualTable
from cpf_tui.workflows import check, discover, outline


class LogHost(App[None]):
    def __init__(self, max_lines: int = 1000) -> None:
        super().__init__()
        self.max_lines = max_lines

    def compose(self) -> ComposeResult:
        yield LogPane(max_lines=self.max_lines)

    def on_mount(self) -> None:
        self.query_one(LogView).focus()


def lines(n: int, start: int = 0) -> str:
    return "".join(f"line {i}\n" for i in range(start, start + n))


# -- LogView --------------------------------------------------------------------------------


async def test_log_follows_then_pauses_and_counts_new_lines():
    app = LogHost()
    async with app.run_test(size=(60, 12)) as pilot:
        view = app.query_one(LogView)
        view.write(lines(100))
        await pilot.pause()
        assert view.follow and view.scroll_y == view.max_scroll_y
        await pilot.press("up", "up")
        assert not view.follow
        top = view.scroll_y
        view.write(lines(5, 100))
        await pilot.pause()
        assert view.new_lines == 5
        assert view.scroll_y == top  # the view did not move
        status = str(app.query_one("#log-status").render())
        assert "5 new lines" in status
        await pilot.press("G")
        await pilot.pause()
        assert view.follow and view.new_lines == 0
        assert view.scroll_y == view.max_scroll_y


async def test_log_memory_is_bounded_and_counts_what_it_dropped():
    app = LogHost(max_lines=500)
    async with app.run_test(size=(60, 12)) as pilot:
        view = app.query_one(LogView)
        for k in range(20):
            view.write(lines(10_000, k * 10_000))
        await pilot.pause()
        assert view.line_count == 500
        assert view.total == 200_000
        assert view.dropped == 199_500
        assert view.line(view.line_count - 1) == "line 199999"
        assert "last 500 of 200,000 lines" in str(app.query_one("#log-status").render())


async def test_log_joins_pieces_of_a_line_across_chunks_and_streams():
    app = LogHost()
    async with app.run_test(size=(60, 12)) as pilot:
        view = app.query_one(LogView)
        view.write_chunks([("stdout", "hel"), ("stderr", "warn"), ("stdout", "lo\nnext")])
        view.write_chunks([("stderr", "ing\n"), ("stdout", " line\n")])
        await pilot.pause()
        assert view.lines() == ["hello", "warning", "next line"]


def test_clean_keeps_what_a_terminal_shows():
    assert clean("progress 10%\rprogress 50%\rprogress 100%") == "progress 100%"
    assert clean("a\tb") == "a       b"
    assert plain("\x1b[31mred\x1b[0m text") == "red text"
    assert clean("bell\x07") == "bell\ufffd"


async def test_log_search_moves_between_matches():
    app = LogHost()
    async with app.run_test(size=(60, 8)) as pilot:
        view = app.query_one(LogView)
        view.write(lines(200))
        await pilot.pause()
        await pilot.press("slash", *"line 1", "enter")
        await pilot.pause()
        # line 1, line 10-19, line 100-199
        assert view.match_count == 111
        assert not view.follow
        first = view.match_index
        await pilot.press("n")
        assert view.match_index == (first + 1) % 111
        await pilot.press("N", "N")
        assert view.match_index == (first - 1) % 111
        assert "“line 1”" in str(app.query_one("#log-status").render())


async def test_log_wrap_toggle_changes_the_rows_not_the_lines():
    app = LogHost()
    async with app.run_test(size=(40, 10)) as pilot:
        view = app.query_one(LogView)
        view.write("x" * 100 + "\nshort\n")
        await pilot.pause()
        assert view.virtual_size.height == 2
        await pilot.press("w")
        await pilot.pause()
        assert view.wrap
        assert view.virtual_size.height > 2
        assert view.line_count == 2


async def test_log_renders_ansi_colours():
    app = LogHost()
    async with app.run_test(size=(40, 6)) as pilot:
        view = app.query_one(LogView)
        view.write("\x1b[31mred\x1b[0m plain\n")
        await pilot.pause()
        strip = view.render_line(0)
        styles = [seg.style for seg in strip if seg.text.strip() == "red"]
        assert styles and styles[0].color is not None
        assert "\x1b" not in strip.text


# -- VirtualTable ----------------------------------------------------------------------------


class TableHost(App[None]):
    selected: list[str]

    def on_virtual_table_selected(self, event: VirtualTable.Selected) -> None:
        self.selected.append(event.key)

    def compose(self) -> ComposeResult:
        self.selected = []
        yield VirtualTable(
            [Column("n", "N", 6), Column("name", "Name", 10, stretch=True)],
            formatter=lambda d: (str(d), f"row {d}"),
        )


async def test_virtual_table_holds_many_rows_and_keeps_the_cursor_key():
    app = TableHost()
    async with app.run_test(size=(40, 10)) as pilot:
        table = app.query_one(VirtualTable)
        table.focus()
        table.set_rows([Row(str(i), i) for i in range(10_000)])
        await pilot.press("down", "down", "pagedown")
        key = table.cursor_key
        assert key is not None and int(key) > 2
        table.set_rows([Row("new", -1)] + [Row(str(i), i) for i in range(10_000)])
        assert table.cursor_key == key  # the same run stays selected
        await pilot.press("end")
        assert table.cursor_key == "9999"
        assert "row 9999" in table.render_line(table.size.height - 1).text
        await pilot.press("enter")
        await pilot.pause()
        assert app.selected == ["9999"]


# -- clock, settings, workflows --------------------------------------------------------------


def test_relative_times_come_from_the_injected_clock():
    now = clock.parse(NOW)
    assert now == datetime(2026, 1, 15, 10, 30, tzinfo=UTC)
    assert clock.ago("2026-01-15T10:29:30.000000+00:00", now) == "30s ago"
    assert clock.ago("2026-01-15T08:30:00+00:00", now) == "2h ago"
    assert clock.duration("2026-01-15T10:00:00+00:00", None, now) == "30m 00s"
    assert clock.span(1.234) == "1.2s"
    assert clock.stamp("2026-01-15T10:29:30.5+00:00") == "2026-01-15 10:29:30Z"
    assert clock.frozen(NOW)() == now


def test_settings_file_keymap_theme_and_problems(tmp_path):
    path = tmp_path / "tui.yaml"
    path.write_text(
        "theme: nord\nbell: false\nlog: {max_lines: 500}\n"
        "keymap: {run.cancel: ctrl+k, bad: 3}\ncolour: red\n"
    )
    cfg = load_config(path)
    assert cfg.theme == "nord" and cfg.bell is False and cfg.log_max_lines == 500
    assert cfg.keymap == {"run.cancel": "ctrl+k"}
    assert any("keymap.bad" in p for p in cfg.problems)
    assert any("unknown setting 'colour'" in p for p in cfg.problems)
    broken = tmp_path / "broken.yaml"
    broken.write_text("theme: [unclosed\n")
    assert load_config(broken).problems


def test_settings_discovery_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("CPF_TUI_CONFIG", "")
    cfg = load_config()
    assert cfg.path is None and cfg.keymap == {}


def test_workflow_discovery_and_marks(tmp_path):
    from tui_seed import write_workflows

    folder = tmp_path / "flows"
    write_workflows(folder)
    (folder / "nested").mkdir()
    (folder / "nested" / "compose.yml").write_text("services: {web: {image: x}}\n")
    (folder / ".hidden").mkdir()
    (folder / ".hidden" / "x.yaml").write_text("a: 1\n")
    found = discover([folder])
    names = [p.name for p in found]
    assert "x.yaml" not in names
    assert names[:2] == ["approval.yaml", "broken.yaml"]
    states = {p.name: check(p).state for p in found}
    assert states["hello.yaml"] == "valid"
    assert states["warns.yaml"] == "warnings"
    assert states["broken.yaml"] == "invalid"
    assert states["compose.yml"] == "other"
    broken = check(folder / "broken.yaml")
    assert broken.problems[0].startswith("ERR_VALIDATION_WORKFLOW")
    assert any("unexpected field 'comand'" in p for p in broken.problems)
    warns = check(folder / "warns.yaml")
    assert warns.problems == warns.workflow.warnings


def test_outline_shows_conditions_transitions_and_nesting(tmp_path):
    from tui_seed import write_workflows

    write_workflows(tmp_path)
    rows = list(outline(check(tmp_path / "approval.yaml").workflow.steps))
    review = next(r for r in rows if r.step_id == "review")
    assert review.kind == "await_event"
    assert "waits for 'change_review'" in review.flow[0]
    assert any("→ apply" in f for f in review.flow)
    nested = list(
        outline(
            [
                {
                    "id": "loop",
                    "kind": "foreach",
                    "items": "${inputs.xs}",
                    "body": [{"id": "inner", "kind": "cli", "if": "item > 1", "command": "true"}],
                }
            ]
        )
    )
    assert [(r.step_id, r.depth, r.condition) for r in nested] == [
        ("loop", 0, ""),
        ("inner", 1, "item > 1"),
    ]


# -- engine reads for live views -------------------------------------------------------------


@pytest.fixture
def demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("CHECKPOINTFLOW_BASE_DIR", str(tmp_path / "base"))
    monkeypatch.delenv("CPF_DATABASE_URL", raising=False)
    return seed(tmp_path / "flows")


def test_run_summaries_and_overview(demo):
    from core import queries

    rows = queries.run_summaries()
    assert [r["run_id"] for r in rows] == [
        IDS["streaming"],
        IDS["approval"],
        IDS["hello"],
        IDS["flaky"],
        IDS["cancelled"],
    ]
    assert "inputs" not in rows[0]  # the list columns only
    waiting = queries.run_summaries(status="waiting")
    assert [r["run_id"] for r in waiting] == [IDS["approval"]]
    assert waiting[0]["wait"]["event_name"] == "change_review"
    overview = queries.runs_overview()
    assert overview["total"] == 5
    assert overview["by_status"]["waiting"] == 1
    changed = queries.run_summaries(updated_after=overview["last_updated"])
    assert changed == []


def test_output_tail_reads_only_the_end_of_a_big_log(demo):
    from core import queries
    from core.store.store import open_store

    store = open_store()
    attempt = queries.attempts(IDS["streaming"])[0]["id"]
    for k in range(30):
        store.append_output(
            IDS["streaming"], attempt, "ticker", [("stdout", lines(100, 1000 + k * 100))]
        )
    tail = queries.output_tail(IDS["streaming"], attempt_id=attempt, max_lines=250)
    assert not tail["complete"]
    text = "".join(c["text"] for c in tail["chunks"])
    assert 250 <= text.count("\n") < 400
    assert text.endswith("line 3999\n")
    whole = queries.output_tail(IDS["hello"], max_lines=1000)
    assert whole["complete"]
    assert "".join(c["text"] for c in whole["chunks"]) == (
        'squaring 7\n{"square": 49}\n{"parity": "odd"}\n'
    )


async def test_log_takes_a_flood_in_one_piece_and_keeps_its_tail():
    app = LogHost(max_lines=1000)
    async with app.run_test(size=(60, 12)) as pilot:
        view = app.query_one(LogView)
        view.write("partial ")
        view.write(lines(100_000) + "open end")
        await pilot.pause()
        assert view.line_count == 1000
        assert view.line(0) == "line 99001"
        assert view.line(view.line_count - 1) == "open end"
        assert view.total == view.dropped + view.line_count
        view.write(" continued\n")
        await pilot.pause()
        assert view.line(view.line_count - 1) == "open end continued"


async def test_log_counts_every_line_whatever_the_chunking():
    import random

    rnd = random.Random(7)
    app = LogHost(max_lines=1000)
    async with app.run_test(size=(60, 12)) as pilot:
        view = app.query_one(LogView)
        for n in (500, 5_000, 60_000, 150_000):
            view.clear()
            data = lines(n)
            pos, pieces = 0, []
            while pos < len(data):
                step = rnd.choice([7, 900, 70_000, 250_000])
                pieces.append(data[pos : pos + step])
                pos += step
            i = 0
            while i < len(pieces):
                k = rnd.randint(1, 4)
                view.write_chunks([("stdout", p) for p in pieces[i : i + k]])
                i += k
            await pilot.pause()
            assert view.total == n
            assert view.line_count == min(n, 1000)
            assert view.lines() == [f"line {j}" for j in range(max(0, n - 1000), n)]


async def test_log_header_lines_are_ours_and_not_searched():
    app = LogHost()
    async with app.run_test(size=(60, 12)) as pilot:
        view = app.query_one(LogView)
        view.write("half a li")
        view.write_meta("── step two ──")
        view.write("ne two\n")
        await pilot.pause()
        assert view.lines() == ["half a li", "── step two ──", "ne two"]
        assert view.search("two") == 1  # the header is not output


class TabsHost(App[None]):
    def compose(self) -> ComposeResult:
        from textual.widgets import Static, TabbedContent, TabPane

        with TabbedContent(), TabPane("One"):
            yield Static("1")


async def test_tabs_resized_after_their_bar_is_pruned_do_not_crash_the_app():
    # A Resize still queued while the app prunes a screen at exit reaches tabs whose
    # underline bar is already gone (Textual 8.2 raised NoMatches and ended the app).
    from textual import events
    from textual.geometry import Size
    from textual.widgets import Tabs
    from textual.widgets._tabs import Underline

    import cpf_tui.screens.run_view  # noqa: F401  (applies cpf_tui.textual_fixes)

    app = TabsHost()
    async with app.run_test(size=(60, 10)) as pilot:
        tabs = app.query_one(Tabs)
        await tabs.query_one(Underline).remove()
        tabs.post_message(events.Resize(Size(60, 2), Size(60, 2)))
        await pilot.pause()
        assert app.is_running and app._exception is None
