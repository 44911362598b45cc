"""`stage_asset`: the Dagster asset of one stage, its key, group, partitions and edges taken from the stage table.

An asset module then says only what the stage computes, for one partition: `@stage_asset(PAIR_SCORES)` over a
function whose parameters named after the stages it reads receive their records; stages it reads through the model
store instead (an index reads every model's records) become plain dependencies.

A run may target several partitions at once (a partition-key range: `sommelier index` runs a wave's models in
chunks, and UI backfills run `defaults.PARTITIONS_PER_RUN` partitions per run), which removes Dagster's per-run cost
from each model. The asset then calls the stage's function once per partition, in turn, with that partition's
records and a context whose `partition_key` is that partition's, and hands the IO manager one record per partition;
metadata goes to each partition's own materialization, and each check is reported once for the range, failing with
the partitions that failed it. A partition that raises fails the whole step; `sommelier index` then runs that
chunk's models one run each, so one bad model still fails alone.
"""

import inspect
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetDep,
    AssetExecutionContext,
    AssetIn,
    AssetsDefinition,
    BackfillPolicy,
    BetaWarning,
    MultiPartitionsDefinition,
    Output,
    asset,
)

from assets.partitions import PARTITIONS, partition_mapping, upstream_key
from sommelier_core.defaults import PARTITIONS_PER_RUN
from sommelier_core.stages import BY_NAME, Stage

FAILED_PARTITIONS_LISTED = 20
"""Partitions a check reported for a range lists by name when they failed it (the count says how many in all)."""


def stage_asset(stage: Stage, **asset_args: Any) -> Callable[[Callable[..., Any]], AssetsDefinition]:
    """A decorator making `stage`'s asset from a per-partition function: key `stage.name`, group `stage.group`,
    partitions by `stage.partitioning`, one upstream edge per stage in `stage.reads` (with the partition mapping
    between a model and a model × device stage, or a model × device and a device one). Other `@asset` arguments
    pass through."""

    def decorate(compute: Callable[..., Any]) -> AssetsDefinition:
        parameters = inspect.signature(compute).parameters
        ins, deps = {}, []
        for name in stage.reads:
            mapping = partition_mapping(BY_NAME[name], stage)
            if name in parameters:
                ins[name] = AssetIn(key=name, partition_mapping=mapping)
            else:
                deps.append(AssetDep(name, partition_mapping=mapping))
        partitions_def = PARTITIONS[stage.partitioning]
        if partitions_def is not None:
            asset_args.setdefault("backfill_policy", BackfillPolicy.multi_run(PARTITIONS_PER_RUN))
        body = compute if partitions_def is None else _per_partition(compute, stage, tuple(ins))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", BetaWarning)  # backfill policies: in use since Dagster 1.5
            return asset(
                name=stage.name,
                group_name=stage.group,
                partitions_def=partitions_def,
                ins=ins,
                deps=deps,
                **asset_args,
            )(body)

    return decorate


class PartitionContext:
    """The asset's context as the stage's function sees it for one partition of a multi-partition step: its own
    `partition_key`, and output metadata that goes to that partition's materialization. Everything else is the
    step's context."""

    def __init__(self, context: AssetExecutionContext, partition_key: str) -> None:
        self._context = context
        self.partition_key = partition_key

    def add_output_metadata(self, metadata: Mapping[str, Any]) -> None:
        self._context.add_asset_metadata(metadata, partition_key=self.partition_key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


def _per_partition(compute: Callable[..., Any], stage: Stage, record_inputs: tuple[str, ...]) -> Callable[..., Any]:
    """The asset body: `compute` itself for a one-partition step; for a range, `compute` for each partition in turn
    with its own records (inputs arrive as {partition key: record}), returning {partition key: record}."""
    generates = inspect.isgeneratorfunction(compute)

    def partitions(context: AssetExecutionContext) -> list[str] | None:
        """The step's partition keys when it targets a range (even of one), else None."""
        if context.has_partition_key:
            return None
        return [_typed_key(context, key) for key in context.partition_keys]

    def per_key_inputs(key: str, inputs: dict[str, Any]) -> dict[str, Any]:
        return {
            name: value[upstream_key(BY_NAME[name], stage, key)] if name in record_inputs else value
            for name, value in inputs.items()
        }

    def run_each(context: AssetExecutionContext, inputs: dict[str, Any], keys: list[str]) -> Iterator[tuple]:
        """(key, record, check results) for each partition, in the step's order."""
        for key in keys:
            part = PartitionContext(context, key)
            if generates:
                record, checks = None, []
                for item in compute(part, **per_key_inputs(key, inputs)):
                    if isinstance(item, AssetCheckResult):
                        checks.append(item)
                    else:
                        record = _unwrap(part, item)
                yield key, record, checks
            else:
                yield key, _unwrap(part, compute(part, **per_key_inputs(key, inputs))), []

    if generates:

        def body(context: AssetExecutionContext, **inputs: Any) -> Iterator[Any]:
            keys = partitions(context)
            if keys is None:
                yield from compute(context, **inputs)
                return
            if len(keys) == 1:  # a range of one: records arrive as they do for one partition
                yield from compute(PartitionContext(context, keys[0]), **inputs)
                return
            records, checks = {}, {}
            for key, record, results in run_each(context, inputs, keys):
                records[key] = record
                for result in results:
                    checks.setdefault(result.check_name, {})[key] = result
            yield Output(records)
            for name, by_key in checks.items():
                yield merged_check(name, by_key)

    else:

        def body(context: AssetExecutionContext, **inputs: Any) -> Any:
            keys = partitions(context)
            if keys is None:
                return compute(context, **inputs)
            if len(keys) == 1:  # a range of one: records arrive as they do for one partition
                return compute(PartitionContext(context, keys[0]), **inputs)
            return {key: record for key, record, _ in run_each(context, inputs, keys)}

    body.__name__ = compute.__name__
    body.__doc__ = compute.__doc__
    body.__signature__ = _range_signature(inspect.signature(compute), record_inputs)
    return body


def _typed_key(context: AssetExecutionContext, key: str) -> str:
    """A partition key as the stage's function gets it for a one-partition step (a `MultiPartitionKey`, with its
    dimensions, for a model × device stage)."""
    definition = context.assets_def.partitions_def
    if isinstance(definition, MultiPartitionsDefinition):
        return definition.get_partition_key_from_str(key)
    return key


def _unwrap(context: PartitionContext, item: Any) -> Any:
    """The record of what a stage's function returned or yielded; an `Output`'s metadata goes to the partition."""
    if isinstance(item, Output):
        if item.metadata:
            context.add_output_metadata(item.metadata)
        return item.value
    return item


def _range_signature(signature: inspect.Signature, record_inputs: Iterable[str]) -> inspect.Signature:
    """The stage function's signature without the types of its record inputs and of what it returns: for a range
    they are {partition key: record} (resources keep their annotations, by which Dagster provides them)."""
    record_inputs = set(record_inputs)
    parameters = [
        p.replace(annotation=inspect.Parameter.empty) if p.name in record_inputs else p
        for p in signature.parameters.values()
    ]
    return signature.replace(parameters=parameters, return_annotation=inspect.Signature.empty)


def merged_check(check_name: str, results: Mapping[str, AssetCheckResult]) -> AssetCheckResult:
    """One check result for the partitions of a range, from each partition's: passed when every one passed, at the
    most severe severity of those that failed; which partitions failed it, and the metadata of the first of them."""
    failed = {key: r for key, r in results.items() if not r.passed}
    severity = (
        AssetCheckSeverity.ERROR
        if any(r.severity == AssetCheckSeverity.ERROR for r in failed.values())
        else AssetCheckSeverity.WARN
        if failed
        else AssetCheckSeverity.ERROR
    )
    metadata = {"Partitions checked": len(results), "Partitions not passing": len(failed)}
    if failed:
        names = sorted(failed)
        shown = ", ".join(names[:FAILED_PARTITIONS_LISTED]) + (" …" if len(names) > FAILED_PARTITIONS_LISTED else "")
        metadata["Not passing"] = shown
        metadata |= {f"{names[0]}: {label}": value for label, value in (failed[names[0]].metadata or {}).items()}
    return AssetCheckResult(check_name=check_name, passed=not failed, severity=severity, metadata=metadata)
