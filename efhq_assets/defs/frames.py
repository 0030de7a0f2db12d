"""`decoded_frames`: one streaming decode pass per video; the `frames` table, never frame images."""


import base64

import dagster as dg

from efhq_assets.core.frames import decode_frames, parse_sampling, preview_strip_png
from efhq_assets.core.lineage import clear_error, record_error
from efhq_assets.core.settings import load_settings
from efhq_assets.core.storage import empty_frame, read_rows, write_table
from efhq_assets.core.video import VideoError

from .batch import BACKFILL_POLICY, each_partition
from .lineage import record_stage, stage_asset_kwargs
from .partitions import video_files
from .resources import EfhqStorage
from .sources import catalog_entry, successful_video


@dg.asset(
    **stage_asset_kwargs("decoded_frames"),
    partitions_def=video_files,
    kinds={"python", "video"},
    backfill_policy=BACKFILL_POLICY,
    description="Decode each clip window once (PyAV, streaming), apply crop and sampling, hash each kept frame. "
                "Table `frames`.",
)
def decoded_frames(context: dg.AssetExecutionContext, storage: EfhqStorage):
    root = storage.root()
    yield from each_partition(context, root, lambda key: _decode_video(context, storage, key))


def _decode_video(context: dg.AssetExecutionContext, storage: EfhqStorage, video_id: str) -> dg.MaterializeResult:
    root = storage.root()
    catalog_entry(storage, video_id)  # a clear failure when the file has left the catalog
    video = successful_video(root, video_id)
    clips = read_rows(root, "clips", video_id)
    sampling = load_settings(root).sampling
    policy = parse_sampling(sampling)

    def progress(done: int, total: int) -> None:
        context.log.info(f"{video_id}: decoded {done}/{total} frames")

    try:
        df, previews = decode_frames(video, clips, policy, on_progress=progress)
    except VideoError as exc:
        message = f"{video['source_name']}: {exc}"
        record_error(root, video_id, "decoded_frames", message)
        raise dg.Failure(description=message, allow_retries=False) from None
    df = df if df is not None else empty_frame("frames")
    write_table(root, "frames", video_id, df)
    clear_error(root, video_id, "decoded_frames")
    version = record_stage(context, root, "decoded_frames", video_id, df.height)
    metadata = {
        "frames": df.height,
        "clips": len(clips),
        "sampling": sampling,
        "frames_per_clip": dg.MetadataValue.md(
            "| clip | frames |\n|---|---|\n" + "\n".join(
                f"| {r['clip_id']} | {r['len']} |" for r in df.group_by("clip_id").len().sort("clip_id").to_dicts()[:50])),
        "dagster/row_count": df.height,
    }
    # JPEG: Dagster keeps each materialization's metadata three times (the run's event log, the asset index and
    # the latest-materialization cache); as PNG this strip was 175 kB there per video (benchmarks/decode.py)
    strip = preview_strip_png(previews, ext=".jpg")
    if strip:
        metadata["preview"] = dg.MetadataValue.md(f"![frames](data:image/jpeg;base64,{base64.b64encode(strip).decode()})")
    return dg.MaterializeResult(data_version=version, metadata=metadata)
