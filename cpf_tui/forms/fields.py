"""The field widgets: one per kind of `model.Field`.

Every field widget shows a label (with a required marker or "(optional)"), its editor, the
description as a dim help line and an error line, and answers the same small protocol:

    read(path)   -> (value or MISSING, coercion errors)   MISSING = leave out of the payload
    write(value) -> None                                  MISSING = back to the default
    state()      -> raw editor state (what is on screen), for change detection
    route(path)  -> (the field widget an error at `path` belongs to, the unmatched tail)

Editors are created in `__init__` (not `compose`) so `read` works before mounting, and
programmatic writes happen under `prevent(...)` so they do not look like user edits.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from textual import events, on
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.markup import escape
from textual.message import Message
from textual.widget import Widget
from textual.widgets import (
    Button,
    Checkbox,
    Collapsible,
    Input,
    MaskedInput,
    RadioButton,
    RadioSet,
    Select,
    SelectionList,
    Static,
    Switch,
    TextArea,
)
from textual.widgets.selection_list import Selection

from core.payload import FieldError
from cpf_tui.forms import model
from cpf_tui.forms.model import MISSING, Field

Path = tuple[str | int, ...]

# A boolean whose label is longer than this is a Checkbox (label beside the box).
LONG_LABEL = 40
# Enums with this many options or fewer are radio buttons (unless x-widget says otherwise).
RADIO_MAX = 4

_CHANGE_EVENTS = (
    Input.Changed,
    Switch.Changed,
    Checkbox.Changed,
    Select.Changed,
    RadioSet.Changed,
    SelectionList.SelectedChanged,
    TextArea.Changed,
)


class FieldEdited(Message):
    """A field changed by something other than its editor's own message (rows, reset)."""

    def __init__(self, field: FieldWidget | None = None) -> None:
        super().__init__()
        self.field = field


def _inline_markdown(text: str) -> Content:
    """Descriptions allow inline markdown: **bold**, *italic*, `code`, [text](url)."""
    out = escape(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"[b]\1[/b]", out)
    out = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"[i]\1[/i]", out)
    out = re.sub(r"`([^`]+)`", r"[$text-accent]\1[/]", out)
    out = re.sub(r"\\?\[([^\]]+)\\?\]\(([^)\s]+)\)", r"[u]\1[/u]", out)
    try:
        return Content.from_markup(out)
    except Exception:  # markup we produced badly: show the text as it is
        return Content(text)


def _marks(f: Field) -> str:
    """Markup after a label: "*" when required, else "(optional)"; read-only / secret."""
    notes = [] if f.required or f.kind == model.CONST else ["optional"]
    if f.read_only:
        notes.append("read-only")
    if f.secret:
        notes.append("secret")
    out = " [$text-error]*[/]" if f.required and f.kind != model.CONST else ""
    return out + (f" [dim]({', '.join(notes)})[/]" if notes else "")


def _label(f: Field) -> Content:
    return Content.from_markup(f"[b]{escape(f.title)}[/b]{_marks(f)}")


_COMPACTABLE = (Input, Select, RadioSet, SelectionList, Checkbox, Button)


class FieldWidget(Vertical):
    """Base: label, editor row, help line, error line; null toggle when nullable."""

    DEFAULT_CSS = """
    FieldWidget { height: auto; margin: 0 0 1 0; }
    FieldWidget > .field-label { height: auto; }
    FieldWidget > .field-help { color: $text-muted; height: auto; }
    FieldWidget > .field-error { color: $text-error; height: auto; display: none; }
    FieldWidget.-has-error > .field-error { display: block; }
    FieldWidget > .field-row { height: auto; }
    FieldWidget > .field-row > Input,
    FieldWidget > .field-row > MaskedInput,
    FieldWidget > .field-row > Select,
    FieldWidget > .field-row > TextArea { width: 1fr; }
    FieldWidget.-has-error > .field-row > Input,
    FieldWidget.-has-error > .field-row > MaskedInput,
    FieldWidget.-has-error > .field-row > TextArea,
    FieldWidget.-has-error > .field-row > SelectionList,
    FieldWidget.-has-error > .field-row > RadioSet { border: tall $error; }
    FieldWidget.-has-error > .field-row > Select > SelectCurrent { border: tall $error; }
    FieldWidget > .field-row > .null-toggle { width: auto; margin-left: 1; }
    FieldWidget > .field-row > .field-hint { width: auto; color: $text-muted; padding: 0 1; }
    FieldWidget > .field-row > .field-hint.-beside-tall { padding: 1 1; }
    FieldWidget > .field-row > TextArea { height: auto; min-height: 3; max-height: 12; }
    FieldWidget.-null > .field-row > .field-hint { display: none; }
    """

    def __init__(
        self,
        f: Field,
        value: Any = MISSING,
        *,
        depth: int = 0,
        label: bool = True,
        compact: bool = False,
    ):
        super().__init__(classes=f"field field-{f.kind}")
        self.field = f
        self.depth = depth
        self.compact = compact
        self.show_label = label
        self.errors: list[str] = []
        self.errors_state: Any = None  # what the editor held when the errors were shown
        initial = value if value is not MISSING else f.default
        self.null_toggle: Checkbox | None = None
        if f.nullable:
            self.null_toggle = Checkbox(
                "null",
                value=initial is None,
                classes="null-toggle",
                disabled=f.read_only,
                tooltip="Send null for this field",
            )
        self.error_line = Static("", classes="field-error")

    # -- protocol ---------------------------------------------------------------------------

    def read(self, path: Path) -> tuple[Any, list[FieldError]]:
        if self.is_null:
            return None, []
        return self.read_value(path)

    def write(self, value: Any) -> None:
        initial = value if value is not MISSING else self.field.default
        if self.null_toggle is not None:
            with self.null_toggle.prevent(Checkbox.Changed):
                self.null_toggle.value = initial is None
            self._sync_null()
        if initial is None and self.field.nullable:
            return
        self.write_value(value)

    def state(self) -> Any:
        return (self.is_null, self.value_state())

    def route(self, tail: Path) -> tuple[FieldWidget, Path]:
        return self, tail

    def reset(self) -> None:
        self.write(MISSING)
        self.set_errors([])
        self.post_message(FieldEdited(self))

    def live_check(self) -> None:
        """Re-evaluate the inline hints of this field (on blur; and while it shows some)."""

    # -- for subclasses ---------------------------------------------------------------------

    def read_value(self, path: Path) -> tuple[Any, list[FieldError]]:
        raise NotImplementedError

    def write_value(self, value: Any) -> None:
        raise NotImplementedError

    def value_state(self) -> Any:
        raise NotImplementedError

    def editors(self) -> list[Widget]:
        """The widgets that edit the value (disabled while null)."""
        return []

    def compose_editor(self) -> Iterator[Widget]:
        yield from ()

    # -- shared -----------------------------------------------------------------------------

    @property
    def is_null(self) -> bool:
        return self.null_toggle is not None and self.null_toggle.value

    @property
    def title_path(self) -> str:
        """Labels from the top of the form down to this field: 'Approver › Name'."""
        parts: list[str] = []
        node: Widget | None = self
        while node is not None:
            if isinstance(node, FieldWidget) and node.field.key is not None:
                parts.append(node.field.title)
            elif isinstance(node, FieldWidget) and isinstance(node.parent, _ArrayRow):
                parts.append(f"#{node.parent.index + 1}")
            node = node.parent
            if node is not None and node.__class__.__name__ == "SchemaForm":
                break
        return " › ".join(reversed(parts)) or self.field.title

    def apply_compact(self) -> None:
        """In a compact form, editors lose their borders (one line each)."""
        if self.compact:
            for w in [*self.editors(), self.null_toggle]:
                if isinstance(w, _COMPACTABLE):
                    w.compact = True

    def compose(self) -> Iterator[Widget]:
        self.apply_compact()
        if self.show_label:
            yield Static(_label(self.field), classes="field-label")
        with Horizontal(classes="field-row"):
            yield from self.compose_editor()
            if self.null_toggle is not None:
                yield self.null_toggle
        if self.field.description:
            yield Static(_inline_markdown(self.field.description), classes="field-help")
        yield self.error_line

    def on_mount(self) -> None:
        self._sync_null()

    def set_errors(self, messages: list[str]) -> None:
        self.errors = list(messages)
        self.errors_state = self.value_state() if messages else None
        self.error_line.update(Content("\n".join(f"✗ {m}" for m in messages)))
        self.set_class(bool(messages), "-has-error")

    def add_error(self, message: str) -> None:
        if message not in self.errors:
            self.set_errors([*self.errors, message])

    def focus_target(self) -> Widget | None:
        for w in self.editors():
            if w.focusable:
                return w
        if self.null_toggle is not None and self.null_toggle.focusable:
            return self.null_toggle
        return None

    def field_widgets(self) -> Iterator[FieldWidget]:
        """This field and the field widgets below it, in screen order."""
        yield self

    @on(Checkbox.Changed, ".null-toggle")
    def _null_changed(self, event: Checkbox.Changed) -> None:
        if event.checkbox is self.null_toggle:
            self._sync_null()

    def _sync_null(self) -> None:
        null = self.is_null
        self.set_class(null, "-null")
        for w in self.editors():
            w.disabled = null or self.field.read_only

    def on_descendant_blur(self, event: events.DescendantBlur) -> None:
        # Errors shown for what is still in the editor stay (they may be the engine's).
        if not (self.errors and self.value_state() == self.errors_state):
            self.live_check()


# ---------------------------------------------------------------------------------------------
# Leaves


def _text_of(f: Field, value: Any) -> str:
    if value is MISSING or value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) else str(value)
    return json.dumps(value, ensure_ascii=False)


# A MaskedInput refuses values that do not fit its template; anything else gets an Input.
_DATE_MASKABLE = re.compile(r"(\d{4}-\d{2}-\d{2})?")


class ScalarField(FieldWidget):
    """string / integer / number: Input (MaskedInput for dates, TextArea for long text)."""

    def __init__(self, f: Field, value: Any = MISSING, **kw: Any) -> None:
        super().__init__(f, value, **kw)
        text = _text_of(f, value if value is not MISSING else f.default)
        self.editor: Input | TextArea
        if f.multiline:
            self.editor = TextArea(text, soft_wrap=True, tab_behavior="focus", disabled=f.read_only)
            self.editor.highlight_cursor_line = False
            if f.placeholder:
                self.editor.placeholder = f.placeholder
        elif f.format == "date" and not f.secret and _DATE_MASKABLE.fullmatch(text):
            self.editor = MaskedInput(
                "9999-99-99", value=text, placeholder=f.placeholder or "YYYY-MM-DD",
                disabled=f.read_only,
            )  # fmt: skip
        else:
            # Free text even for numbers: Textual's integer/number inputs drop what they
            # refuse ("abc" vanished, "1.5" became "15"); here every character stays and
            # the field says what is wrong with it.
            self.editor = Input(
                text,
                placeholder=f.placeholder or _format_placeholder(f.format),
                password=f.secret,
                disabled=f.read_only,
            )

    def compose_editor(self) -> Iterator[Widget]:
        yield self.editor

    def editors(self) -> list[Widget]:
        return [self.editor]

    @property
    def text(self) -> str:
        return self.editor.text if isinstance(self.editor, TextArea) else self.editor.value

    def read_value(self, path: Path) -> tuple[Any, list[FieldError]]:
        value, problem = model.coerce_text(self.field, self.text)
        if problem:
            return MISSING, [FieldError(path, problem)]
        if value is not MISSING and self.field.format in model.FORMATS and isinstance(value, str):
            problem = model.check_format(self.field.format, value)
            if problem:
                return value, [FieldError(path, problem)]
        return value, []

    def write_value(self, value: Any) -> None:
        text = _text_of(self.field, value if value is not MISSING else self.field.default)
        if isinstance(self.editor, TextArea):
            with self.editor.prevent(TextArea.Changed):
                self.editor.load_text(text)
        else:
            if isinstance(self.editor, MaskedInput) and not _DATE_MASKABLE.fullmatch(text):
                text = ""  # cannot be shown here; the raw JSON view keeps it (and says so)
            with self.editor.prevent(Input.Changed):
                self.editor.value = text

    def value_state(self) -> Any:
        return self.text

    def live_check(self) -> None:
        self.set_errors([] if self.is_null else model.check_text(self.field, self.text))

    @on(Input.Changed)
    @on(TextArea.Changed)
    def _recheck(self) -> None:
        # A number field says at once what is not a number or out of range; any other
        # field, once it shows a problem, has its hints follow the typing (a fix clears).
        numeric = self.field.kind in (model.INTEGER, model.NUMBER)
        if numeric or (self.errors and self.value_state() != self.errors_state):
            self.live_check()


def _format_placeholder(fmt: str | None) -> str:
    return {
        "email": "name@example.com",
        "uri": "https://",
        "uuid": "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx",
        "date-time": "YYYY-MM-DDTHH:MM:SSZ",
        "time": "HH:MM:SSZ",
    }.get(fmt or "", "")


class BoolField(FieldWidget):
    """boolean: Switch (Checkbox when the label is long). Optional and without a default, it
    stays "not set" (left out of the payload) until toggled; a required one is always sent."""

    def __init__(self, f: Field, value: Any = MISSING, **kw: Any) -> None:
        initial = value if value is not MISSING else f.default
        self.checkbox = f.widget == "checkbox" or (
            f.widget != "switch" and (len(f.title) > LONG_LABEL or kw.get("compact", False))
        )
        super().__init__(f, value, label=kw.pop("label", True) and not self.checkbox, **kw)
        self.is_set = isinstance(initial, bool)
        on_ = initial is True
        self.editor: Switch | Checkbox
        if self.checkbox:
            self.editor = Checkbox(_label(f), value=on_, disabled=f.read_only)
        else:
            self.editor = Switch(value=on_, animate=False, disabled=f.read_only)
        tall = not self.checkbox or not kw.get("compact", False)
        self.hint = Static("", classes="field-hint" + (" -beside-tall" if tall else ""))

    def compose_editor(self) -> Iterator[Widget]:
        yield self.editor
        yield self.hint

    def on_mount(self) -> None:  # FieldWidget.on_mount runs too (Textual calls both)
        self._sync_hint()

    def editors(self) -> list[Widget]:
        return [self.editor]

    def _sync_hint(self) -> None:
        if not self.is_set and not self.field.required:
            self.hint.update("not set")
        else:
            self.hint.update("yes" if self.editor.value else "no")

    def read_value(self, path: Path) -> tuple[Any, list[FieldError]]:
        if self.is_set or self.field.required:
            return bool(self.editor.value), []
        return MISSING, []

    def write_value(self, value: Any) -> None:
        initial = value if value is not MISSING else self.field.default
        self.is_set = isinstance(initial, bool)
        kind = Switch.Changed if isinstance(self.editor, Switch) else Checkbox.Changed
        with self.editor.prevent(kind):
            self.editor.value = initial is True
        self._sync_hint()

    def value_state(self) -> Any:
        return (self.is_set, self.editor.value)

    @on(Switch.Changed)
    @on(Checkbox.Changed)
    def _toggled(self, event: Message) -> None:
        if getattr(event, "control", None) is self.editor:
            self.is_set = True
            self._sync_hint()


class EnumField(FieldWidget):
    """enum / oneOf of consts: Select, or RadioSet for 2-4 options."""

    DEFAULT_CSS = """
    EnumField RadioSet { width: 1fr; }
    """

    def __init__(self, f: Field, value: Any = MISSING, **kw: Any) -> None:
        super().__init__(f, value, **kw)
        index = self._index(value if value is not MISSING else f.default)
        # A Select only takes its value when mounted; the choice is tracked here too so a
        # freshly built field (a new array row) reads correctly straight away.
        self.index = index
        n = len(f.options)
        self.radio = f.widget == "radio" or (f.widget != "select" and 2 <= n <= RADIO_MAX)
        self.editor: Select[int] | RadioSet
        self.buttons = [
            RadioButton(Content(o.label), value=i == index, tooltip=o.description or None)
            for i, o in enumerate(f.options)
        ]
        if self.radio:
            self.editor = RadioSet(*self.buttons, disabled=f.read_only)
        else:
            self.editor = Select(
                [(Content(o.label), i) for i, o in enumerate(f.options)],
                prompt=f.placeholder or "Select…",
                allow_blank=not (f.required and index is not None),
                value=index if index is not None else Select.NULL,
                disabled=f.read_only,
            )

    def _index(self, value: Any) -> int | None:
        if value is MISSING:
            return None
        for i, o in enumerate(self.field.options):
            if o.value == value and type(o.value) is type(value):
                return i
        for i, o in enumerate(self.field.options):
            if o.value == value:
                return i
        return None

    def compose_editor(self) -> Iterator[Widget]:
        yield self.editor

    def editors(self) -> list[Widget]:
        return [self.editor]

    @property
    def selected(self) -> int | None:
        if isinstance(self.editor, RadioSet):
            return next((i for i, b in enumerate(self.buttons) if b.value), None)
        return self.index

    @on(Select.Changed)
    def _picked(self, event: Select.Changed) -> None:
        if event.select is self.editor:
            self.index = event.value if isinstance(event.value, int) else None

    def read_value(self, path: Path) -> tuple[Any, list[FieldError]]:
        i = self.selected
        return (MISSING, []) if i is None else (self.field.options[i].value, [])

    def write_value(self, value: Any) -> None:
        index = self._index(value if value is not MISSING else self.field.default)
        if isinstance(self.editor, RadioSet):
            # RadioSet refuses to un-press a button by itself: set the buttons quietly and
            # tell it which one is pressed.
            with self.editor.prevent(RadioSet.Changed, RadioButton.Changed):
                for i, b in enumerate(self.buttons):
                    b.value = i == index
            self.editor._pressed_button = None if index is None else self.buttons[index]
        else:
            if index is None and not self.editor._allow_blank:
                return  # a required choice cannot be emptied
            self.index = index
            with self.editor.prevent(Select.Changed):
                if index is None:
                    self.editor.clear()
                else:
                    self.editor.value = index

    def value_state(self) -> Any:
        return self.selected


class ConstField(FieldWidget):
    """const: shown, not editable; always sent."""

    DEFAULT_CSS = """
    ConstField .const-value { color: $text-muted; padding: 0 1; background: $boost; width: auto; }
    """

    def compose_editor(self) -> Iterator[Widget]:
        yield Static(Content(model.format_value(self.field.const)), classes="const-value")

    def read_value(self, path: Path) -> tuple[Any, list[FieldError]]:
        return self.field.const, []

    def write_value(self, value: Any) -> None:
        pass

    def value_state(self) -> Any:
        return None


class MultiSelectField(FieldWidget):
    """array of enum values: SelectionList (space toggles); sent in option order."""

    DEFAULT_CSS = """
    MultiSelectField SelectionList { width: 1fr; height: auto; max-height: 10; }
    """

    def __init__(self, f: Field, value: Any = MISSING, **kw: Any) -> None:
        super().__init__(f, value, **kw)
        chosen = self._indices(value if value is not MISSING else f.default)
        self.editor: SelectionList[int] = SelectionList(
            *[Selection(Content(o.label), i, i in chosen) for i, o in enumerate(f.options)],
            disabled=f.read_only,
        )

    def _indices(self, value: Any) -> set[int]:
        if not isinstance(value, list):
            return set()
        return {i for i, o in enumerate(self.field.options) if o.value in value}

    def compose_editor(self) -> Iterator[Widget]:
        yield self.editor

    def editors(self) -> list[Widget]:
        return [self.editor]

    def read_value(self, path: Path) -> tuple[Any, list[FieldError]]:
        chosen = sorted(self.editor.selected)
        if not chosen and not self.field.required:
            return MISSING, []
        return [self.field.options[i].value for i in chosen], []

    def write_value(self, value: Any) -> None:
        chosen = self._indices(value if value is not MISSING else self.field.default)
        with self.editor.prevent(SelectionList.SelectedChanged):
            self.editor.deselect_all()
            for i in chosen:
                self.editor.select(i)

    def value_state(self) -> Any:
        return tuple(sorted(self.editor.selected))


class JsonField(FieldWidget):
    """Anything the form cannot express: a small raw-JSON editor for this subtree."""

    def __init__(self, f: Field, value: Any = MISSING, **kw: Any) -> None:
        super().__init__(f, value, **kw)
        initial = value if value is not MISSING else f.default
        self.editor = TextArea(
            _json_text(initial),
            language="json",
            soft_wrap=True,
            tab_behavior="focus",
            disabled=f.read_only,
        )
        self.editor.placeholder = "JSON value"
        self.editor.highlight_cursor_line = False

    def compose_editor(self) -> Iterator[Widget]:
        yield self.editor

    def editors(self) -> list[Widget]:
        return [self.editor]

    def read_value(self, path: Path) -> tuple[Any, list[FieldError]]:
        text = self.editor.text
        if not text.strip():
            return MISSING, []
        try:
            return json.loads(text), []
        except json.JSONDecodeError as exc:
            return MISSING, [FieldError(path, f"Invalid JSON: {exc.msg} (line {exc.lineno})")]

    def write_value(self, value: Any) -> None:
        initial = value if value is not MISSING else self.field.default
        with self.editor.prevent(TextArea.Changed):
            self.editor.load_text(_json_text(initial))

    def value_state(self) -> Any:
        return self.editor.text

    def live_check(self) -> None:
        _, errors = self.read_value(())
        self.set_errors([e.message for e in errors])

    @on(TextArea.Changed)
    def _recheck(self) -> None:
        if self.errors and self.value_state() != self.errors_state:
            self.live_check()


def _json_text(value: Any) -> str:
    if value is MISSING:
        return ""
    return json.dumps(value, indent=2, ensure_ascii=False)


# ---------------------------------------------------------------------------------------------
# Containers


class ObjectField(FieldWidget):
    """object: its properties; a titled fieldset when nested, collapsible when deep."""

    DEFAULT_CSS = """
    ObjectField.-fieldset {
        border: round $primary 50%;
        border-title-color: $text;
        border-subtitle-color: $text-error;
        padding: 0 1;
    }
    ObjectField.-fieldset.-has-error { border: round $error; }
    ObjectField.-root { margin: 0; }
    ObjectField > Collapsible { padding: 0; border-top: none; }
    ObjectField > Collapsible > Contents { padding: 0 0 0 2; }
    ObjectField .-discriminator { display: none; }
    ObjectField.-flat { padding: 0 0 0 2; margin: 0; }
    """

    def __init__(
        self,
        f: Field,
        value: Any = MISSING,
        *,
        depth: int = 0,
        label: bool = True,
        compact: bool = False,
        title: str | None = None,
        hide: str | None = None,
        flat: bool = False,
    ) -> None:
        super().__init__(f, value, depth=depth, label=label, compact=compact)
        initial = value if value is not MISSING else f.default
        given = initial if isinstance(initial, dict) else {}
        self.extra = {k: v for k, v in given.items() if f.child(k) is None}
        self.children_fields: list[FieldWidget] = []
        for c in f.children:
            w = make_field(c, given.get(c.key, MISSING), depth=depth + 1, compact=compact)
            if hide is not None and c.key == hide and c.kind == model.CONST:
                w.add_class("-discriminator")
            self.children_fields.append(w)
        self.heading = title if title is not None else f.title
        self.collapsible: Collapsible | None = None
        if depth == 0:
            self.add_class("-root")
        elif flat:
            self.add_class("-flat")  # a variant's body: the selector above is its title
        elif depth >= 2 and f.children:
            self.collapsible = Collapsible(title=self.heading, collapsed=False)
        else:
            self.add_class("-fieldset")

    def compose(self) -> Iterator[Widget]:
        self.apply_compact()
        if self.has_class("-fieldset"):
            self.border_title = self._title_markup()
        if self.field.description and self.depth > 0:
            yield Static(_inline_markdown(self.field.description), classes="field-help")
        if self.null_toggle is not None:
            with Horizontal(classes="field-row"):
                yield self.null_toggle
        if self.collapsible is not None:
            with self.collapsible:
                yield from self.children_fields
        else:
            yield from self.children_fields
        if not self.field.children:
            yield Static(Content("(no fields)"), classes="field-help")
        yield self.error_line

    def _title_markup(self) -> str:
        marks = _marks(self.field) if self.field.key is not None and self.show_label else ""
        return f"{escape(self.heading)}{marks}"

    def editors(self) -> list[Widget]:
        return list(self.children_fields)

    def _sync_null(self) -> None:
        null = self.is_null
        self.set_class(null, "-null")
        for w in self.children_fields:
            w.disabled = null or self.field.read_only

    def focus_target(self) -> Widget | None:
        for w in self.children_fields:
            if w.display:
                t = w.focus_target()
                if t is not None:
                    return t
        return super().focus_target()

    def read_value(self, path: Path) -> tuple[Any, list[FieldError]]:
        out: dict[str, Any] = {}
        errors: list[FieldError] = []
        for w in self.children_fields:
            key = w.field.key
            assert isinstance(key, str)
            v, errs = w.read((*path, key))
            errors += errs
            if v is not MISSING:
                out[key] = v
        # Keys the schema does not describe are passed through untouched.
        for k, v in self.extra.items():
            out.setdefault(k, v)
        # An optional object nobody filled in is left out (not sent as {}), so its required
        # properties are not demanded.
        if not self.field.required and self.depth > 0 and not self._anything_entered():
            return MISSING, errors
        return out, errors

    def _anything_entered(self) -> bool:
        for w in self.children_fields:
            if w.field.kind == model.CONST:
                continue
            v, errs = w.read(())
            if errs or (v is not MISSING and v != w.field.default):
                return True
        return bool(self.extra)

    def write_value(self, value: Any) -> None:
        initial = value if value is not MISSING else self.field.default
        given = initial if isinstance(initial, dict) else {}
        self.extra = {k: v for k, v in given.items() if self.field.child(k) is None}
        for w in self.children_fields:
            w.write(given.get(w.field.key, MISSING))

    def value_state(self) -> Any:
        return tuple(w.state() for w in self.children_fields)

    def route(self, tail: Path) -> tuple[FieldWidget, Path]:
        if tail:
            for w in self.children_fields:
                if w.field.key == tail[0]:
                    if w.has_class("-discriminator"):
                        break  # hidden: the variant's selector above speaks for it
                    return w.route(tail[1:])
        return self, tail

    def field_widgets(self) -> Iterator[FieldWidget]:
        yield self
        for w in self.children_fields:
            yield from w.field_widgets()

    def set_error_count(self, n: int) -> None:
        text = f"{n} error{'s' if n != 1 else ''}" if n else ""
        if self.collapsible is not None:
            suffix = f"  ✗ {text}" if n else ""
            self.collapsible.title = f"{self.heading}{suffix}"
        elif self.depth > 0:
            self.border_subtitle = text
            self.set_class(bool(n), "-has-error")

    def live_check(self) -> None:
        pass


class _ArrayRow(Horizontal):
    """One item of an array: the item's editor and its move / remove buttons."""

    DEFAULT_CSS = """
    _ArrayRow { height: auto; }
    _ArrayRow > FieldWidget { width: 1fr; margin: 0; }
    _ArrayRow > Button { min-width: 3; width: 5; margin: 1 0 0 0; }
    """

    def __init__(self, item: FieldWidget, index: int, read_only: bool) -> None:
        super().__init__(classes="array-row")
        self.item = item
        self.index = index
        self.up = Button("▲", classes="move-up", compact=True, tooltip="Move up")
        self.down = Button("▼", classes="move-down", compact=True, tooltip="Move down")
        self.remove_button = Button("✕", classes="remove", compact=True, tooltip="Remove")
        for b in (self.up, self.down, self.remove_button):
            b.disabled = read_only

    def compose(self) -> Iterator[Widget]:
        yield self.item
        yield self.up
        yield self.down
        yield self.remove_button


class ArrayField(FieldWidget):
    """array: repeatable rows with add / remove / move; minItems and maxItems respected."""

    DEFAULT_CSS = """
    ArrayField > .array-rows { height: auto; }
    ArrayField > .array-add { margin: 0; }
    ArrayField > .array-empty { color: $text-muted; }
    """

    def __init__(self, f: Field, value: Any = MISSING, **kw: Any) -> None:
        super().__init__(f, value, **kw)
        initial = value if value is not MISSING else f.default
        items = list(initial) if isinstance(initial, list) else []
        items += [MISSING] * max(0, self.min_items - len(items))
        self.rows = [self._row(v, i) for i, v in enumerate(items)]
        self.rows_box = Vertical(*self.rows, classes="array-rows")
        assert f.item is not None
        self.add_button = Button(
            f"+ Add {f.item.title.lower() if f.item.title != 'Item' else 'item'}",
            classes="array-add",
            compact=True,
        )
        self.empty_hint = Static(Content("(no items)"), classes="array-empty")

    @property
    def min_items(self) -> int:
        n = self.field.schema.get("minItems")
        return n if isinstance(n, int) else 0

    @property
    def max_items(self) -> int | None:
        n = self.field.schema.get("maxItems")
        return n if isinstance(n, int) else None

    def _row(self, value: Any, index: int) -> _ArrayRow:
        assert self.field.item is not None
        item = make_field(
            self.field.item,
            value,
            depth=self.depth + 1,
            label=False,
            index=index,
            compact=self.compact,
        )
        return _ArrayRow(item, index, self.field.read_only)

    def compose(self) -> Iterator[Widget]:
        self.apply_compact()
        if self.show_label:
            yield Static(_label(self.field), classes="field-label")
        if self.null_toggle is not None:
            with Horizontal(classes="field-row"):
                yield self.null_toggle
        yield self.rows_box
        yield self.empty_hint
        yield self.add_button
        if self.field.description:
            yield Static(_inline_markdown(self.field.description), classes="field-help")
        yield self.error_line

    def on_mount(self) -> None:  # FieldWidget.on_mount runs too (Textual calls both)
        self._sync_buttons()

    def editors(self) -> list[Widget]:
        return [self.rows_box, self.add_button]

    def focus_target(self) -> Widget | None:
        for row in self.rows:
            t = row.item.focus_target()
            if t is not None:
                return t
        return self.add_button if self.add_button.focusable else super().focus_target()

    def _sync_buttons(self) -> None:
        n = len(self.rows)
        ro = self.field.read_only or self.is_null
        for i, row in enumerate(self.rows):
            row.index = i
            row.up.disabled = ro or i == 0
            row.down.disabled = ro or i == n - 1
            row.remove_button.disabled = ro or n <= self.min_items
            if isinstance(row.item, ObjectField):
                row.item.heading = f"{self.field.item.title if self.field.item else 'Item'} {i + 1}"
                row.item.border_title = escape(row.item.heading)
        self.add_button.disabled = ro or (self.max_items is not None and n >= self.max_items)
        self.empty_hint.display = n == 0

    def _sync_null(self) -> None:
        super()._sync_null()
        if self.is_mounted:
            self._sync_buttons()

    def read_value(self, path: Path) -> tuple[Any, list[FieldError]]:
        out: list[Any] = []
        errors: list[FieldError] = []
        for i, row in enumerate(self.rows):
            v, errs = row.item.read((*path, i))
            errors += errs
            if v is MISSING:
                if not errs:
                    errors.append(FieldError((*path, i), "Empty item: fill it in or remove it"))
                v = None  # keeps the later items at their index
            out.append(v)
        if not out and not self.field.required:
            return MISSING, errors
        return out, errors

    def write_value(self, value: Any) -> None:
        initial = value if value is not MISSING else self.field.default
        items = list(initial) if isinstance(initial, list) else []
        items += [MISSING] * max(0, self.min_items - len(items))
        for row in self.rows:
            row.remove()
        self.rows = [self._row(v, i) for i, v in enumerate(items)]
        if self.is_mounted:
            self.rows_box.mount_all(self.rows)
            self._sync_buttons()

    def value_state(self) -> Any:
        return tuple(row.item.state() for row in self.rows)

    def route(self, tail: Path) -> tuple[FieldWidget, Path]:
        if tail and isinstance(tail[0], int) and 0 <= tail[0] < len(self.rows):
            return self.rows[tail[0]].item.route(tail[1:])
        return self, tail

    def field_widgets(self) -> Iterator[FieldWidget]:
        yield self
        for row in self.rows:
            yield from row.item.field_widgets()

    def set_error_count(self, n: int) -> None:
        pass

    # -- row actions --------------------------------------------------------------------------

    def add_item(self, value: Any = MISSING) -> FieldWidget:
        row = self._row(value, len(self.rows))
        self.rows.append(row)
        self.rows_box.mount(row)
        self._sync_buttons()
        self.post_message(FieldEdited(self))
        return row.item

    def remove_item(self, index: int) -> None:
        row = self.rows.pop(index)
        row.remove()
        self._sync_buttons()
        self.post_message(FieldEdited(self))
        if self.rows:
            target = self.rows[min(index, len(self.rows) - 1)].remove_button
            self.call_after_refresh(target.focus)
        else:
            self.call_after_refresh(self.add_button.focus)

    def move_item(self, index: int, delta: int) -> None:
        other = index + delta
        if not (0 <= other < len(self.rows)):
            return
        row = self.rows[index]
        self.rows[index], self.rows[other] = self.rows[other], self.rows[index]
        if delta < 0:
            self.rows_box.move_child(row, before=self.rows[index])
        else:
            self.rows_box.move_child(row, after=self.rows[index])
        self._sync_buttons()
        self.post_message(FieldEdited(self))

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        button = event.button
        if button is self.add_button:
            event.stop()
            item = self.add_item()
            self.call_after_refresh(lambda: _focus(item))
            return
        row = button.parent
        if not isinstance(row, _ArrayRow) or row not in self.rows:
            return  # a button of a nested array: its own handler
        event.stop()
        index = self.rows.index(row)
        if button is row.remove_button:
            self.remove_item(index)
        elif button is row.up:
            self.move_item(index, -1)
            self.call_after_refresh(row.up.focus if index > 1 else row.down.focus)
        elif button is row.down:
            self.move_item(index, +1)
            last = index + 1 >= len(self.rows) - 1
            self.call_after_refresh(row.up.focus if last else row.down.focus)

    def live_check(self) -> None:
        pass


def _focus(item: FieldWidget) -> None:
    target = item.focus_target()
    if target is not None:
        target.focus()


class VariantField(FieldWidget):
    """oneOf / anyOf: a Select of the alternatives and the selected alternative's editor."""

    DEFAULT_CSS = """
    VariantField > .variant-body { height: auto; }
    VariantField > .field-row > Select { width: 1fr; }
    """

    def __init__(self, f: Field, value: Any = MISSING, **kw: Any) -> None:
        super().__init__(f, value, **kw)
        depth = self.depth
        initial = value if value is not MISSING else f.default
        chosen = model.match_variant(f, initial) if initial is not MISSING else None
        if chosen is None and initial not in (MISSING, None):
            chosen = 0
        if chosen is None and f.required and f.variants:
            chosen = 0
        self.subs: list[FieldWidget] = []
        for i, v in enumerate(f.variants):
            sub_value = initial if i == chosen else MISSING
            if v.field.kind == model.OBJECT:
                sub: FieldWidget = ObjectField(
                    v.field,
                    sub_value,
                    depth=depth + 1,
                    label=False,
                    compact=self.compact,
                    title=v.title,
                    hide=f.discriminator,
                    flat=True,
                )
            else:
                sub = make_field(
                    v.field, sub_value, depth=depth + 1, label=False, compact=self.compact
                )
            sub.display = i == chosen
            self.subs.append(sub)
        self._chosen = chosen  # tracked here: a Select takes its value only when mounted
        self.selector: Select[int] = Select(
            [(Content(v.title), i) for i, v in enumerate(f.variants)],
            prompt="Choose…",
            allow_blank=not f.required,
            value=chosen if chosen is not None else Select.NULL,
            disabled=f.read_only,
        )
        self.body = Vertical(*self.subs, classes="variant-body")

    def compose_editor(self) -> Iterator[Widget]:
        yield self.selector

    def compose(self) -> Iterator[Widget]:
        yield from super().compose()
        yield self.body

    def editors(self) -> list[Widget]:
        return [self.selector, self.body]

    @property
    def chosen(self) -> int | None:
        return self._chosen

    @property
    def active(self) -> FieldWidget | None:
        i = self.chosen
        return self.subs[i] if i is not None else None

    def _show(self) -> None:
        for i, sub in enumerate(self.subs):
            sub.display = i == self.chosen

    @on(Select.Changed)
    def _switched(self, event: Select.Changed) -> None:
        if event.select is self.selector:
            self._chosen = event.value if isinstance(event.value, int) else None
            self._show()

    def read_value(self, path: Path) -> tuple[Any, list[FieldError]]:
        active = self.active
        if active is None:
            return MISSING, []
        return active.read(path)

    def write_value(self, value: Any) -> None:
        initial = value if value is not MISSING else self.field.default
        chosen = model.match_variant(self.field, initial) if initial is not MISSING else None
        if chosen is None and initial not in (MISSING, None):
            chosen = 0
        if chosen is None and self.field.required and self.subs:
            chosen = 0
        self._chosen = chosen
        with self.selector.prevent(Select.Changed):
            if chosen is None:
                self.selector.clear()
            else:
                self.selector.value = chosen
        for i, sub in enumerate(self.subs):
            sub.write(initial if i == chosen else MISSING)
        self._show()

    def value_state(self) -> Any:
        return (self.chosen, tuple(s.state() for s in self.subs))

    def route(self, tail: Path) -> tuple[FieldWidget, Path]:
        active = self.active
        if active is None:
            return self, tail
        target, rest = active.route(tail)
        # An error about the whole value (e.g. "not valid under any of the given schemas")
        # belongs to the variant field, where the choice is made.
        if target is active and not isinstance(active, ObjectField | ArrayField):
            return target, rest
        return (self, rest) if target is active else (target, rest)

    def field_widgets(self) -> Iterator[FieldWidget]:
        yield self
        active = self.active
        if active is not None:
            yield from active.field_widgets()

    def focus_target(self) -> Widget | None:
        return self.selector if self.selector.focusable else super().focus_target()


# ---------------------------------------------------------------------------------------------


def make_field(
    f: Field,
    value: Any = MISSING,
    *,
    depth: int = 0,
    label: bool = True,
    index: int | None = None,
    compact: bool = False,
) -> FieldWidget:
    """The widget for field `f`, showing `value` (MISSING: the field's default)."""
    kw: dict[str, Any] = {"depth": depth, "label": label, "compact": compact}
    if f.kind == model.OBJECT:
        title = f"{f.title} {index + 1}" if index is not None else None
        return ObjectField(f, value, title=title, **kw)
    cls: type[FieldWidget] = {
        model.STRING: ScalarField,
        model.INTEGER: ScalarField,
        model.NUMBER: ScalarField,
        model.BOOLEAN: BoolField,
        model.ENUM: EnumField,
        model.CONST: ConstField,
        model.MULTISELECT: MultiSelectField,
        model.ARRAY: ArrayField,
        model.VARIANT: VariantField,
    }.get(f.kind, JsonField)
    return cls(f, value, **kw)


CHANGE_EVENTS = _CHANGE_EVENTS
