"""The file format of a stage record: versioned JSON whose class comes from the stage table.

A record file `models/<safe id>/<stage>.json` holds
`{"format": "sommelier.record", "schema": 2, "stage": …, "model_id": …, "record": {…}}`; the record's
class is `stage(name).record` in `sommelier_core.stages` (a per-device record `device_profile@cpu` is
of stage `device_profile`), so the file chooses no code. Schema 1 was the pickled dataclass
(`<stage>.pkl`, see `legacy`). A file that is newer than this code or does not decode raises
`StoreFormatError` naming the file, the model and the stage.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from sommelier_core.stages import STAGES, stage
from sommelier_core.store.codec import CodecError, StorePaths, dataclass_types, decode, encode
from sommelier_core.store.errors import REINDEX_HINT, StoreFormatError

RECORD_FORMAT = "sommelier.record"
RECORD_SCHEMA = 2
"""The record format version this code writes and reads (1: pickled dataclasses, migrated by `legacy`)."""
RECORD_SUFFIX = ".json"


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
    """The file contents of one stage record (`TypeError` if it is not of the stage's record type)."""
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
        "record": body,
    }
    return json.dumps(envelope, separators=(",", ":"), allow_nan=False).encode()


def decode_record(data: bytes, path: Path, stage_name: str, model_id: str | None, paths: StorePaths) -> tuple[str, Any]:
    """(model id, record) from a record file's contents; `StoreFormatError` naming file, model and stage."""
    where = f"{path} (model {model_id or path.parent.name}, stage {stage_name})"
    try:
        envelope = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreFormatError(f"{where} is not a record file ({exc}); {REINDEX_HINT}") from None
    if not isinstance(envelope, dict) or envelope.get("format") != RECORD_FORMAT:
        raise StoreFormatError(f"{where} is not a Sommelier record (no format {RECORD_FORMAT!r}); {REINDEX_HINT}")
    schema = envelope.get("schema")
    if not isinstance(schema, int) or schema > RECORD_SCHEMA:
        raise StoreFormatError(
            f"{where} has record schema {schema!r}, newer than this Sommelier reads ({RECORD_SCHEMA}): "
            "upgrade Sommelier to read this store"
        )
    if envelope.get("stage") != stage_name:
        raise StoreFormatError(f"{where} holds a record of stage {envelope.get('stage')!r}; {REINDEX_HINT}")
    stored_id = envelope.get("model_id")
    if not isinstance(stored_id, str) or (model_id is not None and stored_id != model_id):
        raise StoreFormatError(f"{where} holds a record of model {stored_id!r}; {REINDEX_HINT}")
    try:
        record = decode(envelope.get("record"), record_class(stage_name), paths)
    except CodecError as exc:
        raise StoreFormatError(f"{where} does not decode: {exc}; {REINDEX_HINT}") from None
    return stored_id, record
