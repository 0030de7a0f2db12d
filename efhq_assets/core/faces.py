"""Face detection, tracking and landmarks over one video: the `faces` and `landmarks` tables.

One streaming decode pass feeds batches of frames to the detector (every face is kept; EFHQ's
filter is a column, not a deletion), links faces through each clip into tracks, and runs the two
landmarkers (FaceMesh 478 3D, dlib 68) on each face so the pose stage needs no pixels. All
coordinates are in full source-frame pixels (crop origin added back).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .models.base import Detection

DETECT_BATCH = 8


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix between boxes a (N,4) and b (M,4), x1 y1 x2 y2."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


@dataclass
class IouTracker:
    """Greedy IoU linking of faces through one clip (frames must arrive in order).

    A face joins the live track whose last box overlaps it most (IoU >= threshold); a track not
    seen for more than `max_gap` frames ends. Track ids count up per video, so (video_id, track_id)
    is unique.
    """

    iou_threshold: float = 0.3
    max_gap: int = 5
    next_id: int = 0
    live: dict[int, tuple[int, np.ndarray]] = field(default_factory=dict)  # track -> (last frame, box)

    def reset(self) -> None:
        self.live.clear()

    def update(self, frame_index: int, boxes: np.ndarray) -> list[int]:
        self.live = {t: v for t, v in self.live.items() if frame_index - v[0] <= self.max_gap}
        ids = [-1] * len(boxes)
        if len(boxes) and self.live:
            tracks = list(self.live)
            overlap = iou(boxes, np.stack([self.live[t][1] for t in tracks]))
            while overlap.size and overlap.max() >= self.iou_threshold:
                i, j = np.unravel_index(np.argmax(overlap), overlap.shape)
                ids[i] = tracks[j]
                overlap[i, :] = -1
                overlap[:, j] = -1
        for i, box in enumerate(boxes):
            if ids[i] < 0:
                ids[i] = self.next_id
                self.next_id += 1
            self.live[ids[i]] = (frame_index, np.asarray(box, np.float64))
        return ids


def landmark_list(points: np.ndarray) -> list[float]:
    """x, y interleaved in full-frame pixels, rounded to 1/8 px (far below landmark error) so zstd packs them
    2.5x smaller. FaceMesh's z is dropped: nothing downstream reads it."""
    return (np.round(np.asarray(points, np.float64)[:, :2] * 8) / 8).astype(np.float32).reshape(-1).tolist()


@dataclass
class FaceModels:
    detector: object
    facemesh: object | None = None
    dlib68: object | None = None

    def versions(self) -> dict:
        return {m.name: m.weights_sha256 for m in (self.detector, self.facemesh, self.dlib68) if m is not None}

    def identity(self) -> dict:
        """What decides the faces these models find: each backend's name, code version, weights and
        settings. Part of the `face_detections` fingerprint, so changing any of them makes videos stale."""
        return {m.name: [getattr(m, "version", ""), m.weights_sha256, m.config() if hasattr(m, "config") else {}]
                for m in (self.detector, self.facemesh, self.dlib68) if m is not None}


# FaceMesh points standing in for the detector's 5 landmarks on propagated faces (image-left first):
# iris centres, nose tip, mouth corners.
MESH_LMK5 = (468, 473, 1, 61, 291)


def _mesh_bbox(mesh: np.ndarray) -> np.ndarray:
    pts = np.asarray(mesh, np.float64)[:468, :2]
    return np.array([*pts.min(0), *pts.max(0)])


def _box_calibration(box: np.ndarray, mesh: np.ndarray) -> np.ndarray:
    """The detector box relative to the FaceMesh landmark box (offsets in landmark-box widths/heights)."""
    lb = _mesh_bbox(mesh)
    w, h = max(lb[2] - lb[0], 1.0), max(lb[3] - lb[1], 1.0)
    return (np.asarray(box, np.float64) - lb) / np.array([w, h, w, h])


def _calibrated_box(mesh: np.ndarray, calibration: np.ndarray) -> np.ndarray:
    """A detector-like box from FaceMesh landmarks and a track's calibration (inverse of _box_calibration)."""
    lb = _mesh_bbox(mesh)
    w, h = max(lb[2] - lb[0], 1.0), max(lb[3] - lb[1], 1.0)
    return lb + calibration * np.array([w, h, w, h])


@dataclass
class _Propagated:
    """A face carried to a frame without detection: box from the previous frame's landmarks."""

    box: np.ndarray
    score: float  # the track's last detector score
    lmk5: np.ndarray
    track_id: int
    mesh: np.ndarray
    calibration: np.ndarray


def analyse_video(video: dict, clips: list[dict], policy, models: FaceModels, efhq_min_score: float = 0.9,
                  efhq_min_side: int = 256, on_progress=None, batch: int = DETECT_BATCH, detect_stride: int = 1):
    """Detect, track and landmark every face in the sampled frames; returns (faces rows, landmarks rows).

    detect_stride k > 1 runs the detector on every k-th sampled frame of each clip only (and on the
    first frame after a clip change). In between, each face seen on the previous frame is carried
    over: its box comes from that frame's FaceMesh landmarks (mapped to a detector-like box with the
    box/landmark relation measured at the track's last detection), FaceMesh re-fits the landmarks
    there and the box is re-derived from them; the face is dropped when FaceMesh finds nothing (and
    when no FaceMesh is configured). Carried faces have `detected` False, the track's last detector
    `score`, and lmk5 taken from FaceMesh points (iris centres, nose tip, mouth corners).
    New faces appear at the next detection frame. Every row has `detected` (True with stride 1).
    """
    from .ingest import clip_windows
    from .video import iter_clip_frames

    if int(detect_stride) < 1:
        raise ValueError(f"detect_stride must be >= 1, got {detect_stride}")
    stride = int(detect_stride)
    faces: list[dict] = []
    marks: list[dict] = []
    tracker = IouTracker()
    current_clip = None
    pending: list = []  # (frame, run the detector on it)
    done = 0
    appended_clip, clip_count = None, 0
    # track -> (last detector score, box calibration, previous frame's FaceMesh landmarks)
    carried: dict[int, tuple[float, np.ndarray, np.ndarray]] = {}

    def propagate(frame) -> list[_Propagated]:
        out = []
        for tid, (score, calib, prev_mesh) in carried.items():
            guess = _calibrated_box(prev_mesh, calib)
            mesh = models.facemesh.landmarks(frame.image, [guess.astype(np.float32)])[0]
            if mesh is None:
                continue
            box = _calibrated_box(mesh, calib).astype(np.float32)
            lmk5 = np.asarray(mesh, np.float32)[list(MESH_LMK5), :2]
            out.append(_Propagated(box, score, lmk5, tid, mesh, calib))
        return sorted(out, key=lambda p: (float(p.box[0]), float(p.box[1])))

    def flush() -> None:
        nonlocal current_clip, done
        to_detect = [f.image for f, want in pending if want]
        detections = iter(models.detector.detect(to_detect) if to_detect else [])
        for frame, want in pending:
            if frame.clip_id != current_clip:
                tracker.reset()
                carried.clear()
                current_clip = frame.clip_id
            if want:
                dets = sorted(next(detections), key=lambda d: (float(d.box[0]), float(d.box[1])))
                boxes = np.array([d.box for d in dets], np.float32).reshape(-1, 4)
                track_ids = tracker.update(frame.frame_index, boxes)
                mesh = models.facemesh.landmarks(frame.image, list(boxes)) if models.facemesh and len(boxes) else []
                carried.clear()
                for k, det in enumerate(dets):
                    if stride > 1 and k < len(mesh) and mesh[k] is not None:
                        carried[track_ids[k]] = (float(det.score), _box_calibration(det.box, mesh[k]), mesh[k])
            else:
                props = propagate(frame)
                dets = [Detection(p.box, p.score, p.lmk5) for p in props]
                boxes = np.array([d.box for d in dets], np.float32).reshape(-1, 4)
                track_ids = [p.track_id for p in props]
                mesh = [p.mesh for p in props]
                carried.clear()
                for p in props:
                    carried[p.track_id] = (p.score, p.calibration, p.mesh)
                    tracker.live[p.track_id] = (frame.frame_index, p.box.astype(np.float64))
            dl = models.dlib68.landmarks(frame.image, list(boxes)) if models.dlib68 and len(boxes) else []
            ox, oy = frame.origin
            shift2 = np.array([ox, oy], np.float32)
            for k, det in enumerate(dets):
                box = det.box.astype(np.float64) + [ox, oy, ox, oy]
                key = {"video_id": video["video_id"], "clip_id": frame.clip_id, "frame_index": frame.frame_index,
                       "face_index": k}
                faces.append({**key, "track_id": track_ids[k],
                              "x1": box[0], "y1": box[1], "x2": box[2], "y2": box[3], "score": float(det.score),
                              "lmk5": (det.lmk5 + shift2).reshape(-1).astype(np.float64).tolist(),
                              "passes_efhq_filter": bool(det.passes_efhq_filter(efhq_min_score, efhq_min_side)),
                              "detector": models.detector.name, "detected": bool(want)})
                m = mesh[k] if k < len(mesh) else None
                d = dl[k] if k < len(dl) else None
                marks.append({**key, "lmk478": None if m is None else landmark_list(m[:, :2] + shift2),
                              "lmk68": None if d is None else landmark_list(d + shift2)})
        done += len(pending)
        pending.clear()
        if on_progress:
            on_progress(done)

    for frame in iter_clip_frames(video["path"], clip_windows(clips), policy):
        if frame.clip_id != appended_clip:
            appended_clip, clip_count = frame.clip_id, 0
        pending.append((frame, clip_count % stride == 0))
        clip_count += 1
        if len(pending) >= batch:
            flush()
    if pending:
        flush()
    return faces, marks
