"""dlib backends whose weights ship in ``face-recognition-models`` 0.3.0.

* ``Dlib68Landmarker``: the 68-point iBUG shape predictor
  (``shape_predictor_68_face_landmarks.dat``) on given face boxes -> (68, 2)
  full-image pixels.  Licence note: the model file is dlib's, but its training
  data (iBUG 300-W) excludes commercial use.
* ``DlibResNetEmbedder``: dlib's ResNet face descriptor
  (``dlib_face_recognition_resnet_model_v1.dat``) on faces aligned with the
  5-point predictor (``shape_predictor_5_face_landmarks.dat``) -> 128-D,
  L2-normalised here.  dlib's raw descriptors have norm ~1.35-1.6 and dlib's
  "same person" threshold 0.6 applies to the *raw* vectors; on normalised
  vectors the equivalent is ~0.4 (``DlibResNetEmbedder.same_person_threshold``;
  ``normalize=False`` gives the raw vectors).

``import face_recognition_models`` fails on current setuptools
(pkg_resources), so the files are found with ``importlib.util.find_spec``
through the registry.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .base import ModelBackend
from .weights import find_weight_files

__all__ = ["Dlib68Landmarker", "DlibResNetEmbedder", "to_dlib_box"]


def to_dlib_box(box: np.ndarray, adapt: bool = True) -> tuple[int, int, int, int]:
    """Integer (left, top, right, bottom) for dlib from an (x1, y1, x2, y2) box.

    dlib's predictors were trained on dlib HOG-detector boxes: square, tight
    from the eyebrows to the chin.  Detector boxes from MTCNN / RetinaFace /
    SCRFD are taller (they include the forehead), so with ``adapt`` the box is
    made a square of side ``0.9 * mean(w, h)`` centred 5% of the height below
    the box centre (chosen on astronaut + t1.jpg: mean eye/nose/mouth error vs
    MTCNN's points 4.4% of the box side, 5.1% with the raw box).  Pass
    ``adapt=False`` for boxes that already come from dlib's detector.
    """
    x1, y1, x2, y2 = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(4))
    if adapt:
        w, h = x2 - x1, y2 - y1
        cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0 + 0.05 * h
        side = 0.9 * (w + h) / 2.0
        x1, x2 = cx - side / 2.0, cx + side / 2.0
        y1, y2 = cy - side / 2.0, cy + side / 2.0
    return int(round(x1)), int(round(y1)), int(round(x2)), int(round(y2))


def _rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a BGR uint8 image (H, W, 3), got {image.dtype} {image.shape}")
    import cv2

    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)  # the same bytes as image[:, :, ::-1], copied 4x faster


class Dlib68Landmarker(ModelBackend):
    """dlib 68-point landmarks on given boxes -> (68, 2) float32 full-image px.

    adapt_box: convert detector boxes to dlib-style boxes (see ``to_dlib_box``).
    """

    name = "dlib68"
    version = "dlib-20.0.1-shape_predictor_68+efhq1"
    kind = "landmarker"
    num_points = 68

    def __init__(self, adapt_box: bool = True):
        import dlib

        self.weight_paths = tuple(find_weight_files("dlib68"))
        self.adapt_box = bool(adapt_box)
        self._predictor = dlib.shape_predictor(str(self.weight_paths[0]))

    def config(self) -> dict:
        return {"adapt_box": self.adapt_box}

    def landmarks(self, image: np.ndarray, boxes: Sequence[np.ndarray]) -> list[np.ndarray | None]:
        import dlib

        rgb = _rgb(image)
        out: list[np.ndarray | None] = []
        for b in boxes:
            rect = dlib.rectangle(*to_dlib_box(b, self.adapt_box))
            shape = self._predictor(rgb, rect)
            out.append(np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32))
        return out


class DlibResNetEmbedder(ModelBackend):
    """128-D dlib ResNet face descriptors, L2-normalised, for (image, boxes).

    All faces of one image go through dlib in one batched call
    (``compute_face_descriptor(img, full_object_detections)``).

    Measured on astronaut / t1.jpg: same face (scaled 1.1x + shifted) raw
    distance 0.10, normalised 0.07; the 6 different people of t1.jpg raw
    0.66-0.89, normalised 0.46-0.62.  Use ``same_person_threshold`` (0.4 on
    normalised vectors) or ``RAW_SAME_PERSON_THRESHOLD`` (0.6, dlib's) with
    ``normalize=False``.
    """

    RAW_SAME_PERSON_THRESHOLD = 0.6

    name = "dlib_resnet"
    version = "dlib-20.0.1-resnet_v1+sp5+efhq1"
    kind = "embedder"
    dim = 128

    def __init__(self, normalize: bool = True, adapt_box: bool = True, num_jitters: int = 0, padding: float = 0.25):
        import dlib

        paths = find_weight_files("dlib_resnet")
        self.weight_paths = tuple(paths)
        self.normalize = bool(normalize)
        self.adapt_box = bool(adapt_box)
        self.num_jitters = int(num_jitters)
        self.padding = float(padding)
        self._net = dlib.face_recognition_model_v1(str(paths[0]))
        self._sp5 = dlib.shape_predictor(str(paths[1]))


    @property
    def same_person_threshold(self) -> float:
        return 0.4 if self.normalize else self.RAW_SAME_PERSON_THRESHOLD

    def config(self) -> dict:
        return {"normalize": self.normalize, "adapt_box": self.adapt_box, "num_jitters": self.num_jitters}

    def embed(
        self,
        image: np.ndarray,
        boxes: Sequence[np.ndarray],
        lmk5: Sequence[np.ndarray] | None = None,
    ) -> np.ndarray:
        """(len(boxes), 128) float32 embeddings.  ``lmk5`` is ignored: dlib
        aligns with its own 5-point predictor (its points differ from the
        ArcFace 5-point set)."""
        import dlib

        boxes = list(boxes)
        if not boxes:
            return np.zeros((0, self.dim), np.float32)
        rgb = _rgb(image)
        shapes = dlib.full_object_detections()
        for b in boxes:
            shapes.append(self._sp5(rgb, dlib.rectangle(*to_dlib_box(b, self.adapt_box))))
        desc = self._net.compute_face_descriptor(rgb, shapes, self.num_jitters, self.padding)
        emb = np.array([np.asarray(d) for d in desc], dtype=np.float32)
        if self.normalize:
            emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        return emb
