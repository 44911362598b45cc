"""The store root as a Dagster resource, and the IO manager that keeps stage records in it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
from dagster import ConfigurableIOManager, ConfigurableResource, InputContext, OutputContext

from sommelier_core.settings import store_root
from sommelier_core.store import ModelStore, write_parquet_atomic


class ModelStoreResource(ConfigurableResource):
    """One store root for models, stage records and indexes (empty = `$SOMMELIER_HOME` or `.sommelier/`)."""

    root: str = ""

    def store(self) -> ModelStore:
        """The model store under the configured root."""
        return ModelStore(Path(self.root) if self.root else store_root())


class StoreIOManager(ConfigurableIOManager):
    """Keeps per-model stage records in the model store and index tables as parquet.

    Per-model records live beside the model's artifacts (so other partitions and the query module
    read them by model id); unpartitioned polars frames become `<index dir>/<asset>.parquet`,
    written through a temporary name and a rename.
    """

    root: str = ""

    def _store(self) -> ModelStore:
        return ModelStore(Path(self.root) if self.root else store_root())

    def handle_output(self, context: OutputContext, obj: Any) -> None:
        stage = context.asset_key.path[-1]
        if isinstance(obj, pl.DataFrame):
            write_parquet_atomic(obj, self._store().index_dir / f"{stage}.parquet")
        else:
            self._store().save_record(stage, context.partition_key, obj)

    def load_input(self, context: InputContext) -> Any:
        stage = context.asset_key.path[-1]
        if context.has_asset_partitions:
            return self._store().load_record(stage, context.asset_partition_key)
        return pl.read_parquet(self._store().index_dir / f"{stage}.parquet")
