"""3D-aware GAN split (EG3D): selection (table ``split_eg3d``) and an EG3D-format dataset.

Selection: the same rows as the GAN split (:func:`gan.select_gan`: quality pass, FFHQ crop inside
the frame, at most 10 per (clip, bin) as EFHQ, most extreme first), as the original took the
StyleGAN-sampled list (docs/efhq.md, "Per-task outputs").  ``label`` here is the pose bin (EG3D is conditioned
on the camera, not on a class); ``class_index`` is kept for convenience.

Export (:func:`export_eg3d`): 512x512 crops (the caller's ``render_fn`` re-decodes and crops with
``align.eg3d_crop``) plus ``dataset.json`` in EG3D's format ``{"labels": [[filename, [25 floats]],
...]}``, the 25 floats being the flattened 4x4 cam2world matrix followed by the flattened 3x3
normalised intrinsics.  Written into a folder or, when the target ends in ``.zip``, a
deterministic zip (EG3D's ``ImageFolderDataset`` reads either).

Fixed defects of the original:

* File names come from the row key (``<video_id>/<frame:08d>_<face>.png``).  The original renamed
  images ``%08d.png`` while their detection files kept ``<frameid>_<faceid>.txt`` and EG3D's cropper
  paired the two by sorted order, and names collided across clips.  Here no pairing step exists: the
  camera is computed per row from that row's own pose and written next to that row's file name.
* The original paired landmarks in *aligned-image* coordinates with raw frames; here the crop is
  made from full-frame landmarks by the caller (``eg3d_crop(frame, lmk5)``).
* Mirroring, as EFHQ built it (the default): ``mirror=True`` also writes ``<name>_mirror.png`` with
  the image flipped and the camera of the mirrored pose (yaw and roll negated). EFHQ's own EG3D
  preprocessing (training_code/efhq_eg3d/dataset_preprocessing/ffhq/preprocess_face_cameras.py)
  writes a ``_mirror`` copy with ``flip_yaw(pose)`` for every image, as EG3D's FFHQ release does.
  ``mirror=False`` writes the unmirrored set only. Do not also pass ``--mirror=1`` to EG3D's trainer
  for a mirrored dataset: its x-flip does not flip the camera label.
* Resolution: 512 (EG3D's FFHQ) by default; ``size=1024`` (EFHQ's docs build its aligned sets at
  ``--size {512|1024}``) with crops rendered at that size (``align.eg3d_crop(..., size=1024)``).

**How our cameras differ from EG3D's.**  EG3D's FFHQ labels come from Deep3DFaceRecon: a 3DMM fit
gives rotation *and* translation, the camera is placed looking at the head with the radius
normalised to 2.7, and the crop (``align_img``, target 1024, rescale 300, centre crop 700 -> 512)
follows the fitted translation and scale; intrinsics fx = fy = 2985.29/700 = 4.2647, cx = cy = 0.5.
Ours (``align.eg3d_camera_label(yaw, pitch, roll)``) come from the project's combined landmark-fit
pose: the rotation is that pose (in the project's one angle convention), the camera sits on a sphere
of fixed radius 2.7 looking at the origin, with the same intrinsics, and **no translation or scale
is estimated**: the crop (``align.eg3d_crop``: a 2-point eye-centre/mouth-centre similarity onto
EG3D's frontal template) is assumed to centre and scale the head the way EG3D's crop does, so
residual offsets of the head in the crop (EG3D centres the 3DMM origin behind the face, which shifts
profiles sideways) are not reflected in the label.  ``eg3d_crop`` also makes the eye-to-mouth axis
vertical, i.e. removes the in-plane roll that EG3D's crop keeps, so by default the camera is made
with roll 0 (``camera_roll=False``), matching the pixels; pass ``camera_roll=True`` with a renderer
that keeps roll.  No Deep3DFaceRecon model is needed, at the price of less accurate extrinsics,
especially for extreme poses where landmark fits are least certain.

numpy only at module level; cv2 inside functions; ``align`` imported lazily.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from ..align import eg3d_camera_label
from .common import (RENDER_KEYS, DeterministicZip, atomic_write_bytes, encode_png, json_bytes, ordered_parallel_map,
                     relative_path, row_key)
from .gan import EFHQ_GAN_GROUP, select_gan

__all__ = ["select_eg3d", "export_eg3d", "mirror_camera", "SPLIT_EG3D_COLUMNS", "EG3D_SIZE"]

EG3D_SIZE = 512

#: Columns of the ``split_eg3d`` table (in order).
SPLIT_EG3D_COLUMNS = (
    "video_id", "frame_index", "face_index", "clip_id", "track_id", "identity_id", "source",
    "split", "label", "class_index", "bin", "yaw", "pitch", "roll", "score", "path", "camera",
    "camera_roll",
)


def _camera_default() -> Callable:
    return eg3d_camera_label


def _camera(fn: Callable, yaw: float, pitch: float, roll: float) -> list[float]:
    cam = [float(v) for v in np.asarray(fn(float(yaw), float(pitch), float(roll)), dtype=np.float64).reshape(-1)]
    if len(cam) != 25 or not all(np.isfinite(cam)):
        raise ValueError(f"camera label must be 25 finite floats, got {len(cam)}")
    return cam


def mirror_camera(yaw: float, pitch: float, roll: float, camera_fn: Callable | None = None) -> list[float]:
    """Camera label of the horizontally flipped image: flipping negates yaw and roll, keeps pitch."""
    fn = camera_fn if camera_fn is not None else _camera_default()
    return _camera(fn, -float(yaw), float(pitch), -float(roll))


def select_eg3d(
    rows: Iterable[dict],
    per_group: int = 10,
    seed: int = 0,
    *,
    test_pct: float = 0.0,
    include_frontal: bool = True,
    outside_frame: Callable | None = None,
    camera_fn: Callable | None = None,
    camera_roll: bool = False,
    group_by: Sequence[str] = EFHQ_GAN_GROUP,
) -> list[dict]:
    """Rows of ``split_eg3d``: the GAN selection with ``label`` = pose bin, ``path`` =
    ``<video_id>/<frame:08d>_<face>.png`` and ``camera`` = 25 floats from
    ``align.eg3d_camera_label(yaw, pitch, roll)`` (or ``camera_fn``).  Rows without finite angles
    are dropped (no camera can be made for them).  ``camera_roll=False`` (default) makes the camera
    with roll 0, since ``align.eg3d_crop`` removes the in-plane roll from the pixels.  Like :func:`gan.select_gan`, rows also carry the
    render-only :data:`common.RENDER_KEYS`; write the table with
    ``common.table_rows(rows, SPLIT_EG3D_COLUMNS)``."""
    fn = camera_fn if camera_fn is not None else _camera_default()
    out = []
    for g in select_gan(rows, per_group, seed, test_pct=test_pct, include_frontal=include_frontal,
                        outside_frame=outside_frame, group_by=group_by):
        if g["yaw"] is None or g["pitch"] is None:
            continue
        roll = g["roll"] if (camera_roll and g["roll"] is not None) else 0.0
        o = dict(g)
        o["label"] = g["bin"]
        o["path"] = relative_path(g)
        o["camera"] = _camera(fn, g["yaw"], g["pitch"], roll)
        o["camera_roll"] = float(roll)
        out.append({**{k: o[k] for k in SPLIT_EG3D_COLUMNS}, **{k: g[k] for k in RENDER_KEYS}})
    return out


def _camera_roll_of(row: dict) -> float:
    """The roll the row's camera was made with (0 unless select_eg3d had camera_roll=True)."""
    if row.get("camera_roll") is not None:
        return float(row["camera_roll"])
    return 0.0


def _check_crop(img: np.ndarray, size: int) -> np.ndarray:
    import cv2

    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"render_fn must return uint8 HxWx3 BGR crops, got {img.dtype} {img.shape}")
    if img.shape[:2] != (size, size):
        if img.shape[0] != img.shape[1]:
            raise ValueError(f"render_fn returned a non-square crop {img.shape[1]}x{img.shape[0]}")
        interp = cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_LANCZOS4
        img = cv2.resize(img, (size, size), interpolation=interp)
    return np.ascontiguousarray(img)


def export_eg3d(
    rows: Sequence[dict],
    render_fn: Callable[[dict], np.ndarray | None],
    out_dir_or_zip: str | os.PathLike,
    *,
    size: int = EG3D_SIZE,
    mirror: bool = True,
    camera_fn: Callable | None = None,
) -> dict:
    """Write EG3D's dataset (crops + ``dataset.json``) from ``split_eg3d`` rows.

    ``render_fn(row)`` returns the ``size`` x ``size`` uint8 BGR crop (``align.eg3d_crop``) or None
    (the row is skipped and reported).  Target: a folder, or a ``.zip`` file.  Every file is written
    atomically; in a folder, ``dataset.json`` is written last, so a reader never sees labels for
    files not yet written.  Returns ``{"path", "count", "skipped"}``.
    """
    out = Path(out_dir_or_zip)
    as_zip = out.suffix.lower() == ".zip"
    ordered = sorted(rows, key=lambda r: r["path"])
    names = [r["path"] for r in ordered]
    if len(set(names)) != len(names):
        raise ValueError("duplicate paths in split_eg3d rows")
    entries: list[tuple[str, bytes]] = []
    labels, skipped = [], []

    def pngs_of(r):  # in the export's worker threads: the crop's PNG and its mirror's
        img = render_fn(r)
        if img is None:
            return None
        img = _check_crop(img, size)
        return encode_png(img), (encode_png(np.ascontiguousarray(img[:, ::-1])) if mirror else None)

    zf = DeterministicZip(out) if as_zip else None
    try:
        for r, pngs in zip(ordered, ordered_parallel_map(pngs_of, ordered)):
            if pngs is None:
                skipped.append(row_key(r))
                continue
            cam = [float(v) for v in r["camera"]]
            if len(cam) != 25:
                raise ValueError(f"row {row_key(r)} has a camera of {len(cam)} values, expected 25")
            entries.append((r["path"], pngs[0]))
            labels.append([r["path"], cam])
            if mirror:
                mname = r["path"][: -len(".png")] + "_mirror.png"
                roll = _camera_roll_of(r)
                entries.append((mname, pngs[1]))
                labels.append([mname, mirror_camera(r["yaw"], r["pitch"], roll, camera_fn)])
            for name, data in entries:
                if zf is not None:
                    zf.add(name, data)
                else:
                    atomic_write_bytes(out / name, data)
            entries.clear()
        labels.sort(key=lambda x: x[0])
        if zf is not None:
            zf.add("dataset.json", json_bytes({"labels": labels}))
            zf.close()
        else:
            atomic_write_bytes(out / "dataset.json", json_bytes({"labels": labels}))
    except BaseException:
        if zf is not None:
            zf.abort()
        raise
    return {"path": str(out), "count": len(labels), "skipped": skipped}
