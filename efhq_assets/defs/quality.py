"""`quality_scores`: deterministic quality measures on each face crop (never the whole frame)."""

import dagster as dg
import polars as pl

from efhq_assets.core.checks import check_quality
from efhq_assets.core.quality import DEFAULT_SCORER, SCORERS
from efhq_assets.core.quality_scores import keep_released_scores, score_video, scorer_for, scorer_versions
from efhq_assets.core.settings import load_settings
from efhq_assets.core.storage import empty_frame, read_rows, write_table

from .batch import BACKFILL_POLICY, each_partition
from .lineage import record_stage, stage_asset_kwargs
from .partitions import video_files
from .resources import EfhqStorage
from .sources import successful_video


@dg.asset(
    **stage_asset_kwargs("quality_scores"),
    partitions_def=video_files,
    kinds={"python"},
    backfill_policy=BACKFILL_POLICY,
    check_specs=[dg.AssetCheckSpec("scores_valid", asset="quality_scores", blocking=True,
                                   description="scores finite (and in range where the scorer guarantees it)")],
    description="Sharpness, EFHQ's brightness formula, exposure clipping, noise, face size and a no-reference score "
                f"({DEFAULT_SCORER}: 100 - BRISQUE) on each face crop. Same input, same bytes. Table `quality`.",
)
def quality_scores(context: dg.AssetExecutionContext, storage: EfhqStorage):
    root = storage.root()
    yield from each_partition(context, root, lambda key: _score_faces(context, root, key))


def _score_faces(context: dg.AssetExecutionContext, root, video_id: str) -> dg.MaterializeResult:
    video = successful_video(root, video_id)
    scorer, model = scorer_for(load_settings(root).quality_scorer)
    rows = score_video(video, read_rows(root, "faces", video_id), scorer, model)
    keep_released_scores(rows, video, read_rows(root, "clips", video_id))
    df = pl.DataFrame(rows, infer_schema_length=None) if rows else empty_frame("quality")
    write_table(root, "quality", video_id, df)
    version = record_stage(context, root, "quality_scores", video_id, df.height, scorer_versions(rows, model))
    scorers = sorted({r["scorer"] for r in rows}) or [DEFAULT_SCORER]
    metadata = {"faces": df.height, "scorer": ", ".join(scorers), "score_range": str(SCORERS[DEFAULT_SCORER].range),
                "dagster/row_count": df.height}
    if df.height:
        metadata.update({"score_median": float(df["score"].median()), "sharpness_median": float(df["sharpness"].median()),
                         "brightness_median": float(df["brightness"].median())})
    spec = SCORERS[DEFAULT_SCORER]
    passed, details = check_quality(rows, spec.range, spec.strict_range)
    return dg.MaterializeResult(data_version=version, metadata=metadata, check_results=[
        dg.AssetCheckResult(check_name="scores_valid", passed=passed, metadata=details)])
