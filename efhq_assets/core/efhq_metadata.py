"""EFHQ's published per-frame metadata CSVs: reader, frame-id mapping, VFHQ crop offset.

EFHQ (VinAIResearch/EFHQ) released metadata only (e.g. ``train_celebv_reenactment.csv``,
``train_vfhq_reenactment.csv``; docs/efhq.md, "Inputs"). This module reads those files
with their literal column names and maps every row onto this project's conventions, so
``efhq build --efhq-metadata FILE.csv`` can join them to frames decoded by
:func:`efhq_assets.core.video.iter_clip_frames`.

Columns (the merged per-frame schema, built up over EFHQ's stages)
------------------------------------------------------------------
Required: ``frameid, x1, y1, x2, y2, lmks5pts`` and a clip: a ``video_id`` / ``clip_id`` / ``clip``
column, the first folder of ``aligned_path``, or a file named by its clip id (EFHQ's per-clip CSVs,
``M2Ohb0FAaJU_1.csv``, have no clip column). ``--efhq-metadata`` takes a file or a folder of them
(:func:`efhq_metadata_files`; EFHQ's review writes ``4_binned_edited/<bin>/<id>.csv``).
Optional: ``idx`` (dropped by ``csvs-to-parquet``), ``iqa``, ``synergy_{yaw,pitch,roll}``,
``poseanh_{yaw,pitch,roll}``, ``mhp_{yaw,pitch,roll}``, ``lmks68pts``, ``synergy_bin``,
``poseanh_bin``, ``mhp_bin``, ``hardbin``, ``softbin``, ``smallbin``, ``user_id``,
``aligned_path``, ``lmk_68pts`` (written by alignment; read but not interpreted).
Any other column is ignored and reported in the warning list. An unnamed leading column (a
pandas index) is reported the same way.

* ``lmks5pts``: JSON list of 10 numbers, x,y interleaved -> ``lmk5`` (5, 2).
* ``lmks68pts``: JSON list of 204 numbers, SynergyNet's 3x68 array flattened **row-major**
  (all x, then all y, then all z) -> ``lmk68`` (68, 3) = ``reshape(3, 68).T``. ``None``/empty
  (SynergyNet's FaceBoxes fallback writes "None") -> ``None``.
* Angles are degrees. Empty, ``nan`` or ``None`` -> that estimator's angles are ``None``.
* Bins are returned exactly as given, in EFHQ's names: its ``profile_left`` is the subject's own
  right (:func:`efhq_name`).
* If ``aligned_path`` is present, EFHQ's alignment step has replaced ``lmks5pts`` with
  coordinates in the *aligned* image; such rows have ``coordinates == "aligned"``, the
  source-frame helpers below refuse them and the importer rebuilds their 5 points from the 68
  (:func:`lmk5_from_lmk68`).

Angle conventions (project: :mod:`efhq_assets.core.pose`, yaw > 0 = subject's own left = nose
toward the image's right; pitch > 0 = up; roll > 0 = top of head toward image right)
--------------------------------------------------------------------------------------------
* SynergyNet (``synergy_*``): converted exactly by
  :func:`efhq_assets.core.models.published_angles.synergynet_angles_to_project` (for a pure turn
  ``synergy_yaw = -project_yaw``; pitch and roll keep their sign). Rows it cannot invert come
  back as NaN.
* DirectMHP (``mhp_*``): 300W-LP's angles (hnuzhy/DirectMHP: the 300W-LP labels are Pose_Para
  unchanged; the AGORA labels negate yaw and roll to match and are drawn with HopeNet's
  ``draw_axis``), converted exactly through the rotation matrix by ``w300lp_angles_to_project``:
  for a pure turn its yaw has SynergyNet's raw sign.
* FacePoseNet (``poseanh_*``, closed): EFHQ's ``2_merging/pose_grid.py`` votes ``-synergy_yaw``
  with ``poseanh_yaw`` and ``-synergy_pitch`` with ``poseanh_pitch``; hence
  :data:`POSEANH_SIGNS` = (+1, -1, +1) (roll unused by EFHQ: assumed). The vote also counts
  ``mhp_yaw`` as if it had FacePoseNet's sign, which DirectMHP's code contradicts: outvoted
  there, it is converted here by its own convention.
* :func:`sign_agreement` reports how often the converted yaws agree on left/right profiles.

Frame ids -> 0-based file frame index (the ``frames`` table's ``frame_index``)
-------------------------------------------------------------------------------
* CelebV-HQ: EFHQ ran ``ffmpeg -i video -vf crop=w:h:x:y -ss <start> -to <end> %08d.png`` with
  ``-ss``/``-to`` as OUTPUT options (after ``-i``) and no fps option. ffmpeg then decodes from the
  start and its output trim keeps every frame with timestamp in ``[start, end)`` (timestamps
  re-based so the first frame is 0), and the image2 muxer numbers files from ``00000001``. So
  ``frame_index = ceil(start_sec * fps) + frameid - 1`` (the ``ceil`` with the same epsilon as
  :func:`efhq_assets.core.sources.seconds_to_frames`). Assumes a constant-frame-rate source
  (ffmpeg's default CFR output sync then neither duplicates nor drops inside the clip).
  Checked against /usr/bin/ffmpeg 5.1 by the tests (starts on and between frame boundaries).
  Measured there: the first file is always frame ``ceil(start*fps)``, but when ``start`` lies at
  least half a frame past a boundary the output sync re-bases the first frame's timestamp up by
  one tick and the ``-to`` limit then cuts the LAST frame of ``[start, end)``: EFHQ may have one
  frame fewer than ``seconds_to_frames`` lists. The id -> index map is unaffected (ids count
  from the first frame); a metadata row simply never refers to that frame.
* VFHQ: ``ffmpeg -i video -vf "select=between(n\\,s\\,e)" -vsync 0 -start_number s`` names the
  file after the decoded-frame counter ``n`` (0-based, all frames from the start, no timestamps
  involved), so ``frame_index = frameid``.

VFHQ crop offset (EFHQ issue #2)
--------------------------------
EFHQ's VFHQ coordinates (box, 5 and 68 landmarks) are in the full YouTube frame, resized to the
annotation's H x W (``download_vfhq.py`` resizes frames that differ). VFHQ's own cloud release
ships clips already cut to the annotation's ``CROP x0 y0 x1 y1`` region, hence the x shift users
see. :func:`to_clip_coordinates` subtracts (x0, y0) from every x, y (68-point z unchanged);
:func:`from_clip_coordinates` adds it back. This explanation is the reference's likely (not
verified) one; it assumes the released clips are cropped but not rescaled.

CelebV is the other way round: EFHQ ran RetinaFace on the frames its own command wrote, which
are already cut to the square ``celebv_crop`` region (``-vf crop=w:h:x:y``), so CelebV coordinates are
crop coordinates (issue #2: they line up on CelebV's processed clips). To place them on the full video frame that ``iter_clip_frames`` decodes, use
``from_clip_coordinates(row, celebv_crop(bbox, W, H))``; with a ``ClipWindow`` carrying that
crop, no shift is needed.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .ids import InvalidIdError, parse_vfhq_clip_name, validate_annotation_id

log = logging.getLogger(__name__)

__all__ = [
    "EfhqMetadataError",
    "REQUIRED_COLUMNS",
    "OPTIONAL_COLUMNS",
    "POSEANH_SIGNS",
    "MHP_CONVENTION",
    "CLIP_COLUMNS",
    "efhq_metadata_files",
    "read_efhq_metadata_source",
    "efhq_timestr",
    "efhq_seconds",
    "celebv_efhq_first_frame",
    "sign_agreement",
    "efhq_name",
    "rescale_coordinates",
    "efhq_celebv_crop",
    "read_efhq_metadata",
    "file_frame_index",
    "celebv_first_frame",
    "to_clip_coordinates",
    "from_clip_coordinates",
]

REQUIRED_COLUMNS = ("frameid", "x1", "y1", "x2", "y2", "lmks5pts")
#: Columns naming the clip of a row, first found wins. EFHQ's per-clip CSVs have none (the file is
#: named by the clip id); only VFHQ's ``combine-multiid`` step adds ``video_id``.
CLIP_COLUMNS = ("video_id", "clip_id", "clip")
ANGLE_COLUMNS = tuple(f"{e}_{a}" for e in ("synergy", "poseanh", "mhp") for a in ("yaw", "pitch", "roll"))
BIN_COLUMNS = ("synergy_bin", "poseanh_bin", "mhp_bin", "hardbin", "softbin", "smallbin")
OPTIONAL_COLUMNS = ("idx", "iqa", *ANGLE_COLUMNS, "lmks68pts", *BIN_COLUMNS, "user_id", "aligned_path", "lmk_68pts",
                    *CLIP_COLUMNS)

# Per-axis (yaw, pitch, roll) multipliers from FacePoseNet's published angles to the project
# convention. FacePoseNet is closed; the only upstream evidence is EFHQ's review tool
# (2_merging/pose_grid.py), which votes over ``-synergy_yaw`` with ``poseanh_yaw`` and over
# ``-synergy_pitch`` with ``poseanh_pitch``: FacePoseNet's yaw and pitch are SynergyNet's negated.
# SynergyNet's raw yaw is minus the project's and its raw pitch is the project's, hence (+1, -1).
# Roll is never used by EFHQ: assumed the project's.
POSEANH_SIGNS: tuple[float, float, float] = (1.0, -1.0, 1.0)
# DirectMHP is NOT a sign multiplier: its labels are 300W-LP's angles (exps/convert_coco_style_*:
# Pose_Para unchanged; exps/AGORA/data_process_hpe.py negates AGORA's yaw and roll to match, drawn
# with HopeNet's draw_axis), converted exactly by published_angles.w300lp_angles_to_project.
# For a pure turn its yaw is SynergyNet's raw sign (minus the project's); pitch is the project's.
MHP_CONVENTION = "300W-LP"

_NULLS = {"", "none", "nan", "null", "na", "n/a"}
_EPS = 1e-6  # same epsilon as sources.seconds_to_frames
_FRAMEID = re.compile(r"^\s*(\d+)(?:\.0*)?(?:\.(?:png|jpg|jpeg))?\s*$", re.IGNORECASE)


class EfhqMetadataError(ValueError):
    """A clear, user-facing message about an EFHQ metadata file that cannot be used."""


# ---------------------------------------------------------------------------------- reading


_CELEBV_CLIP = re.compile(r"^[A-Za-z0-9_-]{11}_\d+$")  # <11-char YouTube id>_<n>


def _clip_id_from_name(path: Path) -> str | None:
    """A clip id from a per-clip CSV's name (EFHQ writes ``<clip id>.csv``), else None."""
    stem = path.stem
    try:
        return parse_vfhq_clip_name(stem).name
    except InvalidIdError:
        pass
    return stem if _CELEBV_CLIP.match(stem) else None


def efhq_metadata_files(path: str | os.PathLike) -> list[Path]:
    """The CSV files of ``--efhq-metadata PATH``: the file itself, or every ``*.csv`` under a folder
    (recursive, sorted: EFHQ's review writes ``4_binned_edited/<bin>/<id>.csv``)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.csv") if p.is_file() and not p.name.startswith("."))
        if not files:
            raise EfhqMetadataError(f"{path}: folder holds no .csv file (EFHQ metadata expected)")
        return files
    raise EfhqMetadataError(f"EFHQ metadata file not found: {path}")


def read_efhq_metadata_source(path: str | os.PathLike, *,
                              warnings_out: list[str] | None = None) -> list[tuple[Path, list[dict[str, Any]]]]:
    """(file, rows) for each CSV of a file or folder (:func:`efhq_metadata_files`)."""
    return [(f, read_efhq_metadata(f, warnings_out=warnings_out)) for f in efhq_metadata_files(path)]


def read_efhq_metadata(path: str | os.PathLike, *, clip_id: str | None = None,
                       warnings_out: list[str] | None = None) -> list[dict[str, Any]]:
    """Read one EFHQ per-frame metadata CSV into normalized rows (see the module docstring).

    The clip of a row is its ``video_id`` / ``clip_id`` / ``clip`` column (a combined file), else
    the first folder of ``aligned_path`` (``<clip>/<frameid>_<faceid>.png``), else ``clip_id``, else
    the file's name when it is a clip id: EFHQ's scripts write one CSV per clip named
    ``<clip id>.csv`` with no clip column (``M2Ohb0FAaJU_1.csv``, ``Clip+<ytid>+P0+C1+F5-90.csv``).

    Row keys: ``video_id`` (the clip id), ``dataset ('vfhq'|'celebv')``, ``youtube_id, user_id,
    frameid (str, as in the file), face_idx (int|None), box (x1, y1, x2, y2) floats, lmk5 (5, 2)
    float64, lmk68 (68, 3) float64 | None, angles {'synergy'|'poseanh'|'mhp': (yaw, pitch, roll)
    project degrees | None}, angles_raw (same keys, as published), bins {column: str | None}
    (as published: EFHQ's names, see :func:`efhq_name`), iqa float | None, aligned_path str |
    None, coordinates ('source'|'aligned'), line (1-based line in the file)``.

    Unknown columns are ignored; one message per unknown column is appended to
    ``warnings_out`` (when given) and logged. Missing required columns or a malformed row raise
    :class:`EfhqMetadataError` naming the file (and the line).
    """
    path = Path(path)
    if not path.is_file():
        raise EfhqMetadataError(f"EFHQ metadata file not found: {path}")
    warns: list[str] = []
    rows: list[dict[str, Any]] = []
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise EfhqMetadataError(f"{path}: empty file, expected a CSV header") from None
        header = [h.strip() for h in header]
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        clip_column = next((c for c in CLIP_COLUMNS if c in header), None)
        file_clip = clip_id or _clip_id_from_name(path)
        if clip_column is None and file_clip is None and "aligned_path" not in header:
            missing.append("video_id (or a file named by its clip id, e.g. M2Ohb0FAaJU_1.csv)")
        if missing:
            raise EfhqMetadataError(
                f"{path}: missing required column(s) {', '.join(missing)} "
                f"(found: {', '.join(header) or 'none'})"
            )
        known = set(REQUIRED_COLUMNS) | set(OPTIONAL_COLUMNS)
        for name in header:
            if name not in known:
                warns.append(f"{path.name}: unknown column {name!r} ignored")
        col = {name: i for i, name in enumerate(header) if name in known}
        for record in reader:
            line = reader.line_num
            if not record or all(not v.strip() for v in record):
                continue
            if len(record) != len(header):
                raise EfhqMetadataError(
                    f"{path}, line {line}: {len(record)} fields, the header has {len(header)}"
                )
            raw = {n: record[i] for n, i in col.items()}
            try:
                clip = _text(raw, clip_column) if clip_column else None
                if clip is None and _text(raw, "aligned_path"):
                    clip = _text(raw, "aligned_path").replace("\\", "/").split("/")[0]
                clip = clip or file_clip
                if clip is None:
                    raise ValueError("no clip id (empty clip column, and the file is not named by a clip id)")
                rows.append(_parse_row(raw, clip, line))
            except (ValueError, InvalidIdError) as err:
                raise EfhqMetadataError(f"{path}, line {line}: {err}") from None
    _convert_angles(rows)
    for msg in warns:
        log.warning(msg)
    if warnings_out is not None:
        warnings_out.extend(warns)
    return rows


def _parse_row(raw: Mapping[str, str], clip: str, line: int) -> dict[str, Any]:
    video_id = validate_annotation_id(clip.strip(), "video_id")
    try:
        clip = parse_vfhq_clip_name(video_id)
        dataset, youtube_id = "vfhq", clip.youtube_id
    except InvalidIdError:
        m = re.match(r"^(?P<yt>.+)_(?P<n>\d+)$", video_id)
        dataset, youtube_id = "celebv", (m["yt"] if m else video_id)
    frameid = raw["frameid"].strip()
    if not _FRAMEID.match(frameid):
        raise ValueError(f"frameid {frameid!r} is not a frame number")
    box = tuple(_number(raw, c, required=True) for c in ("x1", "y1", "x2", "y2"))
    lmk5 = _json_array(raw, "lmks5pts", 10, required=True).reshape(5, 2)
    lmk68 = _json_array(raw, "lmks68pts", 204, required=False)
    if lmk68 is not None:
        lmk68 = np.ascontiguousarray(lmk68.reshape(3, 68).T)
    angles_raw = {}
    for est in ("synergy", "poseanh", "mhp"):
        vals = [_number(raw, f"{est}_{a}") for a in ("yaw", "pitch", "roll")]
        angles_raw[est] = None if any(v is None or not math.isfinite(v) for v in vals) else tuple(vals)
    aligned_path = _text(raw, "aligned_path")
    idx = _number(raw, "idx")
    return {
        "video_id": video_id,
        "dataset": dataset,
        "youtube_id": youtube_id,
        "user_id": _text(raw, "user_id"),
        "frameid": frameid,
        "face_idx": None if idx is None or not math.isfinite(idx) else int(idx),
        "box": box,
        "lmk5": lmk5,
        "lmk68": lmk68,
        "angles": {},
        "angles_raw": angles_raw,
        "bins": {c: _text(raw, c) for c in BIN_COLUMNS if c in raw},
        "iqa": _number(raw, "iqa"),
        "aligned_path": aligned_path,
        "coordinates": "aligned" if "aligned_path" in raw else "source",
        "line": line,
    }


def _text(raw: Mapping[str, str], name: str) -> str | None:
    value = raw.get(name)
    if value is None or value.strip().lower() in _NULLS:
        return None
    return value.strip()


def _number(raw: Mapping[str, str], name: str, required: bool = False) -> float | None:
    text = _text(raw, name)
    if text is None:
        if required:
            raise ValueError(f"column {name} is empty")
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"column {name}: {text!r} is not a number") from None
    if required and not math.isfinite(value):
        raise ValueError(f"column {name}: {text!r} is not finite")
    return value


def _json_array(raw: Mapping[str, str], name: str, size: int, required: bool) -> np.ndarray | None:
    text = _text(raw, name)
    if text is None:
        if required:
            raise ValueError(f"column {name} is empty")
        return None
    try:
        values = json.loads(text)
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
    except (ValueError, TypeError):
        raise ValueError(f"column {name}: not a JSON list of numbers ({text[:60]!r})") from None
    if arr.size != size:
        raise ValueError(f"column {name}: {arr.size} values, expected {size}")
    return arr


def _convert_angles(rows: list[dict[str, Any]]) -> None:
    """Fill ``row['angles']``: SynergyNet and DirectMHP each in one batched exact conversion through a
    rotation matrix, FacePoseNet by per-axis signs (its decomposition is unknown)."""
    # lazy: published_angles imports torch, which reading EFHQ's CSVs does not otherwise need
    from .models.published_angles import synergynet_angles_to_project, w300lp_angles_to_project

    for r in rows:
        r["angles"] = {"synergy": None, "poseanh": None, "mhp": None}
    syn = [r for r in rows if r["angles_raw"]["synergy"] is not None]
    if syn:
        ypr = np.asarray([r["angles_raw"]["synergy"] for r in syn], dtype=np.float64)
        out = synergynet_angles_to_project(ypr[:, 0], ypr[:, 1], ypr[:, 2]).numpy()
        for r, a in zip(syn, out):
            r["angles"]["synergy"] = tuple(float(v) for v in a)
    mhp = [r for r in rows if r["angles_raw"]["mhp"] is not None]
    if mhp:
        ypr = np.asarray([r["angles_raw"]["mhp"] for r in mhp], dtype=np.float64)
        out = w300lp_angles_to_project(ypr[:, 1], ypr[:, 0], ypr[:, 2]).numpy()
        for r, a in zip(mhp, out):
            r["angles"]["mhp"] = tuple(float(v) for v in a)
    for r in rows:
        raw = r["angles_raw"]["poseanh"]
        r["angles"]["poseanh"] = None if raw is None else tuple(s * v for s, v in zip(POSEANH_SIGNS, raw))


def sign_agreement(rows: Sequence[Mapping[str, Any]], min_abs_yaw: float = 45.0) -> dict[str, dict[str, float]]:
    """How often two estimators' converted yaws have the same sign, on faces where either reads
    |yaw| > ``min_abs_yaw`` (a left/right profile). ``{"synergy~mhp": {"n": rows, "agree": fraction}}``
    per pair with at least one such row. With a wrong sign convention this falls near 0."""
    names = ("synergy", "poseanh", "mhp")
    out: dict[str, dict[str, float]] = {}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            n = agree = 0
            for r in rows:
                ya, yb = (r["angles"].get(a) or (None,))[0], (r["angles"].get(b) or (None,))[0]
                if ya is None or yb is None or not (math.isfinite(ya) and math.isfinite(yb)):
                    continue
                if max(abs(ya), abs(yb)) <= min_abs_yaw:
                    continue
                n += 1
                agree += (ya > 0) == (yb > 0)
            if n:
                out[f"{a}~{b}"] = {"n": n, "agree": agree / n}
    return out


# ----------------------------------------------------------------------- EFHQ's bin names

_SWAP = {"left": "right", "right": "left"}


def efhq_name(label: str | None) -> str | None:
    """EFHQ's bin name <-> the project's (the map is its own inverse).

    EFHQ's ``bin_a_pose`` calls raw ``yaw > 45`` ``profile_left``; its automatic softbin is the
    majority of three estimators, two of which (SynergyNet and DirectMHP, both in 300W-LP's sign)
    read a turn of the nose toward the image's LEFT as positive yaw, and its review tool
    (``pose_grid.py``) calls ``-synergy_yaw > 0`` (nose toward the image's right) ``profile_right``.
    So EFHQ's ``profile_left`` is the face seen turned toward the image's left: the subject's own
    RIGHT, which this project calls ``profile_right``. Up/down, frontal and the rest are the same.
    Works on bins (``profile_left``) and smallbins (``left_50_60``)."""
    if label is None:
        return None
    head, sep, tail = label.partition("_")
    if head == "profile":
        side, sep2, rest = tail.partition("_")
        return f"profile_{_SWAP.get(side, side)}{sep2}{rest}"
    return f"{_SWAP.get(head, head)}{sep}{tail}"


# ------------------------------------------------------------------------------ frame ids


def _frameid_int(row: Mapping[str, Any] | str | int) -> int:
    value = row["frameid"] if isinstance(row, Mapping) else row
    if isinstance(value, (int, np.integer)):
        return int(value)
    m = _FRAMEID.match(str(value))
    if not m:
        raise EfhqMetadataError(f"frameid {value!r} is not a frame number")
    return int(m.group(1))


def efhq_timestr(secs: float) -> str:
    """The ``-ss`` / ``-to`` string EFHQ's ``download_celeb.py`` passes to ffmpeg (its
    ``secs_to_timestr``): ``HH:MM:SS.cc`` where the centiseconds are ``int((secs - int(secs)) * 100)``,
    a float truncation (1.13 -> ``.12``, since ``(1.13 - 1) * 100 = 12.99999...``)."""
    secs = float(secs)
    hrs = secs // 3600
    mins = (secs - hrs * 3600) // 60
    sec = secs % 60
    cs = (secs - int(secs)) * 100
    return f"{int(hrs):02d}:{int(mins):02d}:{int(sec):02d}.{int(cs):02d}"


def efhq_seconds(secs: float) -> float:
    """The time ffmpeg actually received from EFHQ for ``secs``: :func:`efhq_timestr` read back."""
    h, m, rest = efhq_timestr(secs).split(":")
    whole, cs = rest.split(".")
    return int(h) * 3600 + int(m) * 60 + int(whole) + int(cs) / 100


def celebv_first_frame(start_sec: float, fps: float) -> int:
    """0-based index of the first frame ``ffmpeg -i v ... -ss start`` writes for an exact ``start``:
    ``ceil(start*fps)`` with :func:`sources.seconds_to_frames`' epsilon."""
    if not fps > 0:
        raise EfhqMetadataError(f"fps must be positive, got {fps}")
    return max(0, math.ceil(start_sec * fps - _EPS))


def celebv_efhq_first_frame(start_sec: float, fps: float) -> int:
    """The first frame EFHQ's own command wrote for a clip starting at ``duration.start_sec``: the
    start goes through :func:`efhq_timestr` first, so it is one frame early whenever the truncation
    crosses a frame boundary."""
    return celebv_first_frame(efhq_seconds(start_sec), fps)


def file_frame_index(
    row: Mapping[str, Any],
    start_sec: float | None = None,
    fps: float | None = None,
    *,
    first_frame: int | None = None,
) -> int:
    """The 0-based file frame index (``frames.frame_index``) of an EFHQ row.

    VFHQ (``row['dataset'] == 'vfhq'``): ``frameid`` (absolute source-frame index; the other
    arguments are ignored). CelebV: ``first_frame + frameid - 1`` where ``first_frame`` is given,
    or ``celebv_efhq_first_frame(start_sec, fps)`` from the clip's ``duration.start_sec`` in
    ``celebvhq_info.json`` and the video's fps (as EFHQ's command cut it). ``row`` may also be a
    plain mapping with ``dataset`` and ``frameid``.
    """
    fid = _frameid_int(row)
    if row.get("dataset") == "vfhq":
        return fid
    if row.get("dataset") != "celebv":
        raise EfhqMetadataError(f"unknown dataset {row.get('dataset')!r} (expected 'vfhq' or 'celebv')")
    if fid < 1:
        raise EfhqMetadataError(f"CelebV frameid {row['frameid']!r}: ids are 1-based (ffmpeg %08d from 00000001)")
    if first_frame is None:
        if start_sec is None or fps is None:
            raise EfhqMetadataError("a CelebV row needs first_frame, or start_sec and fps, to map its frameid")
        first_frame = celebv_efhq_first_frame(start_sec, fps)
    return int(first_frame) + fid - 1


# --------------------------------------------------------------------------- crop offset


def _affine(row: Mapping[str, Any], scale: tuple[float, float], offset: tuple[float, float],
            action: str) -> dict[str, Any]:
    """x' = x * sx + dx, y' = y * sy + dy on box, lmk5 and lmk68 (z scaled by the mean scale)."""
    if row.get("coordinates") == "aligned":
        raise EfhqMetadataError(
            f"{row.get('video_id')} frame {row.get('frameid')}: landmarks are in aligned-image "
            f"coordinates (file has aligned_path); {action}"
        )
    (sx, sy), (dx, dy) = scale, offset
    out = dict(row)
    x1, y1, x2, y2 = row["box"]
    out["box"] = (x1 * sx + dx, y1 * sy + dy, x2 * sx + dx, y2 * sy + dy)
    out["lmk5"] = np.asarray(row["lmk5"], dtype=np.float64) * np.array([sx, sy]) + np.array([dx, dy])
    if row.get("lmk68") is not None:
        out["lmk68"] = (np.asarray(row["lmk68"], dtype=np.float64) * np.array([sx, sy, (sx + sy) / 2])
                        + np.array([dx, dy, 0.0]))
    return out


def _shift(row: Mapping[str, Any], dx: float, dy: float) -> dict[str, Any]:
    return _affine(row, (1.0, 1.0), (dx, dy), "a crop offset does not apply")


def to_clip_coordinates(row: Mapping[str, Any], crop: Sequence[float]) -> dict[str, Any]:
    """Full-frame EFHQ coordinates -> coordinates in a clip cut to ``crop = (x0, y0, x1, y1)``
    (VFHQ's ``CROP`` line; EFHQ issue #2): subtract (x0, y0) from box, lmk5 and lmk68 x/y.
    Returns a new row; the input is not modified."""
    x0, y0 = float(crop[0]), float(crop[1])
    return _shift(row, -x0, -y0)


def from_clip_coordinates(row: Mapping[str, Any], crop: Sequence[float]) -> dict[str, Any]:
    """Inverse of :func:`to_clip_coordinates`: add the crop's (x0, y0) back."""
    x0, y0 = float(crop[0]), float(crop[1])
    return _shift(row, x0, y0)


def rescale_coordinates(row: Mapping[str, Any], sx: float, sy: float) -> dict[str, Any]:
    """Coordinates scaled by (sx, sy): box, lmk5 and lmk68 x/y (z by the mean scale). VFHQ rows are in
    the annotation's ``W x H`` (EFHQ's ``download_vfhq.py`` resized frames of another size to it);
    on a downloaded stream of ``w x h`` pixels use ``sx = w / W``, ``sy = h / H``."""
    return _affine(row, (sx, sy), (0.0, 0.0), "they cannot be placed on a frame")


#: 0-based indices into the 68 points of EFHQ's 5-from-68 rule (3_align_sample/cli_face_verification.py
#: ``get_lmk``: nose 31, eyes 37/40 and 43/46 averaged, mouth corners 49 and 55, 1-based), in the order
#: [eye of the lower x side (37-40), other eye (43-46), nose, mouth 49, mouth 55].
LMK5_FROM_68 = ((36, 39), (42, 45), (30,), (48,), (54,))


def lmk5_from_lmk68(lmk68) -> np.ndarray:
    """(5, 2) points from SynergyNet's 68 (x, y[, z]) by EFHQ's rule (no integer truncation here)."""
    pts = np.asarray(lmk68, dtype=np.float64)[:, :2]
    return np.stack([pts[list(idx)].mean(axis=0) for idx in LMK5_FROM_68])


def efhq_celebv_crop(bbox: Sequence[float], width: int, height: int,
                     chroma_shift: tuple[int, int] = (1, 1)) -> tuple[int, int, int, int]:
    """The crop (x0, y0, x1, y1) EFHQ's ``download_celeb.py`` cut CelebV frames to, as ffmpeg applied it.

    EFHQ: ``to_square(denorm(expand(bbox, 0.02), H, W))``: expand the normalised ``top, bottom, left,
    right`` by 0.02 (clamped to [0, 1]), round to pixels (Python's ``round``), then a square of side
    ``2 * (min(h, w) // 2)`` around the centre, whose corner may be a half pixel; passed as
    ``crop=w=..:h=..:x=..:y=..``. ffmpeg's crop filter rounds x and y to the nearest integer (ties to
    even, ``lrint``), clamps the window into the frame, and (not ``exact``) rounds x and y down to a
    multiple of the chroma subsampling (``chroma_shift`` = (hsub, vsub) log2 factors: (1, 1) for
    yuv420p, the format of YouTube streams). Differs from :func:`sources.celebv_crop` by 1-2 px,
    which is where CelebV coordinates in EFHQ's metadata are measured from."""
    top, bottom, left, right = (float(v) for v in bbox)
    top, bottom = max(top - 0.02, 0), min(bottom + 0.02, 1)
    left, right = max(left - 0.02, 0), min(right + 0.02, 1)
    top, bottom, left, right = round(top * height), round(bottom * height), round(left * width), round(right * width)
    c = min(bottom - top, right - left) // 2
    cy, cx = (top + bottom) / 2, (left + right) / 2
    w = h = int(2 * c)
    hsub, vsub = chroma_shift
    w &= ~((1 << hsub) - 1)
    h &= ~((1 << vsub) - 1)
    x, y = int(np.rint(cx - c)), int(np.rint(cy - c))
    x, y = max(x, 0), max(y, 0)
    x, y = min(x, width - w), min(y, height - h)
    x &= ~((1 << hsub) - 1)
    y &= ~((1 << vsub) - 1)
    return x, y, x + w, y + h
