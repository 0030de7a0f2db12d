"""`pose_annotations`: yaw/pitch/roll per face from each landmark estimator and their combination."""

import dagster as dg
import polars as pl

from efhq_assets.core import ingest
from efhq_assets.core.checks import check_poses
from efhq_assets.core.efhq_import import IMPORTED_ESTIMATORS, imported_pose_rows
from efhq_assets.core.pose_annotations import POSE_CAMERA_DEFAULT, pose_rows, video_camera
from efhq_assets.core.storage import empty_frame, read_rows, write_table

from .batch import BACKFILL_POLICY, each_partition
from .faces import face_detections
from .partitions import video_files
from .resources import EfhqStorage

def pose_camera_setting(root) -> str:
    """`efhq build --pose-camera` (saved in the data root): how the pose fit models the camera."""
    return ingest.load_settings(root).get("pose_camera", POSE_CAMERA_DEFAULT)


CODE_VERSION = "pose_annotations-3"  # 3: perspective fit with the frame's pinhole camera; dlib68 dropped when turned
ESTIMATORS = ("facemesh", "dlib68")


def pose_fingerprint(faces_fp: str | None, pose_camera: str = POSE_CAMERA_DEFAULT) -> str:
    return ingest.fingerprint(faces_fp, ESTIMATORS, CODE_VERSION, pose_camera)


@dg.asset(
    partitions_def=video_files,
    deps=[face_detections],
    group_name="faces",
    kinds={"torch"},
    code_version=CODE_VERSION,
    pool="gpu",
    backfill_policy=BACKFILL_POLICY,
    op_tags={"dagster-celery/queue": "gpu"},  # only read by the Celery executor (docs/scale_out.md)
    check_specs=[dg.AssetCheckSpec("angles_valid", asset="pose_annotations", blocking=True,
                                   description="one row per face and estimator; angles in range, never NaN")],
    description="Batched rigid fits of each landmark set to its own 3D face model (torch; CUDA + fp16 when present), "
                "combined by measured reliability. Angles in degrees, one convention (core/pose.py). Table `poses`.",
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
        rows = pose_rows(marks, ESTIMATORS, camera=video_camera(video, pose_camera_setting(root)))
    df = pl.DataFrame(rows, infer_schema_length=None) if rows else empty_frame("poses")
    write_table(root, "poses", video_id, df)
    versions = {r["estimator"]: r["weights_sha256"] for r in rows[:: max(len(marks), 1)]} if rows else {}
    ingest.record_lineage(root, "pose_annotations", video_id, CODE_VERSION, context.run_id,
                          pose_fingerprint(ingest.lineage_fingerprint(root, "face_detections", video_id),
                                           pose_camera_setting(root)), df.height,
                          versions)
    combined = df.filter(pl.col("estimator") == "combined") if df.height else df
    metadata = {"faces": len(marks), "rows": df.height, "dagster/row_count": df.height}
    if combined.height and combined["yaw"].drop_nulls().len():
        yaw = combined["yaw"].drop_nulls()
        metadata.update({"yaw_min": float(yaw.min()), "yaw_max": float(yaw.max()),
                         "yaw_mean_abs": float(yaw.abs().mean())})
    passed, details = check_poses(rows, len(marks), estimators)
    return dg.MaterializeResult(metadata=metadata, check_results=[
        dg.AssetCheckResult(check_name="angles_valid", passed=passed, metadata=details)])
