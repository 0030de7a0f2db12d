"""Rotation math in the project's angle convention (:mod:`efhq_assets.core.pose.convention`):
``R(yaw, pitch, roll) = Rz(-roll) @ Rx(-pitch) @ Ry(yaw)`` (head -> camera) and its inverse, torch and numpy."""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["euler_to_matrix", "matrix_to_euler", "euler_to_matrix_np", "matrix_to_euler_np"]


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
