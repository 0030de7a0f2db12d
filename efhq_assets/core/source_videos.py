"""`source_videos`: probe one catalog video, hash it, resolve its clip windows; write its `videos` and `clips` rows
(or, for a file that cannot be read, a failed `videos` row and an `errors` row)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from .lineage import record_error
from .sources import Sha256Cache, celebv_crop, seconds_to_frames
from .storage import DataRoot, remove_table_file, write_table
from .video import probe_video


@dataclass
class SourceVideoResult:
    video: dict
    clips: list[dict]
    warnings: list[str]


def probe_source_video(video: dict, clips: list[dict], sha_cache: Sha256Cache) -> SourceVideoResult:
    """Probe one catalog video, hash it, and resolve every clip window to file frame indices.

    Raises video.VideoError (a clear message) for a file that cannot be decoded.
    """
    path = Path(video["path"])
    probe = probe_video(path)
    st = path.stat()
    sha = sha_cache.get(path, st.st_size, st.st_mtime_ns)
    warnings: list[str] = []
    row = dict(video, sha256=sha, size_bytes=st.st_size, status="ok", error=None, codec=probe.codec,
               fps=probe.fps, frame_count=probe.frame_count, width=probe.width, height=probe.height,
               duration_s=probe.duration_s, rotation=probe.rotation)
    last = probe.frame_count - 1
    resolved: list[dict] = []
    for clip in clips or [{"clip_id": video["video_id"], "source": "folder", "youtube_id": video.get("youtube_id"),
                           "person_id": None, "start_frame": 0, "end_frame": last, "crop": None, "bbox": None,
                           "attributes": None, "annotation_file": None, "whole_file": True}]:
        clip = dict(clip, video_id=video["video_id"])
        if clip.get("whole_file"):
            start, end = 0, last
        elif clip.get("start_sec") is not None:
            start, end = seconds_to_frames(clip["start_sec"], clip["end_sec"], probe.fps, probe.frame_count)
        elif clip.get("start_frame") is None:
            warnings.append(f"clip {clip['clip_id']}: EFHQ CelebV metadata needs its start time (--celebv-info) or a "
                            f"clip file named {clip['clip_id']}; skipped")
            continue
        else:
            start, end = int(clip["start_frame"]), min(int(clip["end_frame"]), last)
        if clip.get("bbox") is not None and clip.get("crop") is None:
            clip["crop"] = list(celebv_crop(tuple(clip["bbox"]), probe.width, probe.height))
        if end < start:
            warnings.append(f"clip {clip['clip_id']}: window lies outside the file ({probe.frame_count} frames); skipped")
            continue
        clip["start_frame"], clip["end_frame"] = start, end
        resolved.append(clip)
    return SourceVideoResult(row, resolved, warnings)


def write_source_video(root: DataRoot, result: SourceVideoResult) -> None:
    vid = result.video["video_id"]
    write_table(root, "videos", vid, pl.DataFrame([result.video], infer_schema_length=None))
    clip_rows = [{k: v for k, v in c.items() if k not in {"whole_file", "annotated_size"}} for c in result.clips]
    write_table(root, "clips", vid, pl.DataFrame(clip_rows, infer_schema_length=None) if clip_rows else
                pl.DataFrame({"clip_id": [], "video_id": []}, schema={"clip_id": pl.Utf8, "video_id": pl.Utf8}))


def write_failed_video(root: DataRoot, video: dict, message: str) -> None:
    """A failed partition still leaves a `videos` row (status failed) and an `errors` row."""
    row = dict(video, status="failed", error=message)
    write_table(root, "videos", video["video_id"], pl.DataFrame([row], infer_schema_length=None))
    remove_table_file(root, "clips", video["video_id"])
    remove_table_file(root, "frames", video["video_id"])
    record_error(root, video["video_id"], "source_videos", message)
