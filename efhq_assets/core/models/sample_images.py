"""Real face photos that ship inside installed packages (read at run time).

Never copy these images (or media derived from them) into the repository:
``t1.jpg`` is a copyrighted photo distributed in the insightface wheel.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

__all__ = ["astronaut_bgr", "insightface_t1_bgr", "insightface_image_path", "SampleImageMissing"]


class SampleImageMissing(FileNotFoundError):
    """A sample image's package is not installed (or lacks the file)."""


def _package_dir(package: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def insightface_image_path(name: str = "t1.jpg") -> Path:
    """Path of an image bundled in the installed insightface wheel (``insightface/data/images``)."""
    pkg = _package_dir("insightface")
    if pkg is None:
        raise SampleImageMissing(
            f"sample image {name!r} needs the insightface package "
            "(pip install --no-deps insightface==2.1); it is not installed"
        )
    path = pkg / "data" / "images" / name
    if not path.is_file():
        raise SampleImageMissing(f"sample image {name!r} not found at {path} (insightface install incomplete?)")
    return path


def insightface_t1_bgr() -> np.ndarray:
    """insightface's group photo ``t1.jpg``: 1280x886 BGR uint8, 6 faces at varied yaw/roll."""
    import cv2

    path = insightface_image_path("t1.jpg")
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise SampleImageMissing(f"could not decode {path}")
    return img


def astronaut_bgr() -> np.ndarray:
    """``skimage.data.astronaut()`` (512x512, public domain) as BGR uint8."""
    try:
        from skimage import data
    except ImportError as exc:  # pragma: no cover - environment problem
        raise SampleImageMissing("astronaut sample needs scikit-image, which is not installed") from exc
    rgb = data.astronaut()
    return np.ascontiguousarray(rgb[:, :, ::-1])
