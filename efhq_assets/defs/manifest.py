"""`manifest`: compact every per-video Parquet file into the DuckDB catalog users query with SQL."""


import dagster as dg

from efhq_assets.core.ingest import record_lineage
from efhq_assets.core.storage import compact_manifest

from .bins import pose_bins
from .card import dataset_card
from .faces import face_detections
from .identities import face_identities
from .frames import decoded_frames
from .pose import pose_annotations
from .quality import quality_scores
from .partitions import refresh_when_upstream_changed
from .resources import EfhqStorage
from .sources import source_videos

CODE_VERSION = "manifest-1"


@dg.asset(
    automation_condition=refresh_when_upstream_changed,
    deps=[source_videos, decoded_frames, face_detections, pose_annotations, quality_scores, pose_bins, face_identities, dataset_card,
          "split_gan", "split_eg3d", "split_t2i", "split_reenactment", "verification_pairs", "verification_report"],
    group_name="manifest",
    kinds={"duckdb"},
    code_version=CODE_VERSION,
    pool="manifest",
    description="Native DuckDB tables built from tables/*/<video>.parquet in a new file (a copy of the last one "
                "with only the changed files' rows replaced, or a full rebuild), swapped in under an fcntl lock. "
                "Query with `efhq sql`.",
)
def manifest(context: dg.AssetExecutionContext, storage: EfhqStorage) -> dg.MaterializeResult:
    root = storage.root()
    stats = compact_manifest(root)
    record_lineage(root, "manifest", "all", CODE_VERSION, context.run_id, "", sum(stats["tables"].values()))
    counts = stats["tables"]
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(root.manifest_path)),
        "tables": dg.MetadataValue.md("| table | rows |\n|---|---|\n" + "\n".join(
            f"| {t} | {n} |" for t, n in sorted(counts.items()))),
        "videos": counts.get("videos", 0), "frames": counts.get("frames", 0), "errors": counts.get("errors", 0),
        "files_read": stats["files_read"], "compaction_s": stats["seconds"], "bytes": stats["bytes"],
        # "incremental": only the changed files' rows were replaced; "full": rebuilt from every file (why: reason)
        "mode": stats["mode"], "files_changed": stats["files_changed"],
        **({"full_rebuild_reason": stats["reason"]} if stats["reason"] else {}),
    })
