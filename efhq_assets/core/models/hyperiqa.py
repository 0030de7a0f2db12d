"""HyperIQA (KonIQ-10k weights) in plain torch, with deterministic crops.

Written from SSL92/hyperIQA ``models.py`` / ``demo.py``; torchvision is not used.

Checkpoint ``koniq_pretrained.pkl`` (manifest ``hyperiqa_koniq``): the bare state dict of
``HyperNet(16, 112, 224, 112, 56, 28, 14, 7)``.  Key mapping: identical names (``res.*`` = the
ResNet-50 trunk with torchvision names plus ``lda{1..4}_pool`` / ``lda{1..4}_fc``; ``conv1.{0,2,4}``;
``fc{1..4}w_conv``, ``fc{1..5}b_fc``, ``fc5w_fc``); a ``module.`` prefix is stripped, and BatchNorm
``num_batches_tracked`` entries (absent from files saved by torch < 0.4.1; unused in eval) are
filled with 0 when missing.  Loaded with ``strict=True``.

Scoring.  Upstream (and EFHQ's ``iqa_*.py``): RGB image ``Resize((512, 384))`` (height 512, width
384), **10 unseeded random 224x224 crops**, ImageNet normalisation, mean of the 10 scores: the
same image gets a different score on every run, so EFHQ's ``iqa >= 42`` rule is not reproducible
near the threshold.  Here the crops are deterministic:

* ``crops="grid"`` (default): the 10 crops of a fixed 5 x 2 grid spanning every valid crop
  position (top offsets 0, 72, 144, 216, 288; left offsets 0, 160), i.e. a deterministic
  estimate of the same expectation the random crops sample;
* ``crops="center"``: one centre crop.

Same input, same score, so ``iqa >= 42`` is applied exactly.  Resizing is torch bilinear with
antialias (PIL's bilinear, used by torchvision on PIL images, also antialiases).

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
from .sixdrepnet import IMAGENET_MEAN, IMAGENET_STD, ResNetTrunk, clean_state_dict, default_device, load_checkpoint
from .weights import resolve_weights

__all__ = ["HyperNet", "build_hyperiqa", "crop_offsets", "HyperIQAScorer", "EFHQ_IQA_THRESHOLD"]

#: EFHQ keeps frames with ``iqa >= 42`` for GAN sampling.
EFHQ_IQA_THRESHOLD = 42.0


class HyperIQAResNet(ResNetTrunk):
    """ResNet-50 trunk + the four local-distortion-aware (LDA) branches."""

    def __init__(self, lda_out: int = 16, in_chn: int = 224):
        super().__init__((3, 4, 6, 3))
        self.lda1_pool = nn.Sequential(nn.Conv2d(256, 16, 1, bias=False), nn.AvgPool2d(7, 7))
        self.lda1_fc = nn.Linear(16 * 64, lda_out)
        self.lda2_pool = nn.Sequential(nn.Conv2d(512, 32, 1, bias=False), nn.AvgPool2d(7, 7))
        self.lda2_fc = nn.Linear(32 * 16, lda_out)
        self.lda3_pool = nn.Sequential(nn.Conv2d(1024, 64, 1, bias=False), nn.AvgPool2d(7, 7))
        self.lda3_fc = nn.Linear(64 * 4, lda_out)
        self.lda4_pool = nn.AvgPool2d(7, 7)
        self.lda4_fc = nn.Linear(2048, in_chn - lda_out * 3)

    def forward(self, x):
        x = self.layer1(self.stem(x))
        v1 = self.lda1_fc(self.lda1_pool(x).flatten(1))
        x = self.layer2(x)
        v2 = self.lda2_fc(self.lda2_pool(x).flatten(1))
        x = self.layer3(x)
        v3 = self.lda3_fc(self.lda3_pool(x).flatten(1))
        x = self.layer4(x)
        v4 = self.lda4_fc(self.lda4_pool(x).flatten(1))
        return x, torch.cat([v1, v2, v3, v4], 1)


class HyperNet(nn.Module):
    """Hyper network + the per-image target network (evaluated batched with einsum)."""

    def __init__(self, lda_out=16, hyper_in=112, target_in=224, f1=112, f2=56, f3=28, f4=14, feature_size=7):
        super().__init__()
        self.hyper_in, self.target_in, self.fs = hyper_in, target_in, feature_size
        self.sizes = (target_in, f1, f2, f3, f4)
        self.res = HyperIQAResNet(lda_out, target_in)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv1 = nn.Sequential(
            nn.Conv2d(2048, 1024, 1), nn.ReLU(inplace=True), nn.Conv2d(1024, 512, 1), nn.ReLU(inplace=True),
            nn.Conv2d(512, hyper_in, 1), nn.ReLU(inplace=True),
        )
        fs2 = feature_size ** 2
        for i in range(4):
            a, b = self.sizes[i], self.sizes[i + 1]
            setattr(self, f"fc{i + 1}w_conv", nn.Conv2d(hyper_in, a * b // fs2, 3, padding=1))
            setattr(self, f"fc{i + 1}b_fc", nn.Linear(hyper_in, b))
        self.fc5w_fc = nn.Linear(hyper_in, f4)
        self.fc5b_fc = nn.Linear(hyper_in, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 224, 224) normalised RGB -> (B,) quality scores (KonIQ MOS scale)."""
        feat, vec = self.res(x)
        h = self.conv1(feat).view(-1, self.hyper_in, self.fs, self.fs)
        g = self.pool(h).flatten(1)
        q = vec.view(-1, self.target_in)
        for i in range(4):
            a, b = self.sizes[i], self.sizes[i + 1]
            w = getattr(self, f"fc{i + 1}w_conv")(h).reshape(-1, b, a)
            q = torch.sigmoid(torch.einsum("nba,na->nb", w, q) + getattr(self, f"fc{i + 1}b_fc")(g))
        w5 = self.fc5w_fc(g)
        return (w5 * q).sum(1) + self.fc5b_fc(g)[:, 0]


def build_hyperiqa(weights: str | os.PathLike | dict | None = None) -> HyperNet:
    net = HyperNet()
    if weights is not None:
        sd = clean_state_dict(load_checkpoint(weights) if not isinstance(weights, dict) else weights)
        for k in net.state_dict():
            if k.endswith("num_batches_tracked") and k not in sd:
                sd[k] = torch.tensor(0, dtype=torch.long)
        net.load_state_dict(sd, strict=True)
    return net.eval()


def crop_offsets(mode: str = "grid", height: int = 512, width: int = 384, size: int = 224) -> list[tuple[int, int]]:
    """(top, left) of each crop: ``grid`` = 5 rows x 2 columns over all valid positions."""
    if mode == "center":
        return [((height - size) // 2, (width - size) // 2)]
    if mode == "grid":
        tops = np.linspace(0, height - size, 5).round().astype(int)
        lefts = np.linspace(0, width - size, 2).round().astype(int)
        return [(int(t), int(l)) for t in tops for l in lefts]
    raise ValueError(f"crops must be 'grid' or 'center', got {mode!r}")


class HyperIQAScorer(ModelBackend):
    """QualityScorer on HyperIQA (KonIQ): deterministic, batched over crops and images."""

    kind = "quality"

    def __init__(self, weights=None, device=None, crops: str = "grid", random_init: bool = False, verify: bool = True):
        self.name, self.version = "hyperiqa_koniq", f"1-{crops}"
        self.device = torch.device(device) if device is not None else default_device()
        self.offsets = crop_offsets(crops)
        if random_init:
            net = build_hyperiqa(None)
        else:
            weights = resolve_weights("hyperiqa_koniq", weights, verify)
            if not isinstance(weights, dict):
                self.weight_paths = (weights,)
            net = build_hyperiqa(weights)
        self.net = net.to(self.device).eval()

    @torch.inference_mode()
    def score_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(N,) float32 scores of whole BGR uint8 images (EFHQ scores whole frames / CROP images)."""
        out = []
        for img in images:
            x = torch.from_numpy(np.ascontiguousarray(img)).to(self.device).permute(2, 0, 1)[None].float().flip(1)
            x = F.interpolate(x, size=(512, 384), mode="bilinear", align_corners=False, antialias=True)
            m = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1) * 255
            s = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1) * 255
            x = (x - m) / s
            batch = torch.cat([x[..., t: t + 224, l: l + 224] for t, l in self.offsets])
            out.append(float(self.net(batch).double().mean()))
        return np.asarray(out, np.float32)

    def score(self, image: np.ndarray, boxes: Sequence[np.ndarray] | None = None) -> np.ndarray:
        """Whole image when ``boxes`` is None ((1,) array); else one score per box crop."""
        if boxes is None:
            return self.score_images([image])
        h, w = image.shape[:2]
        crops = []
        for b in boxes:
            x1, y1, x2, y2 = (int(round(float(v))) for v in np.asarray(b).reshape(-1)[:4])
            x1, y1 = max(0, x1), max(0, y1)
            x2, y2 = min(w, max(x2, x1 + 1)), min(h, max(y2, y1 + 1))
            crops.append(image[y1:y2, x1:x2])
        return self.score_images(crops) if crops else np.zeros((0,), np.float32)
