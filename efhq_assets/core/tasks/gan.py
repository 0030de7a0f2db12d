"""2D GAN split (StyleGAN2-ADA): selection (table ``split_gan``) and a zip StyleGAN reads directly.

Selection (docs/efhq.md, "Stage 3" and "Per-task outputs"), per EFHQ-filtered face row:

1. keep ``quality_pass`` (the configured scorer's threshold; the original used ``iqa >= 42``);
2. drop faces whose FFHQ alignment would leave the frame (``align.ffhq_outside_frame``, the
   original aligner's rejection rule);
3. at most ``per_group`` (10) rows per ``group_by`` = ``(clip_id, bin label)`` by default, as EFHQ's
   samplers did (3_align_sample/cli_sample_gan.py: CelebV one CSV per clip and bin, VFHQ
   ``groupby(["video_id", "softbin"])`` with ``video_id`` the clip); :data:`PROJECT_GAN_GROUP`
   ``(identity_id, bin label)`` caps per person instead (far fewer images of one person). **Most
   extreme first, then best quality**: sort by |yaw| desc, |pitch| desc, score desc (ties: the row key).  The original CelebV
   sampler sorted all three *ascending* (least extreme, worst quality first), which contradicts its
   own VFHQ sampler and the purpose of the dataset; we use the VFHQ order for every source.
4. ``frontal`` rows are **included** (the VFHQ sampler's behaviour).  The original CelebV sampler
   skipped the frontal folder; since every source goes through one code path here and the GAN is
   trained class-conditionally, frontal samples are kept as class 0.  Pass
   ``include_frontal=False`` to reproduce the CelebV behaviour.

Labels EFHQ's review dropped (``confused``, ``profile_horizontal``, ``profile_vertical``:
:data:`common.EFHQ_DROPPED_LABELS`) enter no split by default (``drop_labels=()`` keeps them).

Class labels: ``0 = frontal``, ``1 = extreme`` (every other kept bin: profile_left/right/up/down/
extreme, and with ``drop_labels=()`` also profile_horizontal, profile_vertical, confused).  The original labelled *every* EFHQ image
1 and took class 0 only from FFHQ; here EFHQ's own frontal faces are class 0.

Split: :func:`common.split_of` on the identity id (default: everything ``train``, as the original);
a sample's split never changes when data is added.

Export: :func:`export_stylegan_zip` writes what StyleGAN2-ADA's ``training/dataset.py``
``ImageFolderDataset`` reads from a zip with no conversion step: square PNGs of one resolution,
``dataset.json`` = ``{"labels": [[relative_path, class_index], ...]}`` (zip-root-relative, forward
slashes), plus ``metadata.json`` tracing each image back to its video/frame/face.  Training must be
class-conditional: ``python train.py --data=<zip> --cond=1 --mirror=1 ...``.  The original's
documented command had no ``--cond=1``, so the labels it built were silently ignored.

numpy only at module level; cv2 is imported inside functions; ``align`` is imported lazily.
"""

from __future__ import annotations

import os
from typing import Callable, Iterable, Sequence

import numpy as np

from ..align import ffhq_outside_frame
from .common import (EFHQ_DROPPED_LABELS, DeterministicZip, cap_per_group, encode_png, extremeness_sort_key,
                     finite_or_none, json_bytes, lmk5_of, ordered_parallel_map, relative_path, render_fields, row_key,
                     split_of)

__all__ = [
    "CLASS_NAMES",
    "class_index_of",
    "base_filter",
    "select_gan",
    "EFHQ_GAN_GROUP",
    "PROJECT_GAN_GROUP",
    "export_stylegan_zip",
    "SPLIT_GAN_COLUMNS",
]

FRONTAL = "frontal"
#: EFHQ's cap groups (default) and the project's per-identity alternative.
EFHQ_GAN_GROUP = ("clip_id", "label")
PROJECT_GAN_GROUP = ("identity_id", "label")
#: StyleGAN class index -> name.
CLASS_NAMES = ("frontal", "extreme")

#: Columns of the ``split_gan`` table (in order).
SPLIT_GAN_COLUMNS = (
    "video_id", "frame_index", "face_index", "clip_id", "track_id", "identity_id", "source",
    "split", "label", "class_index", "bin", "yaw", "pitch", "roll", "score", "path",
)


def class_index_of(bin_label: str) -> int:
    """0 for ``frontal``, 1 for every other (non-removed) bin."""
    if bin_label == "remove":
        raise ValueError("'remove' rows must be dropped before task sampling")
    return 0 if bin_label == FRONTAL else 1


def _outside_default() -> Callable:
    return ffhq_outside_frame


def base_filter(
    rows: Iterable[dict],
    *,
    outside_frame: Callable | None = None,
    include_frontal: bool = True,
    drop_labels: Sequence[str] = EFHQ_DROPPED_LABELS,
) -> list[dict]:
    """Rows that pass quality, have finite 5-point landmarks and whose FFHQ crop stays in the frame,
    without the labels EFHQ's review dropped (``drop_labels``; ``()`` keeps them)."""
    outside = outside_frame if outside_frame is not None else _outside_default()
    dropped = {"remove", *drop_labels}
    kept = []
    for r in rows:
        label = r.get("label")
        if label is None or label in dropped:
            continue
        if not include_frontal and label == FRONTAL:
            continue
        if not bool(r.get("quality_pass")):
            continue
        lmk5 = lmk5_of(r)
        if lmk5 is None:
            continue
        if outside(lmk5, int(r["frame_width"]), int(r["frame_height"])):
            continue
        kept.append(r)
    return kept


def _base_out(r: dict, split: str) -> dict:
    return {
        "video_id": str(r["video_id"]),
        "frame_index": int(r["frame_index"]),
        "face_index": int(r["face_index"]),
        "clip_id": r.get("clip_id"),
        "track_id": r.get("track_id"),
        "identity_id": r.get("identity_id"),
        "source": r.get("source"),
        "split": split,
        "bin": r.get("label"),
        "yaw": finite_or_none(r.get("yaw")),
        "pitch": finite_or_none(r.get("pitch")),
        "roll": finite_or_none(r.get("roll")),
        "score": finite_or_none(r.get("score")),
    }


def select_gan(
    rows: Iterable[dict],
    per_group: int = 10,
    seed: int = 0,
    *,
    test_pct: float = 0.0,
    include_frontal: bool = True,
    outside_frame: Callable | None = None,
    group_by: Sequence[str] = EFHQ_GAN_GROUP,
    drop_labels: Sequence[str] = EFHQ_DROPPED_LABELS,
) -> list[dict]:
    """Rows of ``split_gan`` (see the module docstring), sorted by (identity, video, frame, face).

    Each row holds the :data:`SPLIT_GAN_COLUMNS` plus the render-only :data:`common.RENDER_KEYS`
    (lmk5, video_path, frame size, box) for the caller's ``render_fn``; write the table with
    ``common.table_rows(rows, SPLIT_GAN_COLUMNS)``.

    ``outside_frame(lmk5, width, height) -> bool`` defaults to ``align.ffhq_outside_frame``.
    """
    kept = base_filter(rows, outside_frame=outside_frame, include_frontal=include_frontal, drop_labels=drop_labels)
    chosen = cap_per_group(kept, tuple(group_by), per_group, extremeness_sort_key)
    out = []
    for r in chosen:
        o = _base_out(r, split_of(r.get("identity_id"), seed=seed, test_pct=test_pct))
        ci = class_index_of(r["label"])
        o["label"] = CLASS_NAMES[ci]
        o["class_index"] = ci
        o["path"] = relative_path(r, prefix="images")
        out.append({**{k: o[k] for k in SPLIT_GAN_COLUMNS}, **render_fields(r)})
    out.sort(key=lambda o: (str(o["identity_id"]), *row_key(o)))
    return out


def _is_pow2(n: int) -> bool:
    return n >= 4 and (n & (n - 1)) == 0


def _to_resolution(img: np.ndarray, resolution: int) -> np.ndarray:
    import cv2

    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise ValueError(f"render_fn must return uint8 images, got {img.dtype}")
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"render_fn must return HxWx3 BGR images, got shape {img.shape}")
    h, w = img.shape[:2]
    if (h, w) != (resolution, resolution):
        if h != w:
            raise ValueError(f"render_fn returned a non-square {w}x{h} image; StyleGAN needs square images")
        interp = cv2.INTER_AREA if h > resolution else cv2.INTER_LANCZOS4
        img = cv2.resize(img, (resolution, resolution), interpolation=interp)
    return np.ascontiguousarray(img)


def export_stylegan_zip(
    rows: Sequence[dict],
    render_fn: Callable[[dict], np.ndarray | None],
    out_zip: str | os.PathLike,
    resolution: int = 1024,
) -> dict:
    """Write ``out_zip`` for StyleGAN2-ADA (``--data=out_zip --cond=1``) from ``split_gan`` rows.

    ``render_fn(row)`` returns the aligned uint8 BGR face (re-decoded by the caller); square images
    of another size are resized to ``resolution``.  A row whose ``render_fn`` returns None is left
    out of the zip and reported in ``skipped``.  Members: ``row['path']`` PNGs, ``dataset.json``
    and ``metadata.json``; sorted, fixed timestamps, written atomically.

    Returns ``{"path", "count", "skipped": [(video_id, frame_index, face_index), ...]}``.
    """
    resolution = int(resolution)
    if not _is_pow2(resolution):
        raise ValueError(f"StyleGAN2-ADA needs a power-of-two resolution, got {resolution}")
    ordered = sorted(rows, key=lambda r: r["path"])
    paths = [r["path"] for r in ordered]
    if len(set(paths)) != len(paths):
        raise ValueError("duplicate paths in split_gan rows")
    labels, metadata, skipped = [], {}, []

    def png_of(r):  # in the export's worker threads
        img = render_fn(r)
        return None if img is None else encode_png(_to_resolution(img, resolution))

    with DeterministicZip(out_zip) as zf:
        for r, png in zip(ordered, ordered_parallel_map(png_of, ordered)):
            if png is None:
                skipped.append(row_key(r))
                continue
            zf.add(r["path"], png)
            labels.append([r["path"], int(r["class_index"])])
            metadata[r["path"]] = {
                "video_id": r["video_id"],
                "frame_index": int(r["frame_index"]),
                "face_index": int(r["face_index"]),
                "clip_id": r.get("clip_id"),
                "identity_id": r.get("identity_id"),
                "label": r.get("label"),
                "class_index": int(r["class_index"]),
                "bin": r.get("bin"),
                "split": r.get("split"),
            }
        zf.add("dataset.json", json_bytes({"labels": labels}))
        zf.add("metadata.json", json_bytes({"class_names": list(CLASS_NAMES), "resolution": resolution,
                                            "images": metadata}, indent=1))
    return {"path": str(out_zip), "count": len(labels), "skipped": skipped}
