"""Interfaces shared by every face-model backend.

One small interface per model kind.  Images are always ``np.ndarray`` in BGR
``uint8`` (H, W, 3), as decoded by OpenCV / PyAV, and every coordinate is in
full-image pixels (x to the right, y down).

Every backend also carries ``name``, ``version`` and ``weights_sha256`` so that
each output row can record exactly which model produced it.

Only numpy and the standard library are imported here: heavy libraries
(onnxruntime, cv2, mediapipe, dlib, torch) are imported inside the backends
that need them, so ``efhq_assets.core`` imports on a machine that has only
torch + numpy.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

__all__ = [
    "Detection",
    "FaceDetector",
    "Landmarker",
    "FaceEmbedder",
    "QualityScorer",
    "PoseEstimator",
    "ModelBackend",
    "passes_efhq_filter",
    "box_area",
    "file_sha256",
    "files_sha256",
    "EFHQ_MIN_SCORE",
    "EFHQ_MIN_SIDE",
]

#: EFHQ ``CONF_THRESHOLD``: a face is kept when its detector score is >= 0.9.
EFHQ_MIN_SCORE = 0.9
#: EFHQ ``AREA_THRESHOLD = 256 * 256``: and its box area is >= 65,536 px.
EFHQ_MIN_SIDE = 256

#: Names of the 5 landmarks, in the order of ``Detection.lmk5`` (the ArcFace /
#: insightface template order). "left" = the point with the smaller x in the
#: image (the subject's right eye on a frontal face).
LMK5_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclass
class Detection:
    """One detected face.

    box:   (4,) float32 ``x1, y1, x2, y2`` in full-image pixels.
    score: detector confidence in [0, 1].
    lmk5:  (5, 2) float32 points ``[left_eye, right_eye, nose, mouth_left,
           mouth_right]`` where left/right are in image terms (smaller x =
           left), i.e. the ArcFace / insightface template order.
    """

    box: np.ndarray
    score: float
    lmk5: np.ndarray = field(default_factory=lambda: np.full((5, 2), np.nan, np.float32))

    def __post_init__(self) -> None:
        self.box = np.asarray(self.box, dtype=np.float32).reshape(4)
        self.score = float(self.score)
        self.lmk5 = np.asarray(self.lmk5, dtype=np.float32).reshape(5, 2)

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    @property
    def area(self) -> float:
        return box_area(self.box)

    def passes_efhq_filter(self, min_score: float = EFHQ_MIN_SCORE, min_side: int = EFHQ_MIN_SIDE) -> bool:
        return passes_efhq_filter(self.score, self.box, min_score=min_score, min_side=min_side)

    def as_row(self) -> dict:
        """Flat dict (x1, y1, x2, y2, score, lmk5 as 10 floats) for a table row."""
        x1, y1, x2, y2 = (float(v) for v in self.box)
        return {
            "x1": x1,
            "y1": y1,
            "x2": x2,
            "y2": y2,
            "score": self.score,
            "lmk5": [float(v) for v in self.lmk5.reshape(-1)],
        }


def box_area(box: Sequence[float] | np.ndarray) -> float:
    x1, y1, x2, y2 = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(4))
    return max(0.0, x2 - x1) * max(0.0, y2 - y1)


def passes_efhq_filter(
    score: float,
    box: Sequence[float] | np.ndarray,
    min_score: float = EFHQ_MIN_SCORE,
    min_side: int = EFHQ_MIN_SIDE,
) -> bool:
    """EFHQ stage-1 face filter: ``score >= 0.9`` and bbox area ``>= 256*256``.

    The original code compares the *area* with ``AREA_THRESHOLD = 65536``, so a
    400x170 box passes although one side is < 256; this keeps that rule.
    """
    return bool(float(score) >= min_score and box_area(box) >= float(min_side) ** 2)


# --------------------------------------------------------------------------- #
# Weight hashing (cached per path + size + mtime)
# --------------------------------------------------------------------------- #
_HASH_CACHE: dict[tuple[str, int, int], str] = {}
_HASH_LOCK = threading.Lock()


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 hex digest of a file, cached on (path, size, mtime)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    with _HASH_LOCK:
        hit = _HASH_CACHE.get(key)
    if hit is not None:
        return hit
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    with _HASH_LOCK:
        _HASH_CACHE[key] = digest
    return digest


def files_sha256(paths: Sequence[str | os.PathLike]) -> str:
    """One digest for a model made of one or several weight files.

    One file: its own sha256 (so it matches ``sha256sum``).  Several files:
    sha256 of the lines ``"<file name> <sha256>\\n"`` sorted by file name.
    """
    paths = list(paths)
    if len(paths) == 1:
        return file_sha256(paths[0])
    lines = sorted(f"{Path(p).name} {file_sha256(p)}\n" for p in paths)
    return hashlib.sha256("".join(lines).encode()).hexdigest()


class ModelBackend:
    """Mixin giving every backend ``name``, ``version``, ``weights_sha256``.

    Subclasses set ``name`` and ``version`` and fill ``weight_paths`` (the files
    the weights were loaded from).  ``weights_sha256`` is computed on first
    access and cached.
    """

    name: str = "unnamed"
    version: str = "0"
    kind: str = ""
    weight_paths: tuple[Path, ...] = ()

    @property
    def weights_sha256(self) -> str:
        cached = getattr(self, "_weights_sha256", None)
        if cached is None:
            cached = files_sha256(self.weight_paths) if self.weight_paths else ""
            self._weights_sha256 = cached
        return cached

    def info(self) -> dict:
        """What a row / asset metadata records about this model."""
        return {
            "model": self.name,
            "model_version": self.version,
            "weights_sha256": self.weights_sha256,
        }

    def __repr__(self) -> str:  # pragma: no cover - cosmetic
        return f"{type(self).__name__}(name={self.name!r}, version={self.version!r})"


# --------------------------------------------------------------------------- #
# Interfaces per kind
# --------------------------------------------------------------------------- #
@runtime_checkable
class FaceDetector(Protocol):
    name: str
    version: str

    @property
    def weights_sha256(self) -> str: ...

    def detect(self, images: list[np.ndarray]) -> list[list[Detection]]:
        """Every face found in each BGR uint8 image (one list per image)."""
        ...


@runtime_checkable
class Landmarker(Protocol):
    name: str
    version: str
    #: number of points per face (68, 478, ...)
    num_points: int

    @property
    def weights_sha256(self) -> str: ...

    def landmarks(self, image: np.ndarray, boxes: Sequence[np.ndarray]) -> list[np.ndarray | None]:
        """Landmarks for each box of one BGR image, in full-image pixels.

        One entry per box: an array (num_points, 2 or 3), or None when the
        model found no face in that box.
        """
        ...


@runtime_checkable
class FaceEmbedder(Protocol):
    name: str
    version: str
    #: embedding length
    dim: int

    @property
    def weights_sha256(self) -> str: ...

    def embed(
        self,
        image: np.ndarray,
        boxes: Sequence[np.ndarray],
        lmk5: Sequence[np.ndarray] | None = None,
    ) -> np.ndarray:
        """(len(boxes), dim) float32 L2-normalised embeddings, one per box."""
        ...


@runtime_checkable
class QualityScorer(Protocol):
    name: str
    version: str

    @property
    def weights_sha256(self) -> str: ...

    def score(self, image: np.ndarray, boxes: Sequence[np.ndarray] | None = None) -> np.ndarray:
        """(len(boxes),) float32 scores (or (1,) for the whole image when boxes is None).

        Must be deterministic: same input, same score.
        """
        ...


@runtime_checkable
class PoseEstimator(Protocol):
    name: str
    version: str

    @property
    def weights_sha256(self) -> str: ...

    def estimate(
        self,
        image: np.ndarray,
        boxes: Sequence[np.ndarray],
        lmk5: Sequence[np.ndarray] | None = None,
    ) -> np.ndarray:
        """(len(boxes), 3) float32 ``yaw, pitch, roll`` in degrees.

        In the project's one angle convention (core/pose/convention.py): yaw > 0 = the
        subject turns to their own left, pitch > 0 = looks up, roll > 0 = top
        of the head toward the image's right.
        """
        ...
