"""Column schemas of the manifest tables (docs/architecture.md "Tables").

Table and column names are an interface: users' SQL, the docs and the tests rely on them. A stage
writes its per-video Parquet with exactly these columns (more may be appended); the manifest
creates an empty table with this schema when no file exists yet, so SQL never fails on a fresh root.
Types are DuckDB type names, so this module needs no heavy import.
"""

from __future__ import annotations

TABLE_SCHEMAS: dict[str, dict[str, str]] = {
    "videos": {
        "video_id": "VARCHAR", "source_name": "VARCHAR", "source": "VARCHAR", "path": "VARCHAR",
        "sha256": "VARCHAR", "size_bytes": "BIGINT", "status": "VARCHAR", "error": "VARCHAR",
        "duplicate_of": "VARCHAR", "youtube_id": "VARCHAR", "codec": "VARCHAR", "fps": "DOUBLE",
        "frame_count": "BIGINT", "width": "INTEGER", "height": "INTEGER", "duration_s": "DOUBLE",
        "rotation": "INTEGER",
    },
    "clips": {
        "clip_id": "VARCHAR", "video_id": "VARCHAR", "source": "VARCHAR", "youtube_id": "VARCHAR",
        "person_id": "VARCHAR", "start_frame": "BIGINT", "end_frame": "BIGINT",
        "crop": "INTEGER[]", "bbox": "DOUBLE[]", "attributes": "VARCHAR", "annotation_file": "VARCHAR",
        "efhq_metadata": "VARCHAR",
    },
    "frames": {
        "video_id": "VARCHAR", "clip_id": "VARCHAR", "frame_index": "BIGINT", "pts_s": "DOUBLE",
        "width": "INTEGER", "height": "INTEGER", "crop_x0": "INTEGER", "crop_y0": "INTEGER",
        "frame_hash": "VARCHAR",
    },
    "faces": {
        "video_id": "VARCHAR", "clip_id": "VARCHAR", "frame_index": "BIGINT", "face_index": "INTEGER",
        "track_id": "BIGINT", "x1": "DOUBLE", "y1": "DOUBLE", "x2": "DOUBLE", "y2": "DOUBLE", "score": "DOUBLE",
        "lmk5": "DOUBLE[]", "passes_efhq_filter": "BOOLEAN", "detector": "VARCHAR", "detector_sha256": "VARCHAR",
        "detected": "BOOLEAN", "found_by": "VARCHAR",
    },
    "landmarks": {
        "video_id": "VARCHAR", "clip_id": "VARCHAR", "frame_index": "BIGINT", "face_index": "INTEGER",
        "lmk478": "SMALLINT[]", "lmk68": "SMALLINT[]",
    },
    "poses": {
        "video_id": "VARCHAR", "clip_id": "VARCHAR", "frame_index": "BIGINT", "face_index": "INTEGER",
        "estimator": "VARCHAR", "yaw": "DOUBLE", "pitch": "DOUBLE", "roll": "DOUBLE", "residual": "DOUBLE",
        "confidence": "DOUBLE", "weights_sha256": "VARCHAR",
    },
    "quality": {
        "video_id": "VARCHAR", "clip_id": "VARCHAR", "frame_index": "BIGINT", "face_index": "INTEGER",
        "scorer": "VARCHAR", "score": "DOUBLE", "sharpness": "DOUBLE", "brightness": "DOUBLE",
        "exposure_clipped": "DOUBLE", "noise": "DOUBLE", "face_side_px": "DOUBLE",
    },
    "bins": {
        "video_id": "VARCHAR", "clip_id": "VARCHAR", "frame_index": "BIGINT", "face_index": "INTEGER",
        "bin_facemesh": "VARCHAR", "bin_dlib68": "VARCHAR", "bin_combined": "VARCHAR", "hardbin": "VARCHAR",
        "softbin": "VARCHAR", "smallbin": "VARCHAR", "reviewed_label": "VARCHAR", "label": "VARCHAR",
    },
    "review_overrides": {"video_id": "VARCHAR", "frame_index": "BIGINT", "face_index": "INTEGER", "label": "VARCHAR"},
    "track_embeddings": {
        "video_id": "VARCHAR", "clip_id": "VARCHAR", "track_id": "BIGINT", "source_id": "VARCHAR",
        "n_faces": "INTEGER", "embedding": "FLOAT[]", "embedder": "VARCHAR", "embedder_sha256": "VARCHAR",
    },
    "identities": {
        "video_id": "VARCHAR", "track_id": "BIGINT", "identity_id": "VARCHAR", "source_id": "VARCHAR",
        "n_faces": "INTEGER", "method": "VARCHAR", "distance_to_centroid": "DOUBLE",
    },
    "identity_merges": {"identity_id": "VARCHAR", "merged_into": "VARCHAR", "reason": "VARCHAR"},
    "errors": {"video_id": "VARCHAR", "stage": "VARCHAR", "message": "VARCHAR", "at": "VARCHAR"},
    "lineage": {
        "asset": "VARCHAR", "partition": "VARCHAR", "code_version": "VARCHAR", "model_versions": "VARCHAR",
        "run_id": "VARCHAR", "input_fingerprint": "VARCHAR", "rows": "BIGINT", "at": "VARCHAR",
    },
}

# Landmarks (x, y interleaved, in full-frame pixels) are stored as fixed-point int16: value = round(px * 8).
# Precision: steps of 1/8 px, so at most 1/16 px (0.0625 px) from the value given to the writer, far below
# any landmark model's error; range: -4096 to 4095.875 px, i.e. frames up to 4096 px on their longer side
# (4K UHD) with room for points outside the frame. `storage.read_*` return pixels (float32); in SQL the
# manifest's `landmark_px(lmk478)` does the same. Half the bytes of float32, and zstd packs int16 tighter.
LANDMARK_COLUMNS = {"landmarks": ("lmk478", "lmk68")}
LANDMARK_SCALE = 8
LANDMARK_RANGE_PX = (-32768 / LANDMARK_SCALE, 32767 / LANDMARK_SCALE)

# Tables that are written per video (tables/<table>/<video_id>.parquet) vs. keyed per (video, stage).
PER_VIDEO_TABLES = ("videos", "clips", "frames", "faces", "landmarks", "poses")
KEYED_TABLES = ("errors", "lineage")
