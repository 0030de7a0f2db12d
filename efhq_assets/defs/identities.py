"""`track_embeddings` (per video) and `face_identities` (across videos): who each face track is.

Identities are clustered within a source (a YouTube id: the clips of one video, or the pre-cut
clips that share it) and are stable: tracks already assigned keep their id, new tracks join an
existing identity or found a new one, and a track that links two identities records a merge
(`identity_merges`) instead of renumbering anything.
"""

import functools

import dagster as dg
import numpy as np
import polars as pl

from efhq_assets.core import identities as ident
from efhq_assets.core import stages
from efhq_assets.core.lineage import record_lineage
from efhq_assets.core.face_crops import iter_faces_by_frame, pick_track_faces
from efhq_assets.core.storage import empty_frame, read_rows, read_table_files, write_table

from .batch import BACKFILL_POLICY, each_partition
from .lineage import record_stage, stage_asset_kwargs
from .partitions import video_files
from .resources import EfhqStorage
from .sources import successful_video

FACES_PER_TRACK = 3


@functools.lru_cache(maxsize=1)
def _embedder():
    from efhq_assets.core.models import registry

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


@dg.asset(
    **stage_asset_kwargs("track_embeddings"),
    partitions_def=video_files,
    kinds={"python"},
    backfill_policy=BACKFILL_POLICY,
    description="One embedding per face track (dlib ResNet on up to 3 faces per track, re-decoded on demand). "
                "Table `track_embeddings`.",
)
def track_embeddings(context: dg.AssetExecutionContext, storage: EfhqStorage):
    root = storage.root()
    yield from each_partition(context, root, lambda key: _embed_tracks(context, root, key))


def _embed_tracks(context: dg.AssetExecutionContext, root, video_id: str) -> dg.MaterializeResult:
    video = successful_video(root, video_id)
    embedder = _embedder()
    rows = track_embedding_rows(video, read_rows(root, "faces", video_id), read_rows(root, "clips", video_id),
                                embedder)
    df = pl.DataFrame(rows, infer_schema_length=None) if rows else empty_frame("track_embeddings")
    write_table(root, "track_embeddings", video_id, df)
    version = record_stage(context, root, "track_embeddings", video_id, df.height,
                           {embedder.name: embedder.weights_sha256})
    return dg.MaterializeResult(data_version=version, metadata={"tracks": df.height, "embedder": embedder.name, "dagster/row_count": df.height})


def read_all(root, table: str) -> list[dict]:
    df = read_table_files(root, table)
    return df.to_dicts() if df is not None else []


@dg.asset(
    **stage_asset_kwargs("face_identities"),
    kinds={"python"},
    pool="manifest",
    description="Stable identities: tracks clustered within each source by embedding distance; existing ids never "
                "change, merges are recorded. Tables `identities`, `identity_merges`.",
)
def face_identities(context: dg.AssetExecutionContext, storage: EfhqStorage) -> dg.MaterializeResult:
    root = storage.root()
    df, merges = update_identities(root)
    record_lineage(root, "face_identities", "all", stages.stage("face_identities").code_version, context.run.run_id, "", df.height,
                          {"method": ident.method_name()})
    return dg.MaterializeResult(metadata={
        "tracks": df.height,
        "identities": df["identity_id"].n_unique() if df.height else 0,
        "sources": df["source_id"].n_unique() if df.height else 0,
        "new_merges": len(merges),
        "method": ident.method_name(),
    })


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
