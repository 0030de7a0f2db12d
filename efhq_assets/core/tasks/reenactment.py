"""Face-reenactment split (TPS / LIA), docs/efhq.md "Per-task outputs", table ``split_reenactment``.

What is kept from the original (``vfhq_txt.py`` / ``celeb_txt.py`` / ``create_train_test.py``):

* **Instance** = the faces of one identity inside one annotated clip: key
  ``(video_id, clip_id, identity_id)``.  (EFHQ: one clip folder ``<ytid>/id<N>/<clip>``.)
* **Frame label**: ``frontal`` if the face's bin label is ``frontal``, else ``extreme``, exactly as
  EFHQ's ``softbin == frontal`` rule. ``remove`` rows never reach this module, nor (by default:
  ``candidate_rows``) ``confused`` / ``profile_horizontal`` / ``profile_vertical``, which EFHQ's review
  dropped; kept with ``drop_labels=()``, they become ``extreme``.
* **Eligibility**: a test instance needs >= 1 frontal and >= 5 extreme frames.
* **Identity-disjoint**: every row of a test identity that is not in the test set is dropped
  (the original drops "all train rows of test identities").
* Rows must have a box area >= 100**2 (``preprocess_vox.py``); already implied by the EFHQ face
  filter (256x256), kept as ``min_area`` for other inputs.

Fixed / changed, on purpose:

* **Test identities by hash, not by name order.** The original takes the lexicographically last
  ceil(0.25 x instances) eligible instances, so adding one video moves other samples between train
  and test.  Here an identity is test iff ``sha256(f"{seed}:reenactment:{identity_id}")`` mapped to
  [0, 1) is ``< test_pct``; its eligible instances are the test set and its other instances are
  dropped.  An identity's split therefore depends on nothing but its own id: adding a clip or a
  video never moves an existing row between train and test (the new clip of a test identity that is
  not eligible is dropped; it never pulls earlier rows along).  The price: test-hashed identities
  without any eligible clip contribute nothing (they appear in :func:`reenactment_instances` with
  ``split = 'dropped'`` and a reason).  ``test_pct`` is thus a share of identities, not of
  instances.
* **One face per frame and instance**: if an identity has two faces in one frame of a clip (two
  tracks merged into one identity), the one with the higher ``score`` (then the lower face_index)
  is kept, so a driving sequence is a sequence.  The other one is dropped with a reason.
* **Pairs are chosen by rendezvous hashing** (the candidate with the highest
  ``sha256(seed, purpose, key, candidate)``), never by a global RNG.  The same inputs give the same
  pairs, and adding a frame or a clip changes a choice only when the new candidate wins it.
* The celeb branch's undefined ``instance`` and the ``.txt``/``.pt`` mismatch do not apply.

Lists for EFHQ's loaders (:func:`write_train_test_lists`): ``train_0.25.txt`` / ``test_0.25.txt`` beside
``pairs.json``, one line ``<instance>/<frame>.png frontal|extreme`` per rendered frame, as
``create_train_test.py`` writes them, relative to the export folder. The instance is
``<split>/<identity>/<video>/<clip>``: EFHQ's TPS ``FramesDataset_ExtremeHQ`` and LIA ``Ext256`` parse a
non-VFHQ, non-Vox entry as ``"/".join(path.split("/")[:-1])`` (their CelebV ``ytid/idN/clip`` branch; TPS
groups by the first two components, here split + identity = one person). Configure the entry with
``root_dir`` = the export folder and a ``name`` other than ``vfhq`` / ``voxceleb1`` (the VFHQ branch
needs ``Clip+ytid+P+C+F`` instance names).

Pairs (rows of :func:`reenactment_rows`'s second list):

* ``train``: one pair per extreme frame of a train instance: driving = that frame, source = a
  frontal frame of the same instance.  When the instance has no frontal frame: source = another
  extreme frame of it (EFHQ: "two extreme frames").  An all-frontal instance (nothing to drive
  towards an extreme pose) or a single-frame one gives no train pair.
* ``self`` (test self-reenactment): per test instance one frontal source frame, the driving
  sequence = all its extreme frames in frame order.
* ``cross`` (test cross-identity): per test instance the same source frame, the driving clip = a test
  instance of another identity (rendezvous hash); the driving sequence = its extreme frames in
  order.  No cross pair when there is only one test identity.

Pure Python + numpy; cv2 and core/align.py only inside :func:`render_reenactment`.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from efhq_assets.core.align import crop_resize, tube_box

from .common import atomic_write_bytes

__all__ = [
    "MIN_FRONTAL",
    "MIN_EXTREME",
    "SPLIT_REENACTMENT_COLUMNS",
    "frame_label",
    "identity_in_test",
    "reenactment_instances",
    "reenactment_rows",
    "render_reenactment",
    "write_train_test_lists",
    "DEFAULT_TEST_PCT",
]

FRONTAL, EXTREME = "frontal", "extreme"
DEFAULT_TEST_PCT = 0.25
MIN_FRONTAL = 1
MIN_EXTREME = 5
MIN_AREA = 100 * 100
SPLIT_REENACTMENT_COLUMNS = ("video_id", "clip_id", "frame_index", "face_index", "track_id", "identity_id",
                             "instance_id", "split", "label", "bin_label", "path")

_SAFE = re.compile(r"[^A-Za-z0-9_+.\-]+")


# --------------------------------------------------------------------------------------------
# hashing helpers (self-contained on purpose: tasks/common.py is owned elsewhere)
# --------------------------------------------------------------------------------------------
def _h64(*parts: Any) -> int:
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def _unit(*parts: Any) -> float:
    """Uniform in [0, 1) from the parts (sha256)."""
    return _h64(*parts) / 2.0**64


def _pick(candidates: Sequence[Any], key: Callable[[Any], Any], *salt: Any) -> Any:
    """Rendezvous (highest-random-weight) choice: stable when candidates are added or removed."""
    return max(candidates, key=lambda c: (_h64(*salt, key(c)), str(key(c))))


def _slug(value: Any) -> str:
    s = _SAFE.sub("_", str(value)).strip("._") or "_"
    return s.replace("..", "_")


# --------------------------------------------------------------------------------------------
def frame_label(label: str) -> str:
    """EFHQ's reenactment label: ``frontal`` if the bin label is frontal, else ``extreme``."""
    return FRONTAL if label == FRONTAL else EXTREME


def identity_in_test(identity_id: str, test_pct: float = 0.25, seed: int = 0) -> bool:
    """Whether an identity is hashed into the test share (its own id only: stable)."""
    return _unit(seed, "reenactment", identity_id) < test_pct


def _path(split: str, r: Mapping[str, Any]) -> str:
    return (
        f"{split}/{_slug(r['identity_id'])}/{_slug(r['video_id'])}/{_slug(r['clip_id'])}/"
        f"{int(r['frame_index']):08d}_{int(r['face_index'])}.png"
    )


def _instance_id(video_id: str, clip_id: str, identity_id: str) -> str:
    return f"{_slug(identity_id)}/{_slug(video_id)}/{_slug(clip_id)}"


def _area(r: Mapping[str, Any]) -> float:
    try:
        return max(0.0, float(r["x2"]) - float(r["x1"])) * max(0.0, float(r["y2"]) - float(r["y1"]))
    except (KeyError, TypeError, ValueError):
        return math.inf  # no box given: the area rule cannot apply


def _group(faces: Iterable[Mapping[str, Any]], min_area: float):
    """Instances -> frames (one face per frame), plus the faces dropped with a reason."""
    groups: dict[tuple[str, str, str], dict[int, Mapping[str, Any]]] = {}
    dropped: list[dict[str, Any]] = []
    for r in faces:
        if r.get("label") == "remove":
            continue
        if r.get("identity_id") is None:
            dropped.append({**_key(r), "reason": "no identity"})
            continue
        if _area(r) < min_area:
            dropped.append({**_key(r), "reason": f"box area < {min_area:g}"})
            continue
        clip = r.get("clip_id") or r["video_id"]
        k = (str(r["video_id"]), str(clip), str(r["identity_id"]))
        frames = groups.setdefault(k, {})
        fi = int(r["frame_index"])
        old = frames.get(fi)
        if old is None:
            frames[fi] = r
            continue
        a = (-float(old.get("score") or 0.0), int(old["face_index"]))
        b = (-float(r.get("score") or 0.0), int(r["face_index"]))
        keep, lose = (old, r) if a <= b else (r, old)
        frames[fi] = keep
        dropped.append({**_key(lose), "reason": "second face of the identity in this frame"})
    return groups, dropped


def _key(r: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "video_id": r.get("video_id"),
        "clip_id": r.get("clip_id") or r.get("video_id"),
        "frame_index": r.get("frame_index"),
        "face_index": r.get("face_index"),
        "identity_id": r.get("identity_id"),
    }


def reenactment_instances(
    faces: Iterable[Mapping[str, Any]],
    test_pct: float = 0.25,
    seed: int = 0,
    min_area: float = MIN_AREA,
) -> list[dict[str, Any]]:
    """One row per instance: video_id, clip_id, identity_id, instance_id, n_frames, n_frontal,
    n_extreme, eligible, identity_test, split ('train' / 'test' / 'dropped'), reason.

    Sorted by instance_id.  ``reason`` is None for kept instances.
    """
    groups, _ = _group(faces, min_area)
    return [_instance_row(k, frames, test_pct, seed) for k, frames in sorted(groups.items(), key=lambda kv: _instance_id(*kv[0]))]


def _instance_row(k, frames, test_pct, seed) -> dict[str, Any]:
    video_id, clip_id, identity_id = k
    n_frontal = sum(1 for r in frames.values() if frame_label(r.get("label")) == FRONTAL)
    n_extreme = len(frames) - n_frontal
    eligible = n_frontal >= MIN_FRONTAL and n_extreme >= MIN_EXTREME
    test = identity_in_test(identity_id, test_pct, seed)
    if not test:
        split, reason = "train", None
    elif eligible:
        split, reason = "test", None
    else:
        split = "dropped"
        reason = (
            f"test identity, clip not eligible ({n_frontal} frontal < {MIN_FRONTAL} or "
            f"{n_extreme} extreme < {MIN_EXTREME})"
        )
    return {
        "video_id": video_id,
        "clip_id": clip_id,
        "identity_id": identity_id,
        "instance_id": _instance_id(video_id, clip_id, identity_id),
        "n_frames": len(frames),
        "n_frontal": n_frontal,
        "n_extreme": n_extreme,
        "eligible": eligible,
        "identity_test": test,
        "split": split,
        "reason": reason,
    }


def reenactment_rows(
    faces: Iterable[Mapping[str, Any]],
    test_pct: float = DEFAULT_TEST_PCT,
    seed: int = 0,
    min_area: float = MIN_AREA,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(frame_rows, pair_rows)`` for ``split_reenactment`` and its pair list.

    frame_rows (one per kept face, sorted by split, instance_id, frame_index):
        video_id, clip_id, frame_index, face_index, track_id, identity_id, instance_id,
        split ('train'/'test'), label ('frontal'/'extreme'), bin_label (the input label),
        path (relative: ``{split}/{identity}/{video}/{clip}/{frame:08d}_{face}.png``),
        x1, y1, x2, y2 (for the tube crop), video_path.

    pair_rows (sorted by split, kind, source instance, driving path):
        split, kind ('train'/'self'/'cross'), source_path, driving_path, driving_paths,
        n_driving, source_instance, driving_instance, identity_source, identity_driving,
        source_video_id, source_clip_id, source_frame_index, source_face_index,
        driving_video_id, driving_clip_id.
        ``driving_path`` is a PNG for ``train`` and the driving clip's folder for ``self`` and
        ``cross`` (whose frames, in order, are ``driving_paths``).
    """
    groups, _ = _group(faces, min_area)
    frame_rows: list[dict[str, Any]] = []
    by_instance: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
    for k, frames in groups.items():
        inst = _instance_row(k, frames, test_pct, seed)
        if inst["split"] == "dropped":
            continue
        rows = []
        for fi in sorted(frames):
            r = frames[fi]
            row = {
                "video_id": inst["video_id"],
                "clip_id": inst["clip_id"],
                "frame_index": int(r["frame_index"]),
                "face_index": int(r["face_index"]),
                "track_id": r.get("track_id"),
                "identity_id": inst["identity_id"],
                "instance_id": inst["instance_id"],
                "split": inst["split"],
                "label": frame_label(r.get("label")),
                "bin_label": r.get("label"),
                "path": _path(inst["split"], {**r, "clip_id": inst["clip_id"]}),
                "x1": _f(r.get("x1")),
                "y1": _f(r.get("y1")),
                "x2": _f(r.get("x2")),
                "y2": _f(r.get("y2")),
                "video_path": r.get("video_path"),
            }
            rows.append(row)
        frame_rows.extend(rows)
        by_instance[inst["instance_id"]] = (inst, rows)
    frame_rows.sort(key=lambda r: (r["split"], r["instance_id"], r["frame_index"], r["face_index"]))
    pairs = _pairs(by_instance, seed)
    return frame_rows, pairs


def _f(v):
    return None if v is None else float(v)


def _pair(split, kind, src, drv_rows, drv_inst, src_inst, driving_path):
    return {
        "split": split,
        "kind": kind,
        "source_path": src["path"],
        "driving_path": driving_path,
        "driving_paths": [r["path"] for r in drv_rows],
        "n_driving": len(drv_rows),
        "source_instance": src_inst["instance_id"],
        "driving_instance": drv_inst["instance_id"],
        "identity_source": src_inst["identity_id"],
        "identity_driving": drv_inst["identity_id"],
        "source_video_id": src["video_id"],
        "source_clip_id": src["clip_id"],
        "source_frame_index": src["frame_index"],
        "source_face_index": src["face_index"],
        "driving_video_id": drv_inst["video_id"],
        "driving_clip_id": drv_inst["clip_id"],
    }


def _fkey(r: Mapping[str, Any]) -> str:
    return f"{r['frame_index']}_{r['face_index']}"


def _clip_dir(path: str) -> str:
    return path.rsplit("/", 1)[0]


def _pairs(by_instance, seed) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    test_ids = sorted(i for i, (inst, _) in by_instance.items() if inst["split"] == "test")
    for iid in sorted(by_instance):
        inst, rows = by_instance[iid]
        frontal = [r for r in rows if r["label"] == FRONTAL]
        extreme = [r for r in rows if r["label"] == EXTREME]
        if inst["split"] == "train":
            for d in extreme:
                if frontal:
                    s = _pick(frontal, _fkey, seed, "reenact-train-src", iid, _fkey(d))
                else:
                    others = [e for e in extreme if e is not d]
                    if not others:
                        continue
                    s = _pick(others, _fkey, seed, "reenact-train-src", iid, _fkey(d))
                out.append(_pair("train", "train", s, [d], inst, inst, d["path"]))
            continue
        # test: eligible by construction (>= 1 frontal, >= 5 extreme)
        s = _pick(frontal, _fkey, seed, "reenact-test-src", iid)
        out.append(_pair("test", "self", s, extreme, inst, inst, _clip_dir(extreme[0]["path"])))
        others = [t for t in test_ids if by_instance[t][0]["identity_id"] != inst["identity_id"]]
        if others:
            t = _pick(others, lambda x: x, seed, "reenact-cross", iid)
            t_inst, t_rows = by_instance[t]
            t_ext = [r for r in t_rows if r["label"] == EXTREME]
            out.append(_pair("test", "cross", s, t_ext, t_inst, inst, _clip_dir(t_ext[0]["path"])))
    out.sort(key=lambda p: (p["split"], p["kind"], p["source_instance"], p["driving_path"]))
    return out


# --------------------------------------------------------------------------------------------
# optional rendering (tube crop, core/align.py)
# --------------------------------------------------------------------------------------------
def render_reenactment(
    clip_rows: Sequence[Mapping[str, Any]],
    read_frame: Callable[[int], np.ndarray],
    frame_w: int,
    frame_h: int,
    out_root: str | os.PathLike,
    size: int = 256,
    expand: float = 0.1,
    min_side: int = 256,
) -> list[str]:
    """Write the 256x256 tube crops of one instance's frame rows under ``out_root / row['path']``.

    ``clip_rows``: the :func:`reenactment_rows` frame rows of ONE instance (same instance_id).
    ``read_frame(frame_index) -> HxWx3 uint8`` decodes one full frame (the caller streams the
    video).  One tube box per instance (EFHQ ``preprocess_vox.py``):
    ``efhq_assets.core.align.tube_box`` (union, aspect-preserving 0.1 expansion, clamped) and
    ``crop_resize``.  Returns the written relative paths; [] when the tube is smaller than
    ``min_side`` (EFHQ drops such clips).  Writes are atomic (temp file + ``os.replace``).
    """
    import cv2

    rows = sorted(clip_rows, key=lambda r: (r["frame_index"], r["face_index"]))
    if not rows:
        return []
    if len({r["instance_id"] for r in rows}) != 1:
        raise ValueError("render_reenactment takes the rows of one instance")
    boxes = [(r["x1"], r["y1"], r["x2"], r["y2"]) for r in rows]
    try:
        box = tube_box(boxes, frame_w, frame_h, expand=expand, min_side=min_side)
    except ValueError:
        return []
    if box is None:
        return []
    written = []
    for r in rows:
        img = crop_resize(read_frame(int(r["frame_index"])), box, size=size)
        dst = os.path.join(os.fspath(out_root), r["path"])
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        ok, buf = cv2.imencode(".png", img)
        if not ok:
            raise RuntimeError(f"PNG encoding failed for {r['path']}")
        tmp = f"{dst}.tmp{os.getpid()}"
        with open(tmp, "wb") as fh:
            fh.write(buf.tobytes())
        os.replace(tmp, dst)
        written.append(r["path"])
    return written


def write_train_test_lists(frame_rows: Sequence[Mapping[str, Any]], written: Iterable[str],
                           out_root: str | os.PathLike, test_pct: float = DEFAULT_TEST_PCT) -> dict[str, int]:
    """Write ``train_<pct>.txt`` and ``test_<pct>.txt`` (EFHQ ``create_train_test.py``'s names and lines:
    ``<instance>/<frame>.png frontal|extreme``) for the frames that were rendered (``written`` paths).
    Lines sorted; files written atomically. Returns the line count per split."""
    done = set(written)
    lines: dict[str, list[str]] = {"train": [], "test": []}
    for r in frame_rows:
        if r["path"] in done and r["split"] in lines:
            lines[r["split"]].append(f"{r['path']} {r['label']}\n")
    for split, items in lines.items():
        atomic_write_bytes(Path(out_root) / f"{split}_{test_pct}.txt", "".join(sorted(items)).encode("utf-8"))
    return {k: len(v) for k, v in lines.items()}
