"""The live log: a bounded, tail-following view of step output (after toolong's LogLines).

- Only visible rows are rendered; ANSI colours are parsed per visible line (cached).
- Memory is bounded: past `max_lines` the oldest lines are dropped (the full log stays
  in the store; `dropped` counts what this view no longer holds).
- Follows the end while `follow` is on; scrolling up turns it off and counts
  `new_lines` instead of moving the view; `end`/`G` follows again.
- Wrap toggle, search with next/previous match, stderr lines marked in the gutter.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable
from functools import lru_cache
from typing import ClassVar

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
# Control characters other than ESC (kept for colours) and TAB (expanded).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1a\x1c-\x1f\x7f]")

GUTTER = 2  # stream marker + space


def clean(raw: str) -> str:
    """What a terminal would leave of a line: the text after the last carriage return
    (progress bars), tabs expanded, other control characters made visible."""
    if raw.isprintable():
        return raw
    if "\r" in raw:
        parts = [p for p in raw.split("\r") if p]
        raw = parts[-1] if parts else ""
    if "\t" in raw:
        raw = raw.expandtabs(8)
    return _CONTROL.sub("\ufffd", raw)


@lru_cache(maxsize=4096)
def plain(raw: str) -> str:
    """The line without ANSI escapes (what search and widths see)."""
    text = clean(raw)
    return _ANSI.sub("", text) if "\x1b" in text else text


@lru_cache(maxsize=512)
def styled(raw: str) -> Text:
    text = clean(raw)
    if "\x1b" in text:
        return Text.from_ansi(text, no_wrap=True, end="")
    return Text(text, no_wrap=True, end="")


def _cuts(text: str, width: int) -> list[int]:
    """Character offsets where `text` wraps at `width` cells."""
    if width <= 0:
        return []
    if text.isascii():
        return list(range(width, len(text), width))
    cuts, used = [], 0
    for i, ch in enumerate(text):
        w = cell_len(ch)
        if used + w > width:
            cuts.append(i)
            used = 0
        used += w
    return cuts


class LogView(ScrollView, can_focus=True):
    """Lines of (stream, raw text); streams: stdout, stderr, meta (headers we add)."""

    DEFAULT_CSS = """
    LogView {
        background: $surface;
        overflow-x: auto;
        overflow-y: auto;
        &:focus { background-tint: $foreground 4%; }
        & > .log--stderr { color: $error; }
        & > .log--meta { color: $text-muted; text-style: bold; }
        & > .log--match { background: $warning 40%; }
        & > .log--current { background: $warning; color: $background; }
        & > .log--empty { color: $text-muted; text-style: italic; }
    }
    """
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "log--stderr",
        "log--meta",
        "log--match",
        "log--current",
        "log--empty",
    }
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("end,G", "follow", "Follow", show=False, id="log.follow"),
        Binding("home,g", "top", "Top", show=False, id="log.top"),
        Binding("w", "toggle_wrap", "Wrap", id="log.wrap"),
        Binding("n", "next_match", "Next match", show=False, id="log.next"),
        Binding("N", "previous_match", "Previous match", show=False, id="log.previous"),
        Binding("up,k", "scroll_up", "Up", show=False),
        Binding("down,j", "scroll_down", "Down", show=False),
        Binding("pageup,b", "page_up", "Page up", show=False),
        Binding("pagedown,space", "page_down", "Page down", show=False),
        Binding("left", "scroll_left", "Left", show=False),
        Binding("right", "scroll_right", "Right", show=False),
    ]

    wrap: reactive[bool] = reactive(False, init=False)
    follow: reactive[bool] = reactive(True, init=False)
    new_lines: reactive[int] = reactive(0, init=False)
    # Bumped on every change a status line may want to show (matches, drops).
    revision: reactive[int] = reactive(0, init=False)

    def __init__(
        self,
        *,
        max_lines: int = 10_000,
        empty_text: str = "No output yet.",
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.max_lines = max(10, max_lines)
        self.empty_text = empty_text
        # Two parallel lists rather than (stream, text) tuples: strings are not tracked by
        # the garbage collector, so a flood of lines does not trigger long collections.
        self._texts: list[str] = []  # [start:] are live
        self._streams: list[str] = []
        self._start = 0
        self._open: dict[str, int] = {}  # stream -> absolute index of its unfinished line
        self.dropped = 0  # lines dropped from the front (kept in the store)
        self.total = 0  # lines ever received
        self._max_width = 0
        # Wrap mode: _prefix[i] = display rows before absolute line i (parallel to _texts).
        self._prefix: list[int] = []
        self._wrap_width = 0
        self.query_text = ""
        self._matches: list[int] = []  # absolute line indexes
        self._matched_upto = 0
        self.match_index = -1

    # -- reading --------------------------------------------------------------------------

    @property
    def line_count(self) -> int:
        return len(self._texts) - self._start

    def line(self, i: int) -> str:
        """Plain text of live line `i` (0 = oldest held)."""
        return plain(self._texts[self._start + i])

    def lines(self) -> list[str]:
        return [plain(raw) for raw in self._texts[self._start :]]

    # -- writing --------------------------------------------------------------------------

    def clear(self) -> None:
        self._texts = []
        self._streams = []
        self._start = 0
        self._open = {}
        self._prefix = []
        self.dropped = 0
        self.total = 0
        self._max_width = 0
        self._matches = []
        self._matched_upto = 0
        self.match_index = -1
        self.new_lines = 0
        self.follow = True
        self._resize_virtual()
        if self.is_mounted:
            self.scroll_to(0, 0, animate=False, immediate=True, force=True)
        self.refresh()
        self.revision += 1

    def write(self, text: str, stream: str = "stdout") -> None:
        self.write_chunks([(stream, text)])

    def write_meta(self, text: str) -> None:
        """A header line of our own (not step output)."""
        self._close_open()
        self._append("meta", text)
        self._after_append(1)

    def write_chunks(self, chunks: Iterable[tuple[str, str]]) -> None:
        """Append output pieces; a piece may end mid-line (continued by the next one)."""
        texts: list[str] = []  # the new lines, and their streams alongside
        streams: list[str] = []
        open_new: dict[str, int] = {}  # stream -> index in `texts` of its open line
        skipped = 0
        chunks = [(stream, text) for stream, text in chunks if text]
        if not chunks:
            return
        counts = [text.count("\n") for _, text in chunks]
        surplus = sum(counts) - self.max_lines
        if surplus > 0 and len(chunks) > 1:
            # A flood in many pieces: whole chunks that would be dropped anyway are only
            # counted (their lines are in the store), never split into lines.
            first = 0
            while first < len(chunks) - 1 and counts[first] <= surplus:
                stream = chunks[first][0]
                surplus -= counts[first]
                skipped += counts[first]
                # Its first newline ends a line already counted (without a newline it
                # only extends that line, which stays open).
                if counts[first] and self._open.pop(stream, None) is not None:
                    skipped -= 1
                first += 1
            chunks = chunks[first:]
        for stream, text in chunks:
            if len(text) > 65_536 and text.count("\n") > self.max_lines + 1:
                # A flood: only its last max_lines lines can stay, so split just those
                # off (in C) and count the rest as dropped, without making them lines.
                head, *pieces = text.rsplit("\n", self.max_lines + 1)
                skipped += head.count("\n") + 1 + len(texts)
                if open_new.get(stream) is not None or self._open.pop(stream, None) is not None:
                    skipped -= 1  # the head's first piece ends a line already counted
                texts, streams, open_new = [], [], {}
            else:
                pieces = text.split("\n")
                at = open_new.pop(stream, None)
                open_at = self._open.pop(stream, None)
                if at is not None:  # continues a line opened earlier in this batch
                    texts[at] += pieces[0]
                    if len(pieces) == 1:
                        open_new[stream] = at
                    pieces = pieces[1:]
                elif open_at is not None and open_at >= self._start:
                    self._texts[open_at] += pieces[0]
                    self._line_changed(open_at)
                    if len(pieces) == 1:
                        self._open[stream] = open_at
                    pieces = pieces[1:]
            if pieces:
                last = pieces.pop()  # after the final newline: "" or an unfinished line
                if last:
                    pieces.append(last)
                    open_new[stream] = len(texts) + len(pieces) - 1
                texts.extend(pieces)
                streams.extend([stream] * len(pieces))
        # A burst larger than the buffer: skip what would be dropped at once anyway.
        skip = len(texts) - self.max_lines
        if skip > 0:
            texts, streams = texts[skip:], streams[skip:]
            skipped += skip
            open_new = {k: i - skip for k, i in open_new.items() if i >= skip}
        self.total += skipped
        self.dropped += skipped
        self._append_many(texts, streams, open_new)
        self._after_append(len(texts) + skipped)

    def _close_open(self) -> None:
        self._open.clear()

    def _append(self, stream: str, raw: str) -> None:
        self._append_many([raw], [stream], {})

    def _append_many(self, texts: list[str], streams: list[str], open_at: dict[str, int]) -> None:
        """Add lines (`open_at`: stream -> index in `texts` of its unfinished line).

        Written for floods: the per-line work is list operations done in C; widths
        are lengths (exact for ASCII, measured only for the other lines)."""
        if not texts:
            return
        base = len(self._texts)
        self._texts.extend(texts)
        self._streams.extend(streams)
        widest = max(map(len, texts))
        odd = [raw for raw in texts if not raw.isascii()]
        if odd:
            widest = max(widest, *(cell_len(plain(raw)) for raw in odd))
        self._max_width = max(self._max_width, widest + GUTTER)
        for stream, i in open_at.items():
            self._open[stream] = base + i
        if self.wrap:  # a reactive: read once per batch
            total = self._prefix[-1] + self._rows_of(base - 1) if self._prefix else 0
            for i in range(base, len(self._texts)):
                self._prefix.append(total)
                total += self._rows_of(i)
        self.total += len(texts)

    def _line_changed(self, index: int) -> None:
        width = cell_len(plain(self._texts[index])) + GUTTER
        self._max_width = max(self._max_width, width)
        if self.wrap:
            self._rebuild_prefix(index)

    def _after_append(self, added: int) -> None:
        excess = self.line_count - self.max_lines
        shift_rows = 0
        if excess > 0:
            shift_rows = self._drop(excess)
        self._scan_matches()
        self._resize_virtual()
        if self.follow:
            self._to_end()
        else:
            if shift_rows:
                # Keep the same text in view while the head of the buffer is dropped.
                self.scroll_to(
                    y=max(0, self.scroll_y - shift_rows), animate=False, immediate=True, force=True
                )
            self.new_lines += added
        self.refresh()
        self.revision += 1

    def _drop(self, count: int) -> int:
        """Forget the `count` oldest lines; returns how many display rows they took."""
        new_start = self._start + count
        rows = self._row_at_line(new_start) - self._row_at_line(self._start) if self.wrap else count
        self._start = new_start
        self.dropped += count
        self._open = {s: i for s, i in self._open.items() if i >= new_start}
        self._matches = [m for m in self._matches if m >= new_start]
        if self._start > self.max_lines:  # compact now and then: amortised O(1)
            del self._texts[: self._start]
            del self._streams[: self._start]
            if self._prefix:
                del self._prefix[: self._start]
            self._open = {s: i - self._start for s, i in self._open.items()}
            self._matches = [m - self._start for m in self._matches]
            self._matched_upto -= self._start
            self._start = 0
        self.match_index = min(self.match_index, len(self._matches) - 1)
        return rows

    # -- geometry -----------------------------------------------------------------------

    def _text_width(self) -> int:
        return max(10, self.scrollable_content_region.width - GUTTER)

    def _rows_of(self, index: int) -> int:
        text = plain(self._texts[index])
        width = self._wrap_width
        if text.isascii():  # the common case, without building the cut list
            return max(1, (len(text) + width - 1) // width) if width > 0 else 1
        return len(_cuts(text, width)) + 1

    def _rebuild_prefix(self, from_index: int | None = None) -> None:
        self._wrap_width = self._text_width()
        n = len(self._texts)
        if from_index is None or from_index <= 0 or from_index > len(self._prefix):
            self._prefix = [0] * n
            total = 0
            for i in range(n):
                self._prefix[i] = total
                if i >= self._start:
                    total += self._rows_of(i)
            return
        del self._prefix[from_index + 1 :]
        total = self._prefix[from_index]
        for i in range(from_index, n):
            if i > from_index:
                self._prefix.append(total)
            total += self._rows_of(i)

    def _row_at_line(self, index: int) -> int:
        if index >= len(self._texts):
            return self._total_rows()
        return self._prefix[index]

    def _total_rows(self) -> int:
        if not self.wrap:
            return self.line_count
        if not self._prefix or self.line_count == 0:
            return 0
        last = len(self._texts) - 1
        return self._prefix[last] + self._rows_of(last) - self._prefix[self._start]

    def _resize_virtual(self) -> None:
        height = self._total_rows()
        width = self.scrollable_content_region.width if self.wrap else self._max_width
        self.virtual_size = Size(width, height)

    def on_resize(self) -> None:
        if self.wrap and self._text_width() != self._wrap_width:
            self._rebuild_prefix()
        self._resize_virtual()
        if self.follow:
            self._to_end()

    def watch_wrap(self, wrap: bool) -> None:
        # Keep the top line in view across the change of row geometry.
        top = self._line_at_row(int(self.scroll_y), wrapped=not wrap)
        if wrap:
            self._rebuild_prefix()
        else:
            self._prefix = []
        self._resize_virtual()
        if self.follow:
            self._to_end()
        else:
            self.scroll_to(0, self._row_of_line(top), animate=False, immediate=True, force=True)
        self.refresh()
        self.revision += 1

    def _line_at_row(self, row: int, *, wrapped: bool | None = None) -> int:
        """Absolute line index shown at display row `row`."""
        wrapped = self.wrap if wrapped is None else wrapped
        if not wrapped or not self._prefix:
            return self._start + row
        target = row + self._prefix[self._start]
        return max(self._start, bisect_right(self._prefix, target, lo=self._start) - 1)

    def _row_of_line(self, index: int) -> int:
        if not self.wrap:
            return index - self._start
        return self._prefix[index] - self._prefix[self._start]

    # -- scrolling and following -------------------------------------------------------

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if new_value >= self.max_scroll_y:
            if not self.follow:
                self.follow = True
        elif new_value < old_value and self.follow:
            self.follow = False

    def _to_end(self) -> None:
        # force: right after a size change the scrollbars are not laid out yet, and a
        # plain scroll would be refused. (Before mounting, on_resize does it.)
        if not self.is_mounted:
            return
        self.scroll_to(y=self.max_scroll_y, animate=False, immediate=True, force=True)

    def watch_follow(self, follow: bool) -> None:
        if follow:
            self.new_lines = 0
            self._to_end()
        self.revision += 1

    def action_follow(self) -> None:
        self.follow = True
        self._to_end()

    def action_top(self) -> None:
        self.follow = False
        self.scroll_to(y=0, animate=False, immediate=True, force=True)

    def action_toggle_wrap(self) -> None:
        self.wrap = not self.wrap

    def action_scroll_up(self) -> None:
        self.follow = False
        super().action_scroll_up()

    def action_page_up(self) -> None:
        self.follow = False
        super().action_page_up()

    # -- search -------------------------------------------------------------------------

    def search(self, text: str) -> int:
        """Find lines containing `text` (case-insensitive); jumps to the first match at or
        after the top of the view. Returns the number of matches."""
        self.query_text = text
        self._matches = []
        self._matched_upto = self._start
        self.match_index = -1
        self._scan_matches()
        if self._matches:
            top = self._line_at_row(int(self.scroll_y))
            after = [i for i, m in enumerate(self._matches) if m >= top]
            self._goto_match(after[0] if after else 0)
        self.refresh()
        self.revision += 1
        return len(self._matches)

    def _scan_matches(self) -> None:
        if not self.query_text:
            self._matched_upto = len(self._texts)
            return
        needle = self.query_text.casefold()
        start = max(self._matched_upto, self._start)
        for i in range(start, len(self._texts)):
            if self._streams[i] != "meta" and needle in plain(self._texts[i]).casefold():
                self._matches.append(i)
        self._matched_upto = len(self._texts)

    @property
    def match_count(self) -> int:
        return len(self._matches)

    def _goto_match(self, index: int) -> None:
        if not self._matches:
            return
        self.match_index = index % len(self._matches)
        line = self._matches[self.match_index]
        self.follow = False
        height = self.scrollable_content_region.height
        row = self._row_of_line(line)
        self.scroll_to(y=max(0, row - height // 2), animate=False, immediate=True, force=True)
        self.refresh()
        self.revision += 1

    def action_next_match(self) -> None:
        if self._matches:
            self._goto_match(self.match_index + 1)

    def action_previous_match(self) -> None:
        if self._matches:
            self._goto_match(self.match_index - 1 if self.match_index >= 0 else -1)

    # -- rendering ----------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        base = self.rich_style
        if self.line_count == 0:
            # What stands in for the output (possibly several lines, e.g. a step's error),
            # wrapped to the pane rather than cut.
            style = base + self.get_component_rich_style("log--empty")
            lines = Text(self.empty_text).wrap(self.app.console, max(1, width - GUTTER))
            if y < len(lines):
                segments = [Segment("  "), *lines[y].render(self.app.console, end="")]
                return Strip(segments).apply_style(style).extend_cell_length(width, base)
            return Strip.blank(width, base)
        row = int(self.scroll_y) + y
        if row >= self._total_rows():
            return Strip.blank(width, base)
        index = self._line_at_row(row)
        stream, raw = self._streams[index], self._texts[index]
        text = styled(raw).copy()
        if stream == "meta":
            text = Text(raw, style=self.get_component_rich_style("log--meta"), no_wrap=True)
        if self.query_text and self._matches and stream != "meta":
            self._highlight(text, index)
        gutter = self._gutter(stream, index, row)
        if self.wrap:
            sub = row - self._row_of_line(index)
            cuts = _cuts(text.plain, self._wrap_width)
            if cuts:
                parts = text.divide(cuts)
                text = parts[sub] if sub < len(parts) else Text("")
            elif sub:
                text = Text("")
            segments = [gutter, *text.render(self.app.console)]
            return Strip(segments).apply_style(base).extend_cell_length(width, base).crop(0, width)
        scroll_x = int(self.scroll_x)
        segments = [gutter, *text.render(self.app.console)]
        strip = Strip(segments).apply_style(base)
        if strip.cell_length > scroll_x + width and width > 1:
            # Cut at the pane edge: say so, as the rest of the app does ("…").
            kept = list(strip.crop(scroll_x, scroll_x + width - 1))
            last = kept[-1].style if kept else base
            return Strip([*kept, Segment("…", last)]).simplify()
        return strip.crop_extend(scroll_x, scroll_x + width, base)

    def _gutter(self, stream: str, index: int, row: int) -> Segment:
        first_row = not self.wrap or self._row_of_line(index) == row
        if stream == "stderr" and first_row:
            return Segment("▌ ", self.get_component_rich_style("log--stderr"))
        return Segment("  ")

    def _highlight(self, text: Text, index: int) -> None:
        needle = self.query_text.casefold()
        hay = text.plain.casefold()
        current = (
            0 <= self.match_index < len(self._matches) and self._matches[self.match_index] == index
        )
        style: Style = self.get_component_rich_style("log--current" if current else "log--match")
        start = hay.find(needle)
        while start != -1 and needle:
            text.stylize(style, start, start + len(needle))
            start = hay.find(needle, start + len(needle))
