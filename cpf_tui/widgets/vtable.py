"""A table that renders only its visible rows.

Textual's DataTable measures every cell of every row it is given (about 4 s for 10,000
runs on the reference box), which misses the "first usable table under a second" goal.
This table takes rows as already-formatted cells in fixed-width columns (one column may
stretch), so setting 10,000 rows costs a list assignment and a frame renders ~50 rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

Cell = str | Text


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int  # cells; the stretch column uses it as its minimum
    stretch: bool = False
    justify: str = "left"
    # When the table is too narrow for every column, the column with the highest `drop`
    # goes first (0: never dropped), so a narrow terminal keeps what matters most.
    drop: int = 0


@dataclass(frozen=True)
class Row:
    key: str
    data: Any  # the cells (a tuple), or anything the table's `formatter` turns into cells


class VirtualTable(ScrollView, can_focus=True):
    """Rows of pre-formatted cells under a fixed header, with a row cursor."""

    DEFAULT_CSS = """
    VirtualTable {
        background: $surface;
        overflow-x: hidden;
        overflow-y: auto;
        &:focus { background-tint: $foreground 3%; }
        & > .vtable--header { text-style: bold; background: $panel; color: $text; }
        & > .vtable--cursor { background: $block-cursor-blurred-background; }
        &:focus > .vtable--cursor {
            background: $block-cursor-background;
            color: $block-cursor-foreground;
            text-style: $block-cursor-text-style;
        }
        & > .vtable--even { background: $surface-lighten-1 30%; }
        & > .vtable--empty { color: $text-muted; text-style: italic; }
    }
    """
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "vtable--header",
        "vtable--cursor",
        "vtable--even",
        "vtable--empty",
    }
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "first", "First", show=False),
        Binding("end", "last", "Last", show=False),
        Binding("enter", "select", "Open"),
    ]

    cursor: reactive[int] = reactive(0, init=False)

    class Highlighted(Message):
        def __init__(self, table: VirtualTable, key: str | None) -> None:
            super().__init__()
            self.table = table
            self.key = key

        @property
        def control(self) -> VirtualTable:
            return self.table

    class Selected(Message):
        def __init__(self, table: VirtualTable, key: str) -> None:
            super().__init__()
            self.table = table
            self.key = key

        @property
        def control(self) -> VirtualTable:
            return self.table

    def __init__(
        self,
        columns: Sequence[Column],
        *,
        empty_text: str = "Nothing to show.",
        formatter: Callable[[Any], tuple[Cell, ...]] | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.columns = list(columns)
        self.rows: list[Row] = []
        self.empty_text = empty_text
        # Cells are formatted when a row is drawn, so only visible rows pay for it.
        self.formatter = formatter
        self._index: dict[str, int] = {}
        self._cache: LRUCache[tuple[object, ...], Strip] = LRUCache(512)
        self._generation = 0

    # -- data ---------------------------------------------------------------------------

    @property
    def row_count(self) -> int:
        return len(self.rows)

    @property
    def cursor_key(self) -> str | None:
        if 0 <= self.cursor < len(self.rows):
            return self.rows[self.cursor].key
        return None

    def set_rows(self, rows: list[Row]) -> None:
        """Replace the rows; the cursor stays on the same key when it is still there."""
        key = self.cursor_key
        self.rows = rows
        self._index = {row.key: i for i, row in enumerate(rows)}
        self._generation += 1
        self._cache.clear()
        self.virtual_size = Size(self.size.width, len(rows) + 1)
        new = self._index.get(key, min(self.cursor, len(rows) - 1)) if key else 0
        new = max(0, new)
        if new != self.cursor:
            self.cursor = new
        else:
            self.post_message(self.Highlighted(self, self.cursor_key))
        self.refresh()

    def move_to(self, key: str) -> bool:
        index = self._index.get(key)
        if index is None:
            return False
        self.cursor = index
        return True

    # -- cursor ---------------------------------------------------------------------------

    def validate_cursor(self, value: int) -> int:
        return max(0, min(value, len(self.rows) - 1)) if self.rows else 0

    def watch_cursor(self, old: int, new: int) -> None:
        # Cached rows are keyed by (row, has cursor): no need to drop the cache here.
        self._keep_visible()
        self.refresh()
        self.post_message(self.Highlighted(self, self.cursor_key))

    def _body_height(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)

    def _keep_visible(self) -> None:
        top = int(self.scroll_y)
        height = self._body_height()
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True, force=True)
        elif self.cursor >= top + height:
            self.scroll_to(y=self.cursor - height + 1, animate=False, immediate=True, force=True)

    def action_cursor(self, delta: int) -> None:
        self.cursor += delta

    def action_page(self, direction: int) -> None:
        self.cursor += direction * self._body_height()

    def action_first(self) -> None:
        self.cursor = 0

    def action_last(self) -> None:
        self.cursor = len(self.rows) - 1

    def action_select(self) -> None:
        key = self.cursor_key
        if key is not None:
            self.post_message(self.Selected(self, key))

    async def _on_click(self, event: events.Click) -> None:
        row = event.y - 1 + int(self.scroll_y)
        if event.y >= 1 and 0 <= row < len(self.rows):
            already = row == self.cursor
            self.cursor = row
            if already or event.chain >= 2:
                self.action_select()

    def on_resize(self, _event: events.Resize) -> None:
        self._cache.clear()
        self.virtual_size = Size(self.size.width, len(self.rows) + 1)

    # -- rendering -----------------------------------------------------------------------

    def _widths(self, total: int) -> list[int]:
        """Cells per column for a table `total` cells wide; 0 for a dropped column."""
        return fit_columns(self.columns, total)

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        if y == 0:
            return self._header(width)
        index = int(self.scroll_y) + y - 1
        if not self.rows:
            if y == 2:
                style = self.get_component_rich_style("vtable--empty")
                return (
                    Strip([Segment(f"  {self.empty_text}", style)])
                    .extend_cell_length(width, self.rich_style)
                    .crop(0, width)
                )
            return Strip.blank(width, self.rich_style)
        if index >= len(self.rows):
            return Strip.blank(width, self.rich_style)
        key = (self._generation, index, index == self.cursor, self.has_focus, width)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        style = self.rich_style
        if index % 2:
            style += self.get_component_rich_style("vtable--even")
        if index == self.cursor:
            style += self.get_component_rich_style("vtable--cursor")
        data = self.rows[index].data
        cells = self.formatter(data) if self.formatter else data
        strip = self._render_cells(cells, width, style)
        self._cache[key] = strip
        return strip

    def _header(self, width: int) -> Strip:
        style = self.rich_style + self.get_component_rich_style("vtable--header")
        return self._render_cells(tuple(c.label for c in self.columns), width, style)

    def _render_cells(self, cells: tuple[Cell, ...], width: int, style: Style) -> Strip:
        console = self.app.console
        segments: list[Segment] = []
        for column, cell_width, cell in zip(self.columns, self._widths(width), cells, strict=False):
            if not cell_width:  # dropped: no room at this width
                continue
            segments.append(Segment(" "))
            if isinstance(cell, str):
                text = cell if cell_len(cell) <= cell_width else _truncate(cell, cell_width)
                pad = " " * (cell_width - cell_len(text))
                segments.append(Segment(pad + text if column.justify == "right" else text + pad))
                continue
            rich_text = cell
            if rich_text.cell_len > cell_width:
                rich_text = rich_text.copy()
                rich_text.truncate(cell_width, overflow="ellipsis")
            pad = Segment(" " * (cell_width - rich_text.cell_len))
            parts = list(rich_text.render(console, end=""))
            if rich_text.style:  # render() leaves the base style to the caller
                base = console.get_style(rich_text.style)
                parts = list(Segment.apply_style(parts, base))
            segments.extend([pad, *parts] if column.justify == "right" else [*parts, pad])
        strip = Strip(segments).apply_style(style)
        return strip.extend_cell_length(width, style).crop(0, width)

    def refresh_cells(self) -> None:
        """Format the visible rows again (their data or the clock changed)."""
        self._cache.clear()
        self.refresh()


def fit_columns(columns: Sequence[Column], total: int) -> list[int]:
    """Widths of `columns` in `total` cells: drop columns (highest `drop` first) until the
    rest fit, then share what is left among the stretch columns (the first gets the rest)."""
    widths = [c.width for c in columns]

    def needed() -> int:  # one space before each shown column, one cell of slack at the end
        return sum(w + 1 for w in widths if w) + 1

    for i in sorted(
        (i for i, c in enumerate(columns) if c.drop), key=lambda i: (-columns[i].drop, -i)
    ):
        if needed() <= total:
            break
        widths[i] = 0
    spare = total - needed()
    stretch = [i for i, c in enumerate(columns) if c.stretch and widths[i]]
    if stretch and spare > 0:
        share, rest = divmod(spare, len(stretch))
        for i in stretch:
            widths[i] += share
        widths[stretch[0]] += rest
    return widths


def _truncate(text: str, width: int) -> str:
    """Cut `text` to `width` cells, ending with an ellipsis."""
    if width <= 1:
        return "…"[:width]
    out, used = [], 0
    for ch in text:
        w = cell_len(ch)
        if used + w > width - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + "…"
