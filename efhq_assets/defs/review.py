"""`review_overrides`: reviewed labels rebuilt from every imported review sheet, in import order."""

import dagster as dg
import polars as pl

from efhq_assets.core import stages
from efhq_assets.core.fingerprints import fingerprint
from efhq_assets.core.lineage import record_lineage
from efhq_assets.core.plan import record_review_state, review_files
from efhq_assets.core.review import known_faces, merge_reviews
from efhq_assets.core.storage import remove_table_file, table_files, write_table

from .lineage import stage_asset_kwargs
from .resources import EfhqStorage


@dg.asset(
    **stage_asset_kwargs("review_overrides"),
    kinds={"python"},
    description="Human relabels (frontal / profile_* / remove) from the review sheets imported with "
                "`efhq review import`, kept as data so the review is reproducible. Table `review_overrides`; "
                "applied by `pose_bins` on its next materialization.",
)
def review_overrides(context: dg.AssetExecutionContext, storage: EfhqStorage) -> dg.MaterializeResult:
    root = storage.root()
    files = review_files(root)
    merged = merge_reviews(files, known_faces(root))
    by_video: dict[str, list[dict]] = {}
    for (video_id, frame_index, face_index), label in sorted(merged.items()):
        by_video.setdefault(video_id, []).append({"video_id": video_id, "frame_index": frame_index,
                                                  "face_index": face_index, "label": label})
    for path in table_files(root, "review_overrides"):
        if path.stem not in by_video:
            remove_table_file(root, "review_overrides", path.stem)
    for video_id, rows in by_video.items():
        write_table(root, "review_overrides", video_id, pl.DataFrame(rows))
    record_lineage(root, "review_overrides", "all", stages.stage("review_overrides").code_version, context.run.run_id,
                          fingerprint([p.name for p in files]), len(merged))
    record_review_state(root)  # the sheets merged: efhq build and the sensor compare it with the sheets now
    counts = pl.DataFrame({"label": list(merged.values())}).group_by("label").len().sort("label").to_dicts() \
        if merged else []
    return dg.MaterializeResult(metadata={
        "sheets": len(files), "overrides": len(merged), "videos": len(by_video),
        "labels": dg.MetadataValue.md("| label | faces |\n|---|---|\n" + "\n".join(f"| {c['label']} | {c['len']} |"
                                                                             for c in counts)),
    })

