"""The demo's clip segments: a face still placed on a tinted background, frame by frame, with known angles.

`steady_segment` moves the still gently with a known in-plane roll sweep (and optional mirroring);
`turn_segment` renders a head turn with known yaw, pitch and roll from a textured 3D face fitted to the
photo (`demo/face_render.py`). Both return `(frames, boxes, lmks, angles)`; `SEGMENT_RENDERERS` names them.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .face_render import fit_textured_mesh, render_turn_segment

FRAME_SIZE = 512
# Head-turn clips (rendering far past a photo's own pose stretches the unseen side of the face; see
# demo/face_render.py).
TURN_YAW_RANGE = (-65.0, 65.0)


@dataclass
class FaceStill:
    identity: str
    image: np.ndarray  # BGR crop around the face with context
    box: np.ndarray  # face box (x1, y1, x2, y2) in the still
    lmk5: np.ndarray  # (5, 2) in the still, image-left eye first


def tinted_background(rng: np.random.Generator, tint: tuple[int, int, int]) -> np.ndarray:
    yy, xx = np.mgrid[0:FRAME_SIZE, 0:FRAME_SIZE].astype(np.float32) / FRAME_SIZE
    base = np.stack([tint[c] * (0.6 + 0.4 * (xx if c % 2 else yy)) for c in range(3)], axis=-1)
    noise = rng.normal(0, 4, size=base.shape)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def render_frame(still: FaceStill, background: np.ndarray, face_px: float, center: tuple[float, float],
                 roll_deg: float, mirrored: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Place the still so its face box is `face_px` wide at `center`, rolled by `roll_deg`.

    Roll follows the project convention: positive tilts the top of the head toward the image's
    right, i.e. a clockwise turn on screen (OpenCV's angle is counter-clockwise, hence the minus).
    Returns the frame and the face box and 5 landmarks in frame pixels.
    """
    image, box, lmk = still.image, still.box.copy(), still.lmk5.copy()
    if mirrored:
        w = image.shape[1]
        image = image[:, ::-1]
        box = np.array([w - box[2], box[1], w - box[0], box[3]], np.float32)
        lmk = lmk.copy()
        lmk[:, 0] = w - lmk[:, 0]
        lmk = lmk[[1, 0, 2, 4, 3]]  # keep image-left eye / mouth corner first
    face_center = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
    scale = face_px / float(box[2] - box[0])
    m = cv2.getRotationMatrix2D(face_center, -roll_deg, scale)
    m[:, 2] += np.array(center) - np.array(face_center)
    frame = background.copy()
    warped = cv2.warpAffine(np.ascontiguousarray(image), m, (FRAME_SIZE, FRAME_SIZE), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    mask = cv2.warpAffine(np.full(image.shape[:2], 255, np.uint8), m, (FRAME_SIZE, FRAME_SIZE), flags=cv2.INTER_LINEAR)
    alpha = (mask.astype(np.float32) / 255.0)[..., None]
    frame = (warped * alpha + frame * (1 - alpha)).astype(np.uint8)

    def apply(points: np.ndarray) -> np.ndarray:
        return points @ m[:, :2].T + m[:, 2]

    corners = apply(np.array([[box[0], box[1]], [box[2], box[1]], [box[2], box[3]], [box[0], box[3]]], np.float32))
    out_box = np.array([*corners.min(0), *corners.max(0)], np.float32)
    return frame, out_box, apply(lmk).astype(np.float32)


def steady_segment(still, rng, n_frames, tint, mirrored, roll_amplitude, face_range=(300.0, 360.0)):
    """A clip of gentle motion: face size in face_range, a small drift and a known roll sweep."""
    background = tinted_background(rng, tint)
    phase = rng.uniform(0, 2 * np.pi)
    frames, boxes, lmks, rolls = [], [], [], []
    for t in range(n_frames):
        s = np.sin(2 * np.pi * t / n_frames + phase)
        face_px = face_range[0] + (face_range[1] - face_range[0]) * (0.5 + 0.5 * s)
        center = (FRAME_SIZE / 2 + 12 * s, FRAME_SIZE / 2 + 8 * np.cos(2 * np.pi * t / n_frames))
        roll = float(roll_amplitude * s)
        frame, box, lmk = render_frame(still, background, face_px, center, roll, mirrored)
        frames.append(frame)
        boxes.append(box)
        lmks.append(lmk)
        rolls.append(round(roll, 3))
    return frames, boxes, lmks, rolls


_FIT_CACHE: dict = {}


def turn_segment(still, rng, n_frames, tint, mirrored, roll_amplitude, face_range=(300.0, 360.0),
                 yaw_range=TURN_YAW_RANGE, pitch_amplitude=10.0):
    """A head turn with :func:`steady_segment`'s signature (``SEGMENT_RENDERERS["turn"]``).

    Fits (and caches per identity / mirroring) the still's textured mesh, then renders a turn
    there and back through ``yaw_range`` with a gentle pitch wave (``pitch_amplitude``) and a roll
    sweep (``roll_amplitude``), on the demo's tinted background, the face ``mean(face_range)`` px
    wide.  ``mirrored`` mirrors the *photo* before fitting, so the truth stays exact.
    Returns ``(frames, boxes, lmks, truths)`` with per-frame ``{"yaw", "pitch", "roll"}`` dicts.
    """
    key = (still.identity, bool(mirrored), still.image.shape, float(still.box.sum()))
    face = _FIT_CACHE.get(key)
    if face is None:
        image, box = still.image, np.asarray(still.box, np.float64)
        if mirrored:
            w = image.shape[1]
            image = np.ascontiguousarray(image[:, ::-1])
            box = np.array([w - box[2], box[1], w - box[0], box[3]])
        face = fit_textured_mesh(image, box)
        _FIT_CACHE[key] = face
    background = tinted_background(rng, tint)
    n = int(n_frames)
    phase = float(rng.uniform(0, 2 * np.pi))
    t = np.arange(n) / max(n, 1)
    pitch = pitch_amplitude * np.sin(2 * np.pi * t + phase)
    roll = roll_amplitude * np.sin(4 * np.pi * t + phase)
    face_px = 0.5 * (face_range[0] + face_range[1])
    return render_turn_segment(face, n, yaw_range, pitch, roll, size=FRAME_SIZE, face_px=face_px,
                               background=background, back_and_forth=True)


# Segment kinds a clip can be made of: steady (known roll, optional mirroring) and turn (known
# yaw/pitch/roll from a textured 3D face fitted to the photo: "face profiling", demo/face_render.py).
SEGMENT_RENDERERS = {"steady": steady_segment, "turn": turn_segment}
