"""Ingest: models from repositories to checked ONNX files, and the validation data they are run on.

- `repositories`: Torch Hub, TF-Hub and ONNX-folder connectors (list, fetch);
- `convert`: every model to ONNX, numerically checked against its framework;
- `fingerprint`: identity of a network (canonical graph and weights);
- `validation`: which dataset a model is run on.
"""
