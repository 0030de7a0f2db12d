"""`decoded_frames`: the sampling policy (the `sampling` setting) and one streaming decode of a video's clip
windows into `frames` rows plus a few preview thumbnails. Pixels are never written to disk."""

from __future__ import annotations

import cv2
import numpy as np
import polars as pl

from .video import SamplingPolicy, clip_windows, iter_clip_frames


def parse_sampling(spec: str):
    """'all' (every frame, as EFHQ), 'fps:N' (target fps) or 'max:N' (at most N evenly spaced per clip)."""
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
    if not images:
        return None
    height = max(i.shape[0] for i in images)
    padded = [cv2.copyMakeBorder(i, 0, height - i.shape[0], 0, 2, cv2.BORDER_CONSTANT, value=(0, 0, 0)) for i in images]
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext == ".jpg" else []
    ok, buf = cv2.imencode(ext, np.hstack(padded), params)
    return buf.tobytes() if ok else None
