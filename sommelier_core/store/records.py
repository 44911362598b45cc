"""The file format of a stage record: versioned JSON whose class comes from the stage table, with checksums.

A record file `models/<safe id>/<stage>.json` holds
`{"format": "sommelier.record", "schema": 4, "stage": …, "model_id": …, "checksum": "sha256:…",
"artifacts": {"models/<safe id>/outputs/0.top1.npy": {"bytes": …, "sha256": …}}, "record": {…}}`; the record's
class is `stage(name).record` in `sommelier_core.stages` (a per-device record `device_profile@cpu` is
of stage `device_profile`), so the file chooses no code. `checksum` is the SHA-256 of the record body as
written (compact JSON), so a well-formed but changed record is found; `artifacts` are the size and SHA-256 of
every file inside the store the record points to (its `$store` paths), taken when the record was written.

Schema 1 was the pickled dataclass (`<stage>.pkl`, see `legacy`); schema 2 had no checksums: it is read as
before and counts as *unverified*, not damaged (it gains checksums when its stage next runs). A file that does
not decode, is another stage's or model's record, or does not match its checksum raises `DamagedArtifact`
naming the file, the model and the stage; a newer schema raises `StoreFormatError` saying to upgrade.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sommelier_core.stages import STAGES, stage
from sommelier_core.store.checksums import FileChecksum, file_checksum, text_digest
from sommelier_core.store.codec import STORE_PATH, CodecError, StorePaths, dataclass_types, decode, encode
from sommelier_core.store.errors import REPAIR_HINT, DamagedArtifact, StoreFormatError

RECORD_FORMAT = "sommelier.record"
RECORD_SCHEMA = 4
"""The record format version this code writes (1: pickled dataclasses, migrated by `legacy`; 2: data-only
records without checksums, still read, as unverified; 3: records with checksums whose `model_outputs` point to full
`outputs.npy`, still read; 4: `model_outputs` records of compact outputs, `compact_outputs`)."""
FIRST_CHECKSUMMED_SCHEMA = 3
RECORD_SUFFIX = ".json"


@dataclass(frozen=True)
class Envelope:
    """A record file's envelope, read and checked: whose record it is, its body (still data) and what it
    recorded of the files it points to."""

    model_id: str
    schema: int
    body: Any
    verified: bool
    """Whether the body was checked against a recorded checksum (False for a schema-2 record)."""
    artifacts: dict[str, FileChecksum] = field(default_factory=dict)
    """Store-relative path → checksum of each file the record points to, when it was written."""


def record_class(stage_name: str) -> type:
    """The record type a stage keeps, as the stage table names it (`module:Class`)."""
    try:
        spec = stage(stage_name).record
    except KeyError as exc:
        raise StoreFormatError(str(exc.args[0])) from None
    if not spec:
        raise StoreFormatError(f"stage {stage_name!r} keeps no per-model record")
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def record_types() -> dict[str, type]:
    """Every record class of the stage table and every dataclass nested in one, by class name."""
    found: dict[str, type] = {}
    for entry in STAGES:
        if entry.record:
            for cls in dataclass_types(record_class(entry.name)):
                found.setdefault(cls.__name__, cls)
    return found


def encode_record(stage_name: str, model_id: str, record: Any, paths: StorePaths) -> bytes:
    """The file contents of one stage record (`TypeError` if it is not of the stage's record type), with the
    checksum of its body and of every file inside the store it points to."""
    cls = record_class(stage_name)
    if not isinstance(record, cls):
        raise TypeError(f"stage {stage_name!r} keeps {cls.__qualname__} records; got {type(record).__qualname__}")
    try:
        body = encode(record, cls, paths)
    except CodecError as exc:
        raise TypeError(f"record of stage {stage_name!r} for {model_id} cannot be stored: {exc}") from exc
    envelope = {
        "format": RECORD_FORMAT,
        "schema": RECORD_SCHEMA,
        "stage": stage_name,
        "model_id": model_id,
        "checksum": text_digest(_body_text(body)),
        "artifacts": {relative: checksum.to_data() for relative, checksum in _artifacts(body, paths).items()},
        "record": body,
    }
    return json.dumps(envelope, separators=(",", ":"), allow_nan=False).encode()


def read_envelope(data: bytes, path: Path, stage_name: str, model_id: str | None) -> Envelope:
    """A record file's envelope, checked: format, schema, stage, model and the body's checksum.

    `DamagedArtifact` naming the file, model and stage if it is damaged or another record;
    `StoreFormatError` if it is of a newer schema than this code reads.
    """
    where = f"{path} (model {model_id or path.parent.name}, stage {stage_name})"

    def damaged(what: str) -> DamagedArtifact:
        return DamagedArtifact(f"{where} is damaged: {what}; {REPAIR_HINT}", path, model_id, stage_name)

    try:
        envelope = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise damaged(f"not a record file ({exc})") from None
    except RecursionError:
        raise damaged("not a record file (nested too deeply)") from None
    if not isinstance(envelope, dict) or envelope.get("format") != RECORD_FORMAT:
        raise damaged(f"not a Sommelier record (no format {RECORD_FORMAT!r})")
    schema = envelope.get("schema")
    if isinstance(schema, bool) or not isinstance(schema, int) or schema < 2:
        raise damaged(f"record schema {schema!r} is not one Sommelier wrote")
    if schema > RECORD_SCHEMA:
        raise StoreFormatError(
            f"{where} has record schema {schema!r}, newer than this Sommelier reads ({RECORD_SCHEMA}): "
            "upgrade Sommelier to read this store"
        )
    if envelope.get("stage") != stage_name:
        raise damaged(f"it holds a record of stage {envelope.get('stage')!r}")
    stored_id = envelope.get("model_id")
    if not isinstance(stored_id, str) or (model_id is not None and stored_id != model_id):
        raise damaged(f"it holds a record of model {stored_id!r}")
    body = envelope.get("record")
    checksum = envelope.get("checksum")
    checksummed = schema >= FIRST_CHECKSUMMED_SCHEMA or "checksum" in envelope
    if checksummed and (not isinstance(checksum, str) or checksum != text_digest(_body_text(body))):
        raise damaged("the record does not match its checksum (changed after it was written)")
    artifacts: dict[str, FileChecksum] = {}
    listed = envelope.get("artifacts", {})
    if not isinstance(listed, dict):
        raise damaged("its list of artifact checksums is not a mapping")
    for relative, data_checksum in listed.items():
        recorded = FileChecksum.from_data(data_checksum)
        if recorded is None:
            raise damaged(f"the checksum it recorded of {relative} is not one")
        artifacts[relative] = recorded
    return Envelope(stored_id, schema, body, checksummed, artifacts)


def decode_body(envelope: Envelope, path: Path, stage_name: str, paths: StorePaths) -> Any:
    """The record an envelope holds, as its stage's record class; `DamagedArtifact` if it does not decode."""
    try:
        return decode(envelope.body, record_class(stage_name), paths)
    except CodecError as exc:
        raise DamagedArtifact(
            f"{path} (model {envelope.model_id}, stage {stage_name}) is damaged: it does not decode: {exc}; "
            f"{REPAIR_HINT}",
            path,
            envelope.model_id,
            stage_name,
        ) from None


def decode_record(data: bytes, path: Path, stage_name: str, model_id: str | None, paths: StorePaths) -> tuple[str, Any]:
    """(model id, record) from a record file's contents; `DamagedArtifact` or `StoreFormatError` naming file,
    model and stage. The files the record points to are not checked here (`ModelStore.load_record` does)."""
    envelope = read_envelope(data, path, stage_name, model_id)
    return envelope.model_id, decode_body(envelope, path, stage_name, paths)


def _body_text(body: Any) -> str:
    """The record body as the checksum covers it: compact JSON, keys in the order written (empty for a body
    that cannot be written back, such as one holding a non-standard NaN literal: it matches no checksum)."""
    try:
        return json.dumps(body, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        return ""


def _artifacts(body: Any, paths: StorePaths) -> dict[str, FileChecksum]:
    """The checksum of every regular file inside the store that a record body points to (`$store` paths)."""
    found: dict[str, FileChecksum] = {}
    for relative in sorted(store_paths(body)):
        try:
            target = paths.absolute(relative)
        except CodecError:
            continue
        if target.is_file():
            found[relative] = file_checksum(target)
    return found


def store_paths(data: Any) -> set[str]:
    """Every store-relative path (`{"$store": …}`) in a record body, however nested."""
    if isinstance(data, dict):
        if set(data) == {STORE_PATH} and isinstance(data[STORE_PATH], str):
            return {data[STORE_PATH]}
        return {p for value in data.values() for p in store_paths(value)}
    if isinstance(data, list):
        return {p for value in data for p in store_paths(value)}
    return set()
