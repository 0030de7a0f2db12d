"""6DRepNet (RepVGG-B1g2) and 6DRepNet360 (ResNet-50) head-pose networks in plain torch.

Written from the published architecture descriptions (thohemp/6DRepNet ``sixdrepnet/model.py``,
``backbone/repvgg.py``; thohemp/6DRepNet360 ``sixdrepnet360/test.py``); torchvision is not
used.  Module names reproduce the published checkpoints' keys exactly, so the files load
with ``strict=True``.

Checkpoints and key mapping
---------------------------
* ``6DRepNet_300W_LP_AFLW2000.pth`` (manifest ``6drepnet``): a bare state dict of the
  **deploy** (re-parameterised) network: ``layer0.rbr_reparam.{weight,bias}``,
  ``layer{1..4}.<i>.rbr_reparam.{weight,bias}``, ``linear_reg.{weight,bias}`` (``layerK`` =
  RepVGG ``stageK``; no ``gap``/``se`` parameters).  Loaded as is.
* Training snapshots of the same network (``train.py`` saves
  ``{'model_state_dict': ...}``) are in the **train-time** form: per block
  ``rbr_dense.conv.weight``, ``rbr_dense.bn.*``, ``rbr_1x1.conv.weight``, ``rbr_1x1.bn.*`` and,
  where in == out channels and stride 1, ``rbr_identity.*`` (a BatchNorm).  They load strictly
  into the train-time form, which is then fused to the deploy form (same maths as RepVGG's
  ``get_equivalent_kernel_bias``).
* ``6DRepNet360_Full-Rotation_300W_LP+Panoptic.pth`` (manifest ``6drepnet360``): the ResNet-50
  (torchvision Bottleneck, layers [3, 4, 6, 3]) keys ``conv1``, ``bn1``,
  ``layer{1..4}.<i>.{conv1,bn1,conv2,bn2,conv3,bn3}``, ``layer{k}.0.downsample.{0,1}``,
  ``linear_reg``; optionally wrapped in ``{'model_state_dict': ...}``.
* Any of them may carry a DataParallel ``module.`` prefix, which is stripped.

Pre-processing (upstream): RGB, ImageNet mean/std; 6DRepNet ``Resize(224) + CenterCrop(224)``,
6DRepNet360 ``Resize(256) + CenterCrop(224)``; its demo crops the detector box enlarged by 0.2
of the box height/width on each side.  Here crops are resized with torch (bilinear,
antialiased, close to PIL's bilinear) on the model's device: uint8 crops go to the device as
uint8 (4x less host-to-device traffic) and are converted there.

Output: the 6D vector -> Gram-Schmidt rotation -> project convention by
:mod:`efhq_assets.core.models.published_angles` (``R_project = R^T``).

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
from .published_angles import project_angles, rot6d_to_matrix, sixdrepnet_to_project
from .weights import resolve_weights

__all__ = [
    "RepVGGBlock",
    "SixDRepNet",
    "SixDRepNet360",
    "Bottleneck",
    "load_checkpoint",
    "clean_state_dict",
    "build_sixdrepnet",
    "build_sixdrepnet360",
    "preprocess_crops",
    "crop_faces",
    "SixDRepNetEstimator",
    "default_device",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


# ------------------------------------------------------------------------------------------
# RepVGG-B1g2
# ------------------------------------------------------------------------------------------
def _conv_bn(cin: int, cout: int, k: int, stride: int, pad: int, groups: int) -> nn.Sequential:
    seq = nn.Sequential()
    seq.add_module("conv", nn.Conv2d(cin, cout, k, stride, pad, groups=groups, bias=False))
    seq.add_module("bn", nn.BatchNorm2d(cout))
    return seq


class RepVGGBlock(nn.Module):
    """3x3 RepVGG block: train form (3x3+BN, 1x1+BN, identity BN) or deploy form (one conv)."""

    def __init__(self, cin: int, cout: int, stride: int = 1, groups: int = 1, deploy: bool = True):
        super().__init__()
        self.cin, self.cout, self.stride, self.groups = cin, cout, stride, groups
        self.nonlinearity = nn.ReLU()
        if deploy:
            self.rbr_reparam = nn.Conv2d(cin, cout, 3, stride, 1, groups=groups, bias=True)
        else:
            self.rbr_identity = nn.BatchNorm2d(cin) if (cin == cout and stride == 1) else None
            self.rbr_dense = _conv_bn(cin, cout, 3, stride, 1, groups)
            self.rbr_1x1 = _conv_bn(cin, cout, 1, stride, 0, groups)

    @property
    def deploy(self) -> bool:
        return hasattr(self, "rbr_reparam")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.deploy:
            return self.nonlinearity(self.rbr_reparam(x))
        out = self.rbr_dense(x) + self.rbr_1x1(x)
        if self.rbr_identity is not None:
            out = out + self.rbr_identity(x)
        return self.nonlinearity(out)

    @staticmethod
    def _fuse(kernel: torch.Tensor, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
        std = (bn.running_var + bn.eps).sqrt()
        t = (bn.weight / std).reshape(-1, 1, 1, 1)
        return kernel * t, bn.bias - bn.running_mean * bn.weight / std

    @torch.no_grad()
    def fuse(self) -> None:
        """Train form -> deploy form (exact up to float rounding)."""
        if self.deploy:
            return
        k3, b3 = self._fuse(self.rbr_dense.conv.weight, self.rbr_dense.bn)
        k1, b1 = self._fuse(F.pad(self.rbr_1x1.conv.weight, [1, 1, 1, 1]), self.rbr_1x1.bn)
        k, b = k3 + k1, b3 + b1
        if self.rbr_identity is not None:
            per_group = self.cin // self.groups
            ident = torch.zeros(self.cin, per_group, 3, 3, dtype=k.dtype, device=k.device)
            idx = torch.arange(self.cin)
            ident[idx, idx % per_group, 1, 1] = 1.0
            ki, bi = self._fuse(ident, self.rbr_identity)
            k, b = k + ki, b + bi
        conv = nn.Conv2d(self.cin, self.cout, 3, self.stride, 1, groups=self.groups, bias=True)
        conv = conv.to(device=k.device, dtype=k.dtype)
        conv.weight.copy_(k)
        conv.bias.copy_(b)
        del self.rbr_dense, self.rbr_1x1, self.rbr_identity
        self.rbr_reparam = conv


#: RepVGG-B1g2: blocks per stage, widths 64*[2,2,2,4]; groups=2 on the even-numbered layers
#: 2..26 (layer 1 = first block of stage 1; stage 0 is never grouped).
_B1G2_BLOCKS = (4, 6, 16, 1)
_B1G2_WIDTHS = (128, 256, 512, 2048)
_B1G2_GROUPED = set(range(2, 27, 2))


class SixDRepNet(nn.Module):
    """RepVGG-B1g2 backbone (stages as ``layer0..layer4``) + global average pool + 6D head."""

    def __init__(self, deploy: bool = True):
        super().__init__()
        self.layer0 = RepVGGBlock(3, 64, stride=2, deploy=deploy)
        cin, idx = 64, 1
        for s, (n, width) in enumerate(zip(_B1G2_BLOCKS, _B1G2_WIDTHS), start=1):
            blocks = []
            for i in range(n):
                g = 2 if idx in _B1G2_GROUPED else 1
                blocks.append(RepVGGBlock(cin, width, stride=2 if i == 0 else 1, groups=g, deploy=deploy))
                cin, idx = width, idx + 1
            setattr(self, f"layer{s}", nn.Sequential(*blocks))
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.linear_reg = nn.Linear(2048, 6)

    def fuse(self) -> "SixDRepNet":
        for m in self.modules():
            if isinstance(m, RepVGGBlock):
                m.fuse()
        return self

    def features6d(self, x: torch.Tensor) -> torch.Tensor:
        for k in range(5):
            x = getattr(self, f"layer{k}")(x)
        return self.linear_reg(torch.flatten(self.gap(x), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 224, 224) normalised RGB -> (B, 3, 3) rotation in 6DRepNet's frame."""
        return rot6d_to_matrix(self.features6d(x))


# ------------------------------------------------------------------------------------------
# ResNet-50 (torchvision Bottleneck naming) for 6DRepNet360 (and HyperIQA)
# ------------------------------------------------------------------------------------------
class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + idt)


class ResNetTrunk(nn.Module):
    """conv1/bn1/maxpool + layer1..layer4 with torchvision's module names."""

    def __init__(self, layers: Sequence[int] = (3, 4, 6, 3)):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], 2)
        self.layer3 = self._make_layer(256, layers[2], 2)
        self.layer4 = self._make_layer(512, layers[3], 2)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        down = None
        if stride != 1 or self.inplanes != planes * 4:
            down = nn.Sequential(nn.Conv2d(self.inplanes, planes * 4, 1, stride, bias=False), nn.BatchNorm2d(planes * 4))
        seq = [Bottleneck(self.inplanes, planes, stride, down)]
        self.inplanes = planes * 4
        seq += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*seq)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))


class SixDRepNet360(ResNetTrunk):
    """ResNet-50 + AvgPool2d(7) + 6D head (6DRepNet360)."""

    def __init__(self):
        super().__init__((3, 4, 6, 3))
        self.avgpool = nn.AvgPool2d(7)
        self.linear_reg = nn.Linear(2048, 6)

    def features6d(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.linear_reg(torch.flatten(self.avgpool(x), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rot6d_to_matrix(self.features6d(x))


# ------------------------------------------------------------------------------------------
# Checkpoint loading
# ------------------------------------------------------------------------------------------
def load_checkpoint(path: str | os.PathLike) -> dict:
    """torch.load on CPU (weights only where the file allows it)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # pragma: no cover - old pickles with non-tensor objects
        return torch.load(path, map_location="cpu", weights_only=False)


def clean_state_dict(obj, wrappers: Sequence[str] = ("model_state_dict", "state_dict")) -> dict[str, torch.Tensor]:
    """Unwrap ``{'model_state_dict'|'state_dict': sd}`` and strip DataParallel ``module.`` prefixes."""
    sd = obj
    for w in wrappers:
        if isinstance(sd, dict) and w in sd and isinstance(sd[w], dict):
            sd = sd[w]
            break
    if not isinstance(sd, dict):
        raise ValueError(f"checkpoint holds a {type(sd).__name__}, not a state dict")
    return {(k[7:] if k.startswith("module.") else k): v for k, v in sd.items()}


def build_sixdrepnet(weights: str | os.PathLike | dict | None = None) -> SixDRepNet:
    """6DRepNet in deploy form; ``weights`` (path or state dict) loaded with strict=True.

    A train-time checkpoint (``rbr_dense`` keys) is loaded strictly into the train form and fused.
    """
    if weights is None:
        return SixDRepNet(deploy=True).eval()
    sd = clean_state_dict(load_checkpoint(weights) if not isinstance(weights, dict) else weights)
    train_form = any(".rbr_dense." in k for k in sd)
    net = SixDRepNet(deploy=not train_form)
    net.load_state_dict(sd, strict=True)
    if train_form:
        net.eval().fuse()
    return net.eval()


def build_sixdrepnet360(weights: str | os.PathLike | dict | None = None) -> SixDRepNet360:
    net = SixDRepNet360()
    if weights is not None:
        sd = clean_state_dict(load_checkpoint(weights) if not isinstance(weights, dict) else weights)
        net.load_state_dict(sd, strict=True)
    return net.eval()


# ------------------------------------------------------------------------------------------
# Pre-processing (batched, uint8 in, on the model's device)
# ------------------------------------------------------------------------------------------
def crop_faces(image: np.ndarray, boxes: Sequence[np.ndarray], enlarge: float = 0.2) -> list[np.ndarray]:
    """Crop each box enlarged by ``enlarge`` x its size on each side (6DRepNet demo), clipped
    to the image (as upstream).  Returns uint8 crops (any size, at least 1x1)."""
    h, w = image.shape[:2]
    out = []
    for b in boxes:
        x1, y1, x2, y2 = (float(v) for v in np.asarray(b).reshape(-1)[:4])
        bw, bh = abs(x2 - x1), abs(y2 - y1)
        xa, ya = max(0, int(x1 - enlarge * bw)), max(0, int(y1 - enlarge * bh))
        xb, yb = min(w, int(x2 + enlarge * bw)), min(h, int(y2 + enlarge * bh))
        xb, yb = max(xb, xa + 1), max(yb, ya + 1)
        out.append(np.ascontiguousarray(image[ya:yb, xa:xb]))
    return out


def preprocess_crops(
    crops: np.ndarray | Sequence[np.ndarray] | torch.Tensor,
    device: torch.device | str,
    resize: int = 224,
    crop: int = 224,
    bgr: bool = True,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """uint8 crops (B, H, W, 3) array/tensor, or a list of differently sized crops ->
    (B, 3, crop, crop) normalised RGB on ``device``.

    torchvision semantics: ``Resize(resize)`` scales the shorter side to ``resize`` then
    ``CenterCrop(crop)``.  The uint8 data is copied to the device first (non_blocking from
    pinned memory on CUDA), then converted and resized there.
    """
    device = torch.device(device)
    if isinstance(crops, (list, tuple)) and len({c.shape for c in crops}) > 1:
        return torch.cat([preprocess_crops(c[None], device, resize, crop, bgr, mean, std, dtype) for c in crops])
    if isinstance(crops, (list, tuple)):
        crops = np.stack(crops)
    t = crops if isinstance(crops, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(crops))
    if device.type == "cuda" and t.device.type == "cpu":
        t = t.pin_memory().to(device, non_blocking=True)
    else:
        t = t.to(device)
    x = t.permute(0, 3, 1, 2).to(torch.float32)
    if bgr:
        x = x.flip(1)
    h, w = x.shape[-2:]
    s = resize / min(h, w)
    nh, nw = max(crop, int(round(h * s))), max(crop, int(round(w * s)))
    if (nh, nw) != (h, w):
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
    top, left = (nh - crop) // 2, (nw - crop) // 2
    x = x[..., top: top + crop, left: left + crop]
    m = torch.tensor(mean, device=device).view(1, 3, 1, 1) * 255.0
    sd = torch.tensor(std, device=device).view(1, 3, 1, 1) * 255.0
    return ((x - m) / sd).to(dtype).contiguous()


# ------------------------------------------------------------------------------------------
# Backend
# ------------------------------------------------------------------------------------------
_VARIANTS = {
    # name: (manifest name, builder, resize, crop)
    "6drepnet": ("6drepnet", build_sixdrepnet, 224, 224),
    "6drepnet360": ("6drepnet360", build_sixdrepnet360, 256, 224),
}


class SixDRepNetEstimator(ModelBackend):
    """PoseEstimator on 6DRepNet / 6DRepNet360: batched, CUDA + fp16 autocast when present.

    ``weights``: a path (default: the manifest file, checked with ``registry.verify``) or a
    state dict; ``random_init=True`` skips weights (tests, benchmarks).
    """

    kind = "pose"

    def __init__(
        self,
        variant: str = "6drepnet",
        weights: str | os.PathLike | dict | None = None,
        device: str | torch.device | None = None,
        fp16: bool | None = None,
        batch_size: int = 256,
        random_init: bool = False,
        verify: bool = True,
    ):
        if variant not in _VARIANTS:
            raise ValueError(f"unknown 6DRepNet variant {variant!r}; one of {sorted(_VARIANTS)}")
        manifest, builder, self.resize, self.crop = _VARIANTS[variant]
        self.name, self.version = variant, "1"
        self.device = torch.device(device) if device is not None else default_device()
        self.fp16 = (self.device.type == "cuda") if fp16 is None else bool(fp16)
        self.batch_size = int(batch_size)
        if random_init:
            self.weight_paths = ()
            net = builder(None)
        else:
            weights = resolve_weights(manifest, weights, verify)
            if not isinstance(weights, dict):
                self.weight_paths = (weights,)
            net = builder(weights)
        self.net = net.to(self.device).eval()

    @torch.inference_mode()
    def rotations(self, crops) -> torch.Tensor:
        """uint8 BGR crops (B, H, W, 3) or a list -> (B, 3, 3) float64 project rotations (CPU)."""
        n = len(crops)
        out = []
        for i in range(0, n, self.batch_size):
            x = preprocess_crops(crops[i: i + self.batch_size], self.device, self.resize, self.crop)
            with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.fp16 and self.device.type == "cuda"):
                v = self.net.features6d(x)
            out.append(sixdrepnet_to_project(rot6d_to_matrix(v.float())).double().cpu())
        return torch.cat(out) if out else torch.zeros(0, 3, 3, dtype=torch.float64)

    def estimate_crops(self, crops) -> np.ndarray:
        """(B, 3) float32 project (yaw, pitch, roll) degrees from uint8 BGR face crops."""
        if len(crops) == 0:
            return np.zeros((0, 3), np.float32)
        return project_angles(self.rotations(crops)).numpy().astype(np.float32)

    def estimate(self, image: np.ndarray, boxes: Sequence[np.ndarray], lmk5=None) -> np.ndarray:
        return self.estimate_crops(crop_faces(image, boxes))
