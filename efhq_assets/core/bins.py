"""EFHQ pose binning (docs/efhq.md, "Stage 2": binning and ``smallbin``) on the project's one convention.

Angles are degrees in the convention of :mod:`efhq_assets.core.pose`: yaw > 0 = the subject
turns to their own left, pitch > 0 = looks up.  Hence ``profile_left`` is always the
subject's left and ``profile_up`` is looking up, whichever estimator produced the angles.

Fixed inconsistency of the original: EFHQ's ``bin_a_pose`` was applied to each estimator's
*raw* angles, although SynergyNet's yaw has the opposite sign to FacePoseNet's and DirectMHP's
(its review tool ``pose_grid.py`` flips SynergyNet, ``[-synergy_yaw, poseanh_yaw, mhp_yaw]``,
before voting left/right, but the automatic binning does not), so "left"/"right" depended on
the estimator and had to be settled by manual review.  Here every estimator is converted to
the single convention before it reaches these functions (pose backends are responsible for
that), so the same rules give the same meaning for all of them.

Pure Python + numpy; roll is ignored as in the original.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Iterable, Sequence

import numpy as np

from .efhq_metadata import efhq_name

__all__ = [
    "BINS",
    "SOFT_ONLY_BINS",
    "SMALLBIN_EDGES",
    "bin_pose",
    "bin_pose_array",
    "hardbin",
    "softbin",
    "smallbin",
    "hardbin_rows",
    "softbin_rows",
]

FRONTAL = "frontal"
LEFT, RIGHT, UP, DOWN, EXTREME = (
    "profile_left",
    "profile_right",
    "profile_up",
    "profile_down",
    "profile_extreme",
)
HORIZONTAL, VERTICAL, CONFUSED = "profile_horizontal", "profile_vertical", "confused"

#: Per-estimator bins, in rule order.
BINS = (FRONTAL, LEFT, RIGHT, UP, DOWN, EXTREME)
#: Extra labels produced only when combining estimators.
SOFT_ONLY_BINS = (HORIZONTAL, VERTICAL, CONFUSED)
#: smallbin edges: 10-degree bins 30_40 ... 80_90 (>= 90 clamped into 80_90).
SMALLBIN_EDGES = tuple(range(30, 91, 10))


def _isnan(v) -> bool:
    if v is None:
        return True
    try:
        return math.isnan(float(v))
    except (TypeError, ValueError):
        return True


def bin_pose(yaw, pitch, roll=None) -> str | None:
    """Bin one estimator's (yaw, pitch) in degrees; ``roll`` is accepted and ignored.

    Rules, the first that matches wins (EFHQ ``bin_a_pose``; strict inequalities, so the exact
    boundaries 45 and 30, and |yaw| or |pitch| >= 180, fall through to ``profile_extreme``):

    1. |yaw| < 45 and |pitch| < 30            -> frontal
    2. |yaw| > 90 and |pitch| > 90            -> profile_extreme
    3. 45 < yaw < 180 and |pitch| < 30        -> profile_left   (subject's left)
    4. -180 < yaw < -45 and |pitch| < 30      -> profile_right
    5. |yaw| < 45 and 30 < pitch < 180        -> profile_up
    6. |yaw| < 45 and -180 < pitch < -30      -> profile_down
    7. anything else                          -> profile_extreme

    A NaN / None angle gives None (no bin for this estimator).  (The original also returned
    None for a NaN roll; roll is not needed here, so it is not required.)
    """
    if _isnan(yaw) or _isnan(pitch):
        return None
    y, p = float(yaw), float(pitch)
    if abs(y) < 45 and abs(p) < 30:
        return FRONTAL
    if abs(y) > 90 and abs(p) > 90:
        return EXTREME
    if 45 < y < 180 and abs(p) < 30:
        return LEFT
    if -180 < y < -45 and abs(p) < 30:
        return RIGHT
    if abs(y) < 45 and 30 < p < 180:
        return UP
    if abs(y) < 45 and -180 < p < -30:
        return DOWN
    return EXTREME


def bin_pose_array(yaw, pitch) -> np.ndarray:
    """Vectorized :func:`bin_pose`: arrays of degrees -> object array of bin names (None for NaN)."""
    y = np.asarray(yaw, dtype=np.float64)
    p = np.asarray(pitch, dtype=np.float64)
    y, p = np.broadcast_arrays(y, p)
    ay, ap = np.abs(y), np.abs(p)
    conds = [
        np.isnan(y) | np.isnan(p),
        (ay < 45) & (ap < 30),
        (ay > 90) & (ap > 90),
        (y > 45) & (y < 180) & (ap < 30),
        (y < -45) & (y > -180) & (ap < 30),
        (ay < 45) & (p > 30) & (p < 180),
        (ay < 45) & (p < -30) & (p > -180),
    ]
    choices = [None, FRONTAL, EXTREME, LEFT, RIGHT, UP, DOWN]
    out = np.full(y.shape, EXTREME, dtype=object)
    # the first true condition wins, like the scalar rules
    done = np.zeros(y.shape, dtype=bool)
    for cond, choice in zip(conds, choices):
        sel = cond & ~done
        out[sel] = choice
        done |= cond
    return out


def _available(bins: Iterable) -> list[str]:
    return [b for b in bins if isinstance(b, str)]


def hardbin(bins: Sequence[str | None]) -> str:
    """The common bin when every available estimator agrees, else ``confused``.

    Unavailable estimators (None/NaN) are ignored; with none available the result is
    ``confused`` (as in the original).  One available estimator gives its own bin.
    """
    cand = _available(bins)
    if not cand:
        return CONFUSED
    return cand[0] if all(c == cand[0] for c in cand) else CONFUSED


def softbin(bins: Sequence[str | None]) -> str:
    """EFHQ softbin over the per-estimator bins (None/NaN entries ignored).

    1. the majority bin if at least 2 estimators agree (with a tie between two bins that
       both have the top count, the one listed first wins, as ``Counter.most_common``);
    2. else ``frontal`` if all are frontal (only possible with a single estimator);
    3. else, if all are profile bins: ``profile_horizontal`` when every label is in
       {left, right, extreme}, else ``profile_vertical`` when every label is in
       {up, down, extreme} (so one estimator alone saying ``profile_left`` or
       ``profile_extreme`` gives ``profile_horizontal``, ``profile_up`` gives
       ``profile_vertical``);
    4. else ``confused`` (also when no estimator is available).
    """
    cand = _available(bins)
    if not cand:
        return CONFUSED
    label, count = Counter(cand).most_common(1)[0]
    if count > 1:
        return label
    if all(c == FRONTAL for c in cand):
        return FRONTAL
    if all(c.startswith("profile_") for c in cand):
        kinds = [c.split("_", 1)[1] for c in cand]
        if all(k in ("left", "right", "extreme") for k in kinds):
            return HORIZONTAL
        if all(k in ("up", "down", "extreme") for k in kinds):
            return VERTICAL
    return CONFUSED


def _finite(values) -> np.ndarray:
    v = np.asarray([np.nan if x is None else x for x in np.atleast_1d(values)], dtype=np.float64)
    return v[np.isfinite(v)]


def smallbin(yaws: Sequence[float], pitches: Sequence[float], soft: str | None = None) -> str | None:
    """EFHQ ``poseizer-stepbin``: a finer bin from the estimators' angles (one face).

    ``yaws`` / ``pitches``: one value per estimator (NaN = unavailable).  ``soft``: the face's
    softbin; computed from the per-estimator bins when omitted.

    * softbin left / right / horizontal -> the yaw axis; up / down / vertical -> the pitch
      axis; ``profile_extreme`` -> the axis whose mean |angle| is larger (pitch on an exact tie,
      as the original's strict ``>``); ``frontal`` / ``confused`` are returned
      unchanged;
    * ``m`` = mean |angle| over the estimators on that axis; ``m < 30`` -> ``frontal``;
      else 10-degree bins ``30_40`` ... ``80_90`` (``m >= 90`` clamped into ``80_90``; the
      original crashed at exactly 90);
    * prefixed by the direction: from the softbin when it names one, else (horizontal /
      vertical / extreme) by EFHQ's vote over the estimators on that axis
      (``poseizer_stepbin``: left / up when ``n_positive > len(values) // 2``, positive = left /
      up in the project's convention; so ties and zeros go right / down).
      Example: ``left_50_60``.

    EFHQ computed it from the *reviewed* softbin (its parquet of ``4_binned_edited``):
    :func:`bin_rows` passes the face's label (reviewed, or EFHQ's released softbin), not the
    recomputed softbin.

    Returns None when the face has no usable angle on the chosen axis.
    """
    ys, ps = _finite(yaws), _finite(pitches)
    if soft is None:
        soft = softbin([bin_pose(y, p) for y, p in zip(np.atleast_1d(yaws), np.atleast_1d(pitches))])
    if soft in (LEFT, RIGHT, HORIZONTAL):
        axis = "yaw"
    elif soft in (UP, DOWN, VERTICAL):
        axis = "pitch"
    elif soft == EXTREME:
        if len(ys) == 0 and len(ps) == 0:
            return None
        my = np.mean(np.abs(ys)) if len(ys) else -np.inf
        mp = np.mean(np.abs(ps)) if len(ps) else -np.inf
        axis = "yaw" if my > mp else "pitch"
        soft = HORIZONTAL if axis == "yaw" else VERTICAL
    else:
        return soft
    vals = ys if axis == "yaw" else ps
    if len(vals) == 0:
        return None
    m = float(np.mean(np.abs(vals)))
    if m < 30:
        return FRONTAL
    lo = min(int(m // 10) * 10, 80)
    label = f"{lo}_{lo + 10}"
    if soft in (HORIZONTAL, VERTICAL):
        positive = int((vals > 0).sum()) > len(vals) // 2
        if axis == "yaw":
            direction = "left" if positive else "right"
        else:
            direction = "up" if positive else "down"
    else:
        direction = soft.split("_", 1)[1]
    return f"{direction}_{label}"


def hardbin_rows(*bin_columns: Sequence[str | None]) -> list[str]:
    """:func:`hardbin` over rows: one sequence per estimator, all the same length."""
    return [hardbin(row) for row in zip(*bin_columns)]


def softbin_rows(*bin_columns: Sequence[str | None]) -> list[str]:
    """:func:`softbin` over rows: one sequence per estimator, all the same length."""
    return [softbin(row) for row in zip(*bin_columns)]


# ------------------------------------------------------------------------------------------
# The `bins` table
# ------------------------------------------------------------------------------------------

#: Three voters, as EFHQ had three estimators: the two landmark fits and their reliability-weighted
#: combination. The combination down-weights dlib68 beyond its training range (|yaw| > 35), so on
#: turned faces a lone dlib68 misreading is outvoted instead of turning the face into `confused`
#: (the head-turn benchmark showed dlib68 reading 60 degrees as ~40).
VOTING_ESTIMATORS = ("facemesh", "dlib68", "combined")
REVIEW_LABELS = (FRONTAL, LEFT, RIGHT, UP, DOWN, EXTREME, "remove")


def bin_rows(pose_rows: Sequence[dict], overrides: dict | None = None,
             voters: Sequence[str] = VOTING_ESTIMATORS, released: dict | None = None) -> list[dict]:
    """One row per face: a bin per estimator (voters + combined), hardbin, softbin, smallbin (all
    recomputed from the angles), the reviewed label (from `review_overrides`, keyed by (video_id,
    frame_index, face_index)) and `label`.

    ``released`` (faces rebuilt from EFHQ's metadata, keyed by (video_id, clip_id, frame_index,
    face_index)): EFHQ's own ``softbin`` / ``hardbin`` / ``smallbin``, the labels after its manual
    review, kept as ``efhq_softbin`` / ``efhq_hardbin`` / ``efhq_smallbin`` in EFHQ's names.

    ``label`` = the reviewed label when there is one, else EFHQ's released softbin in the project's
    names (:func:`efhq_assets.core.efhq_metadata.efhq_name`), else the recomputed softbin.
    ``efhq_label`` is ``label`` in EFHQ's names (its ``profile_left`` is the project's
    ``profile_right``)."""
    overrides = overrides or {}
    released = released or {}
    faces: dict[tuple, dict] = {}
    for r in pose_rows:
        key = (r["video_id"], r["clip_id"], r["frame_index"], r["face_index"])
        faces.setdefault(key, {})[r["estimator"]] = (r["yaw"], r["pitch"])
    rows = []
    for key, angles in sorted(faces.items()):
        video_id, clip_id, frame_index, face_index = key
        per = {name: bin_pose(*angles.get(name, (None, None))) for name in dict.fromkeys([*voters, "combined"])}
        votes = [per[name] for name in voters]
        soft = softbin(votes)
        yaws = [angles.get(n, (None, None))[0] for n in voters]
        pitches = [angles.get(n, (None, None))[1] for n in voters]
        reviewed = overrides.get((video_id, frame_index, face_index))
        efhq = released.get(key) or {}
        label = reviewed or efhq_name(efhq.get("softbin")) or soft
        rows.append({"video_id": video_id, "clip_id": clip_id, "frame_index": frame_index, "face_index": face_index,
                     **{f"bin_{name}": per[name] for name in per},
                     "hardbin": hardbin(votes), "softbin": soft,
                     "smallbin": smallbin(yaws, pitches, label if label in BINS or label in SOFT_ONLY_BINS else soft),
                     "efhq_softbin": efhq.get("softbin"), "efhq_hardbin": efhq.get("hardbin"),
                     "efhq_smallbin": efhq.get("smallbin"),
                     "reviewed_label": reviewed, "label": label, "efhq_label": efhq_name(label)})
    return rows
