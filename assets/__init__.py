"""Dagster assets: one module per stage (or a tight family), each a thin wrapper around `sommelier_core`.

`stage_asset` takes each asset's key, group, partitions and upstream edges from the stage table
(`sommelier_core.stages`); `pipelines.definitions` loads every module of this package.
"""
