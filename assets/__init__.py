"""Dagster assets: one module per stage, each a thin wrapper around `sommelier_core`."""
