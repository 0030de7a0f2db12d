"""Cut face crops on demand by re-decoding only the frames that hold the wanted faces.

Crops are never stored per frame (docs/architecture.md); stages that need pixels (quality, identity
embeddings, splits) stream the frames they need in one pass over the file.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterator

import numpy as np



def frame_runs(indices) -> list[tuple[int, int]]:
    """Sorted unique frame indices grouped into contiguous inclusive runs."""
    runs: list[tuple[int, int]] = []
    for i in sorted(set(int(v) for v in indices)):
        if runs and i == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return runs


def iter_faces_by_frame(video_path: str, faces: list[dict]) -> Iterator[tuple[np.ndarray, list[dict]]]:
    """Yield (full BGR frame, its face rows) for every frame that holds one of `faces`, in file order."""
    from .video import ClipWindow, iter_clip_frames  # lazy: video imports av and cv2

    by_frame: dict[int, list[dict]] = defaultdict(list)
    for face in faces:
        by_frame[int(face["frame_index"])].append(face)
    windows = [ClipWindow("_", a, b) for a, b in frame_runs(by_frame)]
    for frame in iter_clip_frames(video_path, windows):
        if frame.frame_index in by_frame:
            yield frame.image, by_frame[frame.frame_index]


def pick_track_faces(faces: list[dict], per_track: int = 3) -> list[dict]:
    """Up to `per_track` faces per track, EFHQ-passing first, then highest score, spread over the track."""
    by_track: dict[int, list[dict]] = defaultdict(list)
    for f in faces:
        by_track[f["track_id"]].append(f)
    chosen = []
    for track_id in sorted(by_track):
        members = sorted(by_track[track_id],  # imported EFHQ faces have no detector score
                         key=lambda f: (not f["passes_efhq_filter"], -(f["score"] or 0.0), f["frame_index"]))
        good = members[: max(per_track * 4, per_track)]
        good.sort(key=lambda f: f["frame_index"])
        step = max(len(good) / per_track, 1.0)
        chosen.extend(good[int(i * step)] for i in range(min(per_track, len(good))))
    return chosen
