"""Dagster definitions: jobs, sensors, schedules and resources around the assets."""
