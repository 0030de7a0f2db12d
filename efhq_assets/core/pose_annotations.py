"""The `poses` table: head pose per face from each landmark estimator, plus their combination.

Long format (one row per face and estimator, `estimator='combined'` for the ensemble) so new
estimators add rows, not columns. Angles follow the one convention in `core/pose/convention.py`.
"""

from __future__ import annotations

import hashlib

import numpy as np

LANDMARK_COLUMN = {"facemesh": ("lmk478", 478, 2), "dlib68": ("lmk68", 68, 2)}


def reference_sha256(estimator) -> str:
    """Landmark estimators have no weights; their 'model version' is the 3D reference they fit (and the points'
    weights, where they have any)."""
    ref = np.ascontiguousarray(np.asarray(estimator.reference_3d, np.float64))
    idx = np.ascontiguousarray(np.asarray(estimator.landmark_indices, np.int64))
    h = hashlib.sha256(ref.tobytes() + idx.tobytes())
    for w in (getattr(estimator, "weights", None), getattr(estimator, "yaw_weights", None)):
        if w is not None:
            h.update(np.ascontiguousarray(np.asarray(w, np.float64)).tobytes())
    if getattr(estimator, "yaw_weights", None) is not None:
        h.update(repr((float(estimator.yaw_weights_below), float(estimator.yaw_weights_fade))).encode())
    return h.hexdigest()


DLIB_YAW_LIMIT = 35.0  # dlib's 68-point predictor was trained on 300-W faces, mostly within this yaw
DLIB_TURNED_STD_FACTOR = 1e6  # i.e. left out of the combination
DLIB_ANSWER_LIMIT = 45.0  # beyond this combined |yaw| the dlib68 row is empty (no answer): EFHQ's profile cut


def face_reliabilities(results: dict[str, tuple]) -> dict[str, tuple]:
    """Per-face reliabilities: the measured ones, with dlib68 dropped on turned faces.

    The head-turn benchmark (benchmarks/pose_accuracy.py) showed dlib's predictor breaking past
    about 40 degrees of yaw (error 20 deg at 30-50, 52 deg at 60) without its fit residual
    noticing, so on faces FaceMesh reads as turned beyond dlib's training range, or where the two
    disagree by more than 15 degrees, dlib's std is multiplied by 1e6: it no longer counts
    (a factor of 10 still let it pull turned faces toward 0). The limits come from the training
    data range, not from fitting the benchmark renders.
    """
    from .pose.estimators import RELIABILITY_DEG

    rel = {k: tuple(np.full(len(results[k][0]), v, float) for v in RELIABILITY_DEG[k]) for k in results}
    if "dlib68" in results and "facemesh" in results:
        fm_yaw, dl_yaw = np.asarray(results["facemesh"][0], float), np.asarray(results["dlib68"][0], float)
        with np.errstate(invalid="ignore"):
            turned = (np.abs(fm_yaw) > DLIB_YAW_LIMIT) | (np.abs(fm_yaw - dl_yaw) > 15.0)
        factor = np.where(turned, DLIB_TURNED_STD_FACTOR, 1.0)
        rel["dlib68"] = tuple(s * factor for s in rel["dlib68"])
    return rel


def pinhole_camera(width: float, height: float, focal_factor: float = 1.0) -> tuple[float, float, float]:
    """The camera assumed for a frame with no calibration: focal length = ``focal_factor`` x the longer
    side, principal point at the centre (factor 1: a ~53 deg horizontal field of view on a landscape
    frame, the usual guess for phone and webcam video, and the one OpenCV's head-pose examples use)."""
    return float(focal_factor * max(width, height)), width / 2.0, height / 2.0


POSE_CAMERA_DEFAULT = "frame"


def parse_pose_camera(setting: str) -> float | None:
    """The `pose_camera` setting -> the focal length as a multiple of the frame's longer side, or None for
    weak perspective.  ``frame`` (default): 1, the uncalibrated pinhole guess; ``weak``: no perspective
    (right for videos that are already tight face crops, whose real focal length is several times the
    crop: with f = the crop side a perspective fit reads yaw 30 as ~26 on such frames); ``f:K``: K x
    the longer side (K > 0)."""
    value = str(setting).strip().lower()
    if value == "frame":
        return 1.0
    if value == "weak":
        return None
    if value.startswith("f:"):
        try:
            factor = float(value[2:])
        except ValueError:
            factor = float("nan")
        if factor > 0 and np.isfinite(factor):
            return factor
    raise ValueError(f"pose camera must be 'frame', 'weak' or 'f:K' with K > 0 (focal = K x the frame's longer "
                     f"side), got {setting!r}")


def video_camera(video: dict, setting: str = POSE_CAMERA_DEFAULT) -> tuple[float, float, float] | None:
    """The camera `pose_rows` gets for a video row (its full frame's width and height), per the setting."""
    factor = parse_pose_camera(setting)
    if factor is None or not video.get("width") or not video.get("height"):
        return None
    return pinhole_camera(video["width"], video["height"], factor)


def attach_faces(landmark_rows: list[dict], face_rows: list[dict]) -> list[dict]:
    """The landmark rows with each face's detector points (``lmk5``) and ``track_id`` from the `faces` table, which
    :func:`pose_rows` uses for its five-point fallback and its temporal outlier rejection."""
    key = ("clip_id", "frame_index", "face_index")
    faces = {tuple(f[k] for k in key): f for f in face_rows}
    out = []
    for r in landmark_rows:
        f = faces.get(tuple(r[k] for k in key), {})
        out.append({**r, "lmk5": f.get("lmk5"), "track_id": f.get("track_id")})
    return out


def pose_rows(landmark_rows: list[dict], estimator_names=("facemesh", "dlib68"), device=None,
              camera: tuple[float, float, float] | None = None) -> list[dict]:
    """Batched fits: one torch call per estimator over every face of the video.

    Rows may carry ``lmk5`` (the detector's five points) and ``track_id`` (:func:`attach_faces`): the combined pose
    then takes the five points' yaw where FaceMesh has no fit or reads less than their profile reading
    (:func:`efhq_assets.core.pose.large_yaw.profile_takeover`), and isolated single-frame yaw spikes along a track are rejected
    (:func:`efhq_assets.core.pose.large_yaw.reject_track_outliers`), as are short runs of profiles read on the wrong
    side (:func:`efhq_assets.core.pose.large_yaw.fix_side_flips`). FaceMesh's own yaw gets the large-yaw gain correction
    (:func:`efhq_assets.core.pose.large_yaw.expand_large_yaw`), and its pitch the gain it lacks on pitched heads
    (:func:`efhq_assets.core.pose.pitch_gain.expand_pitch`).
    A FaceMesh fit that puts the nose far from the detector's nose point latched onto another shape and gives no
    answer (:func:`efhq_assets.core.pose.large_yaw.facemesh_disagrees`).

    ``camera`` = ``(focal_px, cx, cy)`` of the video's full frame (see :func:`pinhole_camera`; landmarks
    are in full-frame pixels even for cropped clips): the fit is then perspective (POSIT-style,
    core/pose/fit.py); without it, weak perspective.
    """
    from .pose.estimators import combine, get_estimator
    from .pose.large_yaw import (FACEMESH_WRONG_SHAPE_GAP, expand_large_yaw, facemesh_disagrees, fix_side_flips,
                                 lmk5_pose, profile_takeover, reject_track_outliers)
    from .pose.pitch_gain import expand_pitch

    keys = ["video_id", "clip_id", "frame_index", "face_index"]
    n = len(landmark_rows)
    l5 = np.full((n, 10), np.nan)  # the detector's five points, where the rows carry them
    for i, r in enumerate(landmark_rows):
        if r.get("lmk5") is not None and len(r["lmk5"]) == 10:
            l5[i] = np.asarray(r["lmk5"], np.float64)
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
            cameras = None if camera is None else (camera[0], (camera[1], camera[2]))
            est = estimator.estimate_batch(lm, device=device, cameras=cameras)
            for arr, values in zip((yaw, pitch, roll, res, conf), (est.yaw, est.pitch, est.roll, est.residual, est.confidence)):
                arr[present] = values
            if name == "facemesh":
                yaw = expand_large_yaw(yaw)  # FaceMesh's saturation past ~58 degrees (core/pose/large_yaw.py)
                pitch = expand_pitch(pitch, yaw)  # a nod followed only part way (core/pose/pitch_gain.py)
                # landmarks that put the nose far from the detector's latched onto another shape: no answer
                # (a rolled full profile read as frontal would vote for the wrong bin; core/pose/large_yaw.py)
                off = np.zeros(n, bool)
                off[present] = facemesh_disagrees(lm, l5[present])
                yaw, pitch, roll = (np.where(off, np.nan, a) for a in (yaw, pitch, roll))
        results[name] = (yaw, pitch, roll)
        for i, r in enumerate(landmark_rows):
            rows.append({**{k: r[k] for k in keys}, "estimator": name, "yaw": yaw[i], "pitch": pitch[i], "roll": roll[i],
                         "residual": res[i], "confidence": conf[i], "weights_sha256": sha, "_i": i})
    cy, cp, cr = combine(results, face_reliabilities(results))
    if "facemesh" in results:
        # dlib68 alone never makes a combined pose: FaceMesh loses mostly profile faces, and dlib reads
        # those as near frontal (head-turn benchmark, |yaw| 70-80: combined error 41.7 deg with this
        # fallback vs 21.6 for FaceMesh where it answers). No pose beats a wrong bin.
        fm_yaw = results["facemesh"][0]
        lost = ~np.isfinite(fm_yaw)
        cy, cp, cr = (np.where(lost, np.nan, a) for a in (cy, cp, cr))
        # The detector's five points instead where FaceMesh has no fit (beyond ~80 degrees its landmark model finds
        # no face), or where they read a profile beyond FaceMesh's saturated reading (core/pose/large_yaw.py
        # profile_takeover). Pitch and roll stay FaceMesh's where it has a fit of the right shape (the five points'
        # pitch on every taken-over face instead: pitch error at 60-75 degrees 9.0 vs 7.6 held out, 12.0 vs 7.7 tune,
        # on benchmarks/pose_accuracy.py's renders).
        y5, p5, r5 = lmk5_pose(l5)
        use5, y5 = profile_takeover(fm_yaw, y5)
        with np.errstate(invalid="ignore"):
            wrong_shape = lost | (np.abs(y5) - np.abs(fm_yaw) >= FACEMESH_WRONG_SHAPE_GAP)
        cy = np.where(use5, y5, cy)
        cp, cr = (np.where(use5 & wrong_shape, b, a) for a, b in ((cp, p5), (cr, r5)))
    # temporal outlier rejection along tracks (rows carry track_id when the caller has it)
    if any(r.get("track_id") is not None for r in landmark_rows):
        tracks = [None if r.get("track_id") is None else (r["clip_id"], r["track_id"]) for r in landmark_rows]
        frames = [r["frame_index"] for r in landmark_rows]
        cy, _ = fix_side_flips(cy, tracks, frames)  # profiles read on the wrong side, between the right side's
        cy, _ = reject_track_outliers(cy, tracks, frames)
    # dlib68's predictor (300-W, mostly within +-35 degrees) reads turned faces as near frontal: beyond its range
    # (by the combined pose) it gives no answer, so its misreading does not vote in EFHQ's softbin.
    with np.errstate(invalid="ignore"):
        beyond = np.abs(cy) > DLIB_ANSWER_LIMIT
    for row in rows:
        if row["estimator"] == "dlib68" and beyond[row.pop("_i")]:
            row["yaw"] = row["pitch"] = row["roll"] = np.nan
        row.pop("_i", None)
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


def yaw_sources(rows: list[dict], landmark_rows: list[dict]) -> dict[str, int]:
    """What :func:`pose_rows` made of a video's faces, for the asset's metadata: FaceMesh fits dropped by the shape
    check (landmarks present, no ``facemesh`` answer), and combined yaws that are not FaceMesh's (the five points'
    profile reading, a lost face's, a side flipped back or a single-frame spike replaced along its track)."""
    def key(r):
        return r["clip_id"], r["frame_index"], r["face_index"]

    with_mesh = {key(r) for r in landmark_rows if r.get("lmk478") is not None}
    fm = {key(r): r["yaw"] for r in rows if r["estimator"] == "facemesh"}
    dropped = sum(1 for k in with_mesh if fm.get(k) is None)
    five = sum(1 for r in rows if r["estimator"] == "combined" and r["yaw"] is not None
               and (fm.get(key(r)) is None or abs(r["yaw"] - fm[key(r)]) > 1e-6))
    return {"facemesh_fits_dropped": dropped, "combined_yaw_not_facemesh": five}
