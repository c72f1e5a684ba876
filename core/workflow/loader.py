"""Read a workflow file, parse its YAML and validate it: `load_workflow(path)`.

Failures raise `core.envelope.ValidationError` in the order of the checkpointflow
contract (§4): file missing -> not a file -> YAML -> schema -> duplicate step ids.
A document that passes gets its non-fatal warnings attached (`LoadedWorkflow.warnings`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core import limits
from core.envelope import ErrorCode, ValidationError
from core.workflow import validation

if TYPE_CHECKING:
    import yaml

# The parsed form of a remembered document is kept only up to this size (JSON bytes), and
# at most this many documents are remembered: the cache stays small whatever is run.
MAX_REMEMBERED_BYTES = 1024 * 1024
MAX_REMEMBERED = 256


@cache
def _yaml_loader() -> Any:
    """The safe YAML loader, built on first use: importing yaml costs a command that
    loads a remembered document (see `_remembered`) more than the rest of loading."""
    import yaml

    # libyaml's loader is several times faster; same YAML 1.1 semantics as yaml.safe_load.
    base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class Loader(base):  # type: ignore[misc,valid-type]
        """Safe loader that keeps dates as strings: workflow values must be JSON."""

    Loader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in base.yaml_implicit_resolvers.items()
    }
    return Loader


@dataclass
class LoadedWorkflow:
    path: Path  # absolute
    text: str
    sha256: str  # hex sha256 of the file bytes
    doc: dict[str, Any]  # the whole YAML document
    warnings: list[str] = field(default_factory=list)

    @property
    def workflow(self) -> dict[str, Any]:
        wf: dict[str, Any] = self.doc["workflow"]
        return wf

    @property
    def id(self) -> str:
        wid: str = self.workflow["id"]
        return wid

    @property
    def name(self) -> str | None:
        return self.workflow.get("name")

    @property
    def description(self) -> str | None:
        return self.workflow.get("description")

    @property
    def version(self) -> str | None:
        return self.workflow.get("version")

    @property
    def inputs_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = self.workflow["inputs"]
        return schema

    @property
    def steps(self) -> list[dict[str, Any]]:
        steps: list[dict[str, Any]] = self.workflow["steps"]
        return steps

    @property
    def defaults(self) -> dict[str, Any]:
        return self.workflow.get("defaults") or {}

    @cached_property
    def step_by_id(self) -> dict[str, dict[str, Any]]:
        """Top-level steps by id (foreach body steps are not jump targets here)."""
        return {s["id"]: s for s in self.steps}

    @cached_property
    def index_of(self) -> dict[str, int]:
        """Position of each top-level step in `steps`."""
        return {s["id"]: i for i, s in enumerate(self.steps)}

    def iter_steps(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """(JSON path, step) for every step, foreach bodies included, in document order."""
        for path, step in validation.iter_steps(self.steps):
            yield validation.format_path(path), step


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a workflow file's bytes (read with the limits of `load_workflow`)."""
    return hashlib.sha256(_read(str(path))).hexdigest()


def _read(path: str) -> bytes:
    return limits.read_file(
        path,
        what="Workflow file",
        missing_code=ErrorCode.ERR_FILE_NOT_FOUND,
        error_code=ErrorCode.ERR_VALIDATION_WORKFLOW,
    )


def load_workflow(path: str | Path, *, remember: bool = False) -> LoadedWorkflow:
    """Read, parse and validate the workflow file at `path`.

    `remember` (the commands that execute runs): a file whose exact bytes this cpf
    already validated is not validated again (see `_remembered`), which spares loading
    jsonschema on every `run`, `resume` and `retry` of an unchanged workflow."""
    data = _read(str(path))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError(
            ErrorCode.ERR_YAML_PARSE,
            f"YAML parse error: the file is not valid UTF-8 (byte {exc.start})",
        ) from exc
    return _load(text, Path(path), hashlib.sha256(data).hexdigest(), remember=remember)


def load_workflow_text(text: str, path: str | Path) -> LoadedWorkflow:
    """Parse and validate workflow text read earlier from `path`.

    `sha256` is computed over the UTF-8 encoding of `text`, which equals the file's hash
    for any file `load_workflow` accepted.
    """
    return _load(text, Path(path), hashlib.sha256(text.encode("utf-8")).hexdigest())


def _load(text: str, path: Path, digest: str, *, remember: bool = False) -> LoadedWorkflow:
    marker = _marker(digest) if remember else None
    known = _remembered(marker, digest)
    if known is not None and known[1] is not None:
        warnings, doc = known[0], known[1]
    else:
        doc = parse_yaml(text)
        warnings = _validate(doc) if known is None else known[0]
        if marker is not None:
            _remember(marker, digest, warnings, doc)
    return LoadedWorkflow(
        path=Path(os.path.abspath(path)), text=text, sha256=digest, doc=doc, warnings=warnings
    )


def _validate(doc: Any) -> list[str]:
    """Raise the document's errors; return its warnings."""
    errors = validation.schema_errors(doc)
    if errors:
        raise ValidationError(
            ErrorCode.ERR_VALIDATION_WORKFLOW,
            f"Workflow validation failed with {len(errors)} error(s).",
            details=errors,
        )
    dups, details = validation.duplicate_step_ids(doc)
    if dups:
        raise ValidationError(
            ErrorCode.ERR_DUPLICATE_STEP_ID,
            f"Duplicate step ID(s): {', '.join(dups)}",
            details=details,
        )
    return validation.workflow_warnings(doc)


def _marker(digest: str) -> Path | None:
    """Where the validation of a document with sha256 `digest` by this cpf is recorded:
    keyed by the document and by the validator and parser (schema and code), so an edited
    file or another cpf parses and validates afresh."""
    from core import __version__
    from core.paths import base_dir

    try:
        validator = hashlib.sha256(__version__.encode())
        validator.update(validation.SCHEMA_PATH.read_bytes())
        validator.update(Path(validation.__file__).read_bytes())
        # and by the parser: the record keeps the parsed document too
        validator.update(Path(__file__).read_bytes())
        validator.update(Path(limits.__file__).read_bytes())
    except OSError:
        return None
    key = hashlib.sha256(f"{digest}:{validator.hexdigest()}".encode()).hexdigest()
    return base_dir() / "cache" / "valid-workflows" / f"{key}.json"


def _remembered(marker: Path | None, digest: str) -> tuple[list[str], Any] | None:
    """(warnings, parsed document or None) of a document validated before, or None.

    The record is `<sha256 of the rest>\n<JSON>`: a torn, truncated or edited record fails
    its checksum or its shape and is ignored (the file is parsed and validated afresh).
    Records of earlier cpf builds (a bare JSON list of warnings) carry no document."""
    if marker is None:
        return None
    try:
        raw = marker.read_bytes()
    except OSError:
        return None
    head, sep, body = raw.partition(b"\n")
    if not sep:
        body, head = raw, b""
    elif head.decode("ascii", "replace") != hashlib.sha256(body).hexdigest():
        return None
    try:
        record = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not head:  # the old format: the warnings alone
        return (record, None) if _strings(record) else None
    if not isinstance(record, dict) or record.get("sha256") != digest:
        return None
    warnings, doc = record.get("warnings"), record.get("doc")
    if not _strings(warnings):
        return None
    if doc is not None and not (isinstance(doc, dict) and isinstance(doc.get("workflow"), dict)):
        return None
    return warnings, doc


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(w, str) for w in value)


def _remember(marker: Path, digest: str, warnings: list[str], doc: Any) -> None:
    """Record the validation of the document (and its parsed form when JSON keeps it as
    it is and it is not too big)."""
    record: dict[str, Any] = {"sha256": digest, "warnings": warnings}
    try:
        text = json.dumps(doc)
        # YAML keys like `on:` (True) or `1:` would come back as strings: keep none of that.
        if len(text) <= MAX_REMEMBERED_BYTES and json.loads(text) == doc:
            record["doc"] = doc
    except (TypeError, ValueError, RecursionError):
        pass
    body = json.dumps(record).encode("ascii")
    data = hashlib.sha256(body).hexdigest().encode("ascii") + b"\n" + body
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        tmp = marker.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, marker)  # readers never see half a file
        _prune(marker.parent)
    except OSError:
        pass  # only a cache: the next run validates again


def _prune(folder: Path) -> None:
    """Keep the most recently written MAX_REMEMBERED records."""
    try:
        entries = [
            (e.stat().st_mtime, e.path)
            for e in os.scandir(folder)
            if e.name.endswith(".json") and e.is_file()
        ]
    except OSError:
        return
    if len(entries) <= MAX_REMEMBERED:
        return
    entries.sort()
    for _, name in entries[: len(entries) - MAX_REMEMBERED]:
        with contextlib.suppress(OSError):  # another cpf pruned it first
            os.unlink(name)


def parse_yaml(text: str) -> Any:
    """YAML 1.1 safe load; errors become ERR_YAML_PARSE with a one-line message.

    The document must be JSON data within `core.limits`: bounded depth and size (so no
    recursive alias and no alias bomb), no NaN/Infinity, no binary, set or other tags."""
    import yaml

    try:
        data = yaml.load(text, Loader=_yaml_loader())  # a safe loader (no Python tags)
    except yaml.YAMLError as exc:
        raise ValidationError(ErrorCode.ERR_YAML_PARSE, yaml_error_message(exc)) from exc
    except (ValueError, RecursionError, MemoryError) as exc:  # e.g. an int past 4300 digits
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        if "digits" in reason:
            reason = "integer with more than 4300 digits"
        raise ValidationError(ErrorCode.ERR_YAML_PARSE, f"YAML parse error: {reason}") from None
    try:
        return limits.json_copy(data)
    except limits.JsonProblem as exc:
        raise ValidationError(
            ErrorCode.ERR_YAML_PARSE, f"YAML parse error: not JSON data: {exc}"
        ) from None


def yaml_error_message(exc: yaml.YAMLError) -> str:
    """`YAML parse error at line 4, column 17: mapping values are not allowed here (...)`."""
    import yaml

    if not isinstance(exc, yaml.MarkedYAMLError):
        return "YAML parse error: " + " ".join(str(exc).split())
    mark = exc.problem_mark or exc.context_mark
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = " ".join(str(exc.problem or exc.context or "invalid YAML").split())
    msg = f"YAML parse error{where}: {problem}"
    if exc.context and exc.problem:
        ctx = " ".join(exc.context.split())
        cmark = exc.context_mark
        if cmark and mark and (cmark.line, cmark.column) != (mark.line, mark.column):
            ctx += f" at line {cmark.line + 1}, column {cmark.column + 1}"
        msg += f" ({ctx})"
    if exc.problem and "mapping values are not allowed" in exc.problem:
        msg += "; a plain value containing ': ' must be quoted or written as a block scalar"
    return msg
