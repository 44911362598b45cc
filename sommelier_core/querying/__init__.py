"""Queries (paper §5.1, §5.4): the language, plans over the materialized indexes, tasks and synthesized hits.

- `api`: `query(...)` and `run_query(text)`, the two public faces, and loading a store's index (`load_engine`).
- `language`: the query language: `parse_query(text)` → `QuerySpec`.
- `engine`: `QueryEngine` (the two indexes aligned by model position) and the answers, `Hit`.
- `utilities`: `register_utility(name, f)`: user ranking functions for `ORDER BY name`.
- `plan`: `compile_query(spec, engine)` → `QueryPlan`: a spec checked and resolved against the indexes.
- `execution`: `execute(plan, engine)` → `QueryResult`: the plan's stages run, with what each kept.
- `filters`: resource predicates over the resource columns, and the exec-spec's candidates.
- `matches`: the models surviving a plan's stages, with their bounds.
- `refinement`: measuring at query time the pairs whose bounds leave the answer open.
- `tasks`: default reference models per task (`FOR TASK name`).
- `synthesized`: synthesized candidates (model N with segments of M) among the hits.
"""

from sommelier_core.querying.api import Index, IndexNotBuilt, load_engine, load_index, query, run_query
from sommelier_core.querying.engine import Hit, QueryEngine, ResourceFigures
from sommelier_core.querying.execution import QueryResult, execute
from sommelier_core.querying.language import QueryError, QuerySpec, parse_query
from sommelier_core.querying.plan import QueryPlan, compile_query
from sommelier_core.querying.utilities import register_utility, unregister_utility

__all__ = [
    "Hit",
    "Index",
    "IndexNotBuilt",
    "QueryEngine",
    "QueryError",
    "QueryPlan",
    "QueryResult",
    "QuerySpec",
    "ResourceFigures",
    "compile_query",
    "execute",
    "load_engine",
    "load_index",
    "parse_query",
    "query",
    "register_utility",
    "run_query",
    "unregister_utility",
]
