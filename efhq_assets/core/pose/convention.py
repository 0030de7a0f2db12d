"""The project's one head-pose angle convention (docs/architecture.md, "Invariants").

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
The composition and its inverse are :mod:`efhq_assets.core.pose.rotations`.
Ranges: yaw and roll in (-180, 180], pitch in [-90, 90]; at pitch = +-90 (gimbal lock)
roll is set to 0.  Because roll is applied last about the camera axis, the two image-space
invariants hold *exactly*, for any pose:

* mirroring the image (u -> W - u, i.e. conjugating R by diag(-1, 1, 1), with landmarks
  relabelled left<->right) maps (yaw, pitch, roll) -> (-yaw, pitch, -roll);
* rotating the image in-plane by ``a`` degrees **clockwise as seen on screen** (its top moves
  toward the right) maps roll -> roll + a and leaves yaw and pitch unchanged.

Weak perspective (scaled orthographic) projection of a head point ``p``::

    u = s * (R p)_x + t_u,    v = -s * (R p)_y + t_v

(:func:`project`, :func:`project_np`; the perspective camera is :func:`efhq_assets.core.pose.fit.fit_pose`'s).
"""

from __future__ import annotations

import numpy as np
import torch

from .rotations import _as_tensor, euler_to_matrix

__all__ = ["project", "project_np"]


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
