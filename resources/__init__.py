"""Dagster resources: configuration of repositories, the model store, MLflow, validation data and settings."""
