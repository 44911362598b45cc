"""Answering queries from the materialized index assets (paper §5.4): semantic filter, then
resource filter, then final selection. Dagster need not be running; the parquet files are enough.

Two faces, one plan: `query(ref=..., within=..., memory=...)` (keyword API) and
`run_query("FIND 3 MODELS LIKE 'x' WITHIN 5% WHERE …")` (the language of `querying.language`) both
build a `QuerySpec`, which `querying.plan.compile_query` checks against the indexes and
`querying.execution.execute` runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from sommelier_core.errors import InvalidValue, SommelierError
from sommelier_core.index.resource import ResourceStore, read_resource_index
from sommelier_core.index.semantic import SEMANTIC_STORE_FILE, SemanticStore
from sommelier_core.querying.engine import DEFAULT_REFINE_BUDGET, Hit, QueryEngine
from sommelier_core.querying.execution import QueryResult, execute
from sommelier_core.querying.language import (
    DEFAULT_DEVICE,
    DEFAULT_WITHIN,
    SIMILARITY,
    AllOf,
    Condition,
    OrderBy,
    Predicate,
    QuerySpec,
    check_within,
    parse_query,
)
from sommelier_core.querying.plan import compile_query
from sommelier_core.querying.tasks import TaskRegistry, load_task_registry
from sommelier_core.settings import index_dir as default_index_dir
from sommelier_core.stages import RESOURCE_INDEX, SEMANTIC_INDEX, table_file
from sommelier_core.store import read_parquet_checked

SEMANTIC_INDEX_FILE = table_file(SEMANTIC_INDEX.name)
RESOURCE_INDEX_FILE = table_file(RESOURCE_INDEX.name)
MEASURED_PAIRS_ABOVE_ROWS = 1_000_000
"""A store whose semantic table has more rows than this is queried from its saved measured pairs
(`semantic_store.npz`, searched per query) instead: the table of every candidate up to the ceiling grows with
models × group size, the measured pairs with models × peers, and both give the same answers."""

__all__ = [
    "Index",
    "IndexNotBuilt",
    "load_engine",
    "load_index",
    "query",
    "run_query",
    "spec_from_arguments",
]


class IndexNotBuilt(SommelierError):
    """The index assets have not been materialized in this store yet."""


@dataclass(frozen=True)
class Index:
    """The two materialized index tables."""

    semantic: pl.DataFrame
    resource: pl.DataFrame


def load_index(index_dir: Path | None = None) -> Index:
    """Read the semantic and resource index parquet files of a store."""
    directory = Path(index_dir) if index_dir is not None else default_index_dir()
    paths = [directory / SEMANTIC_INDEX_FILE, directory / RESOURCE_INDEX_FILE]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise IndexNotBuilt(
            f"no materialized index at {directory} (missing {', '.join(missing)}); run `sommelier index`"
        )
    return Index(read_parquet_checked(paths[0]), read_resource_index(paths[1]))  # `onnx_path`s under this store


def load_engine(
    index_dir: Path | None = None,
    index: Index | None = None,
    refine: int = DEFAULT_REFINE_BUDGET,
    measured_pairs: bool | None = None,
) -> QueryEngine:
    """The query engine over a store's materialized index (or over the given tables).

    Over a store's index it can refine: measure up to `refine` uncertain pairs per query from the
    stored validation outputs (0: answer from the index alone). Tables given without a store cannot.
    `measured_pairs` chooses the semantic index read from a store: True the saved measured pairs
    (`semantic_store.npz`, a `MeasuredGraph` searched per query), False the candidate table, None (default)
    the measured pairs when the table has more than `MEASURED_PAIRS_ABOVE_ROWS` rows and they were saved.
    """
    directory = Path(index_dir) if index_dir is not None else default_index_dir()
    measurer = None
    if refine > 0 and (index is None or index_dir is not None):
        from sommelier_core.equivalence.pair_measure import stored_outputs_measurer

        measurer = stored_outputs_measurer(directory)
    if index is None and _reads_measured_pairs(directory, measured_pairs):
        resource_path = directory / RESOURCE_INDEX_FILE
        if not resource_path.exists():
            raise IndexNotBuilt(
                f"no materialized index at {directory} (missing {resource_path}); run `sommelier index`"
            )
        resource = ResourceStore.from_frame(read_resource_index(resource_path))
        graph = SemanticStore.load(directory / SEMANTIC_STORE_FILE).freeze(compact=False, ids=resource.model_ids)
        return QueryEngine(graph, resource, measurer, refine)
    idx = index if index is not None else load_index(directory)
    return QueryEngine.from_frames(idx.semantic, idx.resource, measurer, refine)


def _reads_measured_pairs(directory: Path, choice: bool | None) -> bool:
    """Whether `load_engine` reads the saved measured pairs rather than the candidate table (see there)."""
    saved = directory / SEMANTIC_STORE_FILE
    if choice is not None:
        if choice and not saved.exists():
            raise IndexNotBuilt(f"no saved measured pairs at {saved}; run `sommelier index`")
        return choice
    table = directory / SEMANTIC_INDEX_FILE
    if not (saved.exists() and table.exists()):
        return False
    try:
        rows = pl.scan_parquet(table).select(pl.len()).collect().item()  # the parquet footer: no row is read
    except (pl.exceptions.PolarsError, OSError):
        return False  # a damaged table: reading it names the damage (`read_parquet_checked`)
    return rows > MEASURED_PAIRS_ABOVE_ROWS


def spec_from_arguments(
    ref: str | None = None,
    within: float | None = DEFAULT_WITHIN,
    memory: float | None = None,
    flops: float | None = None,
    params: float | None = None,
    latency_ms: float | None = None,
    device: str = DEFAULT_DEVICE,
    order_by: str = SIMILARITY,
    limit: int | None = None,
    task: str | None = None,
    where: str | Predicate | None = None,
    batch_size: int | None = None,
    descending: bool | None = None,
    resolution: int | None = None,
) -> QuerySpec:
    """The `QuerySpec` the keyword API means — the same one the language builds for the same query.

    `memory`, `flops`, `params` become `metric <= fraction` relative conditions, `latency_ms` an
    absolute `latency@device <= ms`; `where` (text in the language's WHERE syntax, or a predicate)
    is AND-ed after them. `batch_size` and `resolution` (H = W in pixels) are the exec-spec.
    A budget that is not a positive finite number, a `within` outside [0, 1] (NaN included), a negative
    `limit` or a size below 1 raise `InvalidValue` (a `ValueError`) naming the argument.
    """
    if within is not None:
        check_within(within)
    terms: list[Predicate] = []
    for name, column, value in (
        ("memory", "memory_bytes", memory),
        ("flops", "flops", flops),
        ("params", "params", params),
    ):
        if value is not None:
            fraction = _positive_budget(name, value, "a fraction of the reference's")
            terms.append(Condition(column, "<=", fraction, relative=True))
    if latency_ms is not None:
        budget_ms = _positive_budget("latency_ms", latency_ms, "milliseconds")
        terms.append(Condition("latency_ms", "<=", budget_ms, device=device))
    if isinstance(where, str):
        parsed = parse_query(f"FIND MODELS WHERE {where}")
        if parsed != QuerySpec(where=parsed.where):  # `where` went on into ON, ORDER BY, LIMIT …: not a condition
            raise InvalidValue(f"where={where!r}: expected conditions only (the other clauses are keyword arguments)")
        if parsed.where is not None:
            terms.append(parsed.where)
    elif where is not None:
        terms.append(where)
    predicate: Predicate | None = None
    if len(terms) == 1:
        predicate = terms[0]
    elif terms:
        predicate = AllOf(tuple(terms))
    has_source = ref is not None or task is not None
    return QuerySpec(
        reference=ref,
        task=task,
        within=within if has_source else None,
        where=predicate,
        device=device,
        batch_size=batch_size,
        resolution=resolution,
        order=OrderBy(order_by, None, descending),
        limit=limit,
    )


def _positive_budget(name: str, value: object, unit: str) -> float:
    """A budget as a float when it is a positive finite number; else `InvalidValue` naming the argument."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and number > 0):
        raise InvalidValue(f"{name} budget must be a positive finite number ({unit}), got {value!r}")
    return number


def run_query(
    text: str | QuerySpec,
    index_dir: Path | None = None,
    index: Index | None = None,
    engine: QueryEngine | None = None,
    tasks: TaskRegistry | None = None,
    refine: int = DEFAULT_REFINE_BUDGET,
    synthesized: bool = False,
) -> QueryResult:
    """Parse (if text), compile and run a query; the result carries the hits and the per-stage counts.

    `refine` caps the pairs measured at query time (see `load_engine`; ignored with a given engine).
    `synthesized` adds the store's synthesized candidates (model N with segments of M, paper §4.2,
    provenance `synthesized`; `sommelier synthesize` materializes one), ranked with the real models.
    """
    spec = parse_query(text) if isinstance(text, str) else text
    eng = engine if engine is not None else load_engine(index_dir, index, refine)
    if spec.batch_size is not None:
        eng = eng.at_batch(spec.batch_size)  # memory, MACs and latency under the query's exec-spec
    if spec.resolution is not None:
        eng = eng.at_resolution(spec.resolution)  # memory, MACs at that input size; who cannot run there
    registry = tasks if tasks is not None else (load_task_registry() if spec.task is not None else None)
    result = execute(compile_query(spec, eng, registry), eng)
    if synthesized:
        from sommelier_core.querying.synthesized import load_synthesized, with_synthesized

        directory = Path(index_dir) if index_dir is not None else default_index_dir()
        result = with_synthesized(result, eng, load_synthesized(directory))
    return result


def query(
    ref: str | None = None,
    within: float | None = DEFAULT_WITHIN,
    memory: float | None = None,
    flops: float | None = None,
    params: float | None = None,
    latency_ms: float | None = None,
    device: str = DEFAULT_DEVICE,
    order_by: str = SIMILARITY,
    limit: int | None = None,
    index_dir: Path | None = None,
    index: Index | None = None,
    *,
    task: str | None = None,
    where: str | Predicate | None = None,
    batch_size: int | None = None,
    descending: bool | None = None,
    resolution: int | None = None,
    engine: QueryEngine | None = None,
    tasks: TaskRegistry | None = None,
    refine: int = DEFAULT_REFINE_BUDGET,
    synthesized: bool = False,
) -> list[Hit]:
    """Models equivalent to `ref` within `within` (upper bound on the difference) and within budget.

    `memory`, `flops` and `params` are fractions of the reference's own figures (0.8 = at most 80 %);
    `latency_ms` is an absolute budget on `device`. Hits are ordered by `order_by` (`similarity`
    ranks by the upper bound; resource orderings are ascending; a registered utility ranks best
    first) and cut to `limit`. `task` uses the task's default reference instead of `ref`; `where`
    adds any predicate of the language (`"params < 5M OR latency@cpu < 1 ms"`). Without `ref` or
    `task` (or with `within=None`) only the resource predicates apply. `refine` caps the candidate
    pairs measured at query time from stored outputs where the index's bounds leave the answer open
    (0: the index alone). `synthesized` also returns synthesized candidates (model N with segments
    of M) whose bound through N is within `within`. `batch_size` and `resolution` (H = W in pixels) set
    the exec-spec: memory, activations, MACs and FLOPs of the reference and the candidates are taken
    there, and models that cannot run at `resolution` are no candidates (`run_query(...).excluded` says why).
    """
    spec = spec_from_arguments(
        ref,
        within,
        memory,
        flops,
        params,
        latency_ms,
        device,
        order_by,
        limit,
        task,
        where,
        batch_size,
        descending,
        resolution,
    )
    return run_query(
        spec, index_dir=index_dir, index=index, engine=engine, tasks=tasks, refine=refine, synthesized=synthesized
    ).hits
