"""Landmark pose estimators (a 3D reference of a landmark scheme, its pitch zero and the points fitted) and
their ensemble (:func:`combine`, inverse-variance weights per angle)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from .fit import PoseFit, fit_pose
from .rotations import euler_to_matrix_np

__all__ = [
    "RESIDUAL_HALF_CONFIDENCE",
    "residual_confidence",
    "PoseEstimate",
    "LandmarkPoseEstimator",
    "PITCH_ZERO_DEG",
    "FACEMESH_OVAL_YAW_WEIGHT",
    "FACEMESH_OVAL_YAW_BELOW",
    "FACEMESH_OVAL_YAW_FADE",
    "facemesh_estimator",
    "dlib68_estimator",
    "ESTIMATOR_NAMES",
    "get_estimator",
    "RELIABILITY_DEG",
    "combine",
]


#: Residual at which :func:`residual_confidence` is 0.5.  Measured on real photos
#: (astronaut + the 6 faces of insightface t1.jpg, FaceMesh and dlib): good fits have
#: relative residuals of 0.02-0.06.
RESIDUAL_HALF_CONFIDENCE = 0.10


def residual_confidence(residual) -> np.ndarray:
    """Per-face fit confidence in [0, 1] from the relative residual: ``1 / (1 + (r / 0.10)^2)``; NaN -> 0."""
    r = np.asarray(residual, dtype=np.float64)
    c = 1.0 / (1.0 + (r / RESIDUAL_HALF_CONFIDENCE) ** 2)
    return np.where(np.isfinite(c), c, 0.0)


@dataclass
class PoseEstimate:
    """numpy (B,) arrays: angles in degrees, relative fit residual and its confidence."""

    yaw: np.ndarray
    pitch: np.ndarray
    roll: np.ndarray
    residual: np.ndarray
    confidence: np.ndarray

    def as_tuple(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.yaw, self.pitch, self.roll


@dataclass
class LandmarkPoseEstimator:
    """Head pose from one landmark scheme: a 3D reference of the *full* scheme + the subset fitted.

    ``estimate_batch`` accepts (B, N_full, 2) landmarks in image pixels (the landmarker's own
    output order) and fits only ``landmark_indices``.  ``yaw_weights`` (one per fitted point), where given,
    weight a second fit whose yaw replaces the first fit's wherever that reads |yaw| below ``yaw_weights_below``,
    fading out over the last ``yaw_weights_fade`` degrees before it (so the yaw has no step at the cut); pitch and
    roll are always the first fit's.
    """

    name: str
    reference_3d: np.ndarray
    landmark_indices: np.ndarray | None = None
    weights: np.ndarray | None = None
    yaw_weights: np.ndarray | None = None
    yaw_weights_below: float = 0.0
    yaw_weights_fade: float = 0.0

    def __post_init__(self):
        self.reference_3d = np.asarray(self.reference_3d, dtype=np.float64)
        if self.landmark_indices is None:
            self.landmark_indices = np.arange(len(self.reference_3d))
        self.landmark_indices = np.asarray(self.landmark_indices, dtype=np.int64)
        if self.yaw_weights is not None:
            self.yaw_weights = np.asarray(self.yaw_weights, dtype=np.float64)
            if self.yaw_weights.shape != self.landmark_indices.shape:
                raise ValueError(f"{self.name}: yaw_weights has shape {self.yaw_weights.shape}, expected one weight "
                                 f"per fitted point {self.landmark_indices.shape}")
            if not 0.0 <= self.yaw_weights_fade <= self.yaw_weights_below:
                raise ValueError(f"{self.name}: yaw_weights_fade must lie in [0, yaw_weights_below "
                                 f"{self.yaw_weights_below}], got {self.yaw_weights_fade}")

    @property
    def n_points(self) -> int:
        return len(self.reference_3d)

    def fit(self, landmarks_2d, *, device=None, cameras=None, weights=None) -> PoseFit:
        """``cameras``: optional ``(focal_px, principal_point)`` (scalars / (B,) and (2,) / (B, 2)) for a
        perspective fit; weak perspective without.  ``weights``: the fitted points' weights (default ``weights``);
        the line of sight stays the one through the centre of the points under ``self.weights``."""
        lm = np.asarray(landmarks_2d, dtype=np.float32)
        if lm.ndim == 2:
            lm = lm[None]
        if lm.shape[1:] != (self.n_points, 2):
            raise ValueError(f"{self.name}: expected (B, {self.n_points}, 2) landmarks, got {lm.shape}")
        idx = self.landmark_indices
        focal, principal = cameras if cameras is not None else (None, None)
        sight = None if weights is None else (np.ones(len(idx)) if self.weights is None else self.weights)
        return fit_pose(lm[:, idx], self.reference_3d[idx], self.weights if weights is None else weights,
                        device=device, focal_px=focal, principal_point=principal, sight_weights=sight)

    def estimate_batch(self, landmarks_2d, *, device=None, cameras=None) -> PoseEstimate:
        lm = np.asarray(landmarks_2d, dtype=np.float32)
        if lm.ndim == 2:
            lm = lm[None]
        if len(lm) == 0:
            e = np.empty(0)
            return PoseEstimate(e, e, e, e, e)
        fit = self.fit(lm, device=device, cameras=cameras)
        to = lambda t: t.double().cpu().numpy()  # noqa: E731
        res = to(fit.residual)
        yaw = to(fit.yaw)
        if self.yaw_weights is not None:
            with np.errstate(invalid="ignore"):
                small = np.abs(yaw) < self.yaw_weights_below
            if small.any():
                yaw_small = to(self.fit(lm[small], device=device, cameras=_cameras_of(cameras, small, len(lm)),
                                        weights=self.yaw_weights).yaw)
                # the weighted fit's share: 1 up to the fade, then down to 0 at the cut
                share = np.clip((self.yaw_weights_below - np.abs(yaw[small])) / max(self.yaw_weights_fade, 1e-9), 0, 1)
                yaw[small] = np.where(np.isfinite(yaw_small), share * yaw_small + (1 - share) * yaw[small], yaw[small])
        return PoseEstimate(yaw, to(fit.pitch), to(fit.roll), res, residual_confidence(res))


def _cameras_of(cameras, keep: np.ndarray, n: int):
    """The ``(focal_px, principal_point)`` of the faces ``keep`` selects, where they are given per face."""
    if cameras is None or cameras[0] is None:  # weak perspective: nothing per face
        return cameras
    focal, principal = (np.asarray(v.cpu() if hasattr(v, "cpu") else v, dtype=np.float64) for v in cameras)
    if focal.ndim == 1 and len(focal) == n:
        focal = focal[keep]
    if principal.ndim == 2 and len(principal) == n:
        principal = principal[keep]
    return focal, principal


#: Pitch zero (degrees) of each estimator's 3D reference: the reference is turned by this much about its x axis so
#: that a level head reads pitch 0.  Both references take their zero from insightface's 3DMM mean shape, whose
#: frame is tilted against a level head: measured before this correction, the ``facemesh`` estimator read the
#: tune people's head-turn renders (benchmarks/pose_accuracy.py, whose zero is each photo's own dlib68-mean-shape
#: frame) PITCH_BIAS low, and dlib68 lower still, and real portraits of people facing the camera read low too
#: (the seven real photos: median -8 deg, the astronaut's formal portrait -20).  Checked on real photos by the
#: tests (tests/core/test_extreme_poses.py::test_level_heads_read_pitch_zero_on_real_photos).  FaceMesh's zero moved
#: from 5 to 6.5 when its pitch got its gain back and dlib's pitch left the combined pitch (core/pose/pitch_gain.py):
#: the tune people's renders at pitch 0 (|yaw| <= 30) read -2.5 on the mean at 5 and 0.1 at 7, while EFHQ's full bins
#: on the tune renders were best at 6 (0.861) and worst at 7 (0.840); 6.5 lies between.  The seven real photos read
#: -3.6 on the median at 6.5 (-5.2 at 5).
PITCH_ZERO_DEG: dict[str, float] = {"facemesh": 6.5, "dlib68": 7.0}


def _pitch_zeroed(reference: np.ndarray, degrees: float) -> np.ndarray:
    """The reference seen at pitch -``degrees`` (head frame): a face that read pitch -d now reads 0."""
    R = euler_to_matrix_np(0.0, -float(degrees), 0.0)
    return np.asarray(reference, np.float64) @ R.T


#: Yaw of faces FaceMesh reads near frontal comes from a fit that weights the 36 face-oval points
#: :data:`FACEMESH_OVAL_YAW_WEIGHT` times (a third of the fit): near frontal the outline is seen on both sides, and its
#: left-right asymmetry is the widest lever on yaw.  Turned further, the near side's outline becomes the silhouette and
#: slides (as dlib's jaw points do), so the oval would read a turn low; turned faces, and pitch and roll everywhere,
#: keep the equal-weight fit.  Chosen on benchmarks/pose_accuracy.py's tune people (default grid, combined yaw MAE at
#: |yaw| <= 60: 4.67 with equal weights; with the cut at 25, oval x4 / x6 / x12 / x20: 4.49 / 4.46 / 4.42 / 4.41).
#: The cut: 45 read the tune people best (4.24; 35: 4.30, 30: 4.44), but every cut past 25 made the astronaut's 30-60
#: degree views worse (5.21 -> 6.13 at 45), and perfect landmarks showed why: on the renders of photos taken turned,
#: the oval agrees with the meshes' symmetry plane (the benchmark's yaw zero), not with a head.  At 25 every t1 person
#: improved and the astronaut stayed at 3.93.  docs/pose_accuracy.md.
FACEMESH_OVAL_YAW_WEIGHT = 6.0
#: The oval fit's share is 1 up to 20 degrees (the equal-weight fit's reading) and falls linearly to 0 at 30: a fade
#: centred on that cut at 25.  The oval fit reads near-frontal faces about a degree less turned than the equal-weight
#: fit (the demo's 863 faces: -0.85 on average at 20-25), so a hard switch left a one-degree notch in the yaw
#: histogram just below the cut.  The fade costs nothing measurable (full default run, |yaw| <= 60, hard cut -> fade:
#: tune 4.48 -> 4.49, held out 3.56 -> 3.55, astronaut 3.94 -> 3.97); fades ending at 25 or 35 read the tune people
#: at 4.53 / 4.41 and the astronaut at 3.94 / 4.03 (the same trade as a later cut).
FACEMESH_OVAL_YAW_BELOW = 30.0
FACEMESH_OVAL_YAW_FADE = 10.0


def facemesh_estimator() -> LandmarkPoseEstimator:
    """FaceMesh (478 points in MediaPipe order; the 468 mesh vertices are fitted, iris points not)."""
    from efhq_assets.core import face_models_3d as fm3d  # numpy only  # noqa: PLC0415

    idx = fm3d.FACEMESH_STABLE_INDICES
    yaw_weights = np.where(np.isin(idx, fm3d.FACEMESH_OVAL_INDICES), FACEMESH_OVAL_YAW_WEIGHT, 1.0)
    return LandmarkPoseEstimator("facemesh", _pitch_zeroed(fm3d.facemesh_reference(), PITCH_ZERO_DEG["facemesh"]),
                                 idx, yaw_weights=yaw_weights, yaw_weights_below=FACEMESH_OVAL_YAW_BELOW,
                                 yaw_weights_fade=FACEMESH_OVAL_YAW_FADE)


def dlib68_estimator(*, with_jaw: bool = False) -> LandmarkPoseEstimator:
    """dlib / iBUG 68 points against insightface's mean shape.

    By default the 17 jaw points are left out: dlib places them on the visible silhouette,
    while the reference's jaw is a fixed 3D contour, which pulls large yaws toward 0.
    """
    from efhq_assets.core import face_models_3d as fm3d  # noqa: PLC0415

    idx = None if with_jaw else fm3d.IBUG68_INNER_INDICES
    return LandmarkPoseEstimator("dlib68", _pitch_zeroed(fm3d.dlib68_reference(), PITCH_ZERO_DEG["dlib68"]), idx)


ESTIMATOR_NAMES = ("facemesh", "dlib68")


def get_estimator(name: str) -> LandmarkPoseEstimator:
    if name == "facemesh":
        return facemesh_estimator()
    if name == "dlib68":
        return dlib68_estimator()
    raise KeyError(f"unknown landmark pose estimator {name!r}; known: {', '.join(ESTIMATOR_NAMES)}")



# ------------------------------------------------------------------------------------------
# Ensemble
# ------------------------------------------------------------------------------------------

#: Per-angle standard deviation (degrees) of each estimator, (yaw, pitch, roll), used as
#: inverse-variance weights by :func:`combine`.
#:
#: Measured (2026-11) on 7 real faces (skimage astronaut + the 6 faces of insightface t1.jpg),
#: each under 8 views: original, horizontal flip, in-plane rotations -20/-10/+10/+20 deg and
#: rescaling x0.7/x1.4, every view mapped back to the original's angles with the exact
#: invariants (flip: -yaw, pitch, -roll; rotation by a: roll - a).  For each estimator
#: ``std = sqrt(jitter^2 + d^2 / 2)`` where ``jitter`` is the RMS deviation of a face's views
#: from their mean (precision; 2 of 56 dlib views, where dlib's predictor broke on a face
#: rolled past 50 deg, excluded) and ``d`` the RMS FaceMesh-minus-dlib difference on the
#: original views (yaw 1.9, pitch 6.5, roll 1.9 deg), split equally as the part of each
#: estimator's error the other one exposes.  Jitter: FaceMesh (0.8, 0.9, 0.3), dlib
#: inner-51 (5.1, 1.7, 4.3).  Errors common to both (e.g. both reading large yaw low)
#: are not visible here, so these are relative weights, not absolute accuracies.
#:
#: dlib68's yaw no longer counts (std 1e6): on the head-turn benchmark's tune people (|yaw| <= 60, pitch -20/0/20,
#: roll 0/15) its yaw reads turned faces low (gain 0.81, MAE 8.2 against FaceMesh's 4.6), an error the jitter
#: measure above cannot see, and even at 1/12 of FaceMesh's weight it moved the combined yaw off FaceMesh's
#: (combined 4.70 against FaceMesh alone 4.63).
#:
#: Nor does its pitch (std 1e6): FaceMesh's pitch now gets its gain back (core/pose/pitch_gain.py), and dlib's follows
#: a pitched head less still and unevenly (renders at pitch -35 ... 35, tune people: 0.70 degrees per degree at
#: |yaw| 0-10, 0.61 at 20-30, 0.14 at 40-50; held out 0.99, 0.66, 0.04).  With it in the mean the combined pitch
#: error at |yaw| 0-30 was 3.32 (tune) and 4.29 (held out) deg, without it 2.84 and 3.87.
RELIABILITY_DEG: dict[str, tuple[float, float, float]] = {
    "facemesh": (1.5, 4.7, 1.4),
    "dlib68": (1e6, 1e6, 4.5),
}


def combine(
    estimates: Mapping[str, Sequence],
    reliabilities: Mapping[str, Sequence[float]] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse-variance weighted mean of several estimators' (yaw, pitch, roll), per angle.

    ``estimates[name] = (yaw, pitch, roll)``, arrays of the same shape (or scalars).
    ``reliabilities[name] = (std_yaw, std_pitch, std_roll)`` in degrees (default
    :data:`RELIABILITY_DEG`); the weight of an estimator on an angle is ``1 / std**2``.
    NaN-aware: an estimator whose value is NaN for a face is ignored for that face and angle;
    a face where every estimator is NaN gets NaN.  Estimators without a reliability entry
    raise KeyError.  Yaw is averaged linearly (the landmark estimators never wrap at +-180).
    """
    rel = RELIABILITY_DEG if reliabilities is None else reliabilities
    if not estimates:
        raise ValueError("combine() needs at least one estimate")
    out = []
    for k in range(3):
        num = None
        den = None
        for name, angles in estimates.items():
            if name not in rel:
                raise KeyError(f"no reliability given for estimator {name!r}")
            std = np.asarray(rel[name][k], dtype=np.float64)  # a scalar, or one value per face
            if not np.all(std > 0):
                raise ValueError(f"reliability of {name!r} must be > 0, got {std}")
            v = np.asarray(angles[k], dtype=np.float64)
            ok = np.isfinite(v)
            wk = np.where(ok, 1.0 / std**2, 0.0)
            term = np.where(ok, v, 0.0) * wk
            num = term if num is None else num + term
            den = wk if den is None else den + wk
        with np.errstate(invalid="ignore", divide="ignore"):
            out.append(np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan))
    return out[0], out[1], out[2]
