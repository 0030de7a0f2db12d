"""Source readers: a folder of videos, VFHQ per-clip annotation .txt, CelebV-HQ celebvhq_info.json.

`build_catalog` joins them into the source catalog: one row per known video (found on disk, or
annotated but missing) and one row per annotated clip window, plus error rows for annotation files
that could not be read. It only stats files and parses text (cheap), so a sensor can call it every
tick; probing and hashing a video's content happens per partition, in `source_videos`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from .efhq_metadata import EfhqMetadataError, efhq_metadata_files, read_efhq_metadata
from .ids import InvalidIdError, parse_vfhq_clip_name, validate_annotation_id, video_id_from_stem

VIDEO_SUFFIXES = {".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".mpg", ".mpeg", ".ts"}


class AnnotationError(ValueError):
    """An annotation file in the wrong format; the message names the file and the line."""


# --------------------------------------------------------------------------- folder of videos

@dataclass(frozen=True)
class VideoFile:
    video_id: str
    path: Path
    source_name: str  # the original file name, as the user has it
    size_bytes: int
    mtime_ns: int


def scan_video_folder(folder: str | os.PathLike) -> list[VideoFile]:
    """Every video file under `folder` (recursive), with a safe, unique, deterministic video id."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"video folder {folder} does not exist")
    found: list[VideoFile] = []
    taken: dict[str, Path] = {}
    for path in sorted(folder.rglob("*"), key=lambda p: str(p)):
        if path.suffix.lower() not in VIDEO_SUFFIXES or not path.is_file() or path.name.startswith("."):
            continue
        vid = video_id_from_stem(path.stem)
        if vid in taken:  # same stem in two sub-folders: keep both, disambiguated by the relative path
            rel = str(path.relative_to(folder))
            vid = f"{vid}-{hashlib.sha1(rel.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"
        taken[vid] = path
        st = path.stat()
        found.append(VideoFile(vid, path.resolve(), path.name, st.st_size, st.st_mtime_ns))
    return found


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class Sha256Cache:
    """sha256 of files cached by (path, size, mtime): hashing 10 TB of video once is enough."""

    def __init__(self, path: Path | None):
        self.path = path
        self.entries: dict[str, list] = {}
        self.dirty = False
        if path and path.exists():
            try:
                self.entries = json.loads(path.read_text())
            except (OSError, ValueError):
                self.entries = {}

    def get(self, file: Path, size: int, mtime_ns: int) -> str:
        key = str(file)
        hit = self.entries.get(key)
        if hit and hit[0] == size and hit[1] == mtime_ns:
            return hit[2]
        sha = file_sha256(file)
        self.entries[key] = [size, mtime_ns, sha]
        self.dirty = True
        return sha

    def save(self) -> None:
        if self.path and self.dirty:
            from .storage import atomic_write_bytes

            atomic_write_bytes(self.path, json.dumps(self.entries, sort_keys=True).encode())
            self.dirty = False


# --------------------------------------------------------------------------- VFHQ

@dataclass
class VfhqAnnotation:
    clip_name: str
    youtube_id: str
    person: int
    height: int
    width: int
    fps: float
    frames: list[dict] = field(default_factory=list)  # frame_id, idx, x1, y1, x2, y2, lmk5 (10 values)
    crop: tuple[int, int, int, int] | None = None

    @property
    def start_frame(self) -> int:
        return min(f["frame_id"] for f in self.frames) if self.frames else parse_vfhq_clip_name(self.clip_name).start_frame

    @property
    def end_frame(self) -> int:
        return max(f["frame_id"] for f in self.frames) if self.frames else parse_vfhq_clip_name(self.clip_name).end_frame


def _header_value(lines: list[str], key: str, path: Path, cast):
    for number, line in enumerate(lines[:12], start=1):
        parts = line.split()
        if parts and parts[0] == key:
            if len(parts) != 2:
                raise AnnotationError(f"{path.name}:{number}: expected '{key} <value>', got {line.strip()!r}")
            try:
                return cast(parts[1])
            except ValueError:
                raise AnnotationError(f"{path.name}:{number}: {key} value {parts[1]!r} is not a number") from None
    raise AnnotationError(f"{path.name}: missing the '{key}' header line (VFHQ annotation format)")


def read_vfhq_annotation(path: str | os.PathLike) -> VfhqAnnotation:
    """Parse one VFHQ clip annotation (`Video/H/W/FPS` header, frame lines, `CROP x0 y0 x1 y1`).

    Frame lines are `<frameid> <idx> <x0> <y0> <w> <h> <10 landmark values>` with the box as
    x, y, w, h (converted here to x1, y1, x2, y2, as the original does). Values keep full precision
    (the original rounded to 2 decimals).
    """
    path = Path(path)
    clip = parse_vfhq_clip_name(path.stem)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise AnnotationError(f"{path.name}: not a text file (VFHQ annotation expected)") from None
    height = _header_value(lines, "H", path, int)
    width = _header_value(lines, "W", path, int)
    fps = _header_value(lines, "FPS", path, float)
    ann = VfhqAnnotation(clip.name, clip.youtube_id, clip.person, height, width, fps)
    for number, line in enumerate(lines, start=1):
        parts = line.split()
        if not parts or parts[0] in {"Video", "H", "W", "FPS", "FRAME", "#"} or line.lstrip().startswith("#"):
            continue
        if parts[0] == "CROP":
            if len(parts) != 5:
                raise AnnotationError(f"{path.name}:{number}: CROP needs 4 values, got {len(parts) - 1}")
            try:
                ann.crop = tuple(int(round(float(v))) for v in parts[1:])  # type: ignore[assignment]
            except ValueError:
                raise AnnotationError(f"{path.name}:{number}: CROP values must be numbers") from None
            continue
        if len(parts) != 16:
            raise AnnotationError(
                f"{path.name}:{number}: a frame line needs 16 values (frameid idx x y w h + 10 landmark values), "
                f"got {len(parts)}")
        try:
            values = [float(v) for v in parts]
        except ValueError:
            raise AnnotationError(f"{path.name}:{number}: non-numeric value in frame line") from None
        x, y, w, h = values[2:6]
        ann.frames.append({"frame_id": int(values[0]), "idx": int(values[1]),
                           "x1": x, "y1": y, "x2": x + w, "y2": y + h, "lmk5": values[6:16]})
    if not ann.frames:
        raise AnnotationError(f"{path.name}: no frame lines found (VFHQ annotation format)")
    return ann


# --------------------------------------------------------------------------- CelebV-HQ

@dataclass
class CelebvClip:
    clip_id: str
    youtube_id: str
    start_sec: float
    end_sec: float
    bbox: tuple[float, float, float, float]  # top, bottom, left, right, normalised 0-1
    attributes: dict


def read_celebv_info(path: str | os.PathLike) -> tuple[list[CelebvClip], list[tuple[str, str]]]:
    """Parse celebvhq_info.json; returns (clips, errors) where each error is (clip key, message).

    A malformed top level raises AnnotationError; a bad single clip (hostile id, missing field)
    becomes one error and the other clips load. Human-annotated attributes (appearance, action,
    emotion) are kept verbatim for captions later; none is ever invented.
    """
    path = Path(path)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AnnotationError(f"{path.name}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("clips"), dict):
        raise AnnotationError(f"{path.name}: expected an object with a 'clips' mapping (CelebV-HQ info format)")
    clips, errors = [], []
    for key in sorted(data["clips"]):
        entry = data["clips"][key]
        try:
            clip_id = validate_annotation_id(key, "CelebV-HQ clip id")
            if not isinstance(entry, dict):
                raise AnnotationError("entry is not an object")
            ytid = validate_annotation_id(str(entry["ytb_id"]), "ytb_id")
            start, end = float(entry["duration"]["start_sec"]), float(entry["duration"]["end_sec"])
            box = entry["bbox"]
            bbox = tuple(float(box[k]) for k in ("top", "bottom", "left", "right"))
            if not end > start:
                raise AnnotationError(f"end_sec {end} is not after start_sec {start}")
            if not all(0.0 <= v <= 1.0 for v in bbox) or bbox[1] <= bbox[0] or bbox[3] <= bbox[2]:
                raise AnnotationError(f"bbox {box} is not a normalised top<bottom, left<right box")
            attrs = entry.get("attributes") or {k: entry[k] for k in ("appearance", "action", "emotion") if k in entry}
            clips.append(CelebvClip(clip_id, ytid, start, end, bbox, attrs))  # type: ignore[arg-type]
        except (KeyError, TypeError) as exc:
            errors.append((key, f"{path.name}: clip {key!r}: missing or malformed field {exc}"))
        except (InvalidIdError, AnnotationError, ValueError) as exc:
            errors.append((key, f"{path.name}: clip {key!r}: {exc}"))
    return clips, errors


def celebv_crop(bbox: tuple[float, float, float, float], width: int, height: int) -> tuple[int, int, int, int]:
    """The original's square crop: expand by 0.02 (normalised) per side, clamp, square of side 2*(min//2)."""
    top, bottom, left, right = bbox
    top, left = max(0.0, top - 0.02), max(0.0, left - 0.02)
    bottom, right = min(1.0, bottom + 0.02), min(1.0, right + 0.02)
    x0, x1, y0, y1 = left * width, right * width, top * height, bottom * height
    side = 2 * (int(min(x1 - x0, y1 - y0)) // 2)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    sx, sy = int(round(cx - side / 2)), int(round(cy - side / 2))
    sx, sy = min(max(sx, 0), max(width - side, 0)), min(max(sy, 0), max(height - side, 0))
    return sx, sy, sx + side, sy + side


def seconds_to_frames(start_sec: float, end_sec: float, fps: float, frame_count: int) -> tuple[int, int]:
    """Frames whose timestamp lies in [start_sec, end_sec), as `ffmpeg -ss start -to end` keeps them."""
    eps = 1e-6
    first = max(0, math.ceil(start_sec * fps - eps))
    last = min(frame_count - 1, math.ceil(end_sec * fps - eps) - 1)
    return first, last


# --------------------------------------------------------------------------- the catalog

@dataclass
class SourceConfig:
    videos: list[str] = field(default_factory=list)
    vfhq_annotations: list[str] = field(default_factory=list)
    celebv_info: list[str] = field(default_factory=list)
    efhq_metadata: list[str] = field(default_factory=list)  # EFHQ's released per-frame CSVs

    def to_json(self) -> str:
        return json.dumps({"videos": self.videos, "vfhq_annotations": self.vfhq_annotations,
                           "celebv_info": self.celebv_info, "efhq_metadata": self.efhq_metadata},
                          indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "SourceConfig":
        data = json.loads(text)
        return cls(list(data.get("videos", [])), list(data.get("vfhq_annotations", [])),
                   list(data.get("celebv_info", [])), list(data.get("efhq_metadata", [])))

    def merged(self, other: "SourceConfig") -> "SourceConfig":
        def union(a, b):
            return sorted(set(a) | set(b))
        return SourceConfig(union(self.videos, other.videos), union(self.vfhq_annotations, other.vfhq_annotations),
                            union(self.celebv_info, other.celebv_info), union(self.efhq_metadata, other.efhq_metadata))


@dataclass
class Catalog:
    videos: list[dict]
    clips: list[dict]
    errors: list[dict]

    def __post_init__(self) -> None:
        # Indexes: at 50,000 videos a linear lookup per video is quadratic.
        self._video_index = {v["video_id"]: v for v in self.videos}
        self._clip_index: dict[str, list[dict]] = defaultdict(list)
        for c in self.clips:
            self._clip_index[c["video_id"]].append(c)

    def partition_keys(self) -> list[str]:
        """Videos that are processed: on disk and not a duplicate of another file."""
        return sorted(v["video_id"] for v in self.videos if v["status"] == "pending")

    def video(self, video_id: str) -> dict | None:
        return self._video_index.get(video_id)

    def clips_of(self, video_id: str) -> list[dict]:
        return list(self._clip_index.get(video_id, []))


def _vfhq_clip_rows(folder: Path, errors: list[dict]) -> list[dict]:
    rows = []
    for path in sorted(folder.rglob("*.txt")):
        try:
            ann = read_vfhq_annotation(path)
        except (AnnotationError, InvalidIdError, OSError) as exc:
            errors.append({"video_id": video_id_from_stem(path.stem), "stage": "sources", "message": str(exc)})
            continue
        rows.append({
            "clip_id": ann.clip_name, "source": "vfhq", "youtube_id": ann.youtube_id,
            "person_id": f"{ann.youtube_id}+P{ann.person}", "start_frame": ann.start_frame,
            "end_frame": ann.end_frame, "crop": list(ann.crop) if ann.crop else None, "bbox": None,
            "attributes": None, "annotation_file": str(path.resolve()),
            "start_sec": None, "end_sec": None, "annotated_size": [ann.width, ann.height],
        })
    return rows


def _celebv_clip_rows(info: Path, errors: list[dict]) -> list[dict]:
    try:
        clips, bad = read_celebv_info(info)
    except (AnnotationError, OSError) as exc:
        errors.append({"video_id": video_id_from_stem(info.stem), "stage": "sources", "message": str(exc)})
        return []
    for key, message in bad:
        errors.append({"video_id": video_id_from_stem(str(key)[:80] or "clip"), "stage": "sources", "message": message})
    return [{
        "clip_id": c.clip_id, "source": "celebv", "youtube_id": c.youtube_id, "person_id": None,
        "start_frame": None, "end_frame": None, "crop": None, "bbox": list(c.bbox),
        "attributes": json.dumps(c.attributes, sort_keys=True), "annotation_file": str(info.resolve()),
        "start_sec": c.start_sec, "end_sec": c.end_sec, "annotated_size": None,
    } for c in clips]


def _attach_efhq_metadata(path: Path, clips: list[dict], errors: list[dict]) -> None:
    """Clips listed in EFHQ's released metadata (a CSV, or a folder of them: EFHQ writes one CSV per
    clip, named by the clip id): faces, poses and bins then come from the file instead of the detector
    and pose models. A clip already known from VFHQ/CelebV annotations gets the file attached (and keeps
    the annotation's size and start time); a VFHQ clip needs no annotation (its frame ids are absolute);
    a CelebV clip needs either its start time from celebvhq_info.json or a pre-cut clip file named as
    the clip. A clip spread over several files (EFHQ's per-bin review output) lists them all,
    one path per line."""
    try:
        files = efhq_metadata_files(path)
    except EfhqMetadataError as exc:
        errors.append({"video_id": video_id_from_stem(path.stem or "metadata"), "stage": "sources", "message": str(exc)})
        return
    by_id = {c["clip_id"]: c for c in clips}
    for file in files:
        try:
            rows = read_efhq_metadata(file)
        except (EfhqMetadataError, OSError) as exc:
            errors.append({"video_id": video_id_from_stem(file.stem), "stage": "sources", "message": str(exc)})
            continue
        for clip_id in sorted({r["video_id"] for r in rows}):
            members = [r for r in rows if r["video_id"] == clip_id]
            first = members[0]
            frames = [int(float(str(r["frameid"]).split(".")[0])) for r in members]
            if clip_id not in by_id:
                clip = {"clip_id": clip_id, "source": first["dataset"], "youtube_id": first["youtube_id"],
                        "person_id": None, "start_frame": None, "end_frame": None, "crop": None, "bbox": None,
                        "attributes": None, "annotation_file": str(file.resolve()), "start_sec": None,
                        "end_sec": None, "annotated_size": None}
                clips.append(clip)
                by_id[clip_id] = clip
            clip = by_id[clip_id]
            if first["dataset"] == "celebv" and clip.get("start_sec") is not None and not clip.get("efhq_metadata"):
                # EFHQ cut CelebV clips with `-ss`/`-to` from its secs_to_timestr (truncated to centiseconds):
                # the window, and so the frame id -> index map, is the one its command wrote
                from .efhq_metadata import efhq_seconds

                clip["start_sec"], clip["end_sec"] = efhq_seconds(clip["start_sec"]), efhq_seconds(clip["end_sec"])
            listed = [p for p in (clip.get("efhq_metadata") or "").split("\n") if p]
            clip["efhq_metadata"] = "\n".join(sorted(set(listed) | {str(file.resolve())}))
            if first["dataset"] == "vfhq" and clip.get("annotated_size") is None:
                # VFHQ ids are absolute: without an annotation the window covers every listed frame
                lo, hi = clip.get("start_frame"), clip.get("end_frame")
                clip["start_frame"] = min(frames) if lo is None else min(lo, min(frames))
                clip["end_frame"] = max(frames) if hi is None else max(hi, max(frames))


def build_catalog(config: SourceConfig, sha_cache: Sha256Cache | None = None) -> Catalog:
    """Join video files and annotations into videos + clips rows (see module docstring).

    A clip belongs to the file whose stem is its clip id (a pre-cut clip: the whole file) or its
    YouTube id (a full video: the annotated window). Same-size files are hashed to find duplicates:
    the first id (sorted) is processed, the others get status 'duplicate' pointing at it.
    """
    sha_cache = sha_cache or Sha256Cache(None)
    errors: list[dict] = []
    files: list[VideoFile] = []
    for folder in config.videos:
        try:
            files.extend(scan_video_folder(folder))
        except FileNotFoundError as exc:
            errors.append({"video_id": video_id_from_stem(Path(folder).name or "videos"), "stage": "sources",
                           "message": str(exc)})
    by_id = {f.video_id: f for f in files}

    duplicate_of: dict[str, str] = {}
    by_size: dict[int, list[VideoFile]] = defaultdict(list)
    for f in files:
        if f.size_bytes > 0:
            by_size[f.size_bytes].append(f)
    shas: dict[str, str] = {}
    for group in by_size.values():
        if len(group) < 2:
            continue
        first_by_sha: dict[str, str] = {}
        for f in sorted(group, key=lambda f: f.video_id):
            sha = shas[f.video_id] = sha_cache.get(f.path, f.size_bytes, f.mtime_ns)
            if sha in first_by_sha:
                duplicate_of[f.video_id] = first_by_sha[sha]
            else:
                first_by_sha[sha] = f.video_id

    clips: list[dict] = []
    for folder in config.vfhq_annotations:
        clips.extend(_vfhq_clip_rows(Path(folder), errors))
    for info in config.celebv_info:
        clips.extend(_celebv_clip_rows(Path(info), errors))
    for metadata in config.efhq_metadata:
        _attach_efhq_metadata(Path(metadata), clips, errors)

    videos: list[dict] = []
    video_rows: dict[str, dict] = {}
    for f in files:
        status = "duplicate" if f.video_id in duplicate_of else "pending"
        videos.append({"video_id": f.video_id, "source_name": f.source_name, "source": "folder", "path": str(f.path),
                       "sha256": shas.get(f.video_id), "size_bytes": f.size_bytes, "mtime_ns": f.mtime_ns, "status": status,
                       "error": None, "duplicate_of": duplicate_of.get(f.video_id), "youtube_id": None})
        video_rows[f.video_id] = videos[-1]
    missing: dict[str, dict] = {}
    placed: list[dict] = []
    for clip in clips:
        target = clip["clip_id"] if clip["clip_id"] in by_id else clip["youtube_id"]
        whole_file = target == clip["clip_id"]
        target = duplicate_of.get(target, target)
        clip = dict(clip, video_id=target, whole_file=whole_file)
        if target in by_id:
            video = video_rows[target]
            video["source"] = clip["source"]
            video["youtube_id"] = video["youtube_id"] or clip["youtube_id"]
        elif target not in missing:
            missing[target] = {"video_id": target, "source_name": f"{target}.mp4", "source": clip["source"],
                               "path": None, "sha256": None, "size_bytes": None, "mtime_ns": None, "status": "missing",
                               "error": None, "duplicate_of": None, "youtube_id": clip["youtube_id"]}
        placed.append(clip)
    videos.extend(missing[k] for k in sorted(missing))
    sha_cache.save()
    videos.sort(key=lambda v: v["video_id"])
    placed.sort(key=lambda c: (c["video_id"], c["clip_id"]))
    return Catalog(videos, placed, errors)


def source_listing_fingerprint(config: SourceConfig) -> str:
    """A cheap fingerprint of what the sources contain (names, sizes, mtimes): no parsing, no hashing."""
    digest = hashlib.sha256()
    for root in list(config.videos) + list(config.vfhq_annotations) + list(config.celebv_info) + list(config.efhq_metadata):
        path = Path(root)
        entries = [path] if path.is_file() else (sorted(path.rglob("*")) if path.is_dir() else [])
        for entry in entries:
            try:
                st = entry.stat()
            except OSError:
                continue
            digest.update(f"{entry}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:32]
