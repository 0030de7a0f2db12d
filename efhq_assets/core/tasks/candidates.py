"""The rows every split builder starts from: EFHQ-filtered faces joined with everything known about them.

One row per face that passes EFHQ's detector filter and was not reviewed as `remove`, with its
bin label, combined pose, quality, identity, landmarks and source attributes. Built from the
per-video tables (the manifest is compacted after the splits), so it works inside a run.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from ..face_crops import frame_runs
from ..quality import DEFAULT_SCORER, SCORERS, percentile_threshold
from ..storage import read_table_files
from .common import EFHQ_DROPPED_LABELS

KEY = ["video_id", "clip_id", "frame_index", "face_index"]


def quality_threshold(scores: np.ndarray, frozen: float | None, scorer: str) -> float:
    """The scorer's threshold. A percentile rule is computed once and then frozen in the data root's
    settings: recomputing it as videos arrive would move existing samples in or out of the splits."""
    spec = SCORERS[scorer]
    rule = spec.default_threshold
    if isinstance(rule, str) and rule.startswith("percentile:"):
        if frozen is not None:
            return float(frozen)
        return float(percentile_threshold(scores, float(rule.split(":", 1)[1]))) if len(scores) else 0.0
    return float(rule)


def candidate_rows(root, frozen_threshold: float | None = None,
                   drop_labels: tuple[str, ...] | None = None) -> tuple[list[dict], float | None]:
    """(rows, quality threshold used). Empty when nothing has been analysed yet.

    ``drop_labels`` (default :data:`common.EFHQ_DROPPED_LABELS`: ``confused``, ``profile_horizontal``,
    ``profile_vertical``, which EFHQ's review dropped): faces with these labels enter no split;
    ``()`` keeps them (the project's earlier behaviour)."""
    dropped = ["remove", *(EFHQ_DROPPED_LABELS if drop_labels is None else drop_labels)]
    import polars as pl

    faces = read_table_files(root, "faces")
    if faces is None:
        return [], frozen_threshold
    faces = faces.filter(pl.col("passes_efhq_filter"))
    bins = read_table_files(root, "bins", KEY + ["label", "softbin"])
    poses = read_table_files(root, "poses")
    quality = read_table_files(root, "quality", KEY + ["score", "scorer"])
    marks = read_table_files(root, "landmarks", KEY + ["lmk478"])
    idents = read_table_files(root, "identities", ["video_id", "track_id", "identity_id", "source_id"])
    clips = read_table_files(root, "clips", ["video_id", "clip_id", "youtube_id", "attributes"])
    videos = read_table_files(root, "videos", ["video_id", "path", "width", "height", "source", "status"])
    if any(t is None for t in (bins, poses, quality, videos)):
        return [], frozen_threshold
    combined = poses.filter(pl.col("estimator") == "combined").select(KEY + ["yaw", "pitch", "roll"])
    # `score` below is the quality score; the detector's score is kept as `detector_score`.
    df = (faces.drop(["detector", "detector_sha256"], strict=False).rename({"score": "detector_score"})
          .join(bins, on=KEY, how="inner")
          .filter(~pl.col("label").is_in(dropped))
          .join(combined, on=KEY, how="left")
          .join(quality, on=KEY, how="left"))
    if marks is not None:
        df = df.join(marks, on=KEY, how="left")
    else:
        df = df.with_columns(lmk478=pl.lit(None))
    if idents is not None:
        df = df.join(idents, on=["video_id", "track_id"], how="left")
    else:
        df = df.with_columns(identity_id=pl.lit(None, pl.Utf8), source_id=pl.lit(None, pl.Utf8))
    if clips is not None:
        df = df.join(clips, on=["video_id", "clip_id"], how="left")
    videos = videos.filter(pl.col("status") == "ok").rename(
        {"path": "video_path", "width": "frame_width", "height": "frame_height"}).drop("status")
    df = df.join(videos, on="video_id", how="inner")
    # A face whose track has no identity yet (identities run after) stands for itself.
    df = df.with_columns(identity_id=pl.coalesce(pl.col("identity_id"), pl.format("{}+t{}", "video_id", "track_id")))
    # Each face is judged by the threshold of the scorer that scored it: the offline scorer's frozen
    # percentile, or a fixed one (HyperIQA, as EFHQ's released `iqa` of rebuilt faces: iqa >= 42).
    df = df.with_columns(scorer=pl.col("scorer").fill_null(DEFAULT_SCORER))
    scores = df.filter(pl.col("scorer") == DEFAULT_SCORER)["score"].drop_nulls().to_numpy()
    threshold = quality_threshold(scores, frozen_threshold, DEFAULT_SCORER)
    cuts = {s: (threshold if s == DEFAULT_SCORER else quality_threshold(np.zeros(0), None, s))
            for s in df["scorer"].unique().to_list()}
    # (an empty mapping would give a String column: polars' replace_strict on no faces at all)
    cut = pl.col("scorer").replace_strict(cuts, return_dtype=pl.Float64) if cuts else pl.lit(None, pl.Float64)
    df = df.with_columns(quality_threshold=cut)
    df = df.with_columns(quality_pass=pl.col("score").fill_null(-1e9) >= pl.col("quality_threshold"))
    rows = df.sort(KEY).to_dicts()
    return rows, threshold


class FrameCache:
    """Frames for render functions, decoded per video in one pass (rows must be visited video by video).

    Thread-safe: an export's worker threads (tasks/common.ordered_parallel_map) share one cache, and a few videos
    stay decoded so that the threads still on the previous video's rows find its frames."""

    def __init__(self, rows: list[dict], max_videos: int = 3):
        self.wanted: dict[str, set[int]] = {}
        for r in rows:
            self.wanted.setdefault(r["video_path"], set()).add(int(r["frame_index"]))
        self.cache: OrderedDict[str, dict[int, np.ndarray]] = OrderedDict()
        self.max_videos = max_videos
        self._lock = threading.Lock()

    def frame(self, row: dict) -> np.ndarray | None:
        from ..video import ClipWindow, iter_clip_frames  # lazy: video imports av and cv2

        path = row["video_path"]
        with self._lock:
            if path not in self.cache:
                wanted = self.wanted.get(path, {int(row["frame_index"])})
                windows = [ClipWindow("_", a, b) for a, b in frame_runs(wanted)]
                self.cache[path] = {f.frame_index: f.image.copy() for f in iter_clip_frames(path, windows)
                                    if f.frame_index in wanted}
                while len(self.cache) > self.max_videos:
                    self.cache.popitem(last=False)
            return self.cache[path].get(int(row["frame_index"]))
