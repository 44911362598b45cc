"""Ingest: models from repositories to checked ONNX files, and the validation data they are run on.

- `repositories`: Torch Hub, TF-Hub and ONNX-folder connectors (list, fetch);
- `convert`: every model to ONNX, numerically checked against its framework;
- `fingerprint`: identity of a network (canonical graph and weights);
- `validation`: which dataset a model is run on.
"""

from sommelier_core.ingest.convert import Conversion, convert_model, load_onnx, onnx_signature
from sommelier_core.ingest.fingerprint import fingerprint
from sommelier_core.ingest.repositories import Repository, repository_from_config
from sommelier_core.ingest.validation import DatasetError, validation_set_for

__all__ = [
    "Conversion",
    "DatasetError",
    "Repository",
    "convert_model",
    "fingerprint",
    "load_onnx",
    "onnx_signature",
    "repository_from_config",
    "validation_set_for",
]
