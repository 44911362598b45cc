"""Queries (paper §5.1, §5.4): the language, plans over the materialized indexes, tasks and synthesized hits."""
