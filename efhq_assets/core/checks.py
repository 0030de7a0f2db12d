"""Data checks run inside the per-video assets (blocking where a bad result would poison downstream).

Each returns (passed, details) so the Dagster layer can attach them as asset check results and
tests can call them directly.
"""

from __future__ import annotations

import math
from collections import Counter

from .bins import bin_pose

ANGLE_LIMITS = {"yaw": 180.0, "pitch": 90.0, "roll": 180.0}


def _dupes(keys) -> int:
    return sum(n - 1 for n in Counter(keys).values() if n > 1)


def check_faces(faces: list[dict]) -> tuple[bool, dict]:
    """Every face has a track; (clip, frame, face) is unique; boxes are well formed."""
    no_track = sum(1 for f in faces if f.get("track_id") is None)
    dupes = _dupes((f["clip_id"], f["frame_index"], f["face_index"]) for f in faces)
    bad_box = sum(1 for f in faces if not (f["x2"] > f["x1"] and f["y2"] > f["y1"]))
    return no_track == 0 and dupes == 0 and bad_box == 0, {"faces_without_track": no_track,
                                                           "duplicate_faces": dupes, "malformed_boxes": bad_box}


def check_poses(poses: list[dict], n_faces: int, estimators) -> tuple[bool, dict]:
    """One row per (face, estimator); angles within range; `combined` present for every face."""
    dupes = _dupes((p["clip_id"], p["frame_index"], p["face_index"], p["estimator"]) for p in poses)
    expected_rows = n_faces * (len(estimators) + 1)
    out_of_range = sum(1 for p in poses for a, lim in ANGLE_LIMITS.items()
                       if p[a] is not None and not (-lim - 1e-6 <= p[a] <= lim + 1e-6))
    nan_values = sum(1 for p in poses for a in ANGLE_LIMITS if p[a] is not None and math.isnan(p[a]))
    combined_missing = sum(1 for p in poses if p["estimator"] == "combined" and p["yaw"] is None)
    passed = dupes == 0 and len(poses) == expected_rows and out_of_range == 0 and nan_values == 0
    return passed, {"duplicate_rows": dupes, "rows": len(poses), "expected_rows": expected_rows,
                    "angles_out_of_range": out_of_range, "nan_values": nan_values,
                    "faces_without_combined_pose": combined_missing}


def check_bins(bins: list[dict], poses: list[dict]) -> tuple[bool, dict]:
    """Each face's `bin_combined` is what EFHQ's rules give for its combined angles."""
    combined = {(p["clip_id"], p["frame_index"], p["face_index"]): p for p in poses if p["estimator"] == "combined"}
    wrong = 0
    for b in bins:
        p = combined.get((b["clip_id"], b["frame_index"], b["face_index"]))
        expected = bin_pose(p["yaw"], p["pitch"]) if p else None
        wrong += expected != b["bin_combined"]
    dupes = _dupes((b["clip_id"], b["frame_index"], b["face_index"]) for b in bins)
    return wrong == 0 and dupes == 0, {"inconsistent_bins": wrong, "duplicate_faces": dupes}


def check_quality(rows: list[dict], score_range: tuple[float, float], strict: bool) -> tuple[bool, dict]:
    """Scores are finite (and inside the documented range when the scorer guarantees it)."""
    lo, hi = score_range
    not_finite = sum(1 for r in rows if r["score"] is None or not math.isfinite(r["score"]))
    outside = sum(1 for r in rows if r["score"] is not None and math.isfinite(r["score"]) and not lo <= r["score"] <= hi)
    brightness_bad = sum(1 for r in rows if not 0.0 <= r["brightness"] <= 255.0)
    passed = not_finite == 0 and brightness_bad == 0 and (outside == 0 or not strict)
    return passed, {"non_finite_scores": not_finite, "scores_outside_nominal_range": outside,
                    "brightness_out_of_range": brightness_bad}
