"""Reading pitch at full strength (issue 21; docs/pose_accuracy.md).

FaceMesh's landmarks follow a nod only part of the way, and less the further the head is turned.  On the head-turn
benchmark's renders (benchmarks/pose_accuracy.py, pitch -35 ... 35, tune people) its fitted pitch grows by 0.74
degrees per true degree at |yaw| 0-10, 0.71 at 20-30, 0.57 at 40-50, 0.48 at 60-70 and 0.47 at 80-90 (held-out
people: 0.83, 0.78, 0.61, 0.47, 0.42), and a nod down is followed less than a nod up: at |yaw| <= 30 a true -35 read
-22 to -24 for every tune person, a true +35 read +24 to +29 (slopes 0.66 and 0.79).  The fit itself is not the
cause: the renders' own mesh vertices, projected exactly, read the true pitch.  EFHQ's up / down bins cut at 30
degrees, so a 35 degree nod read as 25 is binned frontal.  :func:`expand_pitch` divides FaceMesh's pitch by its
slope, read off the face's own |yaw| and the nod's direction.  numpy only.
"""

from __future__ import annotations

import numpy as np

__all__ = ["PITCH_SLOPE_YAW", "PITCH_SLOPE_DOWN", "PITCH_SLOPE_UP", "expand_pitch"]

#: |yaw| (degrees, the estimator's own reading) and FaceMesh's pitch slope there, for nods down (pitch < 0) and up:
#: the tune people's slope at each |yaw| above, times 0.89 down and 1.07 up (their down / up ratio at |yaw| <= 30).
#: Past 45 degrees the slope stays at its 45-degree value, although FaceMesh follows even less there (0.43-0.51):
#: dividing by that stretched the noise of turned faces' pitch past EFHQ's 30-degree cut.  On the tune people's
#: head turns at pitch -20 (benchmarks/turn_accuracy.py's clips) the full EFHQ bins went from 0.885 to 0.913 with
#: the slope held, at a cost of 0.006 on the single-frame renders with +-35 nods (0.852 -> 0.846).
PITCH_SLOPE_YAW = (5.0, 25.0, 45.0)
PITCH_SLOPE_DOWN = (0.66, 0.63, 0.51)
PITCH_SLOPE_UP = (0.79, 0.76, 0.61)


def expand_pitch(pitch, yaw) -> np.ndarray:
    """FaceMesh's fitted pitch and (its own, large-yaw corrected) yaw, degrees -> pitch at full strength
    (``pitch / slope(|yaw|, direction)``, clipped to +-90).  NaN stays NaN; a NaN yaw reads as frontal."""
    p = np.asarray(pitch, np.float64)
    a = np.abs(np.nan_to_num(np.asarray(yaw, np.float64), nan=0.0))
    slope = np.where(p < 0, np.interp(a, PITCH_SLOPE_YAW, PITCH_SLOPE_DOWN), np.interp(a, PITCH_SLOPE_YAW, PITCH_SLOPE_UP))
    return np.clip(p / slope, -90.0, 90.0)
