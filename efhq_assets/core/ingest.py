"""Per-video ingest logic behind `source_videos` and `decoded_frames`, plus lineage and error rows.

Pure functions over the data root: the Dagster assets and the plain-Python benchmark loop call
the same code.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from .sources import Catalog, SourceConfig, Sha256Cache, build_catalog, celebv_crop, seconds_to_frames
from .storage import DataRoot, atomic_write_bytes, atomic_write_parquet, keyed, remove_table_file, write_table

SOURCES_FILE = "sources.json"
CATALOG_TABLES = ("videos", "clips", "errors")


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- source config + catalog

def load_source_config(root: DataRoot) -> SourceConfig:
    path = root.catalog / SOURCES_FILE
    return SourceConfig.from_json(path.read_text()) if path.exists() else SourceConfig()


def save_source_config(root: DataRoot, config: SourceConfig) -> None:
    root.ensure()
    atomic_write_bytes(root.catalog / SOURCES_FILE, config.to_json().encode())


def refresh_catalog(root: DataRoot, config: SourceConfig | None = None) -> Catalog:
    """Scan the configured sources and persist the catalog (atomic, deterministic content)."""
    import polars as pl

    root.ensure()
    config = config or load_source_config(root)
    catalog = build_catalog(config, Sha256Cache(root.catalog / "sha256_cache.json"))
    frames = {
        "videos": pl.DataFrame(catalog.videos, infer_schema_length=None) if catalog.videos else None,
        "clips": pl.DataFrame(catalog.clips, infer_schema_length=None) if catalog.clips else None,
    }
    for name, df in frames.items():
        path = root.catalog / f"{name}.parquet"
        if df is None:
            path.unlink(missing_ok=True)
        else:
            atomic_write_parquet(df, path)
    # One error row per unreadable annotation file / clip; cleared when it becomes readable.
    stale = {p.stem for p in (root.tables / "errors").glob(f"*@sources.parquet")}
    for err in catalog.errors:
        key = keyed(err["video_id"], "sources")
        stale.discard(key)
        record_error(root, err["video_id"], "sources", err["message"], at="")
    for key in stale:
        remove_table_file(root, "errors", key)
    return catalog


def load_catalog(root: DataRoot) -> Catalog:
    """The persisted catalog, cached per process until its files change (every per-video step reads it)."""
    def stamp(name: str):
        path = root.catalog / f"{name}.parquet"
        try:
            st = path.stat()
            return str(path), st.st_size, st.st_mtime_ns
        except FileNotFoundError:
            return str(path), None, None

    return _load_catalog_cached(stamp("videos"), stamp("clips"))


@functools.lru_cache(maxsize=4)
def _load_catalog_cached(videos_stamp, clips_stamp) -> Catalog:
    import polars as pl

    def rows(stamp) -> list[dict]:
        return pl.read_parquet(stamp[0]).to_dicts() if stamp[1] is not None else []

    return Catalog(rows(videos_stamp), rows(clips_stamp), [])


# --------------------------------------------------------------------------- errors + lineage

def record_error(root: DataRoot, video_id: str, stage: str, message: str, at: str | None = None) -> None:
    import polars as pl

    # `at` is kept out of source-scan errors ("") so rescans rewrite identical bytes.
    df = pl.DataFrame({"video_id": [video_id], "stage": [stage], "message": [message], "at": [now_iso() if at is None else at]})
    write_table(root, "errors", keyed(video_id, stage), df)


def clear_error(root: DataRoot, video_id: str, stage: str) -> None:
    remove_table_file(root, "errors", keyed(video_id, stage))


def record_lineage(root: DataRoot, asset: str, partition: str, code_version: str, run_id: str,
                   input_fingerprint: str, rows: int, model_versions: dict | None = None) -> None:
    import polars as pl

    df = pl.DataFrame({
        "asset": [asset], "partition": [partition], "code_version": [code_version],
        "model_versions": [json.dumps(model_versions or {}, sort_keys=True)], "run_id": [run_id],
        "input_fingerprint": [input_fingerprint], "rows": [rows], "at": [now_iso()],
    })
    write_table(root, "lineage", keyed(partition or "all", asset), df)


def lineage_fingerprint(root: DataRoot, asset: str, partition: str) -> str | None:
    import polars as pl

    path = root.table_file("lineage", keyed(partition, asset))
    if not path.exists():
        return None
    return pl.read_parquet(path)["input_fingerprint"][0]


def fingerprint(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


# --------------------------------------------------------------------------- source_videos

@dataclass
class SourceVideoResult:
    video: dict
    clips: list[dict]
    warnings: list[str]


def probe_source_video(video: dict, clips: list[dict], sha_cache: Sha256Cache) -> SourceVideoResult:
    """Probe one catalog video, hash it, and resolve every clip window to file frame indices.

    Raises video.VideoError (a clear message) for a file that cannot be decoded.
    """
    from .video import probe_video

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
    import polars as pl

    vid = result.video["video_id"]
    write_table(root, "videos", vid, pl.DataFrame([result.video], infer_schema_length=None))
    clip_rows = [{k: v for k, v in c.items() if k not in {"whole_file", "annotated_size"}} for c in result.clips]
    write_table(root, "clips", vid, pl.DataFrame(clip_rows, infer_schema_length=None) if clip_rows else
                pl.DataFrame({"clip_id": [], "video_id": []}, schema={"clip_id": pl.Utf8, "video_id": pl.Utf8}))


def write_failed_video(root: DataRoot, video: dict, message: str) -> None:
    """A failed partition still leaves a `videos` row (status failed) and an `errors` row."""
    import polars as pl

    row = dict(video, status="failed", error=message)
    write_table(root, "videos", video["video_id"], pl.DataFrame([row], infer_schema_length=None))
    remove_table_file(root, "clips", video["video_id"])
    remove_table_file(root, "frames", video["video_id"])
    record_error(root, video["video_id"], "source_videos", message)


# --------------------------------------------------------------------------- decoded_frames

def clip_windows(clips: list[dict]):
    from .video import ClipWindow

    return [ClipWindow(c["clip_id"], int(c["start_frame"]), int(c["end_frame"]),
                       tuple(int(v) for v in c["crop"]) if c.get("crop") is not None else None) for c in clips]


# --------------------------------------------------------------------------- settings

def parse_sampling(spec: str):
    """'all' (every frame, as EFHQ), 'fps:N' (target fps) or 'max:N' (at most N evenly spaced per clip)."""
    from .video import SamplingPolicy

    spec = (spec or "all").strip().lower()
    if spec == "all":
        return SamplingPolicy("all", 0.0)
    kind, _, value = spec.partition(":")
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if kind in {"fps", "max", "max_n"} and number > 0:
        return SamplingPolicy("fps" if kind == "fps" else "max_n", number)
    raise ValueError(f"sampling {spec!r}: use 'all', 'fps:<frames per second>' or 'max:<frames per clip>'")


def decode_frames(video: dict, clips: list[dict], policy, preview_count: int = 6, on_progress=None):
    """One streaming pass over the file: the `frames` rows plus a few small preview thumbnails.

    Pixels are discarded after hashing; only `preview_count` thumbnails (evenly spread over the
    kept frames, chosen by index so the pass stays streaming) survive, for the UI.
    """
    import cv2
    import polars as pl

    from .video import iter_clip_frames

    windows = clip_windows(clips)
    expected = sum(len(policy.indices(w.start_frame, w.end_frame, float(video["fps"]))) for w in windows)
    wanted = {round(i * (expected - 1) / max(preview_count - 1, 1)) for i in range(preview_count)} if expected else set()
    rows, previews = [], []
    for n, frame in enumerate(iter_clip_frames(video["path"], windows, policy)):
        rows.append({"video_id": video["video_id"], "clip_id": frame.clip_id, "frame_index": frame.frame_index,
                     "pts_s": frame.pts_s, "width": frame.width, "height": frame.height,
                     "crop_x0": frame.origin[0], "crop_y0": frame.origin[1], "frame_hash": frame.frame_hash})
        if n in wanted and frame.image is not None:
            h, w = frame.image.shape[:2]
            scale = 96 / max(h, w)
            previews.append(cv2.resize(frame.image, (max(1, int(w * scale)), max(1, int(h * scale))),
                                       interpolation=cv2.INTER_AREA))
        if on_progress and n % 200 == 0:
            on_progress(n, expected)
    df = pl.DataFrame(rows, infer_schema_length=None) if rows else None
    if df is not None:
        df = df.sort(["clip_id", "frame_index"])
    return df, previews


def preview_strip_png(images, ext: str = ".png", quality: int = 80) -> bytes | None:
    """A single strip of small thumbnails (for materialization metadata), PNG or (ext=".jpg") JPEG."""
    import cv2
    import numpy as np

    if not images:
        return None
    height = max(i.shape[0] for i in images)
    padded = [cv2.copyMakeBorder(i, 0, height - i.shape[0], 0, 2, cv2.BORDER_CONSTANT, value=(0, 0, 0)) for i in images]
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext == ".jpg" else []
    ok, buf = cv2.imencode(ext, np.hstack(padded), params)
    return buf.tobytes() if ok else None
