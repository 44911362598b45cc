"""The store root as a Dagster resource, and the IO manager that keeps stage records in it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
from dagster import ConfigurableIOManager, ConfigurableResource, InputContext, MultiPartitionsDefinition, OutputContext

from sommelier_core.models import safe_name
from sommelier_core.settings import store_root
from sommelier_core.stages import device_record, table_file
from sommelier_core.store import ModelStore, ensure_current_format, read_parquet_checked, write_parquet_atomic

_CURRENT: set[Path] = set()
"""Store roots this process has checked (and migrated, if they were of the pickled format)."""


def open_store(root: str) -> ModelStore:
    """The model store under `root` (empty = `$SOMMELIER_HOME` or `.sommelier/`), migrated once if pickled."""
    store = ModelStore(Path(root) if root else store_root())
    key = store.root.absolute()
    if key not in _CURRENT:
        ensure_current_format(store)
        _CURRENT.add(key)
    return store


class ModelStoreResource(ConfigurableResource):
    """One store root for models, stage records and indexes (empty = `$SOMMELIER_HOME` or `.sommelier/`)."""

    root: str = ""

    def store(self) -> ModelStore:
        """The model store under the configured root (a store of pickled records is migrated on first use)."""
        return open_store(self.root)


class StoreIOManager(ConfigurableIOManager):
    """Keeps per-model stage records in the model store and index tables as parquet.

    Per-model records live beside the model's artifacts (so other partitions and the query module
    read them by model id); unpartitioned polars frames become `<index dir>/<asset>.parquet`,
    written through a temporary name and a rename with their checksum in the manifest beside them
    (`checksums.json`), and are read back verified (a damaged table raises `DamagedArtifact` naming it).
    """

    root: str = ""

    def _store(self) -> ModelStore:
        return open_store(self.root)

    def handle_output(self, context: OutputContext, obj: Any) -> None:
        stage = context.asset_key.path[-1]
        keys = _partition_keys(context)
        if len(keys) > 1:  # a range: {partition key: record}, as `assets.stage_asset` returns it
            for key in keys:
                self._write(stage, key, obj[str(key)])
        else:
            self._write(stage, keys[0] if keys else None, obj)

    def _write(self, stage: str, partition: Any, obj: Any) -> None:
        if isinstance(obj, pl.DataFrame):
            name = table_file(stage) if partition is None else f"{stage}/{table_file(safe_name(str(partition)))}"
            write_parquet_atomic(obj, self._store().index_dir / name)
        else:
            stage, model_id = record_location(stage, partition)
            self._store().save_record(stage, model_id, obj)

    def load_input(self, context: InputContext) -> Any:
        """A record; for a step over several partitions, {partition key: record} for the partitions it reads."""
        stage = context.asset_key.path[-1]
        if context.has_asset_partitions:
            keys = _partition_keys(context)
            if len(keys) > 1:
                return {str(key): self._store().load_record(*record_location(stage, key)) for key in keys}
            return self._store().load_record(*record_location(stage, keys[0]))
        return read_parquet_checked(self._store().index_dir / table_file(stage))


def _partition_keys(context: InputContext | OutputContext) -> list[Any]:
    """The asset partitions an output writes or an input reads (a model × device one as a `MultiPartitionKey`)."""
    if not context.has_asset_partitions:
        return []
    definition = context.asset_partitions_def
    keys = list(context.asset_partition_keys)
    if isinstance(definition, MultiPartitionsDefinition):
        return [definition.get_partition_key_from_str(key) for key in keys]
    return keys


def record_location(stage: str, partition_key: Any) -> tuple[str, str]:
    """Where a per-model record is kept: a model × device partition is the model's `<stage>@<device>` record."""
    keys = getattr(partition_key, "keys_by_dimension", None)
    if keys is not None:
        return device_record(stage, keys["device"]), keys["model"]
    return stage, partition_key
