"""Which inputs models are run on to compare them."""

from __future__ import annotations

from dagster import ConfigurableResource

from sommelier_core.ingest.project_config import load_project_config
from sommelier_core.ingest.validation import ConfiguredDataset, validation_input_shape, validation_set_for
from sommelier_core.models import Signature
from sommelier_core.zoo.datasets import Dataset


class ValidationDataResource(ConfigurableResource):
    """The validation set of each model: `data` (name or .npz path) for every model when given, else the project
    configuration's dataset matching the model's signature or task, else the built-in set of its input shape."""

    data: str = ""
    samples: int = 0
    """At most this many samples (0 = the whole validation split)."""

    def configured(self) -> tuple[ConfiguredDataset, ...]:
        """The project configuration's datasets (`sommelier data add`), paths resolved."""
        return load_project_config().resolved_datasets()

    def dataset_for(self, model_id: str, signature: Signature) -> Dataset:
        """The validation inputs for a model with this signature."""
        return validation_set_for(model_id, signature, self.data, self.samples or None, self.configured())

    def input_shape_for(self, model_id: str, signature: Signature) -> tuple[int, ...]:
        """The shape of one validation input of the model (batch excluded), read without loading the data."""
        return validation_input_shape(model_id, signature, self.data, self.configured())
