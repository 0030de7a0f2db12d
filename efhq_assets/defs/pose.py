"""`pose_annotations`: yaw/pitch/roll per face from each landmark estimator and their combination."""

import dagster as dg
import polars as pl

from efhq_assets.core.checks import check_poses
from efhq_assets.core.efhq_import import IMPORTED_ESTIMATORS, imported_pose_rows
from efhq_assets.core.pose_annotations import POSE_CAMERA_DEFAULT, attach_faces, pose_rows, video_camera, yaw_sources
from efhq_assets.core.settings import load_settings
from efhq_assets.core.storage import empty_frame, read_rows, write_table

from .batch import BACKFILL_POLICY, each_partition
from .lineage import record_stage, stage_asset_kwargs
from .partitions import video_files
from .resources import EfhqStorage

ESTIMATORS = ("facemesh", "dlib68")


@dg.asset(
    **stage_asset_kwargs("pose_annotations"),
    partitions_def=video_files,
    kinds={"torch"},
    pool="gpu",
    backfill_policy=BACKFILL_POLICY,
    op_tags={"dagster-celery/queue": "gpu"},  # only read by the Celery executor (docs/scale_out.md)
    check_specs=[dg.AssetCheckSpec("angles_valid", asset="pose_annotations", blocking=True,
                                   description="one row per face and estimator; angles in range, never NaN")],
    description="Batched rigid fits of each landmark set to its own 3D face model (torch; CUDA + fp16 when present), "
                "combined by measured reliability. Angles in degrees, one convention (core/pose/convention.py). Table `poses`.",
)
def pose_annotations(context: dg.AssetExecutionContext, storage: EfhqStorage):
    root = storage.root()
    yield from each_partition(context, root, lambda key: _annotate_poses(context, root, key))


def _annotate_poses(context: dg.AssetExecutionContext, root, video_id: str) -> dg.MaterializeResult:
    marks = read_rows(root, "landmarks", video_id)
    imported = read_rows(root, "efhq_poses", video_id)
    if imported:  # faces from EFHQ's released metadata carry their published angles
        faces = read_rows(root, "faces", video_id)
        estimators = IMPORTED_ESTIMATORS
        rows = imported_pose_rows(imported, faces[0]["detector_sha256"] if faces else "")
    else:
        estimators = ESTIMATORS
        video = (read_rows(root, "videos", video_id) or [{}])[0]
        rows = pose_rows(attach_faces(marks, read_rows(root, "faces", video_id)), ESTIMATORS,
                         camera=video_camera(video, load_settings(root).pose_camera))
    df = pl.DataFrame(rows, infer_schema_length=None) if rows else empty_frame("poses")
    write_table(root, "poses", video_id, df)
    versions = {r["estimator"]: r["weights_sha256"] for r in rows[:: max(len(marks), 1)]} if rows else {}
    version = record_stage(context, root, "pose_annotations", video_id, df.height, versions)
    combined = df.filter(pl.col("estimator") == "combined") if df.height else df
    metadata = {"faces": len(marks), "rows": df.height, "dagster/row_count": df.height}
    if not imported:  # how many turned faces the large-yaw rules answered (core/pose/large_yaw.py)
        metadata.update(yaw_sources(rows, marks))
    if combined.height and combined["yaw"].drop_nulls().len():
        yaw = combined["yaw"].drop_nulls()
        metadata.update({"yaw_min": float(yaw.min()), "yaw_max": float(yaw.max()),
                         "yaw_mean_abs": float(yaw.abs().mean())})
    passed, details = check_poses(rows, len(marks), estimators)
    return dg.MaterializeResult(data_version=version, metadata=metadata, check_results=[
        dg.AssetCheckResult(check_name="angles_valid", passed=passed, metadata=details)])
