"""The model store: per-model artifacts and stage records under the store root, written atomically.

Stages of other models are read through here by model id (design §8: peers are read through the
store, not through partition mappings), and the query module reads the index parquet files from
here without Dagster running. Records are data-only JSON (`records`) with paths relative to the
root, so a copied or moved store reads its own files; a pickled record of an older store is never
unpickled here (`legacy` migrates it) but refused with `LegacyStoreError`.

Readers verify: a record carries the checksum of its body and of the files it points to (`records`). Reading a
record checks its body and that each of its files still has its recorded size; reading stored outputs checks
their full checksum; `check_record` (what `sommelier index` and `sommelier verify` use) checks everything. A
damaged record or file raises `DamagedArtifact` naming it; where records of many models are read together
(`records`), a damaged one is left out with a `DamagedArtifactWarning` naming it, and the others go on.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from sommelier_core.errors import MissingStageOutput
from sommelier_core.models import safe_name
from sommelier_core.stages import MODEL_OUTPUTS
from sommelier_core.stages import stage as stage_of
from sommelier_core.store.atomic import write_atomic
from sommelier_core.store.checksums import SEVERITY, FileCheck, bytes_checksum, check_file, mismatch
from sommelier_core.store.codec import CodecError, StorePaths
from sommelier_core.store.compact_outputs import OutputKind, OutputsWriter, StoredArrays, StoredOutput, kind_for_task
from sommelier_core.store.errors import (
    REINDEX_HINT,
    REPAIR_HINT,
    DamagedArtifact,
    DamagedArtifactWarning,
    LegacyStoreError,
    StoreFormatError,
)
from sommelier_core.store.records import (
    RECORD_SUFFIX,
    Envelope,
    decode_body,
    encode_record,
    read_envelope,
    store_paths,
)

LEGACY_RECORD_SUFFIX = ".pkl"
LEGACY_OUTPUTS_FILE = "outputs.npy"
"""A model's full validation outputs as stores kept them before compact records (record schema 3)."""
OUTPUTS_DIR = "outputs"
"""The directory of a model's compact validation outputs (`compact_outputs`)."""
"""Records of stores from before the data format (schema 1: pickled dataclasses)."""


class ModelStore:
    """Files of each model (`models/<safe id>/`) and the index directory under one root."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.paths = StorePaths(self.root)

    def model_dir(self, model_id: str) -> Path:
        """The directory holding one model's artifacts."""
        return self.root / "models" / safe_name(model_id)

    def onnx_path(self, model_id: str) -> Path:
        """Where the converted ONNX file of a model lives."""
        return self.model_dir(model_id) / "model.onnx"

    def fetch_dir(self, model_id: str) -> Path:
        """Scratch space a repository may fetch a model into."""
        return self.model_dir(model_id) / "fetched"

    def outputs_path(self, model_id: str) -> Path:
        """Where a store from before compact records kept a model's full validation outputs (`outputs.npy`; still
        read, see `load_stored_outputs`)."""
        return self.model_dir(model_id) / LEGACY_OUTPUTS_FILE

    def outputs_dir(self, model_id: str) -> Path:
        """The directory of a model's compact validation outputs (`compact_outputs`: one `.npy` per output)."""
        return self.model_dir(model_id) / OUTPUTS_DIR

    def outputs_writer(self, model_id: str, n: int, kind: OutputKind) -> OutputsWriter:
        """A writer that fills a model's compact outputs batch by batch (`OutputsWriter.finish` puts them in place;
        the `model_outputs` record written next takes their checksums)."""
        return OutputsWriter(self.outputs_dir(model_id), n, kind)

    def save_outputs(self, model_id: str, outputs: np.ndarray) -> Path:
        """Store a model's full validation outputs in the format before compact records (`outputs.npy`): what a
        record without `stored` outputs points to. The pipeline writes compact records (`outputs_writer`)."""
        path = self.outputs_path(model_id)
        tmp = path.with_name(".outputs.tmp.npy")
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(tmp, outputs, allow_pickle=False)
        os.replace(tmp, path)
        return path

    def load_outputs(self, model_id: str) -> np.ndarray:
        """A model's stored validation outputs as one float array, for comparisons that read arrays: the full
        outputs of an older record as they were stored; for a compact record `StoredArrays.dense()` (a one-hot
        array of the top-1 labels, whose argmax is exactly the stored label, or the stored vectors).
        `MissingStageOutput`, `DamagedArtifact` as `load_stored_outputs`."""
        if self._compact_record(model_id) is None:
            return self._load_full_outputs(model_id)
        return self.load_stored_outputs(model_id).dense()

    def load_stored_outputs(self, model_id: str) -> StoredArrays:
        """Every stored output of a model as its `model_outputs` record describes it, each file checked against the
        checksum the record took of it (an older record\'s full `outputs.npy` is read as the labels or values it
        amounts to). `MissingStageOutput` if the stage has not run for it, `DamagedArtifact` naming the file if one
        is damaged or does not hold what the record says."""
        record = self._compact_record(model_id)
        if record is None:
            full = self._load_full_outputs(model_id)
            task = self._outputs_task(model_id)
            return StoredArrays.from_full(full, kind_for_task(task), path=self.outputs_path(model_id))
        envelope, stored, n = record
        arrays, errors = [], []
        for output in stored:
            shape = (n,) if output.kind == "top1" else (n, *output.shape)
            arrays.append(self._load_array(model_id, envelope, output.path, output.dtype, shape))
            if output.kind == "top1" and n and int(arrays[-1].max()) >= output.classes:
                raise DamagedArtifact(
                    f"{output.path} (model {model_id}, stage {MODEL_OUTPUTS.name}) is damaged: a label "
                    f"{int(arrays[-1].max())} among {output.classes} classes; {REPAIR_HINT}",
                    output.path,
                    model_id,
                    MODEL_OUTPUTS.name,
                )
            error = None
            if output.error_path is not None:
                error = self._load_array(model_id, envelope, output.error_path, "float32", (n,))
            errors.append(error)
        return StoredArrays(stored, tuple(arrays), tuple(errors))

    def _compact_record(self, model_id: str) -> tuple[Envelope, tuple[StoredOutput, ...], int] | None:
        """(envelope, stored outputs, n) of a model's compact `model_outputs` record; None for a record of full
        outputs (or none at all, when the legacy `outputs.npy` is read as before)."""
        path = self.record_path(MODEL_OUTPUTS.name, model_id)
        if not path.exists():
            if self.outputs_path(model_id).exists():
                return None
            raise MissingStageOutput(f"outputs of {model_id} are not materialized yet (expected {path})")
        envelope = self._outputs_envelope(model_id)
        body = envelope.body if envelope is not None and isinstance(envelope.body, dict) else {}
        if not body.get("stored"):
            return None
        record = decode_body(envelope, path, MODEL_OUTPUTS.name, self.paths)
        return envelope, tuple(record.stored), int(record.n)

    def _outputs_task(self, model_id: str) -> str:
        envelope = self._outputs_envelope(model_id)
        task = envelope.body.get("task") if envelope is not None and isinstance(envelope.body, dict) else None
        return task if isinstance(task, str) else "classification"

    def _load_array(self, model_id: str, envelope: Envelope, path: Path, dtype: str, shape: tuple[int, ...]):
        """One stored output file, checked by checksum, dtype and shape against its record."""
        relative = self.paths.relative(path) or ""

        def damaged(what: str) -> DamagedArtifact:
            return damaged_outputs(path, model_id, what)

        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise damaged("missing") from None
        recorded = envelope.artifacts.get(relative)
        if recorded is not None and (problem := mismatch(recorded, bytes_checksum(data))):
            raise damaged(problem)
        try:
            array = np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, EOFError, OSError) as exc:
            raise damaged(f"not a stored array ({exc})") from None
        if not isinstance(array, np.ndarray) or array.dtype.name != dtype or array.shape != shape:
            found = f"{array.dtype} {array.shape}" if isinstance(array, np.ndarray) else type(array).__name__
            raise damaged(f"{found} where the record says {dtype} {shape}")
        return array

    def _load_full_outputs(self, model_id: str) -> np.ndarray:
        """A model's full stored validation outputs (`outputs.npy`, the format before compact records), checked
        against the checksum its `model_outputs` record took of them; `MissingStageOutput` if the stage has not run
        for it, `DamagedArtifact` naming the file if they are damaged (or, for a record without checksums, do not
        hold the record's number of rows)."""
        path = self.outputs_path(model_id)
        if not path.exists():
            raise MissingStageOutput(f"outputs of {model_id} are not materialized yet (expected {path})")
        envelope = self._outputs_envelope(model_id)
        data = path.read_bytes()

        def damaged(what: str) -> DamagedArtifact:
            return damaged_outputs(path, model_id, what)

        recorded = envelope.artifacts.get(self.paths.relative(path) or "") if envelope is not None else None
        if recorded is not None and (problem := mismatch(recorded, bytes_checksum(data))):
            raise damaged(problem)
        try:
            outputs = np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, EOFError, OSError) as exc:
            raise damaged(f"not a stored array ({exc})") from None
        rows = envelope.body.get("n") if envelope is not None and isinstance(envelope.body, dict) else None
        if not isinstance(outputs, np.ndarray) or outputs.dtype.kind != "f" or outputs.ndim < 1:
            raise damaged(f"{outputs.dtype} array of shape {outputs.shape} where model outputs (floats) were stored")
        if isinstance(rows, int) and outputs.shape[0] != rows:
            raise damaged(f"{outputs.shape[0]} rows where its record says {rows}")
        return outputs

    def _outputs_envelope(self, model_id: str) -> Envelope | None:
        """The `model_outputs` record's envelope (what it recorded of the outputs file); None without a record."""
        path = self.record_path(MODEL_OUTPUTS.name, model_id)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        return read_envelope(data, path, MODEL_OUTPUTS.name, model_id)

    def record_path(self, stage: str, model_id: str) -> Path:
        """Where one stage's record for one model is kept (`<stage>.json`; `device_profile@cpu.json` per device)."""
        return self.model_dir(model_id) / f"{stage}{RECORD_SUFFIX}"

    def legacy_record_path(self, stage: str, model_id: str) -> Path:
        """Where a store from before the data format kept the record (a pickle, read only by migration)."""
        return self.model_dir(model_id) / f"{stage}{LEGACY_RECORD_SUFFIX}"

    def save_record(self, stage: str, model_id: str, record: Any) -> None:
        """Keep a stage's record for a model, as data (its type must be the stage table's record type), with the
        checksums of its body and of the files it points to."""
        write_atomic(self.record_path(stage, model_id), encode_record(stage, model_id, record, self.paths))
        self.legacy_record_path(stage, model_id).unlink(missing_ok=True)

    def load_record(self, stage: str, model_id: str) -> Any:
        """A stage's record for a model; `MissingStageOutput` if that stage has not run for it,
        `DamagedArtifact` if its file (or a file it points to) is damaged, `StoreFormatError` if it is of a
        newer format, `LegacyStoreError` if it is still a pickle."""
        path = self.record_path(stage, model_id)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            legacy = self.legacy_record_path(stage, model_id)
            if legacy.exists():
                raise _legacy(legacy, model_id, stage) from None
            raise MissingStageOutput(
                f"stage {stage!r} has not been materialized for {model_id} (expected {path})"
            ) from None
        return self._decode(data, path, stage, model_id, full=False)[1]

    def _decode(self, data: bytes, path: Path, stage: str, model_id: str | None, full: bool) -> tuple[Envelope, Any]:
        """(envelope, record) from a record file, its files checked by size (`full`: by checksum too)."""
        envelope, record = self._read(data, path, stage, model_id)
        for relative, recorded in envelope.artifacts.items():
            artifact = self.paths.root / relative
            problem = check_file(artifact, recorded, full=full)
            if problem is not None:
                raise DamagedArtifact(
                    f"{artifact} (model {envelope.model_id}, stage {stage}) is damaged: {problem}; {REPAIR_HINT}",
                    artifact,
                    envelope.model_id,
                    stage,
                )
        return envelope, record

    def _read(self, data: bytes, path: Path, stage: str, model_id: str | None) -> tuple[Envelope, Any]:
        """(envelope, record) from a record file, the files it points to unchecked; a record found in another
        model's directory (read by path, `model_id` None) is damaged too."""
        envelope = read_envelope(data, path, stage, model_id)
        if model_id is None and safe_name(envelope.model_id) != path.parent.name:
            raise DamagedArtifact(
                f"{path} (model {path.parent.name}, stage {stage}) is damaged: it holds a record of model "
                f"{envelope.model_id!r}, kept in another model's directory; {REPAIR_HINT}",
                path,
                None,
                stage,
            )
        return envelope, decode_body(envelope, path, stage, self.paths)

    def check_record(self, stage: str, model_id: str, full: bool = True) -> FileCheck:
        """Whether a stage's record for a model is whole, without raising: `missing`, `legacy`, `damaged` (the
        record or a file it points to, the problem named), `newer`, `unverified` (a record from before
        checksums) or `ok`. `full` checks the checksum of every file the record points to, not only its size."""
        path = self.record_path(stage, model_id)
        if not path.exists():
            legacy = self.legacy_record_path(stage, model_id)
            status = "legacy" if legacy.exists() else "missing"
            return FileCheck(legacy if status == "legacy" else path, status, f"record {stage}", model_id, stage)
        return max(self.inspect_record(path, stage, model_id, full), key=lambda check: SEVERITY[check.status])

    def inspect_record(self, path: Path, stage: str, model_id: str | None = None, full: bool = True) -> list[FileCheck]:
        """The health of one record file and of each file inside the store it points to: the record's check
        first, then one per file (`damaged` when it does not match the checksum the record took of it,
        `unverified` when the record took none). Every check names the record (`FileCheck.records`), whose
        removal makes the next `sommelier index` run the stage again."""
        kind = f"record {stage_of(stage).name}"
        try:
            envelope = self._read(path.read_bytes(), path, stage, model_id)[0]
        except OSError as exc:
            problem = f"{path} cannot be read ({exc.strerror or exc}); {REPAIR_HINT}"
            return [FileCheck(path, "damaged", kind, model_id, stage, problem, (path,))]
        except DamagedArtifact as exc:
            return [FileCheck(path, "damaged", kind, model_id, stage, str(exc), (path,))]
        except StoreFormatError as exc:
            return [FileCheck(path, "newer", kind, model_id, stage, str(exc), (path,))]
        owner = envelope.model_id
        checks = [FileCheck(path, "ok" if envelope.verified else "unverified", kind, owner, stage, records=(path,))]
        for relative in sorted(set(envelope.artifacts) | store_paths(envelope.body)):
            try:
                target = self.paths.absolute(relative)
            except CodecError:
                continue
            recorded = envelope.artifacts.get(relative)
            if recorded is None:
                if target.is_file():
                    checks.append(FileCheck(target, "unverified", target.name, owner, stage, records=(path,)))
                continue
            problem = check_file(target, recorded, full=full)
            status = "ok" if problem is None else "damaged"
            if problem is not None:
                problem = f"{target} (model {owner}, stage {stage}) is damaged: {problem}; {REPAIR_HINT}"
            checks.append(FileCheck(target, status, target.name, owner, stage, problem or "", (path,)))
        if stage == MODEL_OUTPUTS.name:  # they must load, with the dtype and rows the record says
            try:
                self.load_stored_outputs(owner)
            except DamagedArtifact as exc:
                checks = [c for c in checks if c.path != exc.path]
                checks.append(FileCheck(exc.path, "damaged", exc.path.name, owner, stage, str(exc), (path,)))
            except (MissingStageOutput, StoreFormatError):
                pass  # the record's own check above says what is wrong
        return checks

    def has_record(self, stage: str, model_id: str) -> bool:
        """Whether a stage's record exists for a model (a pickled one counts: reading it says to migrate)."""
        return self.record_path(stage, model_id).exists() or self.legacy_record_path(stage, model_id).exists()

    def remove_record(self, stage: str, model_id: str) -> bool:
        """Remove a stage's record of a model (so the next `sommelier index` runs that stage again); whether
        there was one."""
        path = self.record_path(stage, model_id)
        existed = path.exists()
        path.unlink(missing_ok=True)
        return existed

    def read_records(
        self, stage: str, model_ids: list[str] | None = None
    ) -> tuple[dict[str, Any], dict[str, DamagedArtifact]]:
        """All stored records of a stage (optionally only for some models), keyed by model id, and the damaged
        ones left out, keyed by model id (the model's directory name where the damage hides its id)."""
        found: dict[str, Any] = {}
        damaged: dict[str, DamagedArtifact] = {}
        if model_ids is not None:
            for model_id in model_ids:
                if not self.has_record(stage, model_id):
                    continue
                try:
                    found[model_id] = self.load_record(stage, model_id)
                except DamagedArtifact as exc:
                    damaged[model_id] = exc
            return found, damaged
        models = self.root / "models"
        legacy = sorted(models.glob(f"*/{stage}{LEGACY_RECORD_SUFFIX}"))
        if legacy:
            raise _legacy(legacy[0], None, stage)
        for path in sorted(models.glob(f"*/{stage}{RECORD_SUFFIX}")):
            try:
                envelope, record = self._decode(path.read_bytes(), path, stage, None, full=False)
            except DamagedArtifact as exc:
                damaged[exc.model_id or path.parent.name] = exc
                continue
            found[envelope.model_id] = record
        return found, damaged

    def records(self, stage: str, model_ids: list[str] | None = None) -> dict[str, Any]:
        """All stored records of a stage (optionally only for some models), keyed by model id.

        A damaged record is left out with a `DamagedArtifactWarning` naming its file, so one model's damage
        does not fail a step that reads every model's records (`read_records` returns them as data).
        """
        found, damaged = self.read_records(stage, model_ids)
        for model_id, exc in damaged.items():
            warnings.warn(f"left out {model_id}: {exc}", DamagedArtifactWarning, stacklevel=2)
        return found

    def relative_path(self, path: str) -> str:
        """A path as a store-independent string: relative to the root when inside it, else unchanged."""
        relative = self.paths.relative(path)
        return path if relative is None else relative

    def rooted_path(self, path: str) -> str:
        """The inverse of `relative_path` for this store: a relative path is taken under the root."""
        if not path or os.path.isabs(path):
            return path
        return str(self.paths.absolute(path))

    @property
    def index_dir(self) -> Path:
        """The directory of the materialized index assets."""
        return self.root / "index"

    @property
    def devices_dir(self) -> Path:
        """Imported operator latency tables, one `<device>.parquet` per device known by its table alone."""
        return self.root / "devices"


def _legacy(path: Path, model_id: str | None, stage: str) -> LegacyStoreError:
    return LegacyStoreError(
        f"{path} (model {model_id or path.parent.name}, stage {stage}) is a pickled record of a store from before "
        f"Sommelier's data-only format; {REINDEX_HINT}"
    )


def damaged_outputs(path: Path, model_id: str, what: str) -> DamagedArtifact:
    """The error for a model's stored outputs file that fails its checks: names the file, the model and the stage."""
    return DamagedArtifact(
        f"{path} (model {model_id}, stage {MODEL_OUTPUTS.name}) is damaged: {what}; {REPAIR_HINT}",
        path,
        model_id,
        MODEL_OUTPUTS.name,
    )
