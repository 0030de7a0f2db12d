"""`track_embeddings` (per video) and `face_identities` (across videos): who each face track is.

Identities are clustered within a source (a YouTube id: the clips of one video, or the pre-cut
clips that share it) and are stable: tracks already assigned keep their id, new tracks join an
existing identity or found a new one, and a track that links two identities records a merge
(`identity_merges`) instead of renumbering anything.
"""

import dagster as dg
import polars as pl

from efhq_assets.core import identities as ident, stages
from efhq_assets.core.identity_tables import track_embedder, track_embedding_rows, update_identities
from efhq_assets.core.lineage import record_lineage
from efhq_assets.core.storage import empty_frame, read_rows, write_table

from .batch import BACKFILL_POLICY, each_partition
from .lineage import record_stage, stage_asset_kwargs
from .partitions import video_files
from .resources import EfhqStorage
from .sources import successful_video


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
    embedder = track_embedder()
    rows = track_embedding_rows(video, read_rows(root, "faces", video_id), read_rows(root, "clips", video_id),
                                embedder)
    df = pl.DataFrame(rows, infer_schema_length=None) if rows else empty_frame("track_embeddings")
    write_table(root, "track_embeddings", video_id, df)
    version = record_stage(context, root, "track_embeddings", video_id, df.height,
                           {embedder.name: embedder.weights_sha256})
    return dg.MaterializeResult(data_version=version, metadata={"tracks": df.height, "embedder": embedder.name, "dagster/row_count": df.height})


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
