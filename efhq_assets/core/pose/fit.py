"""A batched landmark pose fit: weak perspective, and POSIT-style perspective with a pinhole camera.

Angles, frames and the projection: :mod:`efhq_assets.core.pose.convention`.

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
points are fitted as they are (its jaw vertices are model points, not a silhouette).
Where FaceMesh's own landmarks saturate on the head-turn renders (past ~58 degrees), see
:mod:`efhq_assets.core.pose.large_yaw`; each reference's pitch zero is
:data:`efhq_assets.core.pose.estimators.PITCH_ZERO_DEG`.

Speed (CPU, 2 cores, 468 FaceMesh points, 30 refinement iterations): weak perspective about
320-410 faces/s at batch 1 and 2,900-11,700 faces/s at batch 256 (range = machine load); the
perspective fit the pipeline uses repeats it a few times, about 120 faces/s at batch 1 and 1,900 at
batch 256 (benchmarks/analysis.py), still far faster than the landmarkers.  The per-call overhead
dominates, so batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .rotations import matrix_to_euler

__all__ = ["PoseFit", "fit_pose", "estimate_batch", "default_device", "PERSPECTIVE_TOLERANCE",
           "PERSPECTIVE_TOLERANCE_FP16"]


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
    sight_weights=None,
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
    optical axis (:func:`_relative_to_line_of_sight`), through the centre of the points weighted by
    ``sight_weights`` (default: the fit's own ``weights``), so that fits with different weights share one line of
    sight.
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
        sight = fit.centre_weights
        if sight_weights is not None:
            sw = torch.as_tensor(sight_weights).to(device=dev, dtype=torch.float32).expand(B, ref.shape[0])
            sw = torch.where(fit.centre_weights > 0, sw, torch.zeros_like(sw))  # the same valid points
            sight = sw / sw.sum(-1, keepdim=True).clamp_min(1e-12)
        fit = _relative_to_line_of_sight(fit, ref, f, c, sight)
        if squeeze:
            fit = PoseFit(*(getattr(fit, name)[0] for name in PoseFit.__dataclass_fields__))
        return fit


def _relative_to_line_of_sight(fit: PoseFit, ref: torch.Tensor, f: torch.Tensor, c: torch.Tensor,
                               sight: torch.Tensor) -> PoseFit:
    """Re-express a perspective fit relative to the ray from the camera to the face.

    A face near the top of a wide frame that looks straight at the camera is turned toward it, so in
    camera axes it reads as pitched down; its picture (and its crop in the dataset) is that of a
    frontal face.  EFHQ bins faces by how they look, so the angles are taken relative to the line of
    sight (the "allocentric" pose): ``R = R_ray^T R_camera`` with ``R_ray`` the smallest rotation
    taking the optical axis to the ray through the centre of the landmarks weighted by ``sight`` (B, N),
    placed by the fitted pose (for the fit's own weights its depth offset is 0, so its corrected image point is its
    true one).  For a face on the optical axis nothing changes; weak-perspective fits are already relative to the
    line of sight.
    """
    Xc = (sight[..., None] * ref[None]).sum(1)  # (B, 3) head frame
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
