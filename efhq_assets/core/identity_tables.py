"""The data-root side of `track_embeddings` and `face_identities`: one embedding per face track from the video's
frames, and stable identities across every track (the clustering itself is `identities.py`, pure numpy)."""

from __future__ import annotations

import functools

import numpy as np
import polars as pl

from . import identities as ident
from .face_crops import iter_faces_by_frame, pick_track_faces
from .models import registry
from .storage import empty_frame, read_table_files, write_table

FACES_PER_TRACK = 3


@functools.lru_cache(maxsize=1)
def track_embedder():
    """The offline track embedder (dlib ResNet), loaded once per process."""
    return registry.create("embedder", "dlib_resnet")


def track_embedding_rows(video: dict, faces: list[dict], clips: list[dict], embedder) -> list[dict]:
    source_of = {c["clip_id"]: c.get("youtube_id") or video["video_id"] for c in clips}
    chosen = pick_track_faces(faces, FACES_PER_TRACK)
    vectors: dict[int, list[np.ndarray]] = {}
    for image, rows in iter_faces_by_frame(video["path"], chosen):
        boxes = [np.array([r["x1"], r["y1"], r["x2"], r["y2"]], np.float32) for r in rows]
        for r, emb in zip(rows, embedder.embed(image, boxes)):
            vectors.setdefault(r["track_id"], []).append(emb)
    clip_of = {f["track_id"]: f["clip_id"] for f in faces}
    n_faces = {t: sum(1 for f in faces if f["track_id"] == t) for t in vectors}
    return [{"video_id": video["video_id"], "clip_id": clip_of[t], "track_id": t,
             "source_id": source_of.get(clip_of[t]) or video["video_id"], "n_faces": n_faces[t],
             "embedding": ident.track_embedding(np.stack(v)).astype(np.float32).tolist(),
             "embedder": embedder.name, "embedder_sha256": embedder.weights_sha256} for t, v in sorted(vectors.items())]


def read_all(root, table: str) -> list[dict]:
    df = read_table_files(root, table)
    return df.to_dicts() if df is not None else []


def update_identities(root) -> tuple[pl.DataFrame, list]:
    """Assign identities to every track (existing ids kept), write `identities` per video and
    `identity_merges`; returns (the identities rows, the merges new in this call)."""
    tracks = [ident.TrackEmb(r["video_id"], int(r["track_id"]), r["source_id"], np.asarray(r["embedding"], np.float32),
                             int(r["n_faces"])) for r in read_all(root, "track_embeddings")]
    existing = [ident.IdentityRow(r["video_id"], int(r["track_id"]), r["identity_id"], r["source_id"],
                                  int(r["n_faces"]), r["method"], r["distance_to_centroid"])
                for r in read_all(root, "identities")]
    old_merges = [ident.MergeRow(r["identity_id"], r["merged_into"], r["reason"]) for r in read_all(root, "identity_merges")]
    rows, merges = ident.assign_identities(tracks, existing, existing_merges=old_merges)
    df = pl.DataFrame([r._asdict() for r in rows], infer_schema_length=None) if rows else empty_frame("identities")
    for video_id, part in (df.partition_by("video_id", as_dict=True).items() if df.height else []):
        write_table(root, "identities", video_id[0], part.sort("track_id"))
    all_merges = old_merges + list(merges)
    write_table(root, "identity_merges", "all", pl.DataFrame([m._asdict() for m in all_merges], infer_schema_length=None)
                if all_merges else empty_frame("identity_merges"))
    return df, list(merges)
