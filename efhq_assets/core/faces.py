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

#: How each face row was found (`faces.found_by`):
#: ``detector``: the detector on the frame; ``detector_flip``: the detector on the mirrored frame, tried when it
#: found nothing on the frame itself (its boxes mirrored back); ``track``: a face of a live track that the
#: detector lost on this frame (turned too far), followed with FaceMesh's landmark model from the previous
#: frame's landmarks and re-verified (:func:`verify_continued`); ``propagated``: carried between detection frames
#: with ``detect_stride`` > 1.
FOUND_BY = ("detector", "detector_flip", "track", "propagated")


def _mirror_box(box, width: int) -> np.ndarray:
    b = np.asarray(box, np.float32)
    return np.array([width - b[2], b[1], width - b[0], b[3]], np.float32)


def _mirror_detection(det: Detection, width: int) -> Detection:
    box = _mirror_box(det.box, width)
    l5 = np.asarray(det.lmk5, np.float32).copy()
    l5[:, 0] = width - l5[:, 0]
    l5 = l5[[1, 0, 2, 4, 3]]  # image-left first again
    return Detection(box, float(det.score), l5)


def detect_with_fallback(detector, images: list) -> list[list[tuple[Detection, str]]]:
    """The detector on every image, and on the mirrored image where it found nothing (detectors are not exactly
    mirror symmetric: MTCNN finds some profiles only facing one way), then the side check of turned faces' five
    points (:func:`check_profile_sides`). Returns (detection, found_by) per face."""
    out = [[(d, "detector") for d in dets] for dets in detector.detect(images)]
    empty = [i for i, dets in enumerate(out) if not dets]
    if empty:
        flipped = detector.detect([np.ascontiguousarray(np.asarray(images[i])[:, ::-1]) for i in empty])
        for i, dets in zip(empty, flipped):
            w = np.asarray(images[i]).shape[1]
            out[i] = [(_mirror_detection(d, w), "detector_flip") for d in dets]
    for i, found in enumerate(out):
        if found:
            checked = check_profile_sides(detector, images[i], [d for d, _ in found])
            out[i] = [(d, how) for d, (_, how) in zip(checked, found)]
    return out


def _five_point_yaw(dets: list[Detection]) -> np.ndarray:
    from .pose.large_yaw import lmk5_pose

    return lmk5_pose(np.stack([np.asarray(d.lmk5, np.float64).reshape(10) for d in dets]))[0]


def _onet_plain_and_mirrored(detector, img: np.ndarray, box: np.ndarray) -> tuple[Detection, Detection]:
    """O-net on ``box`` in the image and in the mirrored image (its points mapped back), both run on a window around
    the box rather than the whole frame: mirroring a 4K frame and building its pyramid cost more than the detector's
    own pass. The window holds the squared box O-net reads with a margin, its corner on a multiple of 8 so the
    pyramid levels line up with the full frame's."""
    h, w = img.shape[:2]
    side = float(max(box[2] - box[0], box[3] - box[1]))
    cx, cy, half = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, 0.75 * side + 8
    x0, y0 = (max(0, int(np.floor((c - half) / 8)) * 8) for c in (cx, cy))
    x1, y1 = min(w, int(np.ceil(cx + half))), min(h, int(np.ceil(cy + half)))
    window = np.ascontiguousarray(img[y0:y1, x0:x1])
    ww = window.shape[1]
    local = (box - [x0, y0, x0, y0]).astype(np.float32)
    plain = detector.score_regions(window, [local])[0]
    mirrored = _mirror_detection(
        detector.score_regions(np.ascontiguousarray(window[:, ::-1]), [_mirror_box(local, ww)])[0], ww)
    offset = np.array([x0, y0], np.float32)
    return tuple(Detection(np.asarray(d.box, np.float32) + np.tile(offset, 2), d.score,
                           np.asarray(d.lmk5, np.float32) + offset) for d in (plain, mirrored))


def check_profile_sides(detector, image, dets: list[Detection]) -> list[Detection]:
    """Turned faces' five points, checked for the side they put the nose on.

    MTCNN's last stage (O-net) reads its points on the earlier stage's candidate box; on a full profile it can
    spread them over the cheek with the nose on the wrong side, and the pose stage then reads the head turned the
    other way (no FaceMesh fit is left there to outvote them). Where the points read a turned face
    (``large_yaw.LOST_PROFILE_YAW``), O-net is run again on its own final box, once on the image and once on the
    mirrored image (mapped back). When both re-runs put the nose on the same side, it is not the first one's, and
    the plain re-run's points read a turned face too, those points replace the first ones (box and score are kept).
    Head-turn renders of six people, |yaw| 40-90, pitch -20 / 0 / 20, roll -15 / 0 / 15, every view mirrored (499
    turned faces): the first points took the wrong side on 3, the mirrored re-run on none; the vote corrects all
    three and changes no other (docs/pose_accuracy.md). Detectors without an O-net-style ``score_regions`` are
    returned as they are."""
    from .pose.large_yaw import LOST_PROFILE_YAW

    if not dets or not hasattr(detector, "score_regions"):
        return dets
    yaw = _five_point_yaw(dets)
    turned = [k for k in range(len(dets)) if abs(yaw[k]) >= LOST_PROFILE_YAW]  # NaN compares False
    if not turned:
        return dets
    img = np.asarray(image)
    out = list(dets)
    for k in turned:
        plain, mirrored = _onet_plain_and_mirrored(detector, img, np.asarray(dets[k].box, np.float64))
        yaw_plain, yaw_mirrored = _five_point_yaw([plain, mirrored])
        if np.sign(yaw_plain) == np.sign(yaw_mirrored) != np.sign(yaw[k]) and abs(yaw_plain) >= LOST_PROFILE_YAW:
            out[k] = Detection(dets[k].box, dets[k].score, np.asarray(plain.lmk5, np.float32))
    return out


# Re-verification of a face followed without the detector (`track`): FaceMesh's landmark model must see a face
# there (its presence gate), the new landmark box must overlap the previous one and keep its size (a face moves
# and turns smoothly between frames; a jump means the landmarks latched onto something else), and the pixels in
# it must still look like the track's face (colour histogram against the last detector-confirmed crop).
VERIFY_MIN_IOU = 0.35
VERIFY_SIZE_RATIO = (0.7, 1.45)
VERIFY_MIN_APPEARANCE = 0.5
#: A face followed by its landmarks is kept only when the detector's last stage (MTCNN's O-net), run on the predicted
#: region, scores it at least this; it then takes O-net's five points there (:func:`analyse_video`).
REDETECT_MIN_SCORE = 0.3


def face_histogram(image: np.ndarray, box) -> np.ndarray | None:
    """Normalised hue-saturation histogram of the central part of a face box (the face, not its background)."""
    import cv2

    x1, y1, x2, y2 = (float(v) for v in np.asarray(box, np.float64).reshape(4))
    w, h = x2 - x1, y2 - y1
    H, W = image.shape[:2]
    a = (int(max(0, x1 + 0.2 * w)), int(max(0, y1 + 0.2 * h)), int(min(W, x2 - 0.2 * w)), int(min(H, y2 - 0.2 * h)))
    if a[2] - a[0] < 4 or a[3] - a[1] < 4:
        return None
    hsv = cv2.cvtColor(np.ascontiguousarray(image[a[1]:a[3], a[0]:a[2]]), cv2.COLOR_BGR2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, [16, 8], [0, 180, 0, 256]).astype(np.float32)
    return cv2.normalize(hist, hist).reshape(-1)


def appearance_similarity(a: np.ndarray | None, b: np.ndarray | None) -> float:
    import cv2

    if a is None or b is None:
        return 0.0
    return float(cv2.compareHist(a.reshape(16, 8), b.reshape(16, 8), cv2.HISTCMP_CORREL))


def verify_continued(prev_mesh: np.ndarray, mesh: np.ndarray | None, template: np.ndarray | None,
                     image: np.ndarray) -> tuple[bool, str]:
    """Whether landmarks found without the detector still belong to the track's face; (ok, reason)."""
    if mesh is None:
        return False, "no face (landmark model's presence gate)"
    prev_box, box = _mesh_bbox(prev_mesh), _mesh_bbox(mesh)
    if float(iou(prev_box, box)[0, 0]) < VERIFY_MIN_IOU:
        return False, "landmarks jumped away from the track"
    ratio = np.sqrt(max((box[2] - box[0]) * (box[3] - box[1]), 1.0) /
                    max((prev_box[2] - prev_box[0]) * (prev_box[3] - prev_box[1]), 1.0))
    if not VERIFY_SIZE_RATIO[0] <= ratio <= VERIFY_SIZE_RATIO[1]:
        return False, "landmark box changed size"
    if template is not None and appearance_similarity(template, face_histogram(image, box)) < VERIFY_MIN_APPEARANCE:
        return False, "pixels no longer look like the track's face"
    return True, "ok"


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
    found_by: str = "propagated"
    template: np.ndarray | None = None


def analyse_video(video: dict, clips: list[dict], policy, models: FaceModels, efhq_min_score: float = 0.9,
                  efhq_min_side: int = 256, on_progress=None, batch: int = DETECT_BATCH, detect_stride: int = 1,
                  continue_tracks: bool = True):
    """Detect, track and landmark every face in the sampled frames; returns (faces rows, landmarks rows).

    Detection: the detector on each frame, and on the mirrored frame where it found nothing
    (:func:`detect_with_fallback`). Track continuation (``continue_tracks``, default on, needs FaceMesh): a face
    of the previous frame that the detector does not find again (typically a head turning past 70 degrees) is
    followed with FaceMesh's landmark model from the previous frame's landmarks (MediaPipe's own tracking ROI,
    plain or mirrored crop), and kept only when :func:`verify_continued` accepts it (the model's face-presence
    gate, a small box change, the track's colour histogram); the first rejection ends the continuation, so a
    track never drifts onto the background. Its box is derived from the landmarks with the box/landmark relation
    measured at the track's last detection, its score is that detection's, lmk5 come from FaceMesh points.

    detect_stride k > 1 (the product's default is the `detect_stride` setting, 5) runs the detector on every k-th
    sampled frame of each clip (and on the first frame after a clip change). In between, each face seen on the
    previous frame is carried: FaceMesh's static mode on the box predicted from its previous landmarks (the
    landmark model alone from those landmarks where that fails, as for a lost track), re-verified alike and by the
    detector's last stage (O-net) on the predicted region, whose five points the row takes. The detector runs on
    the frame after all when a carried face is not followed, and on the next frame when it found a face without
    landmarks (nothing to carry it by), so a carried face is never lost where k = 1 would keep it
    (benchmarks/analysis.py `turn_accuracy_by_stride`). New faces appear at the next detection frame. Every row
    has `detected` (the detector found it on this frame) and `found_by` (:data:`FOUND_BY`).
    """
    from .video import clip_windows, iter_clip_frames  # lazy: video imports av and cv2

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
    # track -> (last detector score, box calibration, previous frame's FaceMesh landmarks, appearance template)
    carried: dict[int, tuple] = {}
    detect_next = False  # the previous frame found a face it could not carry: run the detector on this one

    def follow(frame, tids, how: str) -> list[_Propagated]:
        out = []
        for tid in tids:
            score, calib, prev_mesh, template, prev_box = carried[tid]
            found_by, ok = how, False
            if how == "propagated":
                guess = _calibrated_box(prev_mesh, calib)
                mesh = models.facemesh.landmarks(frame.image, [guess.astype(np.float32)])[0]
                ok, _ = verify_continued(prev_mesh, mesh, template, frame.image)
            if not ok:  # a lost track, or turned past the static landmarker: the landmark model alone (as k = 1 does)
                mesh, _ = models.facemesh.track(frame.image, prev_mesh)
                ok, _ = verify_continued(prev_mesh, mesh, template, frame.image)
                found_by = "track"
            if not ok:
                continue
            box = _calibrated_box(mesh, calib).astype(np.float32)
            lmk5 = np.asarray(mesh, np.float32)[list(MESH_LMK5), :2]
            if hasattr(models.detector, "score_regions"):
                # re-detection in the predicted region: the detector's five points there, on propagated frames too
                # (FaceMesh's points saturate on profiles, and the pose stage's five-point reading needs the
                # detector's), and a face the detector's last stage does not see is dropped (a carried face never
                # drifts onto the background between detections). Regions: the box from this frame's landmarks and
                # the previous frame's box; where O-net doubts both (a profile), also the landmarks' own box and its
                # halves (on a profile the landmarks also cover the hidden half of the face).
                onet = max(models.detector.score_regions(frame.image, [box, prev_box]), key=lambda d: d.score)
                if onet.score < REDETECT_MIN_SCORE:
                    mb = _mesh_bbox(mesh)
                    w = mb[2] - mb[0]
                    more = [mb, mb + [0.35 * w, 0, 0, 0], mb - [0, 0, 0.35 * w, 0]]
                    onet = max([onet, *models.detector.score_regions(frame.image, more)], key=lambda d: d.score)
                if onet.score < REDETECT_MIN_SCORE:
                    continue  # the detector's last stage sees no face where the landmarks say one is: drop it
                lmk5 = onet.lmk5
            out.append(_Propagated(box, score, lmk5, tid, mesh, calib, found_by, template))
        return sorted(out, key=lambda p: (float(p.box[0]), float(p.box[1])))

    def flush() -> None:
        nonlocal current_clip, done, detect_next
        to_detect = [f.image for f, want in pending if want]
        detections = iter(detect_with_fallback(models.detector, to_detect) if to_detect else [])
        for frame, want in pending:
            if frame.clip_id != current_clip:
                tracker.reset()
                carried.clear()
                current_clip = frame.clip_id
                detect_next = False
            props = None
            if not (want or detect_next) and models.facemesh:
                props = follow(frame, list(carried), "propagated")
                if len(props) < len(carried):  # a carried face was not followed: the detector on this frame instead
                    props = None
            if want or props is None:
                found = next(detections) if want else detect_with_fallback(models.detector, [frame.image])[0]
                found = sorted(found, key=lambda d: (float(d[0].box[0]), float(d[0].box[1])))
                dets = [d for d, _ in found]
                how = [h for _, h in found]
                boxes = np.array([d.box for d in dets], np.float32).reshape(-1, 4)
                track_ids = tracker.update(frame.frame_index, boxes)
                mesh = models.facemesh.landmarks(frame.image, list(boxes)) if models.facemesh and len(boxes) else []
                lost = [t for t in carried if t not in track_ids] if continue_tracks and models.facemesh else []
                kept = [p for p in follow(frame, lost, "track")
                        if not len(boxes) or float(iou(p.box, boxes).max()) < 0.3] if lost else []
                new_carried = {}
                for k, det in enumerate(dets):
                    if k < len(mesh) and mesh[k] is not None:
                        new_carried[track_ids[k]] = (float(det.score), _box_calibration(det.box, mesh[k]), mesh[k],
                                                     face_histogram(frame.image, _mesh_bbox(mesh[k])),
                                                     np.asarray(det.box, np.float64))
                for p in kept:
                    new_carried[p.track_id] = (p.score, p.calibration, p.mesh, p.template, np.asarray(p.box, np.float64))
                    tracker.live[p.track_id] = (frame.frame_index, p.box.astype(np.float64))
                carried.clear()
                carried.update(new_carried)
                # a face found without landmarks cannot be carried: detect again on the next frame
                detect_next = len(new_carried) < len(dets) + len(kept)
                dets += [Detection(p.box, p.score, p.lmk5) for p in kept]
                how += [p.found_by for p in kept]
                detected = [True] * len(found) + [False] * len(kept)
                boxes = np.array([d.box for d in dets], np.float32).reshape(-1, 4)
                track_ids = list(track_ids) + [p.track_id for p in kept]
                mesh = list(mesh) + [p.mesh for p in kept]
            else:
                dets = [Detection(p.box, p.score, p.lmk5) for p in props]
                how = [p.found_by for p in props]
                detected = [False] * len(props)
                boxes = np.array([d.box for d in dets], np.float32).reshape(-1, 4)
                track_ids = [p.track_id for p in props]
                mesh = [p.mesh for p in props]
                carried.clear()
                for p in props:
                    carried[p.track_id] = (p.score, p.calibration, p.mesh, p.template, np.asarray(p.box, np.float64))
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
                              "detector": models.detector.name, "detected": bool(detected[k]), "found_by": how[k]})
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
