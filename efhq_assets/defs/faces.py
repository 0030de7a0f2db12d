"""`face_detections`: every face in the sampled frames, tracked through each clip, with landmarks."""

from collections import Counter

import dagster as dg
import polars as pl

from efhq_assets.core.checks import check_faces
from efhq_assets.core.efhq_import import import_video
from efhq_assets.core.faces import FOUND_BY, analyse_video
from efhq_assets.core.frames import parse_sampling
from efhq_assets.core.settings import load_settings
from efhq_assets.core.storage import empty_frame, read_rows, remove_table_file, write_table

from .batch import BACKFILL_POLICY, each_partition
from .lineage import record_stage, stage_asset_kwargs
from .partitions import video_files
from .resources import EfhqStorage, FaceAnalysis
from .sources import successful_video


@dg.asset(
    **stage_asset_kwargs("face_detections"),
    partitions_def=video_files,
    kinds={"python", "onnx"},
    backfill_policy=BACKFILL_POLICY,
    check_specs=[dg.AssetCheckSpec("faces_well_formed", asset="face_detections", blocking=True,
                                   description="every face has a track, unique keys, well-formed boxes")],
    description="Detect every face (MTCNN by default), link faces into tracks per clip, run FaceMesh 478 and dlib 68 "
                "landmarks. EFHQ's filter (score >= 0.9, area >= 256x256) is the `passes_efhq_filter` column. "
                "Tables `faces`, `landmarks`.",
)
def face_detections(context: dg.AssetExecutionContext, storage: EfhqStorage, face_analysis: FaceAnalysis):
    root = storage.root()
    face_analysis = face_analysis.resolved(load_settings(root))  # the data root's detector unless set here
    yield from each_partition(context, root, lambda key: _detect_faces(context, root, face_analysis, key))


def _detect_faces(context: dg.AssetExecutionContext, root, face_analysis: FaceAnalysis,
                  video_id: str) -> dg.MaterializeResult:
    video, clips = successful_video(root, video_id), read_rows(root, "clips", video_id)
    sampling = load_settings(root).sampling
    imported = import_video(video, clips)
    if imported is not None:  # EFHQ's released metadata: no detector, no pose model for this video
        return _write_imported(context, root, video_id, face_analysis, *imported)
    remove_table_file(root, "efhq_poses", video_id)
    models = face_analysis.models()
    faces, marks = analyse_video(video, clips, parse_sampling(sampling), models,
                                 face_analysis.efhq_min_score, face_analysis.efhq_min_side,
                                 on_progress=lambda n: context.log.info(f"{video_id}: analysed {n} frames"),
                                 batch=face_analysis.batch, detect_stride=face_analysis.detect_stride)
    sha = models.detector.weights_sha256
    faces_df = pl.DataFrame(faces, infer_schema_length=None).with_columns(detector_sha256=pl.lit(sha)) if faces \
        else empty_frame("faces")
    marks_df = pl.DataFrame(marks, infer_schema_length=None) if marks else empty_frame("landmarks")
    write_table(root, "faces", video_id, faces_df)
    write_table(root, "landmarks", video_id, marks_df)
    version = record_stage(context, root, "face_detections", video_id, faces_df.height, models.versions(),
                           face_analysis)
    n_pass = int(faces_df["passes_efhq_filter"].sum()) if faces_df.height else 0
    # how each face was found (faces.found_by): the detector, its mirrored pass, a followed track, or carried
    # between detector frames; one number per path so the UI can plot them across videos
    counts = Counter(f.get("found_by") for f in faces)
    found_by = {f"found_by_{how}": counts[how] for how in FOUND_BY}
    passed, details = check_faces(faces)
    return dg.MaterializeResult(data_version=version, check_results=[
        dg.AssetCheckResult(check_name="faces_well_formed", passed=passed, metadata=details)], metadata={
        "faces": faces_df.height,
        "faces_passing_efhq_filter": n_pass,
        "tracks": faces_df["track_id"].n_unique() if faces_df.height else 0,
        "frames_with_faces": faces_df.select(["clip_id", "frame_index"]).n_unique() if faces_df.height else 0,
        **found_by,
        "detector": f"{models.detector.name} ({sha[:12]})",
        "dagster/row_count": faces_df.height,
    })


def _write_imported(context, root, video_id: str, face_analysis: FaceAnalysis, faces, marks, poses, sha: str):
    faces_df = (pl.DataFrame(faces, infer_schema_length=None).with_columns(detector_sha256=pl.lit(sha))
                if faces else empty_frame("faces"))
    write_table(root, "faces", video_id, faces_df)
    write_table(root, "landmarks", video_id, pl.DataFrame(marks, infer_schema_length=None) if marks
                else empty_frame("landmarks"))
    write_table(root, "efhq_poses", video_id, pl.DataFrame(poses, infer_schema_length=None) if poses
                else pl.DataFrame({"video_id": []}, schema={"video_id": pl.Utf8}))
    version = record_stage(context, root, "face_detections", video_id, faces_df.height, {"efhq_metadata": sha},
                           face_analysis)
    passed, details = check_faces(faces)
    return dg.MaterializeResult(
        data_version=version,
        check_results=[dg.AssetCheckResult(check_name="faces_well_formed", passed=passed, metadata=details)],
        metadata={"faces": faces_df.height, "source": "EFHQ released metadata (no detector)",
                  "tracks": faces_df["track_id"].n_unique() if faces_df.height else 0,
                  "dagster/row_count": faces_df.height})
