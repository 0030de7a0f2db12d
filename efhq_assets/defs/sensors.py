"""The sensor that turns new video files into partitions and runs for them."""


import json

import dagster as dg

from efhq_assets.core import ingest
from efhq_assets.core.sources import source_listing_fingerprint

from .bins import pose_bins
from .faces import face_detections
from .identities import track_embeddings
from .frames import decoded_frames
from .pose import pose_annotations
from .quality import quality_scores
from .partitions import video_files
from .resources import EfhqStorage
from .sources import source_videos

MAX_NEW_PER_TICK = 500

per_video_job = dg.define_asset_job(
    "per_video_job", selection=dg.AssetSelection.assets(
        source_videos, decoded_frames, face_detections, pose_annotations, quality_scores, pose_bins, track_embeddings), partitions_def=video_files,
    description="Everything computed per video file, for one partition.")


def new_partitions_tick(storage: EfhqStorage, existing: set[str], cursor: str | None, cap: int = MAX_NEW_PER_TICK):
    """Pure sensor logic: (new keys to add and run, vanished keys, new cursor) or None when nothing changed."""
    root = storage.root()
    config = ingest.load_source_config(root)
    state = json.loads(cursor) if cursor else {}
    listing = source_listing_fingerprint(config)
    if state.get("listing") == listing and not state.get("backlog"):
        return None
    catalog = ingest.refresh_catalog(root, config)
    wanted = catalog.partition_keys()
    known = {v["video_id"] for v in catalog.videos}
    new = [k for k in wanted if k not in existing]
    batch = new[:cap]
    vanished = sorted(k for k in existing if k not in known)
    cursor = json.dumps({"listing": listing, "backlog": len(new) - len(batch), "vanished": len(vanished)})
    return batch, vanished, cursor


@dg.sensor(job=per_video_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Scans the configured video folders and annotations; adds one partition per new file "
                       f"(at most {MAX_NEW_PER_TICK} per tick) and requests its run. Vanished files are reported, "
                       "never deleted.")
def video_files_sensor(context: dg.SensorEvaluationContext, storage: EfhqStorage):
    existing = set(context.instance.get_dynamic_partitions(video_files.name))  # the one instance query per tick
    outcome = new_partitions_tick(storage, existing, context.cursor)
    if outcome is None:
        return dg.SkipReason("no change in the source folders")
    batch, vanished, cursor = outcome
    if vanished:
        context.log.warning(f"{len(vanished)} known videos vanished from the source folders (kept, not deleted): "
                            f"{', '.join(vanished[:10])}")
    if not batch:
        context.update_cursor(cursor)
        return dg.SkipReason("no new videos" + (f"; {len(vanished)} vanished" if vanished else ""))
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=k, run_key=k) for k in batch],
        dynamic_partitions_requests=[video_files.build_add_request(batch)],
        cursor=cursor,
    )
