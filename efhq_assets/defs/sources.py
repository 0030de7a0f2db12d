"""`source_videos`: probe + hash one video file and resolve its annotated clip windows."""


import dagster as dg

from efhq_assets.core.catalog import load_catalog
from efhq_assets.core.lineage import clear_error
from efhq_assets.core.source_videos import probe_source_video, write_failed_video, write_source_video
from efhq_assets.core.sources import Sha256Cache
from efhq_assets.core.storage import read_rows
from efhq_assets.core.video import VideoError

from .batch import BACKFILL_POLICY, each_partition
from .lineage import record_stage, stage_asset_kwargs
from .partitions import video_files
from .resources import EfhqStorage


def catalog_entry(storage: EfhqStorage, video_id: str) -> tuple[dict, list[dict]]:
    root = storage.root()
    catalog = load_catalog(root)
    video = catalog.video(video_id)
    if video is None or video["status"] == "missing":
        raise dg.Failure(description=f"video {video_id!r} is not in the source catalog of {root.path} "
                                     "(was its file removed? run `efhq build` or let the sensor rescan)")
    return video, catalog.clips_of(video_id)


def successful_video(root, video_id: str) -> dict:
    """This partition's `videos` row; a clear failure when source_videos has not succeeded for it."""
    videos = read_rows(root, "videos", video_id)
    if not videos or videos[0]["status"] != "ok":
        raise dg.Failure(description=f"{video_id}: source_videos has no successful output; materialize it first")
    return videos[0]


@dg.asset(
    **stage_asset_kwargs("source_videos"),
    partitions_def=video_files,
    kinds={"python", "video"},
    backfill_policy=BACKFILL_POLICY,
    description="Probe (codec, fps, frames, size, duration, rotation), sha256 and clip windows of one video file. "
                "Tables `videos`, `clips`.",
)
def source_videos(context: dg.AssetExecutionContext, storage: EfhqStorage):
    root = storage.root()
    yield from each_partition(context, root, lambda key: _source_video(context, storage, key))


def _source_video(context: dg.AssetExecutionContext, storage: EfhqStorage, video_id: str) -> dg.MaterializeResult:
    root = storage.root()
    video, clips = catalog_entry(storage, video_id)
    try:
        result = probe_source_video(video, clips, Sha256Cache(root.catalog / "sha256_cache.json"))
    except (VideoError, OSError) as exc:
        message = f"{video['source_name']}: {exc}"
        write_failed_video(root, video, message)
        raise dg.Failure(description=message, allow_retries=False) from None
    write_source_video(root, result)
    clear_error(root, video_id, "source_videos")
    for warning in result.warnings:
        context.log.warning(warning)
    version = record_stage(context, root, "source_videos", video_id, len(result.clips))
    v = result.video
    return dg.MaterializeResult(data_version=version, metadata={
        "path": dg.MetadataValue.path(v["path"]),
        "sha256": v["sha256"],
        "codec": v["codec"], "fps": float(v["fps"]), "frame_count": int(v["frame_count"]),
        "size": f"{v['width']}x{v['height']}", "duration_s": float(v["duration_s"]),
        "rotation": int(v["rotation"]), "source": v["source"],
        "clips": len(result.clips),
        "clip_windows": dg.MetadataValue.md("\n".join(
            ["| clip | frames | crop |", "|---|---|---|"]
            + [f"| {c['clip_id']} | {c['start_frame']}-{c['end_frame']} | {c.get('crop')} |" for c in result.clips[:50]])),
        "warnings": len(result.warnings),
    })
