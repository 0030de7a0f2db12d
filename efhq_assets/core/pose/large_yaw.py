"""Reading large yaw right (issue 21; docs/pose_accuracy.md).

On the head-turn benchmark's renders FaceMesh's landmarks saturate past ~58 degrees, so the pipeline stretches
FaceMesh's yaw beyond that (:func:`expand_large_yaw`, fitted on the tune people), falls back to the detector's
five points where FaceMesh has no fit or reads less than their profile reading (:func:`lmk5_pose`,
:func:`profile_takeover`), and rejects isolated spikes along a track (:func:`reject_track_outliers`).  numpy only.
"""

from __future__ import annotations

import numpy as np

__all__ = ["LARGE_YAW_KNEE", "LARGE_YAW_SLOPE", "expand_large_yaw", "LMK5_PROFILE_YAW", "LANDMARK_MODEL_RANGE_DEG",
           "LOST_PROFILE_YAW", "FACEMESH_UNDER_READ_GAP", "FACEMESH_WRONG_SHAPE_GAP", "FACEMESH_NOSE_GAP",
           "facemesh_disagrees", "lmk5_pose", "profile_takeover", "fix_side_flips", "reject_track_outliers"]


#: FaceMesh's landmark model saturates on turned faces: past ~58 degrees its landmarks keep the shape of a ~60
#: degree face (tune people of the head-turn benchmark: a fitted yaw of 60-65 came from true 60-80, median 65,
#: 65-70 from true 70-80), and weighting the landmarks by their visibility under the fitted pose made it worse
#: (it trusts the visible half, which is the part that saturates).  Beyond the knee the fitted yaw is stretched
#: by the slope (knee + (|yaw| - knee) x slope, at most 90): a gain correction of the landmarker, fitted on the
#: tune people only and reported on the held-out ones.  Below the knee nothing changes.
LARGE_YAW_KNEE = 58.0
LARGE_YAW_SLOPE = 2.0


def expand_large_yaw(yaw) -> np.ndarray:
    """FaceMesh fit yaw -> yaw with the large-yaw gain correction (:data:`LARGE_YAW_KNEE`)."""
    y = np.asarray(yaw, np.float64)
    a = np.abs(y)
    out = np.where(a > LARGE_YAW_KNEE, np.sign(y) * np.minimum(LARGE_YAW_KNEE + (a - LARGE_YAW_KNEE) * LARGE_YAW_SLOPE,
                                                                90.0), y)
    return out


#: Yaw from the detector's five points (eye centres, nose tip, mouth corners), for faces whose FaceMesh fit is
#: missing or contradicts them: the eyes' spacing across the eye-to-mouth axis over the eye-to-mouth distance
#: (rotation and scale invariant) shrinks as the head turns; its sign comes from which side of that axis the nose
#: tip lies.  Table: the median ratio at |yaw| 0, 10, ..., 80 of the tune people's renders (MTCNN's points
#: stop moving past 80, so the smallest ratio reads 85, the middle of EFHQ's 80-90 step).
LMK5_EYE_RATIO = (0.362, 0.435, 0.527, 0.638, 0.749, 0.805, 0.857, 0.906, 0.927)
LMK5_EYE_YAW = (85.0, 70.0, 60.0, 50.0, 40.0, 30.0, 20.0, 10.0, 0.0)
#: pitch from where the nose tip lies between the eyes and the mouth (0.5 = level; frontal tune renders: pitch
#: -20 / 0 / +20 at 0.68 / 0.51 / 0.39); on profiles this barely moves, so it reads close to 0 there.
LMK5_PITCH_PER_UNIT = -140.0
LMK5_NOSE_LEVEL = 0.51
#: The five points read a profile from here on.  Past it they take over from FaceMesh wherever they read more
#: (:func:`profile_takeover`).
LMK5_PROFILE_YAW = 55.0
#: FaceMesh finds no face beyond about this yaw: neither its static mode on two crops nor its landmark model alone
#: on the box's region, plain or mirrored (head-turn renders of six people, 36 views per angle: no face lost up to
#: 60 degrees, 2 lost at 70, 20 at 80, 35 at 90; docs/pose_accuracy.md).
LANDMARK_MODEL_RANGE_DEG = 80.0
#: A face FaceMesh cannot fit at all whose five points read it turned at least this much (EFHQ's profile boundary)
#: is beyond FaceMesh's range and reads at least :data:`LANDMARK_MODEL_RANGE_DEG`.  On rolled profiles MTCNN's
#: points read 48-54 at a true 70-90 (tune people of the head-turn benchmark, roll +-15), under the five-point
#: profile threshold; every face FaceMesh lost there was at 70 degrees or more.
LOST_PROFILE_YAW = 45.0
#: Where the five points read a turned face (>= :data:`LOST_PROFILE_YAW`) and at least this much more than FaceMesh,
#: they take over below :data:`LMK5_PROFILE_YAW` too: on rolled profiles FaceMesh's static mode latches onto a
#: nearer-frontal shape (a true 80 read as 10-35) while the five points read 45-54 (tune people, roll 15: profile
#: recall 0.933 -> 0.956, yaw MAE 75-90 12.9 -> 10.9, frontal read as profile unchanged).
FACEMESH_UNDER_READ_GAP = 15.0
#: Where the five points read at least this much more than FaceMesh, FaceMesh's landmarks latched onto a wrong
#: (near frontal) shape, seen on full profiles it followed: its pitch and roll are dropped too, for the five points'.
FACEMESH_WRONG_SHAPE_GAP = 30.0


#: FaceMesh's nose tip (mesh point 1) and the detector's nose point mark the same spot.  Where they lie more than
#: this many eye-to-mouth distances (the five points' own scale) apart, FaceMesh's landmarks latched onto another
#: shape, and its fit is dropped (:func:`facemesh_disagrees`).  Chosen on the tune people of the head-turn
#: benchmark: every FaceMesh fit within 15 degrees of the truth lies at most 0.41 away (median 0.10); on rolled full
#: profiles FaceMesh's static mode latches onto a near-frontal or even mirrored shape (a true 90 read as 4) with
#: its nose up to 1.5 away.  Dropping those fits: yaw gain 0-90 0.957 -> 0.977, yaw MAE 75-90 10.9 -> 7.7, no
#: change at |yaw| <= 60.
FACEMESH_NOSE_GAP = 0.5


def _eye_mouth_axis(p: np.ndarray):
    """(B, 5, 2) five points -> eyes' mean, mouth's mean, the axis between them and its length."""
    em = (p[:, 0] + p[:, 1]) / 2
    mm = (p[:, 3] + p[:, 4]) / 2
    v = mm - em
    return em, mm, v, np.linalg.norm(v, axis=1)


def facemesh_disagrees(lmk478, lmk5) -> np.ndarray:
    """(B, 478, 2+) FaceMesh landmarks and (B, 10) or (B, 5, 2) detector points of the same faces -> (B,) bool: the
    two place the nose more than :data:`FACEMESH_NOSE_GAP` eye-to-mouth distances apart.  False where either is
    missing (NaN)."""
    m = np.asarray(lmk478, np.float64)
    p = np.asarray(lmk5, np.float64).reshape(-1, 5, 2)
    if m.size == 0:
        return np.zeros(len(p), bool)
    scale = _eye_mouth_axis(p)[3]
    gap = np.linalg.norm(m[:, 1, :2] - p[:, 2], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nan_to_num(gap / scale, nan=0.0, posinf=0.0) > FACEMESH_NOSE_GAP


def lmk5_pose(lmk5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(B, 5, 2) or (B, 10) five points (image-left eye, image-right eye, nose, mouth left, mouth right) -> yaw,
    pitch, roll (B,) degrees, NaN where a face has no finite points."""
    p = np.asarray(lmk5, np.float64).reshape(-1, 5, 2)
    em, mm, v, h = _eye_mouth_axis(p)
    with np.errstate(invalid="ignore", divide="ignore"):
        u = np.stack([v[:, 1], -v[:, 0]], axis=1) / h[:, None]  # across the face, toward image right when upright
        vd = v / h[:, None]
        eye = np.abs(((p[:, 1] - p[:, 0]) * u).sum(1)) / h
        nose = ((p[:, 2] - (em + mm) / 2) * u).sum(1) / h
        down = ((p[:, 2] - em) * vd).sum(1) / h
    yaw = np.interp(eye, LMK5_EYE_RATIO, LMK5_EYE_YAW) * np.where(nose < 0, -1.0, 1.0)
    pitch = np.clip(LMK5_PITCH_PER_UNIT * (down - LMK5_NOSE_LEVEL), -60, 60)
    roll = np.degrees(np.arctan2(-v[:, 0], v[:, 1]))
    bad = ~(np.isfinite(eye) & np.isfinite(nose) & (h > 0))
    return tuple(np.where(bad, np.nan, a) for a in (yaw, pitch, roll))


def profile_takeover(facemesh_yaw, lmk5_yaw) -> tuple[np.ndarray, np.ndarray]:
    """Where the detector's five points give the yaw instead of FaceMesh, and what they read there.

    FaceMesh's landmarks saturate on turned faces, so its fit reads profiles low (head-turn renders, tune people,
    after :func:`expand_large_yaw`: bias -5 deg at 60, -19 at 70, -44 at 80).  The five points' eye ratio changes
    fastest where FaceMesh saturates (bias within +-3 deg at 60-80 on the same views).  So the five points take
    over (1) where FaceMesh has no fit, (2) where they read a profile (>= :data:`LMK5_PROFILE_YAW`) and more
    than FaceMesh, and (3) where they read a turned face (>= :data:`LOST_PROFILE_YAW`) at least
    :data:`FACEMESH_UNDER_READ_GAP` more than FaceMesh.  Below 45 they never do: their eye ratio barely moves near
    frontal.  MTCNN's points stop moving past 80 degrees, so a turned face (five points >= :data:`LOST_PROFILE_YAW`)
    that FaceMesh cannot find at all (beyond its range, :data:`LANDMARK_MODEL_RANGE_DEG`) reads at least that.
    ``facemesh_yaw``, ``lmk5_yaw``: (B,) degrees, NaN where absent.  Returns (mask, yaw) with the five points'
    yaw (the floor applied) where the mask is set."""
    fm = np.asarray(facemesh_yaw, np.float64)
    y5 = np.asarray(lmk5_yaw, np.float64)
    lost = ~np.isfinite(fm)
    with np.errstate(invalid="ignore"):
        profile = np.isfinite(y5) & (np.abs(y5) >= LMK5_PROFILE_YAW)
        turned = np.isfinite(y5) & (np.abs(y5) >= LOST_PROFILE_YAW)
        under_read = turned & (np.abs(y5) - np.abs(fm) >= FACEMESH_UNDER_READ_GAP)
        use = np.isfinite(y5) & (lost | (profile & (np.abs(y5) > np.abs(fm))) | under_read)
        beyond = lost & turned
        yaw = np.where(beyond, np.sign(y5) * np.maximum(np.abs(y5), LANDMARK_MODEL_RANGE_DEG), y5)
    return use, yaw


def _track_positions(yaw: np.ndarray, tracks, frames) -> list[list[int]]:
    """Per track (key not None), the indices of its faces with a finite yaw, in frame order."""
    by_track: dict = {}
    for i, t in enumerate(tracks):
        if t is not None and np.isfinite(yaw[i]):
            by_track.setdefault(t, []).append(i)
    return [sorted(idx, key=lambda i: frames[i]) for idx in by_track.values()]


def fix_side_flips(yaw, tracks, frames, *, max_gap: int = 5, profile: float = LOST_PROFILE_YAW
                   ) -> tuple[np.ndarray, np.ndarray]:
    """A head cannot swing from one profile to the other within a few frames without passing through frontal.  So a
    run of profile readings (|yaw| >= ``profile``) on one side whose track reads the other side's profile right
    before and right after it (each at most ``max_gap`` frames away, no frontal reading between), in runs longer than
    it on both sides, took the wrong side, and its sign is flipped.  MTCNN's five points can put the nose on the
    wrong side of a full profile (docs/pose_accuracy.md), and FaceMesh has no answer there to outvote them.  A real
    turn passes through frontal readings, so it is never flipped.  Returns (yaw, flipped mask)."""
    y = np.asarray(yaw, np.float64).copy()
    flipped = np.zeros(len(y), bool)
    for idx in _track_positions(y, tracks, frames):
        runs, k = [], 0  # (first, last position in idx, side)
        while k < len(idx):
            if abs(y[idx[k]]) < profile:
                k += 1
                continue
            side, j = np.sign(y[idx[k]]), k
            while (j + 1 < len(idx) and abs(y[idx[j + 1]]) >= profile and np.sign(y[idx[j + 1]]) == side
                   and frames[idx[j + 1]] - frames[idx[j]] <= max_gap):
                j += 1
            runs.append((k, j, side))
            k = j + 1
        for a, b, c in zip(runs, runs[1:], runs[2:]):
            touching = a[1] + 1 == b[0] and b[1] + 1 == c[0]
            close = (frames[idx[b[0]]] - frames[idx[a[1]]] <= max_gap
                     and frames[idx[c[0]]] - frames[idx[b[1]]] <= max_gap)
            shorter = b[1] - b[0] < min(a[1] - a[0], c[1] - c[0])
            if touching and close and a[2] == c[2] == -b[2] and shorter:
                sel = idx[b[0]:b[1] + 1]
                y[sel] = -y[sel]
                flipped[sel] = True
    return y, flipped


def reject_track_outliers(yaw, tracks, frames, *, max_gap: int = 5, neighbours_agree: float = 10.0,
                          spike: float = 25.0) -> tuple[np.ndarray, np.ndarray]:
    """Temporal outlier rejection along tracks: a face whose yaw jumps more than ``spike`` degrees away from both
    its track neighbours (each at most ``max_gap`` frames away) while those two agree within
    ``neighbours_agree`` is a misfit, and takes their mean.  A real turn moves a few degrees per frame and its
    neighbours differ by the turn itself, so it is never smoothed away; only isolated single-frame spikes are.
    ``tracks``: a hashable track key per face (None: not tracked); ``frames``: frame indices.
    Returns (yaw, replaced mask)."""
    y = np.asarray(yaw, np.float64).copy()
    out = y.copy()
    replaced = np.zeros(len(y), bool)
    for idx in _track_positions(y, tracks, frames):
        for a, b, c in zip(idx, idx[1:], idx[2:]):
            if frames[b] - frames[a] > max_gap or frames[c] - frames[b] > max_gap:
                continue
            if abs(y[a] - y[c]) <= neighbours_agree and min(abs(y[b] - y[a]), abs(y[b] - y[c])) > spike:
                out[b] = (y[a] + y[c]) / 2
                replaced[b] = True
    return out, replaced
