"""Stage 1: fetch a model from its repository to local files."""

from dagster import AssetExecutionContext, asset

from assets.partitions import models_partitions
from resources.repositories import RepositoriesResource
from resources.store import ModelStoreResource
from sommelier_core.models import FetchedModel


@asset(partitions_def=models_partitions, group_name="ingest")
def fetched_model(
    context: AssetExecutionContext, repositories: RepositoriesResource, store: ModelStoreResource
) -> FetchedModel:
    """The model fetched from its repository (Torch Hub, TF-Hub or an ONNX folder) to local files."""
    repository, entry = repositories.find(context.partition_key)
    fetched = repository.fetch(entry, store.store().fetch_dir(entry.model_id))
    context.add_output_metadata(
        {
            "Repository": entry.repository,
            "Framework": entry.framework,
            "Version": entry.version,
            "Task": entry.task,
            "Source": str(fetched.source_path),
            **{f"Lineage: {k}": v for k, v in entry.metadata if k in ("family", "parent", "transformation")},
        }
    )
    return fetched
