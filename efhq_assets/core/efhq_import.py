"""Faces, landmarks and poses from EFHQ's released per-frame metadata instead of the models.

`efhq build --efhq-metadata FILE.csv --videos DIR` rebuilds the task outputs for the frames EFHQ
listed: detection and pose are skipped for those videos (their rows come from the file, converted to
the project's conventions by core/efhq_metadata.py), while quality, identities, bins and splits run
as usual on the re-decoded frames.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np

IMPORTED_ESTIMATORS = ("synergy", "poseanh", "mhp")
DETECTOR_NAME = "efhq_metadata"


@functools.lru_cache(maxsize=8)
def _read(path: str, size: int, mtime_ns: int) -> tuple[list[dict], str]:
    from .efhq_metadata import read_efhq_metadata

    return read_efhq_metadata(path), hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_metadata(path: str) -> tuple[list[dict], str]:
    st = Path(path).stat()
    return _read(str(path), st.st_size, st.st_mtime_ns)


def metadata_stamp(path: str | None):
    if not path:
        return None
    try:
        st = Path(path).stat()
        return [path, st.st_size, st.st_mtime_ns]
    except FileNotFoundError:
        return [path, None, None]


def import_video(video: dict, clips: list[dict]):
    """(faces rows, landmarks rows, pose rows, metadata sha256) for a video whose clips carry EFHQ
    metadata, or None when none does. Coordinates end up in full source-frame pixels: VFHQ rows
    already are; CelebV rows are in EFHQ's crop and get the crop origin added back."""
    from .efhq_metadata import file_frame_index, from_clip_coordinates
    from .faces import landmark_list

    meta_clips = [c for c in clips if c.get("efhq_metadata")]
    if not meta_clips:
        return None
    faces, marks, poses, shas = [], [], [], []
    per_frame: dict[int, int] = {}
    next_track = 0
    for clip in meta_clips:
        rows, sha = read_metadata(clip["efhq_metadata"])
        shas.append(sha)
        tracks: dict[int, int] = {}
        for r in sorted((r for r in rows if r["video_id"] == clip["clip_id"]),
                        key=lambda r: (float(str(r["frameid"]).split(".")[0]), r.get("face_idx") or 0)):
            index = file_frame_index(r, first_frame=int(clip["start_frame"]))
            if not int(clip["start_frame"]) <= index <= int(clip["end_frame"]):
                continue
            if r["dataset"] == "celebv" and clip.get("crop") is not None:
                r = from_clip_coordinates(r, clip["crop"])
            face_index = per_frame.get(index, 0)
            per_frame[index] = face_index + 1
            slot = int(r.get("face_idx") or 0)
            if slot not in tracks:
                tracks[slot], next_track = next_track, next_track + 1
            key = {"video_id": video["video_id"], "clip_id": clip["clip_id"], "frame_index": index,
                   "face_index": face_index}
            x1, y1, x2, y2 = (float(v) for v in r["box"])
            faces.append({**key, "track_id": tracks[slot], "x1": x1, "y1": y1, "x2": x2, "y2": y2, "score": None,
                          "lmk5": np.asarray(r["lmk5"], np.float64).reshape(-1).tolist(),
                          "passes_efhq_filter": True, "detector": DETECTOR_NAME, "detected": True})
            lmk68 = r.get("lmk68")
            marks.append({**key, "lmk478": None, "lmk68": None if lmk68 is None else landmark_list(np.asarray(lmk68))})
            for name in IMPORTED_ESTIMATORS:
                angles = (r.get("angles") or {}).get(name)
                yaw, pitch, roll = (None, None, None) if angles is None else (
                    None if not np.isfinite(a) else float(a) for a in angles)
                poses.append({**key, "estimator": name, "yaw": yaw, "pitch": pitch, "roll": roll})
    return faces, marks, poses, hashlib.sha256("".join(sorted(shas)).encode()).hexdigest()


def imported_pose_rows(rows: list[dict], sha: str) -> list[dict]:
    """The imported estimators plus `combined` (their mean per angle: EFHQ published no reliabilities)."""
    out = [dict(r, residual=None, confidence=None, weights_sha256=sha) for r in rows]
    by_face: dict[tuple, list[dict]] = {}
    for r in rows:
        by_face.setdefault((r["video_id"], r["clip_id"], r["frame_index"], r["face_index"]), []).append(r)
    for key, members in by_face.items():
        combined = {}
        for angle in ("yaw", "pitch", "roll"):
            values = [m[angle] for m in members if m[angle] is not None]
            combined[angle] = float(np.mean(values)) if values else None
        out.append({"video_id": key[0], "clip_id": key[1], "frame_index": key[2], "face_index": key[3],
                    "estimator": "combined", **combined, "residual": None, "confidence": None, "weights_sha256": sha})
    return out
