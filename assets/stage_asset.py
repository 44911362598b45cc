"""`stage_asset`: the Dagster asset of one stage, its key, group, partitions and edges taken from the stage table.

An asset module then says only what the stage computes: `@stage_asset(PAIR_SCORES)` over a function whose
parameters named after the stages it reads receive their records; stages it reads through the model store
instead (an index reads every model's records) become plain dependencies.
"""

import inspect
from collections.abc import Callable
from typing import Any

from dagster import AssetDep, AssetIn, AssetsDefinition, asset

from assets.partitions import PARTITIONS, partition_mapping
from sommelier_core.stages import BY_NAME, Stage


def stage_asset(stage: Stage, **asset_args: Any) -> Callable[[Callable[..., Any]], AssetsDefinition]:
    """A decorator making `stage`'s asset from a function: key `stage.name`, group `stage.group`, partitions
    by `stage.partitioning`, one upstream edge per stage in `stage.reads` (with the partition mapping between
    a model and a model × device stage, or a model × device and a device one). Other `@asset` arguments pass
    through."""

    def decorate(compute: Callable[..., Any]) -> AssetsDefinition:
        parameters = inspect.signature(compute).parameters
        ins, deps = {}, []
        for name in stage.reads:
            mapping = partition_mapping(BY_NAME[name], stage)
            if name in parameters:
                ins[name] = AssetIn(key=name, partition_mapping=mapping)
            else:
                deps.append(AssetDep(name, partition_mapping=mapping))
        return asset(
            name=stage.name,
            group_name=stage.group,
            partitions_def=PARTITIONS[stage.partitioning],
            ins=ins,
            deps=deps,
            **asset_args,
        )(compute)

    return decorate
