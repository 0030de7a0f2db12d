"""`quality_scores`: deterministic quality measures on each face crop (never the whole frame)."""

import functools

import dagster as dg
import numpy as np
import polars as pl

from efhq_assets.core.checks import check_quality
from efhq_assets.core.efhq_import import RELEASED_SCORER, released_labels
from efhq_assets.core.face_crops import iter_faces_by_frame
from efhq_assets.core.quality import DEFAULT_SCORER, SCORERS, face_crop, quality_rows, resolve_scorer
from efhq_assets.core.settings import load_settings
from efhq_assets.core.storage import empty_frame, read_rows, write_table

from .batch import BACKFILL_POLICY, each_partition
from .lineage import record_stage, stage_asset_kwargs
from .partitions import video_files
from .resources import EfhqStorage
from .sources import successful_video


@functools.lru_cache(maxsize=2)
def scorer_for(choice: str):
    """(scorer name, model or None) of the `quality_scorer` setting, loaded once per process."""
    return resolve_scorer(choice)


def score_video(video: dict, faces: list[dict], scorer: str = DEFAULT_SCORER, model=None) -> list[dict]:
    """Re-decode only the frames holding faces; score each face crop (with `model` when given, e.g. HyperIQA)."""
    keys = ("video_id", "clip_id", "frame_index", "face_index")
    rows = []
    for image, frame_faces in iter_faces_by_frame(video["path"], faces):
        boxes = [[f["x1"], f["y1"], f["x2"], f["y2"]] for f in frame_faces]
        crops = [face_crop(image, b) for b in boxes]
        for f, q in zip(frame_faces, quality_rows(crops, np.asarray(boxes), model, scorer)):
            rows.append({**{k: f[k] for k in keys}, **q})
    return sorted(rows, key=lambda r: (r["clip_id"], r["frame_index"], r["face_index"]))


def _scorer_versions(rows: list[dict], model=None) -> dict:
    """Which scorer made the scores (lineage): the offline BRISQUE or HyperIQA (its weights), and EFHQ's released
    HyperIQA `iqa`."""
    versions = {DEFAULT_SCORER: "brisque==0.2.0"} if model is None else \
        {"hyperiqa": f"hyperiqa_koniq {getattr(model, 'weights_sha256', '')}".strip()}
    if any(r["scorer"] == RELEASED_SCORER for r in rows):
        versions[RELEASED_SCORER] = "EFHQ released iqa (HyperIQA, KonIQ weights)"
    return versions


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
    # Faces rebuilt from EFHQ's metadata keep its released score (HyperIQA, KonIQ scale) as the score;
    # the measures computed here stay beside it.
    released = released_labels(video, read_rows(root, "clips", video_id))
    for r in rows:
        iqa = (released.get((r["video_id"], r["clip_id"], r["frame_index"], r["face_index"])) or {}).get("iqa")
        if iqa is not None and np.isfinite(iqa):
            r.update(scorer=RELEASED_SCORER, score=float(iqa))
    df = pl.DataFrame(rows, infer_schema_length=None) if rows else empty_frame("quality")
    write_table(root, "quality", video_id, df)
    version = record_stage(context, root, "quality_scores", video_id, df.height, _scorer_versions(rows, model))
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
