"""The `poses` table: head pose per face from each landmark estimator, plus their combination.

Long format (one row per face and estimator, `estimator='combined'` for the ensemble) so new
estimators add rows, not columns. Angles follow the one convention in `core/pose.py`.
"""

from __future__ import annotations

import hashlib

import numpy as np

LANDMARK_COLUMN = {"facemesh": ("lmk478", 478, 2), "dlib68": ("lmk68", 68, 2)}


def reference_sha256(estimator) -> str:
    """Landmark estimators have no weights; their 'model version' is the 3D reference they fit."""
    ref = np.ascontiguousarray(np.asarray(estimator.reference_3d, np.float64))
    idx = np.ascontiguousarray(np.asarray(estimator.landmark_indices, np.int64))
    return hashlib.sha256(ref.tobytes() + idx.tobytes()).hexdigest()


def pose_rows(landmark_rows: list[dict], estimator_names=("facemesh", "dlib68"), device=None) -> list[dict]:
    """Batched fits: one torch call per estimator over every face of the video."""
    from .pose import RELIABILITY_DEG, combine, get_estimator

    keys = ["video_id", "clip_id", "frame_index", "face_index"]
    n = len(landmark_rows)
    results: dict[str, tuple] = {}
    rows: list[dict] = []
    combined_sha = hashlib.sha256()
    for name in estimator_names:
        column, points, dims = LANDMARK_COLUMN[name]
        estimator = get_estimator(name)
        sha = reference_sha256(estimator)
        combined_sha.update(sha.encode())
        present = [i for i, r in enumerate(landmark_rows) if r.get(column) is not None]
        yaw, pitch, roll, res, conf = (np.full(n, np.nan) for _ in range(5))
        if present:
            lm = np.stack([np.asarray(landmark_rows[i][column], np.float32).reshape(points, dims)[:, :2] for i in present])
            est = estimator.estimate_batch(lm, device=device)
            for arr, values in zip((yaw, pitch, roll, res, conf), (est.yaw, est.pitch, est.roll, est.residual, est.confidence)):
                arr[present] = values
        results[name] = (yaw, pitch, roll)
        for i, r in enumerate(landmark_rows):
            rows.append({**{k: r[k] for k in keys}, "estimator": name, "yaw": yaw[i], "pitch": pitch[i], "roll": roll[i],
                         "residual": res[i], "confidence": conf[i], "weights_sha256": sha})
    cy, cp, cr = combine(results, {k: RELIABILITY_DEG[k] for k in results})
    sha = combined_sha.hexdigest()
    for i, r in enumerate(landmark_rows):
        rows.append({**{k: r[k] for k in keys}, "estimator": "combined", "yaw": cy[i], "pitch": cp[i], "roll": cr[i],
                     "residual": np.nan, "confidence": np.nan, "weights_sha256": sha})
    for row in rows:  # NaN is "no estimate": store NULL so SQL aggregates skip it
        for col in ("yaw", "pitch", "roll", "residual", "confidence"):
            if not np.isfinite(row[col]):
                row[col] = None
            else:
                row[col] = float(row[col])
    return rows
