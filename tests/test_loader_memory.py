"""What `load_workflow(path, remember=True)` remembers of a validated document (the
commands that execute runs: `run`, `resume`, `retry`): its warnings and its parsed form,
so loading the same bytes again needs neither jsonschema nor yaml. The record is only a
cache: a torn, corrupt or edited one is ignored, and the cache stays bounded."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.workflow import loader
from core.workflow.loader import load_workflow, parse_yaml

WF = """\
schema_version: checkpointflow/v1
workflow:
  id: remembered
  version: "1.0"
  inputs: {type: object}
  steps:
    - id: greet
      kind: cli
      command: echo "héllo ${inputs.name}"
      env: {N: 3, F: 1.5, B: true, Z: null, BIG: 123456789012345678901234567890}
    - id: gate
      kind: await_event
      audience: user
      event_name: go
      input_schema:
        type: object
        properties: {ok: {type: boolean}}
    - id: done
      kind: end
      result: {day: 2024-01-01, ratio: -0.0}
"""


@pytest.fixture
def base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CHECKPOINTFLOW_BASE_DIR", str(tmp_path / "base"))
    return tmp_path / "base"


def records(base: Path) -> list[Path]:
    return sorted((base / "cache" / "valid-workflows").glob("*.json"))


def write(tmp_path: Path, text: str, name: str = "wf.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_the_parsed_document_is_remembered_exactly(tmp_path: Path, base: Path) -> None:
    path = write(tmp_path, WF)
    first = load_workflow(path, remember=True)
    (record,) = records(base)
    again = load_workflow(path, remember=True)
    assert again.doc == first.doc == parse_yaml(WF)
    # JSON keeps every type as YAML gave it: no 1 for 1.0, no 0 for -0.0, no date objects
    assert json.dumps(again.doc) == json.dumps(first.doc)
    assert repr(again.doc) == repr(first.doc)
    assert (again.text, again.sha256, again.warnings) == (first.text, first.sha256, [])
    assert records(base) == [record]


def test_loading_a_remembered_document_imports_neither_yaml_nor_jsonschema(
    tmp_path: Path, base: Path
) -> None:
    path = write(tmp_path, WF)
    load_workflow(path, remember=True)
    code = (
        "import sys; from core.workflow.loader import load_workflow; "
        f"wf = load_workflow({str(path)!r}, remember=True); "
        "print(wf.id, sorted(m for m in ('yaml', 'jsonschema') if m in sys.modules))"
    )
    env = dict(os.environ, CHECKPOINTFLOW_BASE_DIR=str(base))
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert proc.stdout.strip() == "remembered []"


def _body_edit(raw: bytes) -> bytes:
    """The record with its command changed but its checksum line kept."""
    return raw.replace(b"echo", b"rm -rf")


def _forged_other_source(raw: bytes) -> bytes:
    """A well-formed record (checksum right) that belongs to another document."""
    record = json.loads(raw.partition(b"\n")[2])
    record["sha256"] = "0" * 64
    body = json.dumps(record).encode()
    return hashlib.sha256(body).hexdigest().encode() + b"\n" + body


@pytest.mark.parametrize(
    "damage",
    [
        lambda raw: b"",
        lambda raw: raw[: len(raw) // 2],
        lambda raw: raw + b"x",
        lambda raw: b"\x00\xff" * 40,
        lambda raw: raw.partition(b"\n")[2],  # the checksum line lost
        _body_edit,
        _forged_other_source,
        lambda raw: b"[1, 2]",
        lambda raw: b"{}",
    ],
    ids=[
        "empty",
        "truncated",
        "trailing-byte",
        "binary",
        "no-checksum",
        "edited",
        "other-source",
        "old-format-not-strings",
        "object-without-checksum",
    ],
)
def test_a_damaged_record_is_ignored(tmp_path: Path, base: Path, damage) -> None:
    path = write(tmp_path, WF)
    expected = load_workflow(path, remember=True).doc
    (record,) = records(base)
    record.write_bytes(damage(record.read_bytes()))
    wf = load_workflow(path, remember=True)
    assert wf.doc == expected
    assert "rm -rf" not in json.dumps(wf.doc)
    # and it is written afresh
    assert load_workflow(path, remember=True).doc == expected
    assert (
        record.read_bytes().split(b"\n", 1)[0]
        == hashlib.sha256(record.read_bytes().split(b"\n", 1)[1]).hexdigest().encode()
    )


def test_a_damaged_record_of_an_invalid_document_never_skips_validation(
    tmp_path: Path, base: Path
) -> None:
    """A record only ever stands for the exact bytes it was made from."""
    good = write(tmp_path, WF)
    load_workflow(good, remember=True)
    (record,) = records(base)
    bad = write(tmp_path, WF.replace("kind: cli", "kind: nope"), name="bad.yaml")
    bad_digest = hashlib.sha256(bad.read_bytes()).hexdigest()
    marker = loader._marker(bad_digest)
    assert marker is not None
    marker.write_bytes(record.read_bytes())  # the good document's record, under bad's key
    with pytest.raises(Exception, match="validation failed"):
        load_workflow(bad, remember=True)


def test_an_old_record_is_upgraded(tmp_path: Path, base: Path) -> None:
    """A record of an earlier build (the warnings alone) still spares the validation; the
    file is parsed once more and the record gains the parsed document."""
    path = write(tmp_path, WF)
    expected = load_workflow(path, remember=True).doc
    (record,) = records(base)
    record.write_text('["an old warning"]', encoding="utf-8")
    wf = load_workflow(path, remember=True)
    assert wf.doc == expected and wf.warnings == ["an old warning"]
    head, _, body = record.read_bytes().partition(b"\n")
    assert head == hashlib.sha256(body).hexdigest().encode()
    assert json.loads(body)["doc"] == expected


def test_keys_json_cannot_keep_are_not_remembered(tmp_path: Path, base: Path) -> None:
    """YAML's `on:` is the key True and `2:` the key 2; JSON would make them strings, so
    such a document keeps only its validation, and is parsed each time."""
    text = WF.replace("result: {day: 2024-01-01, ratio: -0.0}", "result: {on: 1, 2: two}")
    path = write(tmp_path, text)
    first = load_workflow(path, remember=True)
    assert first.steps[-1]["result"] == {True: 1, 2: "two"}
    (record,) = records(base)
    assert "doc" not in json.loads(record.read_bytes().partition(b"\n")[2])
    again = load_workflow(path, remember=True)
    assert again.steps[-1]["result"] == {True: 1, 2: "two"}
    assert again.warnings == first.warnings


def test_the_cache_is_bounded(tmp_path: Path, base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader, "MAX_REMEMBERED", 4)
    monkeypatch.setattr(loader, "MAX_REMEMBERED_BYTES", 600)
    paths = [write(tmp_path, WF.replace("remembered", f"wf{i}"), f"{i}.yaml") for i in range(7)]
    for path in paths:
        load_workflow(path, remember=True)
    assert len(records(base)) == 4
    big = write(tmp_path, WF + "      description: " + "x" * 2000 + "\n", "big.yaml")
    first = load_workflow(big, remember=True)
    newest = max(records(base), key=lambda p: p.stat().st_mtime_ns)
    record = json.loads(newest.read_bytes().partition(b"\n")[2])
    assert record["warnings"] == first.warnings and "doc" not in record
    assert load_workflow(big, remember=True).doc == first.doc
    assert len(records(base)) == 4
