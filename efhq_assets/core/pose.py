"""The project's one head-pose angle convention, rotation math, and a batched landmark pose fit.

Convention (docs/architecture.md, "Invariants")
------------------------------------------------
All angles are in **degrees**.

* ``yaw > 0``: the subject turns to their own left, the nose moves toward the image's right side;
* ``pitch > 0``: the subject looks up;
* ``roll > 0``: the top of the head tilts toward the image's right side.

Frames.  Image coordinates are (u, v) pixels, u to the right, v **down**.  The *camera
frame* is x right, y **up**, z toward the viewer (right-handed); the *head frame*
(:mod:`efhq_assets.core.face_models_3d`) is x toward the subject's left (image right on a
frontal face), y up, z out of the face.  A head pose is the rotation ``R`` that maps head
coordinates to camera coordinates, ``p_cam = R @ p_head``, with ``R = I`` for a frontal face.

Composition.  With the right-handed elementary rotations ``Rx, Ry, Rz`` (positive =
counter-clockwise looking down the axis toward the origin)::

    R(yaw, pitch, roll) = Rz(-roll) @ Rx(-pitch) @ Ry(yaw)

Read right to left in fixed camera axes: first turn the head by ``yaw`` about the vertical
axis, then nod by ``pitch`` about the image's horizontal axis, then rotate by ``roll`` about
the optical axis.  (The signs: ``Ry(+a)`` takes the nose (0,0,1) toward +x = image right;
``Rx(-a)`` takes it toward +y = up; ``Rz(-a)`` takes the top of the head (0,1,0) toward +x.)
Ranges: yaw and roll in (-180, 180], pitch in [-90, 90]; at pitch = +-90 (gimbal lock)
roll is set to 0.  Because roll is applied last about the camera axis, the two image-space
invariants hold *exactly*, for any pose:

* mirroring the image (u -> W - u, i.e. conjugating R by diag(-1, 1, 1), with landmarks
  relabelled left<->right) maps (yaw, pitch, roll) -> (-yaw, pitch, -roll);
* rotating the image in-plane by ``a`` degrees **clockwise as seen on screen** (its top moves
  toward the right) maps roll -> roll + a and leaves yaw and pitch unchanged.

Weak perspective (scaled orthographic) projection of a head point ``p``::

    u = s * (R p)_x + t_u,    v = -s * (R p)_y + t_v

Fit.  :func:`fit_pose` solves ``min_{s,R,t} sum_i w_i |x_i - proj(X_i)|^2`` for B faces at
once in torch: weighted centring, a closed-form affine camera (normal equations) projected
onto the nearest scaled rotation by a batched SVD, then a few "depth completion"
iterations (fill in each landmark's depth from the current pose, solve the full 3D weighted
Procrustes/Umeyama problem by SVD; each step cannot increase the 2D error and the fixed
point is the weak-perspective optimum).  It runs under ``torch.inference_mode()``, on CUDA
with fp16 autocast for the matrix products when CUDA is available (coordinates are
normalised first; SVD and solves stay fp32), on the CPU otherwise.

Perspective.  With a camera (``focal_px``, ``principal_point``) the fit is POSIT-style (DeMenthon &
Davis 1995): alternate the weak-perspective fit with moving each landmark along its ray by its
current depth offset (see :func:`fit_pose`); exact on pinhole projections (tests).  The pipeline
gives every video the usual uncalibrated guess, focal length = the frame's longer side and the
principal point at its centre (``pose_annotations.pinhole_camera``).  On the head-turn benchmark
(6 people, valid views, |yaw| <= 60) FaceMesh's yaw error fell from 4.02 to 3.70 deg with it (4.25 to
3.95 with single-crop landmarks).

Large yaw.  On exact projections the fit recovers yaw up to +-80 (with pitch/roll up to +-40)
within 1e-3 deg for both references (tests).  On real photos landmark fits read large yaw
low when the landmarks slide onto the visible silhouette: fitting dlib's 17 jaw points
(silhouette, not the reference's 3D contour) gave yaw = 0.65 x FaceMesh's on 7 real faces
(|yaw| up to 54); without them (the default, 51 inner points) 0.98 x.  FaceMesh's mesh
points are fitted as they are (its jaw vertices are model points, not a silhouette).  On the
head-turn benchmark's renders FaceMesh's landmarks saturate past ~58 degrees, so the pipeline
stretches FaceMesh's yaw beyond that (:func:`expand_large_yaw`, fitted on the tune people), falls
back to the detector's five points where FaceMesh has no fit or contradicts them (:func:`lmk5_pose`),
and rejects isolated spikes along a track (:func:`reject_track_outliers`); docs/pose_accuracy.md.
Pitch zero: both references are turned so that a level head reads 0 (:data:`PITCH_ZERO_DEG`).

Speed (CPU, 2 cores, 468 FaceMesh points, 30 refinement iterations): weak perspective about
320-410 faces/s at batch 1 and 2,900-11,700 faces/s at batch 256 (range = machine load); the
perspective fit the pipeline uses repeats it a few times, about 120 faces/s at batch 1 and 1,900 at
batch 256 (benchmarks/analysis.py), still far faster than the landmarkers.  The per-call overhead
dominates, so batch.

Only numpy and torch are imported here (the GPU machine has nothing else); the 3D reference
shapes are loaded lazily from :mod:`efhq_assets.core.face_models_3d` (numpy only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch

__all__ = [
    "euler_to_matrix",
    "matrix_to_euler",
    "euler_to_matrix_np",
    "matrix_to_euler_np",
    "project",
    "project_np",
    "PoseFit",
    "fit_pose",
    "estimate_batch",
    "PoseEstimate",
    "LandmarkPoseEstimator",
    "facemesh_estimator",
    "dlib68_estimator",
    "get_estimator",
    "ESTIMATOR_NAMES",
    "RELIABILITY_DEG",
    "combine",
    "residual_confidence",
    "PITCH_ZERO_DEG",
    "expand_large_yaw",
    "lmk5_pose",
    "reject_track_outliers",
    "default_device",
]


# ------------------------------------------------------------------------------------------
# Rotation math
# ------------------------------------------------------------------------------------------

def _as_tensor(x, dtype=None, device=None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        if dtype is None:
            dtype = x.dtype if x.is_floating_point() else torch.float64
        return x.to(dtype=dtype, device=device or x.device)
    return torch.as_tensor(np.asarray(x, dtype=np.float64), dtype=dtype or torch.float64, device=device)


def _rx(a: torch.Tensor) -> torch.Tensor:
    c, s = torch.cos(a), torch.sin(a)
    o, z = torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([o, z, z, z, c, -s, z, s, c], dim=-1).reshape(*a.shape, 3, 3)


def _ry(a: torch.Tensor) -> torch.Tensor:
    c, s = torch.cos(a), torch.sin(a)
    o, z = torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([c, z, s, z, o, z, -s, z, c], dim=-1).reshape(*a.shape, 3, 3)


def _rz(a: torch.Tensor) -> torch.Tensor:
    c, s = torch.cos(a), torch.sin(a)
    o, z = torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([c, -s, z, s, c, z, z, z, o], dim=-1).reshape(*a.shape, 3, 3)


def euler_to_matrix(yaw, pitch, roll) -> torch.Tensor:
    """(...,) degrees -> (..., 3, 3) rotation ``R = Rz(-roll) @ Rx(-pitch) @ Ry(yaw)`` (head -> camera)."""
    yaw, pitch, roll = (_as_tensor(v) for v in (yaw, pitch, roll))
    yaw, pitch, roll = torch.broadcast_tensors(yaw, pitch, roll)
    d = math.pi / 180.0
    return _rz(-roll * d) @ _rx(-pitch * d) @ _ry(yaw * d)


def matrix_to_euler(R: torch.Tensor, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(..., 3, 3) rotation -> (yaw, pitch, roll) in degrees, inverse of :func:`euler_to_matrix`.

    With ``R = Rz(c) Rx(b) Ry(a)`` (a = yaw, b = -pitch, c = -roll): ``R[2] = (-cos b sin a, sin b,
    cos b cos a)`` and ``R[:, 1] = (-sin c cos b, cos c cos b, sin b)``.
    """
    R = _as_tensor(R)
    r21 = R[..., 2, 1].clamp(-1.0, 1.0)
    cb = torch.sqrt(R[..., 2, 0] ** 2 + R[..., 2, 2] ** 2)
    regular = cb > eps
    yaw = torch.where(regular, torch.atan2(-R[..., 2, 0], R[..., 2, 2]), torch.atan2(R[..., 0, 2], R[..., 0, 0]))
    pitch = -torch.asin(r21)
    roll = torch.where(regular, torch.atan2(R[..., 0, 1], R[..., 1, 1]), torch.zeros_like(r21))
    k = 180.0 / math.pi
    return yaw * k, pitch * k, roll * k


def euler_to_matrix_np(yaw, pitch, roll) -> np.ndarray:
    """numpy wrapper of :func:`euler_to_matrix` (float64)."""
    return euler_to_matrix(yaw, pitch, roll).numpy()


def matrix_to_euler_np(R) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """numpy wrapper of :func:`matrix_to_euler` (float64)."""
    y, p, r = matrix_to_euler(np.asarray(R, dtype=np.float64))
    return y.numpy(), p.numpy(), r.numpy()


def project(points_3d: torch.Tensor, R: torch.Tensor, scale, translation) -> torch.Tensor:
    """Weak-perspective projection to image pixels (u right, v down).

    ``points_3d`` (N, 3) or (B, N, 3) head frame; ``R`` (B, 3, 3); ``scale`` (B,); ``translation`` (B, 2).
    """
    pts = _as_tensor(points_3d)
    R = _as_tensor(R, dtype=pts.dtype)
    scale = _as_tensor(scale, dtype=pts.dtype)
    translation = _as_tensor(translation, dtype=pts.dtype)
    cam = pts @ R.transpose(-1, -2)  # (B, N, 3)
    uv = torch.stack([cam[..., 0], -cam[..., 1]], dim=-1) * scale[..., None, None]
    return uv + translation[..., None, :]


def project_np(points_3d, yaw, pitch, roll, scale=1.0, translation=(0.0, 0.0)) -> np.ndarray:
    """Project a (N, 3) shape under (B,) angles (or scalars) to (B, N, 2) (or (N, 2)) pixels."""
    yaw_a = np.atleast_1d(np.asarray(yaw, dtype=np.float64))
    R = euler_to_matrix(yaw_a, np.atleast_1d(pitch), np.atleast_1d(roll))
    b = R.shape[0]
    s = torch.as_tensor(np.broadcast_to(np.asarray(scale, dtype=np.float64), (b,)).copy())
    t = torch.as_tensor(np.broadcast_to(np.asarray(translation, dtype=np.float64), (b, 2)).copy())
    out = project(np.asarray(points_3d, dtype=np.float64), R, s, t).numpy()
    return out if np.ndim(yaw) else out[0]


# ------------------------------------------------------------------------------------------
# Batched weak-perspective fit
# ------------------------------------------------------------------------------------------

def default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


@dataclass
class PoseFit:
    """Result of :func:`fit_pose` for B faces (torch tensors on the fit's device, float32).

    ``residual`` is the weighted RMS reprojection error divided by the projected size of the
    reference (``scale`` x the reference's weighted RMS radius): dimensionless, ~0.01-0.05
    for a good fit, NaN where the face had fewer than 4 valid landmarks.
    ``residual_px`` is the same error in pixels.
    """

    yaw: torch.Tensor
    pitch: torch.Tensor
    roll: torch.Tensor
    scale: torch.Tensor
    translation: torch.Tensor
    residual: torch.Tensor
    rotation: torch.Tensor = field(repr=False)
    residual_px: torch.Tensor = field(repr=False)
    centre_weights: torch.Tensor = field(repr=False)  # (B, N) normalised point weights of the fit


def _procrustes_from_cov(H: torch.Tensor, xx: torch.Tensor):
    """min_{s,R} sum w |y - s R x|^2 given H = sum w x y^T (B, 3, 3) and xx = sum w |x|^2 (fp32, det R = +1)."""
    U, S, Vh = torch.linalg.svd(H)
    V = Vh.transpose(1, 2)
    d = torch.sign(torch.linalg.det(V @ U.transpose(1, 2)))
    d = torch.where(d == 0, torch.ones_like(d), d)
    D = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], dim=-1))
    R = V @ D @ U.transpose(1, 2)
    s = (S * torch.diagonal(D, dim1=-2, dim2=-1)).sum(-1) / xx.clamp_min(1e-12)
    return R, s


PERSPECTIVE_TOLERANCE = 1e-5
PERSPECTIVE_TOLERANCE_FP16 = 1e-3


def fit_pose(
    landmarks_2d,
    reference_3d,
    weights=None,
    *,
    iterations: int = 30,
    device: str | torch.device | None = None,
    autocast: bool = True,
    focal_px=None,
    principal_point=None,
    perspective_iterations: int = 40,
) -> PoseFit:
    """Fit a rigid pose of ``reference_3d`` to B sets of 2D landmarks.

    ``landmarks_2d``: (B, N, 2) (or (N, 2)) image pixels, u right, v down; NaN rows are ignored.
    ``reference_3d``: (N, 3) head frame (x right, y up, z toward camera).
    ``weights``: optional (N,) or (B, N) non-negative point weights.
    ``focal_px`` (scalar or (B,)) and ``principal_point`` ((2,) or (B, 2), image pixels): a pinhole
    camera; without them the projection is weak perspective.  With them the fit is POSIT-style
    (DeMenthon & Davis): each landmark is moved along its ray by its current depth offset,
    ``x' = c + (x - c) * (1 - z_i / Z)`` with ``z_i`` the landmark's depth relative to the face
    centre and ``Z = f / s`` the face's distance, and the weak-perspective fit is repeated
    until no landmark moves by more than 1e-5 of its distance to the principal point, at most
    ``perspective_iterations`` times (3-6 steps for faces near the optical axis, more far off it).  The angles
    (and ``rotation``) of a perspective fit are relative to the line of sight to the face, not to the
    optical axis (:func:`_relative_to_line_of_sight`).
    Returns a :class:`PoseFit` with (B,) angles in degrees (NaN for faces with < 4 valid points).
    """
    dev = torch.device(device) if device is not None else default_device()
    if focal_px is None:
        return _fit_weak(landmarks_2d, reference_3d, weights, iterations=iterations, device=dev, autocast=autocast)
    with torch.inference_mode():
        lm = torch.as_tensor(landmarks_2d).to(device=dev, dtype=torch.float32)
        squeeze = lm.dim() == 2
        if squeeze:
            lm = lm[None]
        B = lm.shape[0]
        f = torch.as_tensor(focal_px, dtype=torch.float32, device=dev).expand(B)
        if principal_point is None:
            raise ValueError("a pinhole fit needs principal_point with focal_px")
        c = torch.as_tensor(principal_point, dtype=torch.float32, device=dev).expand(B, 2)
        ref = torch.as_tensor(reference_3d).to(device=dev, dtype=torch.float32)
        rel = lm - c[:, None]
        fit = _fit_weak(lm, ref, weights, iterations=iterations, device=dev, autocast=autocast, squeeze=False)
        shrink_before = torch.ones_like(lm[..., 0])
        # fp16 matrix products (CUDA autocast) leave a ~1e-4 jitter between steps: stop at that level there
        tolerance = PERSPECTIVE_TOLERANCE_FP16 if (autocast and dev.type == "cuda") else PERSPECTIVE_TOLERANCE
        shrink = None
        for _ in range(perspective_iterations):
            # depth of each landmark relative to the fitted centre, in reference units, then pixels / f
            Xc = (fit.centre_weights[..., None] * ref[None]).sum(1)  # (B, 3)
            z = ((ref[None] - Xc[:, None]) @ torch.nan_to_num(fit.rotation)[:, 2][..., None])[..., 0]  # (B, N)
            shrink = 1.0 - torch.nan_to_num(fit.scale)[:, None] * z / f[:, None]
            if (shrink - shrink_before).abs().max() < tolerance:
                break  # every face has converged (typically after 3-6 steps; faces far off-axis take more)
            shrink_before = shrink
            # the pose moves little between these steps: a few depth-completion iterations suffice here...
            fit = _fit_weak(c[:, None] + rel * shrink[..., None], ref, weights, iterations=max(4, iterations // 4),
                            device=dev, autocast=autocast, squeeze=False)
        if shrink is not None:  # ...and the final fit on the converged points gets the full count
            fit = _fit_weak(c[:, None] + rel * shrink[..., None], ref, weights, iterations=iterations, device=dev,
                            autocast=autocast, squeeze=False)
        fit = _relative_to_line_of_sight(fit, ref, f, c)
        if squeeze:
            fit = PoseFit(*(getattr(fit, name)[0] for name in PoseFit.__dataclass_fields__))
        return fit


def _relative_to_line_of_sight(fit: PoseFit, ref: torch.Tensor, f: torch.Tensor, c: torch.Tensor) -> PoseFit:
    """Re-express a perspective fit relative to the ray from the camera to the face.

    A face near the top of a wide frame that looks straight at the camera is turned toward it, so in
    camera axes it reads as pitched down; its picture (and its crop in the dataset) is that of a
    frontal face.  EFHQ bins faces by how they look, so the angles are taken relative to the line of
    sight (the "allocentric" pose): ``R = R_ray^T R_camera`` with ``R_ray`` the smallest rotation
    taking the optical axis to the ray through the fitted centre of the landmarks (its depth offset
    is 0, so its corrected image point is its true one).  For a face on the optical axis nothing
    changes; weak-perspective fits are already relative to the line of sight.
    """
    Xc = (fit.centre_weights[..., None] * ref[None]).sum(1)  # (B, 3) head frame
    cam = (torch.nan_to_num(fit.rotation) @ Xc[..., None])[..., 0]
    centre = torch.nan_to_num(fit.translation) + torch.nan_to_num(fit.scale)[:, None] * torch.stack(
        [cam[:, 0], -cam[:, 1]], dim=-1)  # (B, 2) pixels
    ray = torch.stack([(centre[:, 0] - c[:, 0]) / f, -(centre[:, 1] - c[:, 1]) / f, -torch.ones_like(f)], dim=-1)
    ray = ray / ray.norm(dim=-1, keepdim=True)
    axis = torch.zeros_like(ray)
    axis[:, 2] = -1.0
    k = torch.linalg.cross(axis, ray, dim=-1)
    sin = k.norm(dim=-1).clamp_min(1e-12)
    cos = (axis * ray).sum(-1)
    k = k / sin[:, None]
    K = torch.zeros(len(k), 3, 3, dtype=k.dtype, device=k.device)
    K[:, 0, 1], K[:, 0, 2], K[:, 1, 2] = -k[:, 2], k[:, 1], -k[:, 0]
    K = K - K.transpose(1, 2)
    eye = torch.eye(3, dtype=k.dtype, device=k.device).expand_as(K)
    R_ray = eye + sin[:, None, None] * K + (1 - cos)[:, None, None] * (K @ K)  # Rodrigues
    R = R_ray.transpose(1, 2) @ torch.nan_to_num(fit.rotation)
    yaw, pitch, roll = matrix_to_euler(R)
    bad = ~torch.isfinite(fit.yaw)
    nan = torch.full_like(yaw, float("nan"))
    fit.yaw, fit.pitch, fit.roll = (torch.where(bad, nan, a) for a in (yaw, pitch, roll))
    fit.rotation = torch.where(bad[:, None, None], torch.full_like(R, float("nan")), R)
    return fit


def _fit_weak(landmarks_2d, reference_3d, weights=None, *, iterations: int, device: torch.device, autocast: bool,
              squeeze: bool = True) -> PoseFit:
    """The weak-perspective fit (see the module docstring)."""
    dev = device
    with torch.inference_mode():
        lm = torch.as_tensor(landmarks_2d).to(device=dev, dtype=torch.float32)
        squeeze = squeeze and lm.dim() == 2
        if lm.dim() == 2:
            lm = lm[None]
        ref = torch.as_tensor(reference_3d).to(device=dev, dtype=torch.float32)
        B, N, _ = lm.shape
        if ref.shape != (N, 3):
            raise ValueError(f"reference_3d has shape {tuple(ref.shape)}, expected ({N}, 3) for {N} landmarks")
        if weights is None:
            w = torch.ones(B, N, device=dev)
        else:
            w = torch.as_tensor(weights).to(device=dev, dtype=torch.float32)
            w = w.expand(B, N).clone() if w.dim() == 1 else w.clone()
        valid = torch.isfinite(lm).all(-1) & (w > 0)
        w = torch.where(valid, w, torch.zeros_like(w))
        lm = torch.where(valid[..., None], lm, torch.zeros_like(lm))
        n_valid = valid.sum(-1)
        wsum = w.sum(-1, keepdim=True).clamp_min(1e-12)
        w = w / wsum  # (B, N), sums to 1

        # image -> y-up coordinates, weighted centring and normalisation (fp32)
        q = torch.stack([lm[..., 0], -lm[..., 1]], dim=-1)
        qc = (w[..., None] * q).sum(1)  # (B, 2)
        q0 = q - qc[:, None]
        # A face with < 4 valid points gets NaN at the end; keep its numbers finite on the way (a ~1e12
        # normalisation would overflow fp16 under CUDA autocast and NaN the SVD of the whole batch).
        fittable = n_valid >= 4
        sq = torch.sqrt((w * (q0 ** 2).sum(-1)).sum(-1)).clamp_min(1e-12)  # (B,)
        sq = torch.where(fittable, sq, torch.ones_like(sq))
        q0 = torch.where(valid[..., None], q0 / sq[:, None, None], torch.zeros_like(q0))
        Xc = w @ ref  # (B, 3)
        X0 = ref[None] - Xc[:, None]  # (B, N, 3)
        sX = torch.sqrt((w * (X0 ** 2).sum(-1)).sum(-1)).clamp_min(1e-12)
        sX = torch.where(fittable, sX, torch.ones_like(sX))
        X0 = torch.where(valid[..., None], X0 / sX[:, None, None], torch.zeros_like(X0))

        use_amp = autocast and dev.type == "cuda"
        with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=use_amp):
            XtW = (X0 * w[..., None]).transpose(1, 2)  # (B, 3, N)
            G = XtW @ X0  # (B, 3, 3)
            C = XtW @ q0  # (B, 3, 2)
        G = G.float() + 1e-6 * torch.eye(3, device=dev)
        A = torch.linalg.solve(G, C.float())  # (B, 3, 2): q0 ~ X0 @ A
        U, S, Vh = torch.linalg.svd(A.transpose(1, 2), full_matrices=False)  # (2,3) = U S Vh
        R2 = U @ Vh  # (B, 2, 3) orthonormal rows
        r3 = torch.linalg.cross(R2[:, 0], R2[:, 1], dim=-1)
        R = torch.cat([R2, r3[:, None]], dim=1)  # (B, 3, 3), det +1
        s = S.mean(-1)

        # Depth completion: with z_i = s X0_i . r3 the 3D cross-covariance is
        # H = sum_i w_i X0_i [q0_i, z_i]^T = [C, s G r3], so each iteration costs O(B), not O(B N).
        Gf, Cf = G.float(), C.float()
        for _ in range(iterations):
            H = torch.cat([Cf, s[:, None, None] * (Gf @ R[:, 2][..., None])], dim=-1)  # (B, 3, 3)
            R, s = _procrustes_from_cov(H, torch.diagonal(Gf, dim1=-2, dim2=-1).sum(-1))

        pred = s[:, None, None] * (X0 @ R[:, :2].transpose(1, 2))  # (B, N, 2), normalised units
        err2 = (w * ((pred - q0) ** 2).sum(-1)).sum(-1)  # weighted mean squared error
        residual = torch.sqrt(err2) / s.clamp_min(1e-12)  # relative to the projected reference size
        residual_px = torch.sqrt(err2) * sq

        scale = s * sq / sX  # pixels per reference unit
        cam_c = (R @ Xc[..., None])[..., 0]  # (B, 3)
        t_up = qc - scale[:, None] * cam_c[:, :2]
        translation = torch.stack([t_up[:, 0], -t_up[:, 1]], dim=-1)

        yaw, pitch, roll = matrix_to_euler(R)
        bad = n_valid < 4
        nan = torch.full_like(yaw, float("nan"))
        out = PoseFit(
            yaw=torch.where(bad, nan, yaw),
            pitch=torch.where(bad, nan, pitch),
            roll=torch.where(bad, nan, roll),
            scale=torch.where(bad, nan, scale),
            translation=torch.where(bad[:, None], torch.full_like(translation, float("nan")), translation),
            residual=torch.where(bad, nan, residual),
            rotation=torch.where(bad[:, None, None], torch.full_like(R, float("nan")), R),
            residual_px=torch.where(bad, nan, residual_px),
            centre_weights=w,
        )
        if squeeze:
            out = PoseFit(*(getattr(out, f)[0] for f in PoseFit.__dataclass_fields__))
        return out


def estimate_batch(landmarks_2d, reference_3d, weights=None, *, device=None, batch_size: int = 4096):
    """numpy in, numpy out: (B, N, 2) pixels -> yaw, pitch, roll (B,) float64 degrees (in chunks)."""
    lm = np.asarray(landmarks_2d, dtype=np.float32)
    if lm.ndim == 2:
        lm = lm[None]
    outs = [np.empty(len(lm)) for _ in range(3)]
    for start in range(0, len(lm), batch_size):
        fit = fit_pose(lm[start : start + batch_size], reference_3d, weights, device=device)
        for o, v in zip(outs, (fit.yaw, fit.pitch, fit.roll)):
            o[start : start + batch_size] = v.double().cpu().numpy()
    return tuple(outs)


# ------------------------------------------------------------------------------------------
# Estimators
# ------------------------------------------------------------------------------------------

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
    output order) and fits only ``landmark_indices``.
    """

    name: str
    reference_3d: np.ndarray
    landmark_indices: np.ndarray | None = None
    weights: np.ndarray | None = None

    def __post_init__(self):
        self.reference_3d = np.asarray(self.reference_3d, dtype=np.float64)
        if self.landmark_indices is None:
            self.landmark_indices = np.arange(len(self.reference_3d))
        self.landmark_indices = np.asarray(self.landmark_indices, dtype=np.int64)

    @property
    def n_points(self) -> int:
        return len(self.reference_3d)

    def fit(self, landmarks_2d, *, device=None, cameras=None) -> PoseFit:
        """``cameras``: optional ``(focal_px, principal_point)`` (scalars / (B,) and (2,) / (B, 2)) for a
        perspective fit; weak perspective without."""
        lm = np.asarray(landmarks_2d, dtype=np.float32)
        if lm.ndim == 2:
            lm = lm[None]
        if lm.shape[1:] != (self.n_points, 2):
            raise ValueError(f"{self.name}: expected (B, {self.n_points}, 2) landmarks, got {lm.shape}")
        idx = self.landmark_indices
        focal, principal = cameras if cameras is not None else (None, None)
        return fit_pose(lm[:, idx], self.reference_3d[idx], self.weights, device=device, focal_px=focal,
                        principal_point=principal)

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
        return PoseEstimate(to(fit.yaw), to(fit.pitch), to(fit.roll), res, residual_confidence(res))


#: Pitch zero (degrees) of each estimator's 3D reference: the reference is turned by this much about its x axis so
#: that a level head reads pitch 0.  Both references take their zero from insightface's 3DMM mean shape, whose
#: frame is tilted against a level head: measured before this correction, the ``facemesh`` estimator read the
#: tune people's head-turn renders (benchmarks/pose_accuracy.py, whose zero is each photo's own dlib68-mean-shape
#: frame) PITCH_BIAS low, and dlib68 lower still, and real portraits of people facing the camera read low too
#: (the seven real photos: median -8 deg, the astronaut's formal portrait -20).  Checked on real photos by the
#: tests (tests/core/test_pose.py::test_level_heads_read_pitch_zero_on_real_photos).
PITCH_ZERO_DEG: dict[str, float] = {"facemesh": 5.0, "dlib68": 7.0}


def _pitch_zeroed(reference: np.ndarray, degrees: float) -> np.ndarray:
    """The reference seen at pitch -``degrees`` (head frame): a face that read pitch -d now reads 0."""
    R = euler_to_matrix_np(0.0, -float(degrees), 0.0)
    return np.asarray(reference, np.float64) @ R.T


def facemesh_estimator() -> LandmarkPoseEstimator:
    """FaceMesh (478 points in MediaPipe order; the 468 mesh vertices are fitted, iris points not)."""
    from efhq_assets.core import face_models_3d as fm3d  # numpy only  # noqa: PLC0415

    return LandmarkPoseEstimator("facemesh", _pitch_zeroed(fm3d.facemesh_reference(), PITCH_ZERO_DEG["facemesh"]),
                                 fm3d.FACEMESH_STABLE_INDICES)


# ------------------------------------------------------------------------------------------
# Large yaw
# ------------------------------------------------------------------------------------------

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
#: FaceMesh's fit is taken as an outlier when the five points read at least LMK5_OVERRIDE_YAW and FaceMesh reads
#: LMK5_OVERRIDE_GAP less (its landmarks latched onto a frontal shape: seen on full profiles it followed).
LMK5_OVERRIDE_YAW = 55.0
LMK5_OVERRIDE_GAP = 30.0


def lmk5_pose(lmk5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(B, 5, 2) or (B, 10) five points (image-left eye, image-right eye, nose, mouth left, mouth right) -> yaw,
    pitch, roll (B,) degrees, NaN where a face has no finite points."""
    p = np.asarray(lmk5, np.float64).reshape(-1, 5, 2)
    em = (p[:, 0] + p[:, 1]) / 2
    mm = (p[:, 3] + p[:, 4]) / 2
    v = mm - em
    h = np.linalg.norm(v, axis=1)
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
    by_track: dict = {}
    for i, t in enumerate(tracks):
        if t is not None and np.isfinite(y[i]):
            by_track.setdefault(t, []).append(i)
    for idx in by_track.values():
        idx = sorted(idx, key=lambda i: frames[i])
        for a, b, c in zip(idx, idx[1:], idx[2:]):
            if frames[b] - frames[a] > max_gap or frames[c] - frames[b] > max_gap:
                continue
            if abs(y[a] - y[c]) <= neighbours_agree and min(abs(y[b] - y[a]), abs(y[b] - y[c])) > spike:
                out[b] = (y[a] + y[c]) / 2
                replaced[b] = True
    return out, replaced


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
RELIABILITY_DEG: dict[str, tuple[float, float, float]] = {
    "facemesh": (1.5, 4.7, 1.4),
    "dlib68": (5.3, 4.9, 4.5),
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
