"""Helpers shared by the per-task split builders: hash splits, deterministic caps, file names, writers.

Stability under refresh (docs/architecture.md, "Invariants"):

* A sample's split is a pure function of its identity id and a seed (:func:`split_of`): adding a
  video or an identity never moves an existing sample to another split, and one identity never
  straddles two splits.
* Per-group caps are chosen by a total, deterministic sort (:func:`cap_per_group`), never by a
  global RNG: the same rows give the same selection, and rows of a new identity never change the
  selection of another identity.  (Rows of a *new video of an existing identity* compete for that
  identity's cap like any other row, as the task asks for "the most extreme N per group".)
* File names come from the row key (:func:`relative_path`), not from an enumeration order, so a
  refresh never renames an existing sample.  This also fixes two defects of the original
  pipeline: names collided across clips (``<frameid>_<faceid>.png`` without the clip), and frame
  ids were zero-padded in some stages and not in others (``zfill(8)`` vs int round-trips).

Writers are deterministic (fixed zip timestamps, sorted entries, PNG via ``cv2.imencode``) and
atomic (``storage.atomic_path``, the one atomic writer: temp file in the same folder, fsync, ``os.replace``).

numpy only at module level; cv2 is imported inside functions.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from typing import Any, Callable, Hashable, Iterable, Sequence

import numpy as np

from ..ids import is_safe_id
from ..storage import atomic_path, atomic_write_bytes

__all__ = [
    "SPLITS",
    "EFHQ_DROPPED_LABELS",
    "ZIP_DATE_TIME",
    "split_of",
    "unit_hash",
    "row_key",
    "cap_per_group",
    "extremeness_sort_key",
    "relative_path",
    "RENDER_KEYS",
    "render_fields",
    "table_rows",
    "sample_name",
    "lmk5_of",
    "lmk478_xy_of",
    "attributes_of",
    "encode_png",
    "ProgressTicker",
    "EXPORT_THREADS",
    "ordered_parallel_map",
    "atomic_write_bytes",
    "json_bytes",
    "write_json_atomic",
    "DeterministicZip",
]

SPLITS = ("train", "val", "test")
#: Labels EFHQ's manual review dropped (2_merging/pose_grid.py ``process_csv``: ``confused``, ``trash``,
#: ``remove``, ``profile_vertical``, ``profile_horizontal`` never reach ``4_binned_edited/``, which every
#: task sampler reads). The default of every split; pass ``drop_labels=()`` to keep them.
EFHQ_DROPPED_LABELS = ("confused", "profile_horizontal", "profile_vertical")
#: Fixed timestamp for every zip member (the earliest a zip can store): byte-identical archives.
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)


# ----------------------------------------------------------------------------- splits and caps


def unit_hash(*parts: Any) -> float:
    """A number in [0, 1) from a sha256 of the parts (stable across runs, machines, Python versions)."""
    text = "\x1f".join(str(p) for p in parts)
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_of(identity_id: Any, seed: int = 0, test_pct: float = 0.0, val_pct: float = 0.0) -> str:
    """'train' / 'val' / 'test' for an identity, by a hash of (seed, identity id).

    ``test_pct`` and ``val_pct`` are fractions in [0, 1] (0.1 = 10 %).  The assignment depends only
    on the identity and the seed, so adding data never moves an existing sample between splits.
    Test takes the bottom of the hash range and val the top, so growing ``test_pct`` only moves
    identities into test and growing ``val_pct`` only moves identities out of train.
    """
    test_pct, val_pct = float(test_pct), float(val_pct)
    if not (0.0 <= test_pct <= 1.0 and 0.0 <= val_pct <= 1.0 and test_pct + val_pct <= 1.0):
        raise ValueError(f"test_pct={test_pct} and val_pct={val_pct} must be fractions summing to <= 1")
    u = unit_hash("split", int(seed), identity_id)
    if u < test_pct:
        return "test"
    if u >= 1.0 - val_pct:
        return "val"
    return "train"


def row_key(row: dict) -> tuple[str, int, int]:
    """(video_id, frame_index, face_index): the key every exported sample is traced back by."""
    return (str(row["video_id"]), int(row["frame_index"]), int(row["face_index"]))


def finite_or_none(v) -> float | None:
    """`v` as a float, or None when it is missing, not a number or NaN."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _num(v, default: float = 0.0) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return default
    return default if math.isnan(f) else f


def extremeness_sort_key(row: dict) -> tuple:
    """Most extreme first, then best quality: (-|yaw|, -|pitch|, -score), ties broken by the row key.

    The original CelebV GAN sampler sorted these ascending (least extreme, worst quality first), a
    bug; its VFHQ sampler sorted descending, which is what this key does for every source.
    Missing angles/scores sort last.
    """
    return (
        -abs(_num(row.get("yaw"))),
        -abs(_num(row.get("pitch"))),
        -_num(row.get("score"), default=-math.inf),
        *row_key(row),
    )


def cap_per_group(
    rows: Iterable[dict],
    key: Callable[[dict], Hashable] | Sequence[str] | str,
    n: int,
    sort_key: Callable[[dict], Any] = extremeness_sort_key,
) -> list[dict]:
    """At most ``n`` rows per group, the first ``n`` of each group by ``sort_key``.

    ``key``: a callable, a column name, or a sequence of column names.  The sort is made total by
    appending the row key, so the choice never depends on input order.  Output: groups in sorted
    group-key order (by ``repr`` of the key), rows within a group in ``sort_key`` order.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if isinstance(key, str):
        cols = (key,)
        key_fn: Callable[[dict], Hashable] = lambda r: tuple(r.get(c) for c in cols)  # noqa: E731
    elif callable(key):
        key_fn = key
    else:
        cols = tuple(key)
        key_fn = lambda r: tuple(r.get(c) for c in cols)  # noqa: E731
    groups: dict[Hashable, list[dict]] = {}
    for r in rows:
        groups.setdefault(key_fn(r), []).append(r)
    out: list[dict] = []
    for g in sorted(groups, key=repr):
        members = sorted(groups[g], key=lambda r: (sort_key(r), row_key(r)))
        out.extend(members[:n])
    return out


# ----------------------------------------------------------------------------- names


def sample_name(video_id: str, frame_index: int, face_index: int) -> str:
    """``<video_id>/<frame:08d>_<face>``: collision-free across clips and videos, one padding rule."""
    video_id = str(video_id)
    if not is_safe_id(video_id):
        raise ValueError(f"video id {video_id!r} is not a safe slug ([A-Za-z0-9_+.-], no '..')")
    frame_index, face_index = int(frame_index), int(face_index)
    if frame_index < 0 or face_index < 0:
        raise ValueError(f"negative frame/face index: {frame_index}, {face_index}")
    return f"{video_id}/{frame_index:08d}_{face_index}"


def relative_path(row_or_video_id, frame_index: int | None = None, face_index: int | None = None,
                  *, prefix: str = "", ext: str = "png") -> str:
    """Forward-slash path of a sample, derived from its row key: ``[prefix/]<video_id>/<frame:08d>_<face>.<ext>``.

    Accepts a row dict or (video_id, frame_index, face_index).
    """
    if isinstance(row_or_video_id, dict):
        video_id, frame_index, face_index = row_key(row_or_video_id)
    else:
        video_id = row_or_video_id
        if frame_index is None or face_index is None:
            raise TypeError("relative_path needs a row or (video_id, frame_index, face_index)")
    name = f"{sample_name(video_id, frame_index, face_index)}.{ext}"
    prefix = prefix.strip("/")
    return f"{prefix}/{name}" if prefix else name


# ----------------------------------------------------------------------------- row fields

#: Input fields carried on every selected row (beside the table columns) so that a caller's
#: ``render_fn(row)`` can re-decode the frame and crop the face without another join.  They are
#: not table columns: write a split table with :func:`table_rows`.
RENDER_KEYS = ("lmk5", "video_path", "frame_width", "frame_height", "x1", "y1", "x2", "y2")


def render_fields(row: dict, extra: Sequence[str] = ()) -> dict:
    """The :data:`RENDER_KEYS` (+ ``extra``) of an input row, lists copied."""
    out = {}
    for k in (*RENDER_KEYS, *extra):
        v = row.get(k)
        if isinstance(v, np.ndarray):
            v = v.tolist()
        elif isinstance(v, (list, tuple)):
            v = list(v)
        out[k] = v
    return out


def table_rows(rows: Iterable[dict], columns: Sequence[str]) -> list[dict]:
    """Project selected rows onto a table's columns (drops the render-only fields)."""
    return [{c: r.get(c) for c in columns} for r in rows]



def lmk5_of(row: dict) -> np.ndarray | None:
    """(5, 2) float64 full-frame landmarks (image-left eye first), or None if absent/non-finite."""
    v = row.get("lmk5")
    if v is None:
        return None
    a = np.asarray(v, dtype=np.float64).reshape(-1)
    if a.size != 10 or not np.all(np.isfinite(a)):
        return None
    return a.reshape(5, 2)


def lmk478_xy_of(row: dict) -> np.ndarray | None:
    """(478, 2) float64 FaceMesh x, y in full-frame pixels, or None if absent/malformed."""
    v = row.get("lmk478")
    if v is None:
        return None
    a = np.asarray(v, dtype=np.float64).reshape(-1)
    if a.size != 956:
        return None
    a = a.reshape(478, 2)
    if not np.all(np.isfinite(a)):
        return None
    return a


def attributes_of(row: dict) -> dict | None:
    """The CelebV-HQ attributes dict of a row (given as a JSON string or a dict), or None."""
    v = row.get("attributes")
    if v is None:
        return None
    if isinstance(v, dict):
        return v
    if isinstance(v, (bytes, bytearray)):
        v = v.decode("utf-8")
    if isinstance(v, str):
        if not v.strip():
            return None
        try:
            d = json.loads(v)
        except json.JSONDecodeError:
            return None
        return d if isinstance(d, dict) else None
    return None


# ----------------------------------------------------------------------------- writers


#: Threads that render and encode an export's images (cv2 and numpy release the GIL for the heavy work); 1 runs
#: them in the calling thread.  The files are the same bytes whatever the count (tested).
EXPORT_THREADS = max(1, min(8, os.cpu_count() or 1))


def ordered_parallel_map(fn: Callable[[Any], Any], items: Iterable, *, workers: int | None = None,
                         window: int | None = None):
    """Yield ``fn(item)`` for every item, in the items' order, computed by ``workers`` threads (default
    :data:`EXPORT_THREADS`) at most ``window`` items ahead of the consumer (default 2 x workers).  An item's
    exception is raised at its turn; the items not yet started are then dropped."""
    workers = EXPORT_THREADS if workers is None else max(1, int(workers))
    if workers == 1:
        yield from map(fn, items)
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    window = max(1, int(window or 2 * workers))
    pool = ThreadPoolExecutor(workers, thread_name_prefix="efhq-export")
    pending: deque = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class ProgressTicker:
    """Counts finished items and calls ``report(done, total)`` at most every ``every_s`` seconds, and at the last
    item (long exports say how far they are: the CLI prints it, a build's run logs it).  Thread-safe."""

    def __init__(self, total: int, report: Callable[[int, int], None] | None = None, every_s: float = 5.0):
        self.total, self.report, self.every_s = int(total), report, float(every_s)
        self.done = 0
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def tick(self, n: int = 1) -> None:
        with self._lock:  # reports in order, the last one last
            self.done += n
            now = time.monotonic()
            if self.report is not None and (self.done >= self.total or now - self._last >= self.every_s):
                self._last = now
                self.report(self.done, self.total)


#: zlib strategy of :func:`encode_png`: ``"rle"`` (shipped) or ``"default"`` (benchmarks/export_speed.py's baseline).
PNG_STRATEGY = "rle"


def encode_png(image: np.ndarray, compression: int = 6) -> bytes:
    """PNG bytes of a uint8 BGR (or gray) image via cv2.imencode: same pixels, same bytes.

    zlib's run-length strategy (Z_RLE) after PNG's row filters: on the exports' 512 px face crops it writes
    about the same bytes as the default strategy at level 6 (212 against 217 KB a GAN crop, 190-275 against
    200-268 KB an EG3D crop) four times faster (25 against 103 ms), and the encoding was most of an export's
    time (benchmarks/export_speed.py).  Line drawings (the text-to-image conditions) grow from 4.4 to 6.3 KB."""
    import cv2

    image = np.ascontiguousarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    strategy = {"rle": cv2.IMWRITE_PNG_STRATEGY_RLE, "default": cv2.IMWRITE_PNG_STRATEGY_DEFAULT}[PNG_STRATEGY]
    ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, int(compression),
                                           cv2.IMWRITE_PNG_STRATEGY, strategy])
    if not ok:
        raise RuntimeError("cv2.imencode failed to encode a PNG")
    return buf.tobytes()


def json_bytes(obj: Any, *, indent: int | None = None) -> bytes:
    return (json.dumps(obj, indent=indent, sort_keys=False, ensure_ascii=False) + "\n").encode("utf-8")


def write_json_atomic(path: str | os.PathLike, obj: Any, *, indent: int | None = None) -> Path:
    path = Path(path)
    atomic_write_bytes(path, json_bytes(obj, indent=indent))
    return path


class DeterministicZip:
    """Collect members in memory-light form, then write one zip deterministically and atomically.

    Members are written in sorted name order with a fixed timestamp and fixed permissions; PNGs are
    stored (already compressed), everything else deflated.  Nothing appears at ``path`` until
    :meth:`close` succeeds (``storage.atomic_path``: temp file in the same folder, fsync, ``os.replace``).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # spill to a temp folder so a big export does not sit in memory
        self._stage = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.stage.", dir=self.path.parent))
        self._names: dict[str, Path] = {}

    def add(self, name: str, data: bytes) -> None:
        if name in self._names:
            raise ValueError(f"duplicate zip member {name!r}")
        if name.startswith("/") or ".." in name.split("/") or "\\" in name:
            raise ValueError(f"unsafe zip member name {name!r}")
        staged = self._stage / f"{len(self._names):09d}"
        staged.write_bytes(data)
        self._names[name] = staged

    def close(self) -> Path:
        try:
            with atomic_path(self.path) as tmp, zipfile.ZipFile(tmp, "w") as zf:
                for name in sorted(self._names):
                    info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
                    info.compress_type = zipfile.ZIP_STORED if name.lower().endswith(".png") else zipfile.ZIP_DEFLATED
                    info.external_attr = (0o100644 & 0xFFFF) << 16
                    info.create_system = 3
                    zf.writestr(info, self._names[name].read_bytes())
        finally:
            self._cleanup()
        return self.path

    def abort(self) -> None:
        self._cleanup()

    def _cleanup(self) -> None:
        for p in self._names.values():
            try:
                p.unlink()
            except FileNotFoundError:
                pass
        try:
            self._stage.rmdir()
        except OSError:
            pass

    def __enter__(self) -> "DeterministicZip":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
