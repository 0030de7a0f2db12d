"""Text-to-image split (ControlNet on SD 1.5): selection (table ``split_t2i``), FaceMesh
conditions, captions, and the dataset layout ControlNet's tutorial loader reads.

Selection (:func:`select_t2i`): the GAN selection (quality pass, FFHQ crop in frame, at most 10 per
(clip, bin) as EFHQ, most extreme first) restricted to faces that satisfy the original's MediaPipe
filter (docs/efhq.md, "Per-task outputs"): 478 FaceMesh landmarks present, image short side >= 384 px, face
box short side >= 64 px.  The filter is applied *before* the cap, so a group's cap is filled with
usable faces.

Targets: the 512x512 EG3D-style crop (``align.eg3d_crop``), as in the original.

Conditions (:func:`draw_facemesh_condition`): FaceMesh drawn on a black canvas: face oval, both
eyes, both eyebrows, lips (mediapipe's ``FACEMESH_*`` connection sets, drawn with mediapipe's stock
``drawing_utils.draw_landmarks``) plus the pupil points 468 and 473 (4x4 squares, as EFHQ's
``draw_pupils``).  The original called ``mp_drawing.draw_landmarks_npyarray``, which does not exist
in stock mediapipe.  The 478 points are moved into the crop with the crop's own matrix
(``align.warp_points(points, M)``, M from ``eg3d_crop``), never re-detected on the crop.  The
palette is EFHQ's (1_attributes_extraction/mediapipeface.py, colours in BGR as cv2 writes them):
face oval (10, 200, 10), lips (10, 180, 10), eyes, eyebrows and pupils as there.

Captions (:func:`caption`): pose words from the reviewed bin and the angles in the project's
convention (yaw > 0: the subject turns to their own left; pitch > 0: looks up), e.g. ``"a profile
portrait of a person turned to their left, looking slightly up"``.  For CelebV-HQ rows, the
human-annotated attributes are added **only when present**: appearance (multi-hot over the 40
CelebV-HQ appearance attributes) and the emotion label.  Actions are not used (they describe the
clip over time, not one frame), nor is ``blurry`` (image quality, not content).  Rows without
attributes get pose words only: nothing is guessed.  The original's DeepFace age/gender/race/
emotion guesses are not reproduced.

Attribute order: :data:`CELEBVHQ_APPEARANCE` is the order of ``meta_info.appearance_mapping`` in
``celebvhq_info.json`` as far as it could be checked without the file itself: the official README
(CelebV-HQ/CelebV-HQ) shows it starts ``"Blurry", "Male", "Young", ...``; the official project
page's attribute explorer (CelebV-HQ/CelebV-HQ.github.io, ``explore/index.html``) lists the other
39 in exactly this order (Male ... Wearing_Mask) and the 35 actions in the order of
:data:`CELEBVHQ_ACTIONS`; two independent third-party decoders of ``meta_info`` use the same two
lists.  When a row's attributes carry their own ``appearance_mapping`` (copied from the file's
``meta_info``), that mapping is used instead.  A vector whose length is not 40 is ignored.

Layout (:func:`export_t2i`), both loaders read it unchanged::

    out_dir/source/<video_id>/<frame:08d>_<face>.png            condition (FaceMesh drawing)
    out_dir/target/<video_id>/<frame:08d>_<face>.png            512 crop
    out_dir/prompt.json          stock ControlNet (lllyasviel/ControlNet tutorial_dataset.py): one JSON
                                 object per line {"source": "source/...png", "target": "target/...png",
                                 "prompt": "..."}, paths relative to out_dir
    out_dir/condition_images/<video_id>/<frame:08d>_<face>.png  EFHQ's loader (5_train_eval/controlnet/
    out_dir/target_images/<video_id>/<frame:08d>_<face>.png       tutorial_dataset.py): the same files
    out_dir/prompts.json         (hard links when possible) and one JSON object {name: prompt}, the name
                                 being the path without ".png"

numpy only at module level; cv2, mediapipe and ``align`` are imported inside functions.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from ..align import warp_points
from .common import (atomic_write_bytes, attributes_of, encode_png, finite_or_none, lmk478_xy_of,
                     ordered_parallel_map, relative_path, render_fields, row_key)
from .gan import EFHQ_GAN_GROUP, select_gan

__all__ = [
    "CELEBVHQ_APPEARANCE",
    "CELEBVHQ_ACTIONS",
    "CELEBVHQ_EMOTIONS",
    "SPLIT_T2I_COLUMNS",
    "select_t2i",
    "draw_facemesh_condition",
    "pose_words",
    "caption",
    "decode_appearance",
    "emotion_of",
    "export_t2i",
]

#: CelebV-HQ ``meta_info.appearance_mapping`` (40), see the module docstring for its provenance.
CELEBVHQ_APPEARANCE = (
    "blurry", "male", "young", "chubby", "pale_skin", "rosy_cheeks", "oval_face",
    "receding_hairline", "bald", "bangs", "black_hair", "blonde_hair", "gray_hair", "brown_hair",
    "straight_hair", "wavy_hair", "long_hair", "arched_eyebrows", "bushy_eyebrows",
    "bags_under_eyes", "eyeglasses", "sunglasses", "narrow_eyes", "big_nose", "pointy_nose",
    "high_cheekbones", "big_lips", "double_chin", "no_beard", "5_o_clock_shadow", "goatee",
    "mustache", "sideburns", "heavy_makeup", "wearing_earrings", "wearing_hat", "wearing_lipstick",
    "wearing_necklace", "wearing_necktie", "wearing_mask",
)
#: CelebV-HQ ``meta_info.action_mapping`` (35); documented, not used in captions.
CELEBVHQ_ACTIONS = (
    "blow", "chew", "close_eyes", "cough", "cry", "drink", "eat", "frown", "gaze", "glare",
    "head_wagging", "kiss", "laugh", "listen_to_music", "look_around", "make_a_face", "nod",
    "play_instrument", "read", "shake_head", "shout", "sigh", "sing", "sleep", "smile", "smoke",
    "sneer", "sneeze", "sniff", "talk", "turn", "weep", "whisper", "wink", "yawn",
)
#: CelebV-HQ's 8 emotion labels -> the adjective used in captions.
CELEBVHQ_EMOTIONS = {
    "neutral": "neutral", "happy": "happy", "sadness": "sad", "anger": "angry",
    "surprise": "surprised", "fear": "fearful", "disgust": "disgusted", "contempt": "contemptuous",
}

# appearance attribute -> caption phrase ("with ..."), or handled specially (subject/wearing/skip)
_WITH_PHRASES = {
    "pale_skin": "pale skin", "rosy_cheeks": "rosy cheeks", "oval_face": "an oval face",
    "receding_hairline": "a receding hairline", "bald": "a bald head", "bangs": "bangs",
    "black_hair": "black hair", "blonde_hair": "blonde hair", "gray_hair": "gray hair",
    "brown_hair": "brown hair", "straight_hair": "straight hair", "wavy_hair": "wavy hair",
    "long_hair": "long hair", "arched_eyebrows": "arched eyebrows",
    "bushy_eyebrows": "bushy eyebrows", "bags_under_eyes": "bags under the eyes",
    "eyeglasses": "eyeglasses", "sunglasses": "sunglasses", "narrow_eyes": "narrow eyes",
    "big_nose": "a big nose", "pointy_nose": "a pointy nose", "high_cheekbones": "high cheekbones",
    "big_lips": "big lips", "double_chin": "a double chin", "no_beard": "no beard",
    "5_o_clock_shadow": "a five o'clock shadow", "goatee": "a goatee", "mustache": "a mustache",
    "sideburns": "sideburns", "heavy_makeup": "heavy makeup",
}
_WEARING_PHRASES = {
    "wearing_earrings": "earrings", "wearing_hat": "a hat", "wearing_lipstick": "lipstick",
    "wearing_necklace": "a necklace", "wearing_necktie": "a necktie", "wearing_mask": "a mask",
}

#: Columns of the ``split_t2i`` table (in order).  ``path`` is the target image.
SPLIT_T2I_COLUMNS = (
    "video_id", "frame_index", "face_index", "clip_id", "track_id", "identity_id", "source",
    "split", "label", "bin", "yaw", "pitch", "roll", "score", "path", "source_path", "target_path",
    "prompt",
)

MIN_IMAGE_SIDE = 384
MIN_FACE_SIDE = 64


# ----------------------------------------------------------------------------- selection


def _t2i_eligible(r: dict, min_image_side: int, min_face: int) -> bool:
    if lmk478_xy_of(r) is None:
        return False
    try:
        w, h = int(r["frame_width"]), int(r["frame_height"])
        bw = float(r["x2"]) - float(r["x1"])
        bh = float(r["y2"]) - float(r["y1"])
    except (KeyError, TypeError, ValueError):
        return False
    if min(w, h) < min_image_side:
        return False
    return min(bw, bh) >= min_face


def select_t2i(
    rows: Iterable[dict],
    per_group: int = 10,
    seed: int = 0,
    *,
    test_pct: float = 0.0,
    include_frontal: bool = True,
    min_image_side: int = MIN_IMAGE_SIDE,
    min_face: int = MIN_FACE_SIDE,
    outside_frame: Callable | None = None,
    group_by: Sequence[str] = EFHQ_GAN_GROUP,
) -> list[dict]:
    """Rows of ``split_t2i`` (columns :data:`SPLIT_T2I_COLUMNS`) with ``prompt`` = :func:`caption`.

    Rows also carry the render-only ``common.RENDER_KEYS`` and ``lmk478`` (956 floats) that
    :func:`export_t2i` needs; write the table with ``common.table_rows(rows, SPLIT_T2I_COLUMNS)``.
    """
    rows = [r for r in rows if _t2i_eligible(r, min_image_side, min_face)]
    by_key = {row_key(r): r for r in rows}
    out = []
    for g in select_gan(rows, per_group, seed, test_pct=test_pct, include_frontal=include_frontal,
                        outside_frame=outside_frame, group_by=group_by):
        src = by_key[row_key(g)]
        o = {k: g.get(k) for k in SPLIT_T2I_COLUMNS if k in g}
        o["label"] = g["bin"]
        o["source_path"] = relative_path(g, prefix="source")
        o["target_path"] = relative_path(g, prefix="target")
        o["path"] = o["target_path"]
        o["prompt"] = caption(src)
        o = {k: o.get(k) for k in SPLIT_T2I_COLUMNS}
        o.update(render_fields(src, extra=("lmk478",)))
        out.append(o)
    return out


# ----------------------------------------------------------------------------- conditions

#: BGR colours per FaceMesh part: EFHQ's palette (1_attributes_extraction/mediapipeface.py DrawingSpecs, drawn
#: on a BGR canvas and written with cv2.imwrite).
CONDITION_COLORS = {
    "face_oval": (10, 200, 10),
    "left_eye": (180, 200, 10),       # subject's left
    "right_eye": (10, 200, 180),
    "left_eyebrow": (180, 220, 10),
    "right_eyebrow": (10, 220, 180),
    "lips": (10, 180, 10),
    "left_pupil": (250, 200, 10),
    "right_pupil": (10, 200, 250),
}
PUPIL_LEFT_IMG = 468   # centre of the iris of the image-left eye (subject's right) for a frontal face
PUPIL_RIGHT_IMG = 473


@functools.lru_cache(maxsize=1)
def _facemesh_parts():
    """(name, sorted connections) of the drawn FaceMesh parts, in drawing order (MediaPipe's connection sets; built
    once, not per condition image)."""
    try:
        from mediapipe.python.solutions import face_mesh_connections as fmc
    except ImportError:  # pragma: no cover - older/newer layouts
        from mediapipe.solutions import face_mesh_connections as fmc  # type: ignore

    return (("face_oval", sorted(fmc.FACEMESH_FACE_OVAL)), ("left_eyebrow", sorted(fmc.FACEMESH_LEFT_EYEBROW)),
            ("right_eyebrow", sorted(fmc.FACEMESH_RIGHT_EYEBROW)), ("left_eye", sorted(fmc.FACEMESH_LEFT_EYE)),
            ("right_eye", sorted(fmc.FACEMESH_RIGHT_EYE)), ("lips", sorted(fmc.FACEMESH_LIPS)))


def _canvas_pixels(pts: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Each point's pixel as MediaPipe's ``drawing_utils.draw_landmarks`` places it, and whether it is drawn.

    EFHQ drew its conditions with that function on normalised landmarks: ``(x + 0.5) / size`` stored as float32
    (the landmark protobuf), drawn at ``min(floor(v * size), size - 1)``, and only where ``0 <= v <= 1``."""
    with np.errstate(invalid="ignore"):
        v = ((pts + 0.5) / size).astype(np.float32).astype(np.float64)
        ok = np.isfinite(v).all(1) & ((v >= 0) & ((v <= 1) | np.isclose(v, 1, rtol=1e-9, atol=0))).all(1)
        px = np.minimum(np.floor(np.where(np.isfinite(v), v, 0) * size), size - 1).astype(np.int64)
    return px, ok


def draw_facemesh_condition(lmk478_xy_in_crop, size: int = 512, thickness: int | None = None) -> np.ndarray:
    """ControlNet face condition: (size, size, 3) uint8 BGR, FaceMesh parts on black.

    ``lmk478_xy_in_crop``: (478, 2) (or (478, 3), z ignored) pixel coordinates *in the crop*.
    Points outside the canvas or non-finite are not drawn (nor their connections).  The lines are those of
    MediaPipe's ``drawing_utils.draw_landmarks`` (EFHQ's drawing), pixel for pixel (tested), drawn directly: the
    helper converts all 478 points once per part, which was most of a text-to-image export's time.
    """
    import cv2

    pts = np.asarray(lmk478_xy_in_crop, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[0] != 478 or pts.shape[1] < 2:
        raise ValueError(f"expected (478, 2) landmarks, got {pts.shape}")
    pts = pts[:, :2]
    size = int(size)
    t = int(thickness) if thickness is not None else max(1, int(round(size / 256)))
    canvas = np.zeros((size, size, 3), np.uint8)
    px, ok = _canvas_pixels(pts, size)
    for name, conns in _facemesh_parts():
        color = CONDITION_COLORS[name]
        for a, b in conns:
            if ok[a] and ok[b]:
                cv2.line(canvas, (int(px[a, 0]), int(px[a, 1])), (int(px[b, 0]), int(px[b, 1])), color, t)
    for idx, name in ((PUPIL_LEFT_IMG, "right_pupil"), (PUPIL_RIGHT_IMG, "left_pupil")):
        x, y = pts[idx]
        if np.isfinite(x) and np.isfinite(y) and 0 <= x < size and 0 <= y < size:
            # EFHQ's draw_pupils: image[y - 2:y + 2, x - 2:x + 2] = colour (halfwidth 2)
            xi, yi = int(x), int(y)
            canvas[max(yi - 2, 0):yi + 2, max(xi - 2, 0):xi + 2] = CONDITION_COLORS[name]
    return canvas


# ----------------------------------------------------------------------------- captions


def pose_words(label: str | None, yaw=None, pitch=None) -> tuple[str, list[str]]:
    """(lead, clauses): e.g. ("a profile portrait", ["turned to their left", "looking slightly up"]).

    The bin (reviewed label) decides the main direction where it names one; the angles decide the
    other axis and the ``slightly`` grading (yaw: 20-45 deg slightly, >= 45 full, the bins' 45 deg
    edge; pitch: 12-30 deg slightly, >= 30 full).  Convention: yaw > 0 = the subject's own left,
    pitch > 0 = looking up.
    """
    y, p = finite_or_none(yaw), finite_or_none(pitch)
    ay, ap = abs(y) if y is not None else 0.0, abs(p) if p is not None else 0.0
    yaw_dir = None  # "left"/"right"
    yaw_full = False
    pitch_dir = None
    pitch_full = False

    if label in ("profile_left", "profile_right"):
        yaw_dir = "left" if label == "profile_left" else "right"
        yaw_full = True
    elif y is not None and ay >= 20:
        yaw_dir = "left" if y > 0 else "right"
        yaw_full = ay >= 45
    if label in ("profile_up", "profile_down"):
        pitch_dir = "up" if label == "profile_up" else "down"
        pitch_full = True
    elif p is not None and ap >= 12:
        pitch_dir = "up" if p > 0 else "down"
        pitch_full = ap >= 30

    if label == "frontal":
        lead = "a frontal portrait"
        # a frontal bin never gets "full" words, whatever the estimators' spread
        yaw_full = pitch_full = False
    elif yaw_dir is not None and (yaw_full or label == "profile_horizontal"):
        lead = "a profile portrait"
        yaw_full = True
    else:
        lead = "a portrait"

    clauses = []
    if yaw_dir is not None:
        clauses.append(f"turned to their {yaw_dir}" if yaw_full else f"turned slightly to their {yaw_dir}")
    if pitch_dir is not None:
        clauses.append(f"looking {pitch_dir}" if pitch_full else f"looking slightly {pitch_dir}")
    return lead, clauses


def decode_appearance(attrs: dict | None) -> list[str]:
    """Names of the appearance attributes set in a CelebV-HQ attributes dict ([] when unknown)."""
    if not attrs:
        return []
    vec = attrs.get("appearance")
    if not isinstance(vec, (list, tuple)):
        return []
    mapping = attrs.get("appearance_mapping")
    if isinstance(mapping, (list, tuple)) and len(mapping) == len(vec) and all(isinstance(m, str) for m in mapping):
        names = [m.strip().lower() for m in mapping]
    else:
        names = list(CELEBVHQ_APPEARANCE)
    if len(vec) != len(names):
        return []
    out = []
    for name, v in zip(names, vec):
        try:
            on = int(v) == 1
        except (TypeError, ValueError):
            return []
        if on:
            out.append(name)
    return out


def emotion_of(attrs: dict | None) -> str | None:
    """The clip's emotion label when there is one for the whole clip (a known CelebV-HQ label)."""
    if not attrs:
        return None
    emo = attrs.get("emotion")
    if not isinstance(emo, dict):
        return None
    labels = emo.get("labels")
    if isinstance(labels, str):
        values = [labels]
    elif isinstance(labels, (list, tuple)) and labels:
        # multi-emotion clip: usable only if every segment agrees (the frame's time is not known here)
        values = []
        for seg in labels:
            if isinstance(seg, dict):
                values.append(seg.get("emotion"))
            elif isinstance(seg, str):
                values.append(seg)
            else:
                return None
    else:
        return None
    values = [v.strip().lower() for v in values if isinstance(v, str)]
    if not values or len(set(values)) != 1:
        return None
    v = values[0]
    return v if v in CELEBVHQ_EMOTIONS else None


def _join(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def caption(row: dict) -> str:
    """Prompt for one row: pose words, plus CelebV-HQ attributes only when the row has them."""
    lead, clauses = pose_words(row.get("label"), row.get("yaw"), row.get("pitch"))
    attrs = attributes_of(row)
    names = decode_appearance(attrs)
    emotion = emotion_of(attrs)

    adjectives = [n for n in ("young", "chubby") if n in names]
    noun = "man" if "male" in names else "person"
    subject = " ".join(["a", *adjectives, noun])
    text = f"{lead} of {subject}"
    if clauses:
        text += " " + ", ".join(clauses)
    withs = [_WITH_PHRASES[n] for n in names if n in _WITH_PHRASES]
    if emotion is not None:
        withs.append(f"a {CELEBVHQ_EMOTIONS[emotion]} expression")
    if withs:
        text += ", with " + _join(withs)
    wearing = [_WEARING_PHRASES[n] for n in names if n in _WEARING_PHRASES]
    if wearing:
        text += ", wearing " + _join(wearing)
    return text


# ----------------------------------------------------------------------------- export


def export_t2i(
    rows: Sequence[dict],
    render_target_fn: Callable[[dict], tuple[np.ndarray, np.ndarray] | None],
    out_dir: str | os.PathLike,
    *,
    size: int = 512,
) -> dict:
    """Write ControlNet's dataset from ``split_t2i`` rows in both layouts (module docstring): stock
    ``source/``, ``target/``, ``prompt.json`` and EFHQ's ``condition_images/``, ``target_images/``,
    ``prompts.json``.

    ``render_target_fn(row)`` returns ``(crop, M)``: the ``size`` x ``size`` uint8 BGR crop and the
    2x3 matrix mapping full-frame pixels into it (``align.eg3d_crop``), or None to skip the row.
    The condition is drawn from ``row['lmk478']`` moved into the crop with ``align.warp_points``.
    Every file is written atomically and ``prompts.json`` last.  Returns ``{"path", "count",
    "skipped"}``.
    """
    out = Path(out_dir)
    ordered = sorted(rows, key=lambda r: r["source_path"])
    lines, skipped, efhq_prompts = [], [], {}

    def pngs_of(r):  # in the export's worker threads: the condition's PNG and the crop's
        res = render_target_fn(r)
        if res is None:
            return None
        crop, M = res
        crop = np.asarray(crop)
        if crop.dtype != np.uint8 or crop.shape != (size, size, 3):
            raise ValueError(f"render_target_fn must return a ({size}, {size}, 3) uint8 crop, got "
                             f"{crop.dtype} {crop.shape}")
        xy = lmk478_xy_of(r)
        if xy is None:
            raise ValueError(f"row {row_key(r)} has no 478-point landmarks (lmk478)")
        xy_crop = np.asarray(warp_points(xy, np.asarray(M, dtype=np.float64)), dtype=np.float64)
        return encode_png(draw_facemesh_condition(xy_crop, size=size)), encode_png(crop)

    for r, pngs in zip(ordered, ordered_parallel_map(pngs_of, ordered)):
        if pngs is None:
            skipped.append(row_key(r))
            continue
        for (path, data), efhq_dir in (((r["source_path"], pngs[0]), "condition_images"),
                                       ((r["target_path"], pngs[1]), "target_images")):
            atomic_write_bytes(out / path, data)
            _link_or_write(out / path, out / efhq_dir / _efhq_name(r), data)
        prompt = r.get("prompt") or caption(r)
        lines.append({"source": r["source_path"], "target": r["target_path"], "prompt": prompt})
        efhq_prompts[_efhq_name(r)[: -len(".png")]] = prompt
    text = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
    atomic_write_bytes(out / "prompts.json", json.dumps(efhq_prompts, ensure_ascii=False, sort_keys=True).encode())
    atomic_write_bytes(out / "prompt.json", text.encode("utf-8"))
    return {"path": str(out), "count": len(lines), "skipped": skipped}


def _efhq_name(row: dict) -> str:
    """``<video_id>/<frame:08d>_<face>.png``: the row's path below ``source/`` (and ``target/``)."""
    return row["source_path"].split("/", 1)[1]


def _link_or_write(existing: Path, target: Path, data: bytes) -> None:
    """``target`` as a hard link to ``existing`` (no second copy of the bytes), or written when links fail."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.unlink(missing_ok=True)
        os.link(existing, tmp)
        os.replace(tmp, target)
    except OSError:
        tmp.unlink(missing_ok=True)
        atomic_write_bytes(target, data)
