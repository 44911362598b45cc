"""Deployment of Sommelier beyond one process: `deploy/local-cluster` (see docs/deployment.md)."""
