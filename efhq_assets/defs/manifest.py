"""`manifest`: compact every per-video Parquet file into the DuckDB catalog users query with SQL."""


import dagster as dg

from efhq_assets.core import stages
from efhq_assets.core.lineage import record_lineage
from efhq_assets.core.plan import record_unpartitioned_state
from efhq_assets.core.storage import compact_manifest

from .lineage import stage_asset_kwargs
from .resources import EfhqStorage


@dg.asset(
    **stage_asset_kwargs("manifest"),
    kinds={"duckdb"},
    pool="manifest",
    description="Native DuckDB tables built from tables/*/<video>.parquet in a new file (a copy of the last one "
                "with only the changed files' rows replaced, or a full rebuild), swapped in under an fcntl lock. "
                "Query with `efhq sql`.",
)
def manifest(context: dg.AssetExecutionContext, storage: EfhqStorage) -> dg.MaterializeResult:
    root = storage.root()
    stats = compact_manifest(root)
    record_lineage(root, "manifest", "all", stages.stage("manifest").code_version, context.run.run_id, "",
                   sum(stats["tables"].values()))
    # The state this manifest reflects (data files, code versions, settings): `efhq build`, --dry-run and the
    # sensor compare it with now to decide whether the unpartitioned stages are stale.
    record_unpartitioned_state(root)
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
