"""SynergyNet (MobileNet-v2 3DMM regressor, the pose estimator EFHQ used) in plain torch.

Written from choyingw/SynergyNet (``model_building.py``, ``backbone_nets/mobilenetv2_backbone.py``,
``backbone_nets/pointnet_backbone.py``, ``utils/inference.py``); torchvision is not used.

Checkpoint ``pretrained/best.pth.tar`` (manifest ``synergynet``) and key mapping
--------------------------------------------------------------------------------
``{'epoch': n, 'state_dict': DataParallel(SynergyNet).state_dict()}``, so every key starts with
``module.`` (stripped).  Then:

* ``I2P.backbone.*``        -> :class:`MobileNetV2Regressor` (``features.0..18``,
  ``classifier_ori.1`` (12), ``classifier_shape.1`` (40), ``classifier_exp.1`` (10));
  loaded with ``strict=True``.
* ``forwardDirection.*`` / ``reverseDirection.*`` -> :class:`PointMLPForward` /
  :class:`PointMLPReverse` (the landmark-refinement and reverse MLPs; loaded strictly so the file
  is checked as a whole, not used for pose).
* buffers ``param_mean``, ``param_std`` (>= 62 values; the first 62 de-whiten the output, as
  upstream slices ``[:62]``) and ``u_base`` (204, 1), ``w_shp_base`` (204, 40),
  ``w_exp_base`` (204, 10) (the 68-landmark 3DMM basis) -> :class:`SynergyNet` buffers.
* ``u``, ``w_shp``, ``w_exp`` (dense 53,215-vertex basis) and ``u_tex``, ``w_tex`` (in the released
  file, SynergyNet issue #6) are ignored: pose and 68 landmarks do not need them.
* any other key, or a missing one, is an error.

Inference (upstream ``get_all_outputs``): ROI = square of side 1.2 x box height around the box
centre (zero-padded outside the image), resized to 120x120, **BGR** as read by OpenCV,
``(x - 127.5) / 128``.  62 outputs -> de-whitened -> camera ``P = [f R | t]`` (3x4) -> R by
``P2sRt`` -> project angles (same frames; see :mod:`published_angles`).  Upstream resizes with
OpenCV's Lanczos; here torch bilinear with antialias (so the crop can be made on the GPU).

Only numpy and torch are imported here.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from .base import ModelBackend
from .published_angles import affine_to_rotation, ddfa_camera_to_project, project_angles
from .sixdrepnet import clean_state_dict, default_device, load_checkpoint
from .weights import resolve_weights

__all__ = [
    "MobileNetV2Regressor",
    "PointMLPForward",
    "PointMLPReverse",
    "SynergyNet",
    "build_synergynet",
    "roi_boxes",
    "crop_rois",
    "SynergyNetEstimator",
    "IGNORED_KEYS",
]

IGNORED_KEYS = ("u", "w_shp", "w_exp", "u_tex", "w_tex")
_BUFFERS = {"param_mean": None, "param_std": None, "u_base": (204, 1), "w_shp_base": (204, 40), "w_exp_base": (204, 10)}


def _cbr(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))


class _InvRes(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, t: int):
        super().__init__()
        hid = cin * t
        self.res = stride == 1 and cin == cout
        layers = [_cbr(cin, hid, 1)] if t != 1 else []
        layers += [_cbr(hid, hid, 3, stride, hid), nn.Conv2d(hid, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.res else self.conv(x)


class MobileNetV2Regressor(nn.Module):
    """MobileNet-v2 (width 1.0) with three heads: 12 camera, 40 shape, 10 expression params."""

    SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))

    def __init__(self):
        super().__init__()
        feats = [_cbr(3, 32, 3, 2)]
        cin = 32
        for t, c, n, s in self.SETTING:
            for i in range(n):
                feats.append(_InvRes(cin, c, s if i == 0 else 1, t))
                cin = c
        feats.append(_cbr(cin, 1280, 1))
        self.features = nn.Sequential(*feats)
        self.classifier_ori = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 12))
        self.classifier_shape = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 40))
        self.classifier_exp = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 10))

    def forward(self, x):
        f = F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)
        return torch.cat([self.classifier_ori(f), self.classifier_shape(f), self.classifier_exp(f)], 1)


def _c1(cin, cout):
    return nn.Conv1d(cin, cout, 1)


class PointMLPForward(nn.Module):
    """Parameter layout of upstream ``MLP_for(68)`` (conv1..9, bn1..9; conv6 takes 2418 ch)."""

    def __init__(self):
        super().__init__()
        chans = [(3, 64), (64, 64), (64, 64), (64, 128), (128, 1024), (2418, 512), (512, 256), (256, 128), (128, 3)]
        for i, (a, b) in enumerate(chans, 1):
            setattr(self, f"conv{i}", _c1(a, b))
        for i, (_, b) in enumerate(chans, 1):
            setattr(self, f"bn{i}", nn.BatchNorm1d(b))


class PointMLPReverse(nn.Module):
    """Parameter layout of upstream ``MLP_rev(68)``."""

    def __init__(self):
        super().__init__()
        chans = [(3, 64), (64, 64), (64, 64), (64, 128), (128, 1024)]
        for i, (a, b) in enumerate(chans, 1):
            setattr(self, f"conv{i}", _c1(a, b))
        for name, b in (("6_1", 12), ("6_2", 40), ("6_3", 10)):
            setattr(self, f"conv{name}", _c1(1024, b))
        for i, (_, b) in enumerate(chans, 1):
            setattr(self, f"bn{i}", nn.BatchNorm1d(b))
        for name, b in (("6_1", 12), ("6_2", 40), ("6_3", 10)):
            setattr(self, f"bn{name}", nn.BatchNorm1d(b))


class SynergyNet(nn.Module):
    def __init__(self, n_whiten: int = 62):
        super().__init__()
        self.backbone = MobileNetV2Regressor()
        self.forwardDirection = PointMLPForward()
        self.reverseDirection = PointMLPReverse()
        self.register_buffer("param_mean", torch.zeros(n_whiten))
        self.register_buffer("param_std", torch.ones(n_whiten))
        self.register_buffer("u_base", torch.zeros(204, 1))
        self.register_buffer("w_shp_base", torch.zeros(204, 40))
        self.register_buffer("w_exp_base", torch.zeros(204, 10))

    def params62(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 120, 120) normalised BGR -> (B, 62) de-whitened 3DMM parameters (float32)."""
        p = self.backbone(x).float()
        return p * self.param_std[:62] + self.param_mean[:62]

    def camera(self, params: torch.Tensor) -> torch.Tensor:
        return params[:, :12].reshape(-1, 3, 4)

    def landmarks68(self, params: torch.Tensor) -> torch.Tensor:
        """(B, 62) -> (B, 3, 68) landmarks in 120x120 ROI pixels (x right, y down), upstream
        ``reconstruct_vertex_62`` (sparse, transform=True)."""
        P = self.camera(params)
        shp, exp = params[:, 12:52, None], params[:, 52:62, None]
        v = (self.u_base + self.w_shp_base @ shp + self.w_exp_base @ exp)  # (B, 204, 1), xyz interleaved
        v = v.reshape(-1, 68, 3).transpose(1, 2)
        out = P[:, :, :3] @ v + P[:, :, 3:]
        out = out.clone()
        out[:, 1] = 120 + 1 - out[:, 1]
        return out


def build_synergynet(weights: str | os.PathLike | dict | None = None) -> SynergyNet:
    """SynergyNet with the key mapping in the module docstring (strict on every used key)."""
    if weights is None:
        return SynergyNet().eval()
    sd = clean_state_dict(load_checkpoint(weights) if not isinstance(weights, dict) else weights)
    groups: dict[str, dict] = {"backbone": {}, "forwardDirection": {}, "reverseDirection": {}}
    buffers, unexpected = {}, []
    for k, v in sd.items():
        if k.startswith("I2P.backbone."):
            groups["backbone"][k[len("I2P.backbone."):]] = v
        elif k.split(".", 1)[0] in ("forwardDirection", "reverseDirection"):
            head, rest = k.split(".", 1)
            groups[head][rest] = v
        elif k in _BUFFERS:
            buffers[k] = v
        elif k in IGNORED_KEYS:
            continue
        else:
            unexpected.append(k)
    missing = [k for k in _BUFFERS if k not in buffers]
    if unexpected or missing:
        raise RuntimeError(
            f"SynergyNet checkpoint does not match the published layout: unexpected keys {unexpected[:10]}, missing buffers {missing}"
        )
    pm = buffers["param_mean"].reshape(-1)
    if pm.numel() < 62 or buffers["param_std"].numel() != pm.numel():
        raise RuntimeError(f"SynergyNet param_mean/param_std must hold >= 62 values, got {pm.numel()}/{buffers['param_std'].numel()}")
    for k, shape in _BUFFERS.items():
        if shape is not None and tuple(buffers[k].shape) != shape:
            raise RuntimeError(f"SynergyNet buffer {k} has shape {tuple(buffers[k].shape)}, expected {shape}")
    net = SynergyNet(n_whiten=pm.numel())
    net.backbone.load_state_dict(groups["backbone"], strict=True)
    net.forwardDirection.load_state_dict(groups["forwardDirection"], strict=True)
    net.reverseDirection.load_state_dict(groups["reverseDirection"], strict=True)
    with torch.no_grad():
        net.param_mean.copy_(pm)
        net.param_std.copy_(buffers["param_std"].reshape(-1))
        for k in ("u_base", "w_shp_base", "w_exp_base"):
            getattr(net, k).copy_(buffers[k])
    return net.eval()


def roi_boxes(boxes: Sequence[np.ndarray], scale: float = 1.2) -> np.ndarray:
    """Upstream ROI: square of side ``scale * box height`` centred on the box (half-side floored,
    ``margin = side * 1.2 // 2``)."""
    b = np.asarray([np.asarray(x, np.float64).reshape(-1)[:4] for x in boxes], np.float64).reshape(-1, 4)
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    m = np.floor((b[:, 3] - b[:, 1]) * scale / 2)
    return np.stack([cx - m, cy - m, cx + m, cy + m], 1)


def crop_rois(image: np.ndarray, rois: np.ndarray) -> list[np.ndarray]:
    """Zero-padded crops of rounded ROIs (upstream ``crop_img``)."""
    h, w = image.shape[:2]
    out = []
    for sx, sy, ex, ey in np.round(rois).astype(int):
        ex, ey = max(ex, sx + 1), max(ey, sy + 1)
        res = np.zeros((ey - sy, ex - sx, 3), np.uint8)
        xa, ya, xb, yb = max(sx, 0), max(sy, 0), min(ex, w), min(ey, h)
        if xb > xa and yb > ya:
            res[ya - sy: yb - sy, xa - sx: xb - sx] = image[ya:yb, xa:xb]
        out.append(res)
    return out


def _prep(crops, device, size: int = 120) -> torch.Tensor:
    xs = []
    for c in crops:
        t = torch.from_numpy(np.ascontiguousarray(c)).to(device).permute(2, 0, 1)[None].float()
        if t.shape[-2:] != (size, size):
            t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        xs.append(t)
    return (torch.cat(xs) - 127.5) / 128.0


class SynergyNetEstimator(ModelBackend):
    """PoseEstimator on SynergyNet; ``landmarks68`` gives its 68 3D landmarks in image pixels."""

    kind = "pose"

    def __init__(self, weights=None, device=None, fp16: bool | None = None, random_init: bool = False, verify: bool = True):
        self.name, self.version = "synergynet", "1"
        self.device = torch.device(device) if device is not None else default_device()
        self.fp16 = (self.device.type == "cuda") if fp16 is None else bool(fp16)
        if random_init:
            net = build_synergynet(None)
        else:
            weights = resolve_weights("synergynet", weights, verify)
            if not isinstance(weights, dict):
                self.weight_paths = (weights,)
            net = build_synergynet(weights)
        self.net = net.to(self.device).eval()

    @torch.inference_mode()
    def _params(self, image: np.ndarray, boxes) -> tuple[torch.Tensor, np.ndarray]:
        rois = roi_boxes(boxes)
        x = _prep(crop_rois(image, rois), self.device)
        with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.fp16 and self.device.type == "cuda"):
            p = self.net.params62(x)
        return p.float(), rois

    def estimate(self, image: np.ndarray, boxes: Sequence[np.ndarray], lmk5=None) -> np.ndarray:
        if len(boxes) == 0:
            return np.zeros((0, 3), np.float32)
        p, _ = self._params(image, boxes)
        R = affine_to_rotation(self.net.camera(p).double().cpu())
        return project_angles(ddfa_camera_to_project(R)).numpy().astype(np.float32)

    def landmarks68(self, image: np.ndarray, boxes: Sequence[np.ndarray]) -> np.ndarray:
        """(N, 68, 3) float32 landmarks in full-image pixels (upstream ``predict_sparseVert``)."""
        if len(boxes) == 0:
            return np.zeros((0, 68, 3), np.float32)
        p, rois = self._params(image, boxes)
        v = self.net.landmarks68(p).cpu().numpy().astype(np.float64)
        sx = (rois[:, 2] - rois[:, 0]) / 120.0
        sy = (rois[:, 3] - rois[:, 1]) / 120.0
        v[:, 0] = v[:, 0] * sx[:, None] + rois[:, 0:1]
        v[:, 1] = v[:, 1] * sy[:, None] + rois[:, 1:2]
        v[:, 2] *= ((sx + sy) / 2)[:, None]
        return v.transpose(0, 2, 1).astype(np.float32)
