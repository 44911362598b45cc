"""Sommelier's library: repositories, conversion, profiling, equivalence, bounds, indexes and queries.

No Dagster import anywhere in this package; the Dagster assets are thin wrappers around it.
"""

from sommelier_core.querying import Hit, query, register_utility, run_query

__all__ = ["Hit", "query", "register_utility", "run_query"]
