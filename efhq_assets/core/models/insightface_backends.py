"""insightface ONNX models (SCRFD detector, 1k3d68 landmarks + pose, ArcFace) on local files.

Each model is opened with ``insightface.model_zoo.get_model(path)``, which picks the model type
from the ONNX signature (>= 5 outputs: SCRFD; 192x192 input: landmark; square >= 112 input
divisible by 16: ArcFace).  The files are the manifest's user-supplied weights
(``scrfd_10g_bnkps.onnx``, ``1k3d68.onnx``, ``w600k_r50.onnx``), found with
``weights.find_weights`` and checked with ``weights.verify``; nothing is downloaded.

Signatures (the public releases; fixture ``efhq_assets_tests/fixtures/published/insightface_onnx.txt``):

* SCRFD-10GF bnkps: input 1x3x?x? (BGR - 127.5) / 128, RGB-swapped; 9 outputs: scores of
  strides 8/16/32 (K x 1), boxes (K x 4, distances in stride units), keypoints (K x 10).
* 1k3d68: input 1x3x192x192; output 1x3309 (the last 68 x 3 are the landmarks in [-1, 1]).
* w600k_r50: input 1x3x112x112; output 1x512.

insightface and onnxruntime are imported lazily (inside the constructors).
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from .base import Detection, ModelBackend
from .weights import resolve_weights

__all__ = [
    "ScrfdDetector",
    "Insightface3D68",
    "ArcFaceEmbedder",
    "load_insightface_model",
]


def load_insightface_model(path: str | os.PathLike, ctx_id: int = -1, providers: Sequence[str] | None = None):
    """``insightface.model_zoo.get_model`` on a local file (CPU unless ``ctx_id >= 0``)."""
    from insightface import model_zoo

    if providers is None:
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if ctx_id >= 0 else ["CPUExecutionProvider"]
    model = model_zoo.get_model(str(path), providers=list(providers))
    if model is None:
        raise ValueError(f"insightface could not route {path}: its ONNX signature matches no known model type")
    model.prepare(ctx_id=ctx_id)
    return model


class _Face(dict):
    """The attribute-dict insightface's ``get(img, face)`` methods expect."""

    def __getattr__(self, k):
        try:
            return self[k]
        except KeyError as exc:
            raise AttributeError(k) from exc

    __setattr__ = dict.__setitem__


class ScrfdDetector(ModelBackend):
    """FaceDetector: SCRFD-10GF with 5 keypoints (manifest ``scrfd_10g_bnkps``)."""

    kind = "detector"

    def __init__(self, path=None, det_size: tuple[int, int] = (640, 640), det_thresh: float = 0.5,
                 nms_thresh: float = 0.4, ctx_id: int = -1, verify: bool = True):
        from insightface.model_zoo.scrfd import SCRFD

        self.name, self.version = "scrfd_10g_bnkps", "1"
        p = resolve_weights("scrfd_10g_bnkps", path, verify)
        self.weight_paths = (p,)
        self.model = load_insightface_model(p, ctx_id)
        if not isinstance(self.model, SCRFD):
            raise ValueError(f"{p} is not an SCRFD detector (routed to {type(self.model).__name__})")
        self.model.det_thresh = float(det_thresh)
        self.model.nms_thresh = float(nms_thresh)
        self.det_size = tuple(int(v) for v in det_size)

    def detect(self, images: list[np.ndarray]) -> list[list[Detection]]:
        out = []
        for img in images:
            det, kps = self.model.detect(img, input_size=self.det_size)
            faces = []
            for i in range(det.shape[0]):
                lmk = kps[i] if kps is not None else np.full((5, 2), np.nan, np.float32)
                faces.append(Detection(det[i, :4], float(det[i, 4]), lmk))
            out.append(faces)
        return out


class Insightface3D68(ModelBackend):
    """Landmarker (68 x 3 points, image pixels) and PoseEstimator (manifest ``insightface_1k3d68``).

    Pose: insightface fits its ``meanshape_68`` to the predicted landmarks by an affine camera and
    reads Euler angles from ``P2sRt``; here the same rotation is converted to the project
    convention by :func:`published_angles.insightface_to_project`.
    """

    kind = "landmarker"
    num_points = 68

    def __init__(self, path=None, ctx_id: int = -1, verify: bool = True):
        from insightface.model_zoo.landmark import Landmark

        self.name, self.version = "insightface_1k3d68", "1"
        p = resolve_weights("insightface_1k3d68", path, verify)
        self.weight_paths = (p,)
        self.model = load_insightface_model(p, ctx_id)
        if not isinstance(self.model, Landmark) or not getattr(self.model, "require_pose", False):
            raise ValueError(f"{p} is not a 68-point 3D landmark model (routed to {type(self.model).__name__})")

    def landmarks(self, image: np.ndarray, boxes: Sequence[np.ndarray]) -> list[np.ndarray | None]:
        out = []
        for b in boxes:
            face = _Face(bbox=np.asarray(b, np.float32).reshape(-1)[:4])
            out.append(np.asarray(self.model.get(image, face), np.float32))
        return out

    def pose_from_landmarks(self, lmk68: np.ndarray) -> np.ndarray:
        """(68, 3) image-space landmarks -> (3,) project (yaw, pitch, roll) degrees."""
        import torch  # lazy, with published_angles (torch): a detector-only run never loads torch

        from .published_angles import affine_to_rotation, insightface_to_project, project_angles

        X = np.asarray(self.model.mean_lmk, np.float64)
        Xh = np.hstack([X, np.ones((X.shape[0], 1))])
        P = np.linalg.lstsq(Xh, np.asarray(lmk68, np.float64), rcond=None)[0].T
        R = affine_to_rotation(torch.from_numpy(P))
        return project_angles(insightface_to_project(R)).numpy().astype(np.float32)

    def estimate(self, image: np.ndarray, boxes: Sequence[np.ndarray], lmk5=None) -> np.ndarray:
        if len(boxes) == 0:
            return np.zeros((0, 3), np.float32)
        return np.stack([self.pose_from_landmarks(l) for l in self.landmarks(image, boxes)])


class ArcFaceEmbedder(ModelBackend):
    """FaceEmbedder: ArcFace ResNet-50 WebFace600K (manifest ``arcface_w600k_r50``), 512-D.

    Needs the 5 landmarks (insightface aligns with ``norm_crop``); L2-normalised output.
    """

    kind = "embedder"
    dim = 512

    def __init__(self, path=None, ctx_id: int = -1, verify: bool = True):
        from insightface.model_zoo.arcface_onnx import ArcFaceONNX

        self.name, self.version = "arcface_w600k_r50", "1"
        p = resolve_weights("arcface_w600k_r50", path, verify)
        self.weight_paths = (p,)
        self.model = load_insightface_model(p, ctx_id)
        if not isinstance(self.model, ArcFaceONNX):
            raise ValueError(f"{p} is not an ArcFace model (routed to {type(self.model).__name__})")

    def embed(self, image: np.ndarray, boxes: Sequence[np.ndarray], lmk5: Sequence[np.ndarray] | None = None) -> np.ndarray:
        if lmk5 is None:
            raise ValueError("ArcFaceEmbedder needs the 5 landmarks of each face (lmk5) for alignment")
        out = np.zeros((len(boxes), self.dim), np.float32)
        for i, (b, k) in enumerate(zip(boxes, lmk5)):
            face = _Face(bbox=np.asarray(b, np.float32), kps=np.asarray(k, np.float32).reshape(5, 2))
            e = np.asarray(self.model.get(image, face), np.float32).reshape(-1)
            out[i] = e / max(float(np.linalg.norm(e)), 1e-12)
        return out
