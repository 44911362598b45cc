"""Fetch a model from its repository to local files."""

from dagster import AssetExecutionContext

from assets.stage_asset import stage_asset
from resources.repositories import RepositoriesResource
from resources.store import ModelStoreResource
from sommelier_core.models import FetchedModel
from sommelier_core.stages import FETCHED_MODEL


@stage_asset(FETCHED_MODEL)
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
