"""`pose_bins`: EFHQ's pose bins per face (per estimator, hardbin, softbin, smallbin) plus reviewed labels."""

import dagster as dg
import polars as pl

from efhq_assets.core.bins import VOTING_ESTIMATORS, bin_rows
from efhq_assets.core.checks import check_bins
from efhq_assets.core.efhq_import import IMPORTED_ESTIMATORS, pose_sign_agreement, released_labels
from efhq_assets.core.storage import empty_frame, read_rows, write_table

from .batch import BACKFILL_POLICY, each_partition
from .lineage import record_stage, stage_asset_kwargs
from .partitions import video_files
from .resources import EfhqStorage
from .sources import successful_video


def read_overrides(root, video_id: str) -> dict:
    return {(r["video_id"], r["frame_index"], r["face_index"]): r["label"]
            for r in read_rows(root, "review_overrides", video_id)}


@dg.asset(
    **stage_asset_kwargs("pose_bins"),
    partitions_def=video_files,
    kinds={"python"},
    backfill_policy=BACKFILL_POLICY,
    check_specs=[dg.AssetCheckSpec("bins_match_angles", asset="pose_bins", blocking=True,
                                   description="bin_combined is what EFHQ's rules give for the combined angles")],
    description="EFHQ binning rules on the project's one angle convention: a bin per estimator, hardbin (all agree), "
                "softbin (majority with horizontal/vertical fallbacks), smallbin (10-degree steps), then reviewed "
                "labels from `review_overrides`. Table `bins`.",
)
def pose_bins(context: dg.AssetExecutionContext, storage: EfhqStorage):
    root = storage.root()
    yield from each_partition(context, root, lambda key: _bin_faces(context, root, key))


def _bin_faces(context: dg.AssetExecutionContext, root, video_id: str) -> dg.MaterializeResult:
    overrides = read_overrides(root, video_id)
    poses = read_rows(root, "poses", video_id)
    # EFHQ's own three estimators vote when the poses came from its released metadata.
    voters = IMPORTED_ESTIMATORS if any(p["estimator"] == "synergy" for p in poses) else VOTING_ESTIMATORS
    released = released_labels(successful_video(root, video_id), read_rows(root, "clips", video_id)) \
        if voters == IMPORTED_ESTIMATORS else {}
    rows = bin_rows(poses, overrides, voters=voters, released=released)
    df = pl.DataFrame(rows, infer_schema_length=None) if rows else empty_frame("bins")
    write_table(root, "bins", video_id, df)
    # rebuilt from EFHQ's metadata: how often its estimators agree on left/right, in lineage and metadata
    agreement = pose_sign_agreement(poses) if voters == IMPORTED_ESTIMATORS else {}
    version = record_stage(context, root, "pose_bins", video_id, df.height,
                           {"efhq_sign_agreement": agreement} if agreement else None)
    counts = df.group_by("label").len().sort("label").to_dicts() if df.height else []
    passed, details = check_bins(rows, poses)
    return dg.MaterializeResult(data_version=version, check_results=[
        dg.AssetCheckResult(check_name="bins_match_angles", passed=passed, metadata=details)], metadata={
        "faces": df.height,
        "labels": dg.MetadataValue.md("| label | faces |\n|---|---|\n" + "\n".join(f"| {c['label']} | {c['len']} |" for c in counts)),
        "reviewed": len(overrides),
        **({"efhq_sign_agreement_yaw_gt_45": dg.MetadataValue.json(agreement)} if agreement else {}),
        "dagster/row_count": df.height,
    })
