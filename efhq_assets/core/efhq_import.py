"""Faces, landmarks and poses from EFHQ's released per-frame metadata instead of the models.

`efhq build --efhq-metadata FILE.csv --videos DIR` rebuilds the task outputs for the frames EFHQ
listed: detection and pose are skipped for those videos (their rows come from the file, converted to
the project's conventions by core/efhq_metadata.py), while quality, identities, bins and splits run
as usual on the re-decoded frames.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np

from .efhq_metadata import (efhq_celebv_crop, file_frame_index, from_clip_coordinates, lmk5_from_lmk68,
                            read_efhq_metadata, rescale_coordinates, sign_agreement)
from .face_crops import iter_faces_by_frame
from .faces import landmark_list
from .models import registry
from .sources import AnnotationError, read_vfhq_annotation

IMPORTED_ESTIMATORS = ("synergy", "poseanh", "mhp")
DETECTOR_NAME = "efhq_metadata"
#: The `quality.scorer` of a face whose score is EFHQ's released `iqa` (HyperIQA, KonIQ weights; EFHQ keeps
#: iqa >= 42): the scorer's threshold applies to it.
RELEASED_SCORER = "hyperiqa"


@functools.lru_cache(maxsize=8)
def _read(path: str, size: int, mtime_ns: int) -> tuple[list[dict], str]:
    return read_efhq_metadata(path), hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_metadata(path: str) -> tuple[list[dict], str]:
    st = Path(path).stat()
    return _read(str(path), st.st_size, st.st_mtime_ns)


def metadata_stamp(path: str | None):
    if not path:
        return None
    stamps = []
    for p in metadata_paths(path):
        try:
            st = Path(p).stat()
            stamps.append([p, st.st_size, st.st_mtime_ns])
        except FileNotFoundError:
            stamps.append([p, None, None])
    return stamps[0] if len(stamps) == 1 else stamps


def metadata_paths(value: str | None) -> list[str]:
    """The CSV files a clip's ``efhq_metadata`` lists (one path per line: a clip may span EFHQ's
    per-bin review files)."""
    return [p for p in (value or "").split("\n") if p]


@functools.lru_cache(maxsize=64)
def _annotated_size(annotation_file: str) -> tuple[int, int] | None:
    try:
        ann = read_vfhq_annotation(annotation_file)
    except (AnnotationError, OSError, ValueError):
        return None
    return ann.width, ann.height


def coordinate_scale(video: dict, clip: dict) -> tuple[float, float]:
    """(sx, sy) from a VFHQ clip's annotated ``W x H`` to the downloaded stream's pixels. EFHQ's
    ``download_vfhq.py`` resized every frame whose size differs from the annotation's H/W, so EFHQ's
    VFHQ coordinates are in the annotation's size; (1, 1) when they agree or the size is unknown."""
    file = clip.get("annotation_file") or ""
    if clip.get("source") != "vfhq" or not file.endswith(".txt"):
        return 1.0, 1.0
    size = _annotated_size(file)
    width, height = video.get("width"), video.get("height")
    if size is None or not width or not height:
        return 1.0, 1.0
    return float(width) / size[0], float(height) / size[1]


def _celebv_crop(video: dict, clip: dict):
    """The crop EFHQ's CelebV coordinates are measured in: EFHQ's own (:func:`efhq_celebv_crop`) from the
    clip's normalised bbox and the stream's size; the clip's crop when no bbox is known; None for a
    pre-cut clip file (already EFHQ's crop)."""
    if clip.get("whole_file"):
        return None
    if clip.get("bbox") is not None and video.get("width") and video.get("height"):
        return efhq_celebv_crop(clip["bbox"], int(video["width"]), int(video["height"]))
    return clip.get("crop")


def imported_faces(video: dict, clips: list[dict], problems: list[str] | None = None):
    """(key, row) for every EFHQ metadata row of this video that maps onto its decoded frames, in the
    project's conventions: file frame index (CelebV: from the first frame EFHQ's ``-ss`` wrote, which
    ``sources`` put at the clip window's start), full source-frame pixels (CelebV: EFHQ's crop origin
    added back, computed as EFHQ's command cut it; VFHQ: scaled from the annotation's size to the stream's). Rows whose ``lmks5pts`` were
    replaced by aligned-image coordinates (``aligned_path``) take their 5 points from SynergyNet's 68
    (source coordinates), as EFHQ's verification step does; without 68 points they are skipped. The
    key is (video_id, clip_id, frame_index, face_index, track_id). Skipped rows are described in
    ``problems``."""
    problems = problems if problems is not None else []
    per_frame: dict[int, int] = {}
    next_track = 0
    for clip in clips:
        paths = metadata_paths(clip.get("efhq_metadata"))
        if not paths:
            continue
        rows = [r for p in paths for r in read_metadata(p)[0] if r["video_id"] == clip["clip_id"]]
        sx, sy = coordinate_scale(video, clip)
        crop = _celebv_crop(video, clip)
        tracks: dict[int, int] = {}
        seen: set[tuple] = set()
        for r in sorted(rows, key=lambda r: (float(str(r["frameid"]).split(".")[0]), r.get("face_idx") or 0)):
            index = file_frame_index(r, first_frame=int(clip["start_frame"]))
            if not int(clip["start_frame"]) <= index <= int(clip["end_frame"]):
                problems.append(f"{clip['clip_id']} frame {r['frameid']}: outside the decoded window")
                continue
            if (index, r.get("face_idx")) in seen:  # the same face listed in two files
                continue
            seen.add((index, r.get("face_idx")))
            if r["coordinates"] == "aligned":
                if r.get("lmk68") is None:
                    problems.append(f"{clip['clip_id']} frame {r['frameid']}: lmks5pts in aligned-image coordinates "
                                    "and no lmks68pts to recover source ones; skipped")
                    continue
                r = dict(r, lmk5=lmk5_from_lmk68(r["lmk68"]), coordinates="source")
            if r["dataset"] == "celebv" and crop is not None:
                r = from_clip_coordinates(r, crop)
            if (sx, sy) != (1.0, 1.0):
                r = rescale_coordinates(r, sx, sy)
            face_index = per_frame.get(index, 0)
            per_frame[index] = face_index + 1
            slot = int(r.get("face_idx") or 0)
            if slot not in tracks:
                tracks[slot], next_track = next_track, next_track + 1
            yield (video["video_id"], clip["clip_id"], index, face_index, tracks[slot]), r


@functools.lru_cache(maxsize=1)
def _default_facemesh():
    return registry.create("landmarker", "facemesh")


def add_facemesh(video_path: str, faces: list[dict], marks: list[dict], facemesh) -> int:
    """Fill ``lmk478`` of the landmark rows with FaceMesh on each imported face's box (frames decoded once,
    in file order): the text-to-image conditions and the project's FaceMesh pose need them, and EFHQ's
    metadata has none. Returns how many faces got landmarks."""
    by_key = {(m["clip_id"], m["frame_index"], m["face_index"]): m for m in marks}
    done = 0
    for image, frame_faces in iter_faces_by_frame(video_path, faces):
        boxes = [np.array([f["x1"], f["y1"], f["x2"], f["y2"]], np.float32) for f in frame_faces]
        for f, mesh in zip(frame_faces, facemesh.landmarks(image, boxes)):
            if mesh is not None:
                by_key[(f["clip_id"], f["frame_index"], f["face_index"])]["lmk478"] = landmark_list(mesh)
                done += 1
    return done


def import_video(video: dict, clips: list[dict], facemesh="default"):
    """(faces rows, landmarks rows, pose rows, metadata sha256) for a video whose clips carry EFHQ
    metadata, or None when none does (see :func:`imported_faces`). FaceMesh 478 landmarks are computed on
    the imported boxes (``facemesh``: a landmarker, "default" for the bundled FaceMesh, None to skip)."""
    meta_clips = [c for c in clips if c.get("efhq_metadata")]
    if not meta_clips:
        return None
    faces, marks, poses = [], [], []
    shas = [read_metadata(p)[1] for c in meta_clips for p in metadata_paths(c["efhq_metadata"])]
    for (video_id, clip_id, index, face_index, track), r in imported_faces(video, meta_clips):
        key = {"video_id": video_id, "clip_id": clip_id, "frame_index": index, "face_index": face_index}
        x1, y1, x2, y2 = (float(v) for v in r["box"])
        faces.append({**key, "track_id": track, "x1": x1, "y1": y1, "x2": x2, "y2": y2, "score": None,
                      "lmk5": np.asarray(r["lmk5"], np.float64).reshape(-1).tolist(),
                      "passes_efhq_filter": True, "detector": DETECTOR_NAME, "detected": True})
        lmk68 = r.get("lmk68")
        marks.append({**key, "lmk478": None, "lmk68": None if lmk68 is None else landmark_list(np.asarray(lmk68)[:, :2])})
        for name in IMPORTED_ESTIMATORS:
            angles = (r.get("angles") or {}).get(name)
            yaw, pitch, roll = (None, None, None) if angles is None else (
                None if not np.isfinite(a) else float(a) for a in angles)
            poses.append({**key, "estimator": name, "yaw": yaw, "pitch": pitch, "roll": roll})
    if facemesh is not None and faces and video.get("path"):
        add_facemesh(video["path"], faces, marks, _default_facemesh() if facemesh == "default" else facemesh)
    return faces, marks, poses, hashlib.sha256("".join(sorted(shas)).encode()).hexdigest()


def released_labels(video: dict, clips: list[dict]) -> dict[tuple, dict]:
    """EFHQ's released labels per face key (video_id, clip_id, frame_index, face_index): ``softbin``,
    ``hardbin``, ``smallbin`` as EFHQ named them (after its manual review), and ``iqa`` (HyperIQA,
    KonIQ scale). Empty for a video without EFHQ metadata."""
    out = {}
    meta_clips = [c for c in clips if c.get("efhq_metadata")]
    for (video_id, clip_id, index, face_index, _), r in imported_faces(video, meta_clips):
        bins = r.get("bins") or {}
        out[(video_id, clip_id, index, face_index)] = {
            "softbin": bins.get("softbin"), "hardbin": bins.get("hardbin"), "smallbin": bins.get("smallbin"),
            "iqa": r.get("iqa")}
    return out


def imported_pose_rows(rows: list[dict], sha: str) -> list[dict]:
    """The imported estimators plus `combined` (their mean per angle: EFHQ published no reliabilities)."""
    out = [dict(r, residual=None, confidence=None, weights_sha256=sha) for r in rows]
    by_face: dict[tuple, list[dict]] = {}
    for r in rows:
        by_face.setdefault((r["video_id"], r["clip_id"], r["frame_index"], r["face_index"]), []).append(r)
    for key, members in by_face.items():
        combined = {}
        for angle in ("yaw", "pitch", "roll"):
            values = [m[angle] for m in members if m[angle] is not None]
            combined[angle] = float(np.mean(values)) if values else None
        out.append({"video_id": key[0], "clip_id": key[1], "frame_index": key[2], "face_index": key[3],
                    "estimator": "combined", **combined, "residual": None, "confidence": None, "weights_sha256": sha})
    return out


def pose_sign_agreement(pose_rows: list[dict], min_abs_yaw: float = 45.0) -> dict[str, dict[str, float]]:
    """:func:`efhq_metadata.sign_agreement` over `poses` rows (project convention) of imported faces: per pair of
    EFHQ's estimators, how often their yaws agree in sign on left/right profiles (|yaw| > 45). Near 0 for a
    pair means one of the two sign conventions is wrong for this data."""
    faces: dict[tuple, dict] = {}
    for r in pose_rows:
        if r["estimator"] in IMPORTED_ESTIMATORS:
            key = (r["video_id"], r["clip_id"], r["frame_index"], r["face_index"])
            yaw = r.get("yaw")
            faces.setdefault(key, {"angles": {}})["angles"][r["estimator"]] = None if yaw is None else (float(yaw),)
    return sign_agreement(list(faces.values()), min_abs_yaw)
