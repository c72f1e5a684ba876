"""Workflows: the workflow files under the paths given on the command line, each marked
valid / warnings / invalid, with a preview (step outline, highlighted YAML, problems)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import suppress
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.widgets import Static, TabbedContent, TabPane, Tree
from textual.widgets.tree import TreeNode

from cpf_tui import textual_fixes
from cpf_tui.commands import start_name
from cpf_tui.look import display_path, palette
from cpf_tui.nav import start_workflow
from cpf_tui.screens.base import Command, CpfScreen
from cpf_tui.widgets.footer import KeyFooter
from cpf_tui.widgets.topbar import TopBar
from cpf_tui.work import off_thread
from cpf_tui.workflows import WorkflowFile, check, discover, outline

textual_fixes.apply()  # this screen has tabs

MARKS = {"valid": "✓", "warnings": "!", "invalid": "✗", "other": "·", "pending": "…"}


class WorkflowsScreen(CpfScreen):
    AREA = "workflows"
    HELP = """\
**Workflows** shows the `*.yaml`/`*.yml` files under the paths given to `cpf tui`
(default: the current folder): ✓ valid, ! valid with warnings, ✗ invalid (the engine's
validator, with the path of each problem). The preview shows the step outline
(kind, `if`, transitions and jumps), the YAML and the problems.
`enter` (or `r`) opens the start form of a valid workflow; the run starts in its own
`cpf` process and keeps running if you quit.
"""
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "run", "Run", id="workflows.run"),
        Binding("e", "edit", "Edit", id="workflows.edit"),
        Binding("f5", "rescan", "Rescan", id="workflows.rescan"),
        Binding("tab", "app.focus_next", "Next pane", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.files: dict[Path, WorkflowFile] = {}
        self.file_nodes: dict[Path, TreeNode[Path | None]] = {}
        self.current: Path | None = None
        self.loaded = False
        # Held, not queried: the tab panes may not be composed when the scan ends.
        self.outline_view = Static("", id="wf-outline")
        self.yaml_view = Static("", id="wf-yaml")
        self.problems_view = Static("", id="wf-problems")
        self._yaml_of: WorkflowFile | None = None  # the file the YAML tab shows

    def compose(self) -> ComposeResult:
        yield TopBar()
        with Horizontal(id="wf-body"):
            tree: Tree[Path | None] = Tree("workflows", id="wf-tree")
            tree.show_root = False
            tree.guide_depth = 2
            yield tree
            with Vertical(id="wf-preview"):
                yield Static("", id="wf-title")
                with TabbedContent(id="wf-tabs"):
                    with TabPane("Outline", id="tab-outline"), VerticalScroll():
                        yield self.outline_view
                    with TabPane("YAML", id="tab-yaml"), VerticalScroll():
                        yield self.yaml_view
                    with TabPane("Problems", id="tab-problems"), VerticalScroll():
                        yield self.problems_view
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one("#wf-tree", Tree).focus()
        self.run_worker(self._scan(), group="wf-scan", exclusive=True)

    # -- scanning ----------------------------------------------------------------------------

    async def _scan(self) -> None:
        app: Any = self.app
        roots = [Path(p) for p in app.paths]
        paths = await off_thread(discover, roots)
        explicit = {p.resolve() for p in roots if p.is_file()}
        self._build_tree(roots, paths)
        checked: list[WorkflowFile] = []
        # Check in small batches so marks appear progressively on big trees.
        for i in range(0, len(paths), 20):
            batch = paths[i : i + 20]
            results = await off_thread(
                lambda b=batch: [check(p, explicit=p in explicit) for p in b]
            )
            for wf in results:
                self.files[wf.path] = wf
                checked.append(wf)
                self._mark(wf)
        self._prune_other()
        app.workflow_files = [wf for wf in checked if wf.state != "other"]
        self.loaded = True
        tree = self.query_one("#wf-tree", Tree)
        if self.current is None:
            first = next((p for p in paths if p in self.file_nodes), None)
            if first is not None:
                tree.move_cursor(self.file_nodes[first])
                self._show(first)
            else:
                self._show(None)
        else:
            self._show(self.current)

    def _build_tree(self, roots: list[Path], paths: list[Path]) -> None:
        tree = self.query_one("#wf-tree", Tree)
        tree.clear()
        self.file_nodes = {}
        folders: dict[Path, TreeNode[Path | None]] = {}
        resolved_roots = [(r, r.resolve()) for r in roots]
        for path in paths:
            root, base = next(
                ((r, b) for r, b in resolved_roots if path == b or b in path.parents),
                (Path(path.parent), path.parent),
            )
            if path == base:  # a file named on the command line
                parent = tree.root
            else:
                parent = folders.get(base)
                if parent is None:
                    parent = tree.root.add(_root_label(root), data=None, expand=True)
                    folders[base] = parent
                for part in path.relative_to(base).parts[:-1]:
                    base = base / part
                    node = folders.get(base)
                    if node is None:
                        node = parent.add(f"{part}/", data=None, expand=True)
                        folders[base] = node
                    parent = node
            self.file_nodes[path] = parent.add_leaf(_label(path.name, "pending"), data=path)
        if not paths:
            tree.root.add_leaf(Text("no *.yaml files here", style="dim italic"), data=None)

    def _mark(self, wf: WorkflowFile) -> None:
        node = self.file_nodes.get(wf.path)
        if node is not None:
            node.set_label(_label(wf.path.name, wf.state, self.app))
        if wf.path == self.current:
            self._show(wf.path)

    def _prune_other(self) -> None:
        """Hide YAML files that are not workflows (unless named on the command line)."""
        for path, wf in list(self.files.items()):
            if wf.state == "other" and path in self.file_nodes:
                node = self.file_nodes.pop(path)
                parent = node.parent
                node.remove()
                while parent is not None and parent.parent is not None and not parent.children:
                    grand = parent.parent
                    parent.remove()
                    parent = grand

    # -- preview -----------------------------------------------------------------------------

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted[Path | None]) -> None:
        if event.node.data is not None:
            self._show(event.node.data)

    def on_tree_node_selected(self, event: Tree.NodeSelected[Path | None]) -> None:
        if event.node.data is not None:
            self.current = event.node.data
            self.action_run()

    def _show(self, path: Path | None) -> None:
        self.current = path
        title = self.query_one("#wf-title", Static)
        outline_view = self.outline_view
        yaml_view = self.yaml_view
        problems = self.problems_view
        tabs = self.query_one("#wf-tabs", TabbedContent)
        wf = self.files.get(path) if path else None
        if path is None:
            title.update(Text("No workflow selected.", style="dim"))
            for view in (outline_view, yaml_view, problems):
                view.update("")
            self._yaml_of = None
            return
        if wf is None:
            title.update(Text(f"{path.name}: checking…", style="dim"))
            return
        title.update(self._title(wf))
        if wf.workflow is not None:
            outline_view.update(self._outline(wf))
        else:
            outline_view.update(self._problems(wf))
        self._yaml_of = None  # highlighted when its tab is shown (see _render_yaml)
        if tabs.active == "tab-yaml":
            self._render_yaml()
        problems.update(self._problems(wf))
        count = len(wf.problems)
        with suppress(NoMatches):  # the tabs may not be composed yet
            tabs.get_tab("tab-problems").label = f"Problems ({count})" if count else "Problems"

    def _render_yaml(self) -> None:
        """Highlight the current file's YAML. Only when the YAML tab is shown: the
        highlighter (pygments) is not imported for the first screen."""
        wf = self.selected
        if wf is None or self._yaml_of is wf:
            return
        from rich.syntax import Syntax

        self._yaml_of = wf
        dark = palette(self.app).dark
        self.yaml_view.update(
            Syntax(
                wf.text or "",
                "yaml",
                theme="ansi_dark" if dark else "ansi_light",
                line_numbers=True,
                word_wrap=False,
                background_color="default",
            )
        )

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id == "tab-yaml":
            self._render_yaml()

    def _title(self, wf: WorkflowFile) -> Group:
        theme = palette(self.app)
        color = {
            "valid": theme.success,
            "warnings": theme.warning,
            "invalid": theme.error,
        }.get(wf.state, "")
        head = Text(no_wrap=True, overflow="ellipsis")
        head.append(f"{MARKS[wf.state]} {wf.state}", style=f"bold {color}")
        head.append("  ")
        head.append(wf.title, style="bold")
        if wf.workflow is not None:
            head.append(f"  id {wf.workflow.id}", style="dim")
            if wf.workflow.version:
                head.append(f"  v{wf.workflow.version}", style="dim")
        lines = [head]
        if wf.workflow is not None and wf.workflow.description:
            lines.append(Text(wf.workflow.description, overflow="ellipsis", no_wrap=True))
        where = Text(display_path(wf.path), style="dim", no_wrap=True, overflow="ellipsis")
        if wf.workflow is not None:
            where.append("   enter: run", style="dim italic")
        lines.append(where)
        return Group(*lines)

    def _outline(self, wf: WorkflowFile) -> Table:
        rows = list(outline(wf.workflow.steps))
        # The step and kind columns are as wide as their longest entry (up to a third of the
        # pane for step ids), so the flow column gets the rest instead of wrapping.
        step_width = max((len("  " * r.depth + r.step_id) for r in rows), default=4)
        step_width = max(4, min(step_width, max(8, self.size.width // 4)))
        table = Table(box=None, expand=True, show_edge=False, pad_edge=False, header_style="bold")
        table.add_column("#", justify="right", style="dim", width=len(str(len(rows))) + 1)
        table.add_column("Step", width=step_width, overflow="fold")
        table.add_column("Kind", no_wrap=True)
        table.add_column("If · flow", ratio=1, overflow="fold")
        for n, row in enumerate(rows, start=1):
            step = Text("  " * row.depth + row.step_id, style="bold" if not row.depth else "")
            if row.name:
                step.append(f"\n{'  ' * row.depth}{row.name}", style="dim")
            flow = Text()
            if row.condition:
                flow.append(f"if {row.condition}", style="italic")
            for line in row.flow:
                if flow:
                    flow.append("\n")
                flow.append(line)
            table.add_row(str(n), step, row.kind, flow)
        return table

    def _problems(self, wf: WorkflowFile) -> Text:
        if not wf.problems:
            return Text("No problems: the workflow is valid.", style="dim")
        theme = palette(self.app)
        text = Text()
        for i, line in enumerate(wf.problems):
            style = theme.error if wf.state == "invalid" and i == 0 else ""
            mark = "✗ " if wf.state == "invalid" else "! "
            if i:
                text.append("\n")
            text.append(mark, style=theme.error if wf.state == "invalid" else theme.warning)
            text.append(line, style=style)
        return text

    # -- actions -----------------------------------------------------------------------------

    @property
    def selected(self) -> WorkflowFile | None:
        return self.files.get(self.current) if self.current else None

    def home(self) -> Tree[Path | None]:
        return self.query_one("#wf-tree", Tree)

    def action_run(self) -> None:
        wf = self.selected
        if wf is None:
            return
        if wf.workflow is None:
            self.notify(
                f"{wf.path.name} is not a valid workflow: {wf.message}",
                severity="error",
                timeout=8,
            )
            return
        start_workflow(self, wf)

    def action_edit(self) -> None:
        wf = self.selected
        if wf is None:
            return
        editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
        import shlex
        import subprocess

        with self.app.suspend():
            subprocess.call([*shlex.split(editor), str(wf.path)])
        self.run_worker(self._recheck(wf.path), group="wf-scan")

    async def _recheck(self, path: Path) -> None:
        wf = await off_thread(check, path, explicit=True)
        self.files[path] = wf
        self._mark(wf)
        self._show(path)

    def action_rescan(self) -> None:
        self.files.clear()
        self.run_worker(self._scan(), group="wf-scan", exclusive=True)

    def context_commands(self) -> Iterator[Command]:
        wf = self.selected
        if wf is not None and wf.workflow is not None:
            yield (start_name(wf), str(wf.path), self.action_run)
        yield ("Rescan workflow files", "Reload and validate", self.action_rescan)
        for tab, label in (("tab-outline", "Outline"), ("tab-yaml", "YAML")):
            yield (f"Show {label}", "Preview tab", partial(self._tab, tab))
        yield ("Show Problems", "Preview tab", partial(self._tab, "tab-problems"))

    def _tab(self, tab: str) -> None:
        self.query_one("#wf-tabs", TabbedContent).active = tab


def _label(name: str, state: str, app: Any = None) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    colors = {}
    if app is not None:
        theme = palette(app)
        colors = {
            "valid": theme.success,
            "warnings": theme.warning,
            "invalid": theme.error,
            "other": "grey50",
        }
    text.append(f"{MARKS.get(state, '?')} ", style=f"bold {colors.get(state, '')}".strip())
    text.append(name, style="dim" if state in ("other", "pending") else "")
    return text


def _root_label(root: Path) -> str:
    text = str(root)
    return text if text.endswith("/") else text + "/"
