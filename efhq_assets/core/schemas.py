"""Column schemas of the manifest tables (ARCHITECTURE.md "Tables users query").

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
        "detected": "BOOLEAN",
    },
    "landmarks": {
        "video_id": "VARCHAR", "clip_id": "VARCHAR", "frame_index": "BIGINT", "face_index": "INTEGER",
        "lmk478": "FLOAT[]", "lmk68": "FLOAT[]",
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

# Tables that are written per video (tables/<table>/<video_id>.parquet) vs. keyed per (video, stage).
PER_VIDEO_TABLES = ("videos", "clips", "frames", "faces", "landmarks", "poses")
KEYED_TABLES = ("errors", "lineage")
