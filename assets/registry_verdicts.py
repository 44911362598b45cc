"""The index's verdicts written back to the MLflow Model Registries it indexed, where their users look."""

import polars as pl
from dagster import AssetExecutionContext

from assets.metadata import count, table
from assets.stage_asset import stage_asset
from resources.repositories import RepositoriesResource
from sommelier_core import defaults
from sommelier_core.errors import SommelierError
from sommelier_core.ingest.repositories import MlflowRegistryRepository
from sommelier_core.ingest.repositories.mlflow_registry import verdicts_from_index, write_verdicts
from sommelier_core.stages import REGISTRY_VERDICTS

VERDICT_COLUMNS = {"model_id": pl.String, "equivalents": pl.Int64, "nearest": pl.String, "bound": pl.Float64}


@stage_asset(REGISTRY_VERDICTS)
def registry_verdicts(
    context: AssetExecutionContext, semantic_index: pl.DataFrame, repositories: RepositoriesResource
) -> pl.DataFrame:
    """Tags every indexed version of a configured MLflow registry with its equivalents within the default
    threshold (`sommelier.equivalents`), its nearest model and that bound (`sommelier.nearest`,
    `sommelier.bound`) and the threshold (`sommelier.threshold`), so the MLflow UI shows them. One row per
    version tagged; a registry that cannot be reached is logged and skipped."""
    registries = [r for r in repositories.connectors() if isinstance(r, MlflowRegistryRepository)]
    indexed = set(semantic_index["reference_id"].to_list()) if semantic_index.height else set()
    rows = semantic_index.select("reference_id", "candidate_id", "upper").to_dicts() if semantic_index.height else []
    written = []
    for registry in registries:
        mine = sorted(m for m in indexed if m.startswith(f"{registry.name}/"))
        verdicts = verdicts_from_index(rows, mine, defaults.WITHIN)
        try:
            tagged = set(write_verdicts(registry, verdicts))
        except SommelierError as exc:
            context.log.warning(f"MLflow repository {registry.name!r}: verdicts not written: {exc}")
            continue
        written += [
            {"model_id": v.model_id, "equivalents": len(v.equivalents), "nearest": v.nearest, "bound": v.bound}
            for v in verdicts
            if v.model_id in tagged
        ]
    frame = pl.DataFrame(written, schema=VERDICT_COLUMNS)
    context.add_output_metadata(
        {
            "MLflow registries": ", ".join(r.name for r in registries) or "none configured",
            "Versions tagged": count(frame.height),
            "Threshold": f"{defaults.WITHIN:.0%}",
            "Preview": table(frame.head(10).to_dicts()) if frame.height else "nothing to tag",
        }
    )
    return frame
