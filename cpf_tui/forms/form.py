"""`SchemaForm`: a JSON Schema rendered as a keyboard-complete Textual form.

    form = SchemaForm(schema, value=previous_payload)
    payload, errors = form.collect()      # JSON types; empty optional fields left out
    form.show_errors(errors)              # inline under each field + a summary at the top

`collect()` reports what the widgets could not turn into JSON ("abc" in an integer field)
and then the engine's own verdict, `core.payload.check_payload` (the validator `cpf resume`
uses), so the form never accepts what the engine would refuse. `ctrl+r` switches to a raw
JSON editor of the whole payload and back; schemas the form cannot express open in it.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from textual import on
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.content import Content
from textual.markup import escape
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Collapsible, Static, TextArea

from core.payload import FieldError, check_payload
from cpf_tui.forms import model
from cpf_tui.forms.fields import (
    CHANGE_EVENTS,
    ArrayField,
    FieldEdited,
    FieldWidget,
    ObjectField,
    make_field,
)
from cpf_tui.forms.model import MISSING


class SchemaForm(VerticalScroll, can_focus=False):
    """A form generated from a JSON Schema (root `type: object`)."""

    DEFAULT_CSS = """
    SchemaForm { height: 1fr; padding: 0 1; }
    SchemaForm > .form-summary {
        display: none;
        height: auto;
        border: round $error;
        border-title-color: $text-error;
        padding: 0 1;
        margin-bottom: 1;
    }
    SchemaForm > .form-summary.-shown { display: block; }
    SchemaForm > .form-raw { height: auto; min-height: 8; }
    SchemaForm > .form-raw-help { color: $text-muted; height: auto; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "ctrl+r",
            "toggle_raw",
            "Raw JSON",
            id="form.toggle_raw",
            tooltip="Edit the whole payload as JSON, and back to the form",
        ),
        Binding(
            "ctrl+t",
            "reset_field",
            "Reset field",
            id="form.reset_field",
            tooltip="Put the focused field back to its default value",
        ),
    ]

    class Changed(Message):
        """Posted when any value in the form changes (typed, toggled, rows, raw JSON)."""

        def __init__(self, form: SchemaForm) -> None:
            super().__init__()
            self.form = form

        @property
        def control(self) -> SchemaForm:
            return self.form

    def __init__(
        self,
        schema: dict[str, Any],
        *,
        value: Any = None,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
        compact: bool = False,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.schema = schema
        self.compact = compact
        self.set_class(compact, "-compact")
        self.field = model.build(schema) if self.supported(schema) else None
        initial = MISSING if value is None else value
        self.root: ObjectField | None = None
        if self.field is not None:
            root = make_field(self.field, initial, depth=0, label=False, compact=compact)
            assert isinstance(root, ObjectField)
            self.root = root
        self.summary = Static("", classes="form-summary")
        self.summary.border_title = "Cannot submit yet"
        self.raw = TextArea(
            self._raw_text(initial),
            language="json",
            soft_wrap=True,
            tab_behavior="focus",
            classes="form-raw",
        )
        if self.root is not None:
            help_text = "Raw JSON of the whole payload. ctrl+r: back to the form."
        elif not schema:
            help_text = "No schema: any JSON payload is accepted."
        elif _declares_no_fields(schema):
            help_text = "No fields are declared: send {} as it is, or enter any JSON object."
        else:
            help_text = "This schema cannot be shown as a form: enter the payload as JSON."
        self.raw_help = Static(Content(help_text), classes="form-raw-help")
        self._raw_mode = self.root is None
        self._sync_mode()
        self.errors: list[FieldError] = []
        self._initial: Any = None
        self._last_state: Any = None

    # -- public API ---------------------------------------------------------------------------

    @staticmethod
    def supported(schema: Any) -> bool:
        """True when `schema` can be shown as a form (else only the raw JSON editor)."""
        return model.supported(schema)

    @property
    def limitations(self) -> list[str]:
        """What the form cannot express for this schema (see `model.limitations`)."""
        return model.limitations(self.schema)

    @property
    def raw_mode(self) -> bool:
        return self._raw_mode

    def collect(self) -> tuple[Any, list[FieldError]]:
        """The payload and every problem with it: widget errors, then the engine's."""
        payload, problems = self._read()
        if payload is MISSING:
            return None, problems
        checked = check_payload(self.schema, payload)
        # An engine error at (or under) a field the widgets already flagged repeats it
        # ("abc" is not an integer -> "'age' is a required property"): keep the clearer one.
        flagged = [e.path for e in problems]
        checked = [e for e in checked if not any(e.path[: len(p)] == p for p in flagged)]
        return payload, self._in_form_order(problems + checked)

    def show_errors(self, errors: list[FieldError]) -> None:
        """Show each error under its field and all of them in a summary; [] clears."""
        self._render_errors(errors, focus=True)

    def _render_errors(self, errors: list[FieldError], *, focus: bool) -> None:
        self.errors = list(errors)
        widgets = list(self.root.field_widgets()) if self.root is not None else []
        for w in widgets:
            w.set_errors([])
        lines: list[Content] = []
        first: FieldWidget | None = None
        owners: dict[int, FieldWidget] = {}
        for err in errors:
            target: FieldWidget | None = None
            tail = err.path
            if self.root is not None and not self._raw_mode:
                target, tail = self.root.route(err.path)
                if target is self.root:
                    target, tail = None, err.path
            message = err.message if not tail else f"{_location(tail)}: {err.message}"
            if target is not None:
                target.add_error(message)
                owners[id(err)] = target
                where = target.title_path
                if first is None:
                    first = target
            else:
                where = err.location
            lines.append(Content.from_markup(f"• [b]{escape(where)}[/b]: {escape(err.message)}"))
        self._update_section_counts(widgets, owners.values())
        if lines:
            n = len(lines)
            self.summary.border_title = f"{n} problem{'s' if n != 1 else ''}"
            self.summary.update(Content("\n").join(lines))
        self.summary.set_class(bool(lines), "-shown")
        if not focus:
            return
        if owners:
            # Focus goes to the first invalid field on screen (not the first error listed).
            flagged = {id(w) for w in owners.values()}
            first = next((w for w in widgets if id(w) in flagged), first)
        if first is not None:
            self._reveal(first)
            target_widget = first.focus_target()
            if target_widget is not None:
                target_widget.focus()
        elif lines:
            self.scroll_home(animate=False)

    def check(self) -> tuple[Any, list[FieldError]]:
        """`collect()` and `show_errors()` in one: what a Submit action calls."""
        payload, errors = self.collect()
        self.show_errors(errors)
        return payload, errors

    @property
    def dirty(self) -> bool:
        """True when the payload differs from the one the form started with."""
        return self._payload_state() != self._initial

    def mark_clean(self) -> None:
        """Make the current payload the baseline for `dirty` (e.g. after a save)."""
        self._initial = self._payload_state()

    @property
    def value(self) -> Any:
        """The current payload, whether or not it is valid (None if unreadable)."""
        payload, _ = self._read()
        return None if payload is MISSING else payload

    def set_value(self, value: Any) -> None:
        """Show `value` (None: the schema's defaults)."""
        initial = MISSING if value is None else value
        if self.root is not None:
            self.root.write(initial)
        with self.raw.prevent(TextArea.Changed):
            self.raw.load_text(self._raw_text(initial))
        self._changed()

    def set_raw_mode(self, raw: bool) -> bool:
        """Switch between the form and the raw JSON editor, carrying the payload across.

        Refused (returns False, and says why in the summary) when the JSON does not parse,
        or when the form could not show it faithfully, or when there is no form.
        """
        if raw == self._raw_mode:
            return True
        if raw:
            assert self.root is not None
            payload, _ = self.root.read(())
            with self.raw.prevent(TextArea.Changed):
                self.raw.load_text(self._raw_text(payload))
            self._raw_mode = True
        else:
            if self.root is None:
                self._say("This schema can only be edited as raw JSON.")
                return False
            try:
                parsed = json.loads(self.raw.text) if self.raw.text.strip() else {}
            except json.JSONDecodeError as exc:
                self._say(f"Invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}")
                return False
            if not isinstance(parsed, dict):
                self._say("The payload must be a JSON object to be shown as a form.")
                return False
            self.root.write(parsed)
            shown, _ = self.root.read(())
            if shown != parsed:
                self._say(
                    "The form cannot show this JSON faithfully (values of the wrong type or "
                    "shape); fix it here or keep editing as JSON."
                )
                return False
            self._raw_mode = False
        self._sync_mode()
        self.show_errors([])
        self._focus_first()
        self._changed()
        return True

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "toggle_raw" and self.root is None:
            return False  # nothing to toggle to
        # Resetting a field means nothing in the raw JSON editor.
        return not (action == "reset_field" and self._raw_mode)

    def action_toggle_raw(self) -> None:
        self.set_raw_mode(not self._raw_mode)

    def action_reset_field(self) -> None:
        focused = self.screen.focused if self.is_attached else None
        node: Widget | None = focused
        while node is not None and node is not self:
            if isinstance(node, FieldWidget) and not isinstance(node, ObjectField | ArrayField):
                node.reset()
                return
            node = node.parent

    # -- internals ----------------------------------------------------------------------------

    def compose(self):  # type: ignore[override]
        yield self.summary
        if self.root is not None:
            yield self.root
        yield self.raw_help
        yield self.raw

    def _sync_mode(self) -> None:
        # Inline display (not CSS classes): hidden editors must be out of the focus chain
        # from the very first frame, before the stylesheet is applied.
        raw = self._raw_mode
        self.set_class(raw, "-raw")
        if self.is_attached:
            self.refresh_bindings()
        self.raw.display = raw
        self.raw.can_focus = raw
        self.raw_help.display = raw
        if self.root is not None:
            self.root.display = not raw

    def on_mount(self) -> None:
        self.call_after_refresh(self._autofocus)
        self._initial = self._payload_state()
        self._last_state = self._state()

    def _read(self) -> tuple[Any, list[FieldError]]:
        if self._raw_mode or self.root is None:
            text = self.raw.text
            if not text.strip():
                return MISSING, [FieldError((), "The payload is empty: enter a JSON value")]
            try:
                return json.loads(text), []
            except json.JSONDecodeError as exc:
                msg = f"Invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
                return MISSING, [FieldError((), msg)]
        payload, problems = self.root.read(())
        return ({} if payload is MISSING else payload), problems

    def _payload_state(self) -> Any:
        payload, problems = self._read()
        return (
            json.dumps(None if payload is MISSING else payload, sort_keys=True, default=str),
            tuple((e.path, e.message) for e in problems),
        )

    def _state(self) -> Any:
        if self._raw_mode or self.root is None:
            return ("raw", self.raw.text)
        return ("form", self.root.state())

    def _changed(self) -> None:
        state = self._state()
        if state != self._last_state:
            self._last_state = state
            self.post_message(self.Changed(self))

    def _revalidate(self, origin: Widget | None) -> None:
        """Once a submit showed problems, every edit re-checks with the engine's validator:
        the edited field shows its current problems (a fix clears its error at once), the
        fields already showing problems are brought up to date, and nothing new appears
        on fields the user has not touched."""
        if not self.errors or self.root is None or self._raw_mode:
            return
        node: Any = origin
        while node is not None and not isinstance(node, FieldWidget):
            node = node.parent
        if node is None:
            return
        touched = {id(node)} | {id(a) for a in node.ancestors if isinstance(a, FieldWidget)}
        showing = {id(w) for w in self.root.field_widgets() if w.errors}
        shown_at_root = any(self.root.route(e.path)[0] is self.root for e in self.errors)
        _, fresh = self.collect()
        keep = []
        for err in fresh:
            target, _ = self.root.route(err.path)
            if target is self.root:
                if shown_at_root or id(target) in touched:
                    keep.append(err)
            elif id(target) in touched or id(target) in showing:
                keep.append(err)
        self._render_errors(keep, focus=False)

    def _edited(self, event: Message) -> None:
        self._changed()
        self._revalidate(getattr(event, "control", None))

    @on(FieldEdited)
    def _field_edited(self, event: FieldEdited) -> None:
        event.stop()
        self._changed()
        self._revalidate(event.field)

    def on_input_changed(self, event: Message) -> None:
        self._edited(event)

    def on_switch_changed(self, event: Message) -> None:
        self._edited(event)

    def on_checkbox_changed(self, event: Message) -> None:
        self._edited(event)

    def on_select_changed(self, event: Message) -> None:
        self._edited(event)

    def on_radio_set_changed(self, event: Message) -> None:
        self._edited(event)

    def on_selection_list_selected_changed(self, event: Message) -> None:
        self._edited(event)

    def on_text_area_changed(self, event: Message) -> None:
        self._edited(event)

    def _raw_text(self, value: Any) -> str:
        if value is MISSING:
            value = self.schema.get("default", {}) if isinstance(self.schema, dict) else {}
            if self.root is not None:
                value, _ = self.root.read(())
                value = {} if value is MISSING else value
        return json.dumps(value, indent=2, ensure_ascii=False)

    def _say(self, message: str) -> None:
        self.show_errors([FieldError((), message)])

    def _autofocus(self) -> None:
        # Nested fields mount after the screen picks its first focus; when that found
        # nothing, the first field is the obvious place to start typing.
        if self.is_attached and self.screen.focused is None:
            self._focus_first()

    def _focus_first(self) -> None:
        if self._raw_mode or self.root is None:
            self.raw.focus()
            return
        target = self.root.focus_target()
        if target is not None:
            target.focus()

    def _in_form_order(self, errors: list[FieldError]) -> list[FieldError]:
        if self.root is None or self._raw_mode:
            return errors
        order = {id(w): i for i, w in enumerate(self.root.field_widgets())}

        def key(item: tuple[int, FieldError]) -> tuple[int, int]:
            i, err = item
            target, _ = self.root.route(err.path)  # type: ignore[union-attr]
            return (order.get(id(target), -1) if target is not self.root else -1, i)

        return [e for _, e in sorted(enumerate(errors), key=key)]

    def _update_section_counts(self, widgets: list[FieldWidget], owners: Any) -> None:
        owner_list = list(owners)
        for w in widgets:
            if isinstance(w, ObjectField) and w is not self.root:
                n = sum(1 for o in owner_list if o is w or w in o.ancestors)
                w.set_error_count(n)

    def _reveal(self, w: FieldWidget) -> None:
        for node in w.ancestors:
            if isinstance(node, Collapsible):
                node.collapsed = False


def _location(tail: tuple[str | int, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in tail).lstrip(".")


__all__ = ["CHANGE_EVENTS", "SchemaForm"]


def _declares_no_fields(schema: Any) -> bool:
    """An object schema with no `properties` (e.g. a workflow's `inputs: {type: object}`)."""
    return (
        isinstance(schema, dict)
        and schema.get("type") == "object"
        and not schema.get("properties")
        and schema.get("additionalProperties") is not False
    )
