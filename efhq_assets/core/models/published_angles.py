"""The ONE place where published head-pose networks' outputs are converted to the project convention.

Project convention (:mod:`efhq_assets.core.pose`): ``R = Rz(-roll) @ Rx(-pitch) @ Ry(yaw)`` maps
head coordinates (x toward the subject's left = image right on a frontal face, y up, z out of
the face) to camera coordinates (x image right, y up, z toward the viewer); yaw > 0 = nose toward
the image's right, pitch > 0 = looks up, roll > 0 = top of the head toward the image's right.

Every conversion below goes through a rotation matrix, never through "flip the sign of yaw":
the published networks decompose their matrices in other axis orders, so for combined
rotations a per-angle sign flip is wrong (it is exact only when two of the three angles are 0).

Sources read (public code, read to derive the frames; nothing copied):

* 300W-LP / 3DDFA (used by 6DRepNet, 6DRepNet360 and SynergyNet): the 3DDFA projection is
  ``v = f * R3 @ X + t`` followed by ``v_y = H + 1 - v_y``, so ``R3`` maps the BFM head frame
  (x subject's left, y up, z out of the face) to a camera frame with x right and **y up**: the
  project's frames.  Pose_Para ``[pitch, yaw, roll]`` give ``R3 = Rx(-p) Ry(-y) Rz(-r)``
  (face3d ``angle2matrix_3ddfa``).  So a 300W-LP yaw > 0 turns the nose toward the image's
  *left*.
* 6DRepNet / 6DRepNet360 (thohemp, ``utils.get_R``): training targets are
  ``get_R(pitch, yaw, roll) = Rz(r) Ry(y) Rx(p) = R3^T``; the network's Gram-Schmidt output
  approximates that, hence ``R_project = R_6d^T`` (:func:`sixdrepnet_to_project`).  Its
  published Euler angles (``compute_euler_angles_from_rotation_matrices``: pitch, yaw, roll of
  ``Rz Ry Rx``) are the 300W-LP angles (:func:`w300lp_angles_to_project`).
* SynergyNet (choyingw, ``utils/inference.py``): the 62 3DMM parameters hold the 3DDFA camera
  ``P = [f R3 | t]``; ``P2sRt`` normalises the first two rows and completes a right-handed R, so
  ``R_project = R3`` (:func:`ddfa_camera_to_project`).  Its published angles (``predict_pose`` ->
  ``matrix2angle_corr``: ``yaw = asin(R[2,0])``, ``pitch = atan2(R[1,2], R[2,2])``,
  ``roll = atan2(R[0,1], R[0,0])``) mix rows and columns and are **not** the inverse of any
  Euler composition (checked numerically over all 288 axis-order/sign/permutation/transpose
  variants), so :func:`synergynet_angles_to_project` inverts that map numerically (Newton on
  SO(3)).  For a pure turn ``synergy_yaw = -project_yaw`` (EFHQ's ``pose_grid.py`` flips it for
  this reason) while pitch and roll keep their sign.
* insightface 1k3d68 (``model_zoo/landmark.py``): landmarks in image pixels (x right, y down) are
  fitted to ``meanshape_68.pkl`` (x right, y down, z toward the viewer: a left-handed frame) by an
  affine ``P``; ``P2sRt`` completes the third row with ``r1 x r2``.  Working out the handedness,
  ``R_project = E @ R_if @ E`` with ``E = diag(1, -1, 1)`` (:func:`insightface_to_project`).
  Its ``face.pose`` = ``matrix2angle(R_if)`` = (pitch, yaw, roll) of ``Rz Ry Rx``
  (:func:`insightface_angles_to_project`).

Only numpy and torch are imported (this module must import on the GPU machine).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..pose.rotations import euler_to_matrix, matrix_to_euler

__all__ = [
    "rot6d_to_matrix",
    "affine_to_rotation",
    "sixdrepnet_to_project",
    "ddfa_camera_to_project",
    "insightface_to_project",
    "w300lp_angles_to_matrix",
    "w300lp_angles_to_project",
    "insightface_angles_to_project",
    "synergynet_matrix_to_angles",
    "synergynet_angles_to_project",
    "project_angles",
]

_D2R = math.pi / 180.0


def _t(x, dtype=torch.float64) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.to(dtype)
    return torch.as_tensor(np.asarray(x, dtype=np.float64), dtype=dtype)


def _rx(a):
    c, s = torch.cos(a), torch.sin(a)
    o, z = torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([o, z, z, z, c, -s, z, s, c], -1).reshape(*a.shape, 3, 3)


def _ry(a):
    c, s = torch.cos(a), torch.sin(a)
    o, z = torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([c, z, s, z, o, z, -s, z, c], -1).reshape(*a.shape, 3, 3)


def _rz(a):
    c, s = torch.cos(a), torch.sin(a)
    o, z = torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([c, -s, z, s, c, z, z, z, o], -1).reshape(*a.shape, 3, 3)


# ------------------------------------------------------------------------------------------
# Network outputs -> rotation matrices
# ------------------------------------------------------------------------------------------
def rot6d_to_matrix(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(B, 6) -> (B, 3, 3): the 6D representation (Zhou et al.) by Gram-Schmidt.

    Columns: ``a = normalise(x[:3])``, ``c = normalise(a x x[3:])``, ``b = c x a`` -> ``[a b c]``
    (6DRepNet's ``compute_rotation_matrix_from_ortho6d``).  Runs in the input dtype promoted
    to at least float32 (fp16 cross products lose too much).
    """
    x = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    a = x[:, 0:3]
    a = a / a.norm(dim=1, keepdim=True).clamp_min(eps)
    c = torch.linalg.cross(a, x[:, 3:6], dim=1)
    c = c / c.norm(dim=1, keepdim=True).clamp_min(eps)
    b = torch.linalg.cross(c, a, dim=1)
    return torch.stack([a, b, c], dim=2)


def affine_to_rotation(P: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """(..., 3, >=3) affine camera -> (..., 3, 3) rotation: rows 0 and 1 normalised, row 2 =
    row0 x row1 (3DDFA / insightface ``P2sRt``; row 1 is not re-orthogonalised, as upstream)."""
    P = _t(P) if not isinstance(P, torch.Tensor) else P
    r1 = P[..., 0, :3]
    r2 = P[..., 1, :3]
    r1 = r1 / r1.norm(dim=-1, keepdim=True).clamp_min(eps)
    r2 = r2 / r2.norm(dim=-1, keepdim=True).clamp_min(eps)
    r3 = torch.linalg.cross(r1, r2, dim=-1)
    return torch.stack([r1, r2, r3], dim=-2)


# ------------------------------------------------------------------------------------------
# Matrices in a published frame -> project matrices
# ------------------------------------------------------------------------------------------
def sixdrepnet_to_project(R6: torch.Tensor) -> torch.Tensor:
    """6DRepNet / 6DRepNet360 output matrix (``~ get_R(p, y, r) = R3^T``) -> project R."""
    return R6.transpose(-1, -2)


def ddfa_camera_to_project(R3: torch.Tensor) -> torch.Tensor:
    """3DDFA / SynergyNet rotation (from ``P2sRt`` of the 3DMM camera) -> project R (same frames)."""
    return R3


_E = torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)


def insightface_to_project(R_if: torch.Tensor) -> torch.Tensor:
    """insightface 1k3d68 ``P2sRt`` rotation (y-down image and mean-shape frames) -> project R:
    ``E R E`` with ``E = diag(1, -1, 1)``."""
    e = _E.to(dtype=R_if.dtype, device=R_if.device)
    return R_if * e[:, None] * e[None, :]


def project_angles(R: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) project R -> (..., 3) float64 ``yaw, pitch, roll`` degrees (core.pose)."""
    y, p, r = matrix_to_euler(R.double())
    return torch.stack([y, p, r], dim=-1)


# ------------------------------------------------------------------------------------------
# Published Euler angles -> project angles
# ------------------------------------------------------------------------------------------
def w300lp_angles_to_matrix(pitch, yaw, roll) -> torch.Tensor:
    """300W-LP / 6DRepNet Euler angles (degrees) -> their matrix ``get_R = Rz(r) Ry(y) Rx(p)``."""
    p, y, r = (_t(v) * _D2R for v in (pitch, yaw, roll))
    p, y, r = torch.broadcast_tensors(p, y, r)
    return _rz(r) @ _ry(y) @ _rx(p)


def w300lp_angles_to_project(pitch, yaw, roll) -> torch.Tensor:
    """300W-LP / 6DRepNet (pitch, yaw, roll) degrees -> (..., 3) project (yaw, pitch, roll)."""
    return project_angles(sixdrepnet_to_project(w300lp_angles_to_matrix(pitch, yaw, roll)))


def insightface_angles_to_project(pitch, yaw, roll) -> torch.Tensor:
    """insightface ``face.pose`` (pitch, yaw, roll) degrees -> (..., 3) project (yaw, pitch, roll)."""
    p, y, r = (_t(v) * _D2R for v in (pitch, yaw, roll))
    p, y, r = torch.broadcast_tensors(p, y, r)
    R_if = _rz(r) @ _ry(y) @ _rx(p)
    return project_angles(insightface_to_project(R_if))


def synergynet_matrix_to_angles(R: torch.Tensor) -> torch.Tensor:
    """SynergyNet's ``matrix2angle_corr`` (regular branch), batched: (..., 3, 3) -> (..., 3)
    degrees ``[yaw, pitch, roll]`` as SynergyNet / EFHQ publish them."""
    R = _t(R) if not isinstance(R, torch.Tensor) else R.double()
    x = torch.asin(R[..., 2, 0].clamp(-1.0, 1.0))
    cx = torch.cos(x)
    y = torch.atan2(R[..., 1, 2] / cx, R[..., 2, 2] / cx)
    z = torch.atan2(R[..., 0, 1] / cx, R[..., 0, 0] / cx)
    return torch.stack([x, y, z], dim=-1) / _D2R


def _hat(w: torch.Tensor) -> torch.Tensor:
    z = torch.zeros_like(w[..., 0])
    return torch.stack(
        [z, -w[..., 2], w[..., 1], w[..., 2], z, -w[..., 0], -w[..., 1], w[..., 0], z], -1
    ).reshape(*w.shape[:-1], 3, 3)


def _wrap(d: torch.Tensor) -> torch.Tensor:
    return (d + 180.0) % 360.0 - 180.0


def synergynet_angles_to_project(yaw, pitch, roll, iters: int = 30, tol: float = 1e-9) -> torch.Tensor:
    """SynergyNet's published (yaw, pitch, roll) degrees (EFHQ ``synergy_*`` columns) -> (..., 3)
    project (yaw, pitch, roll).

    Finds R with ``matrix2angle_corr(R) == (yaw, pitch, roll)`` by damped Newton steps on SO(3)
    (numerical Jacobian, float64), started from the single-axis reading
    ``R_project(-yaw, pitch, roll)``; then R is already in the project frame.  Measured: all 300
    random poses with |yaw| < 60, |pitch|, |roll| < 40 recover to < 1e-6 deg (tests); over
    |yaw| < 80, |pitch|, |roll| < 60, 9 of 2,000 did not converge.  Rows whose residual stays
    above 1e-3 deg are returned as NaN rather than silently wrong.
    """
    tgt = torch.stack(torch.broadcast_tensors(_t(yaw), _t(pitch), _t(roll)), -1)
    shape = tgt.shape[:-1]
    tgt = tgt.reshape(-1, 3)
    R = euler_to_matrix(-tgt[:, 0], tgt[:, 1], tgt[:, 2])
    h = 1e-6
    eye = torch.eye(3, dtype=torch.float64)
    for _ in range(iters):
        f = _wrap(synergynet_matrix_to_angles(R) - tgt)
        if float(f.abs().max()) < tol:
            break
        J = torch.empty(R.shape[0], 3, 3, dtype=torch.float64)
        for k in range(3):
            dR = torch.linalg.matrix_exp(_hat(eye[k] * h).expand(R.shape[0], 3, 3))
            J[:, :, k] = _wrap(synergynet_matrix_to_angles(R @ dR) - tgt - f) / h
        step = torch.linalg.lstsq(J, -f.unsqueeze(-1)).solution.squeeze(-1)
        n = step.norm(dim=-1, keepdim=True)
        step = torch.where(n > 0.5, step * (0.5 / n), step)
        R = R @ torch.linalg.matrix_exp(_hat(step))
    res = _wrap(synergynet_matrix_to_angles(R) - tgt).abs().amax(-1)
    out = project_angles(ddfa_camera_to_project(R))
    out[res > 1e-3] = float("nan")
    return out.reshape(*shape, 3)
