"""Cross-view face-verification benchmark (docs/efhq.md, "Per-task outputs"), table ``verification_pairs``.

Sampling (``cli_face_verification.py align``):

* Per (identity, bin label): up to ``n_frontal`` = 50 frontal faces and ``n_per_bin`` = 100 faces of
  every non-frontal bin.  The original drew with ``DataFrame.sample(random_state=0)``; here a face
  is kept when its hash ``sha256(seed, face key)`` is among the ``n`` smallest of its group
  ("bottom-k" sampling).  Same inputs, same sample; adding faces to a group only swaps in new faces
  whose hash is smaller (no reshuffle of the whole group).
* Landmark rule: all 5 landmarks within the face box grown by 10 px (the original drops a sample
  with any landmark "more than 10 px outside the bbox").  A face without 5 finite landmarks is
  dropped.
* ``confused`` faces (estimators disagree on the direction) are excluded by default
  (``exclude_labels``); every other non-frontal label is a bin.

Degradation (:func:`degrade`): the original applied albumentations
``RandomBrightnessContrast(p=0.5)``, ``Downscale(0.25-0.35, p=0.5)``, ``ImageCompression(p=0.5)``
with a global RNG (a re-run gave other images).  Here the same three steps are drawn from a numpy
``Generator`` seeded per face (``sample['degrade_seed']``), so an image is reproducible.  Note:
albumentations' ``ImageCompression`` default quality range is 99-100, i.e. the original's JPEG step
was practically lossless. Two presets (:data:`DEGRADATION_PRESETS`): ``"efhq"`` (the default: EFHQ's
three steps with albumentations' defaults, JPEG quality 99-100) and ``"hard"`` (JPEG quality 30-70, a
real compression artefact).

Landmarks: EFHQ aligned with 5 points taken from SynergyNet's 68 (``get_lmk``); here the face's own 5
points (the detector's, or EFHQ's released ``lmks5pts`` for rebuilt faces) are used (declared in
docs/efhq_differences.md).

Pairs (:func:`make_pairs`, protocols f2f / f2p / p2p, table in 3.5):

* Half genuine (``n_pairs // 2``), half impostor (the rest); every pair unordered-unique; an
  impostor pair never shares ``identity_id``; genuine pairs always do.
* **Genuine pairs prefer two clips**: per identity, all candidate pairs are ranked first by
  "different clip" (pairs from two clips of the identity before pairs from one clip), then by a
  pair hash.  An identity with more than one clip therefore gives cross-clip pairs while it has
  any left; single-clip identities give same-clip pairs (their only option).  This softens the
  original's near-duplicate genuine pairs (neighbouring frames of one clip).
* Genuine pairs are spread evenly over identities: each identity gets the same quota (capped by
  what it can supply; the remainder goes to identities chosen by hash), not "as many as its
  image count".  An identity's pairs are always the first ``quota`` of its own ranking, which
  depends on its own faces only.
* Impostor pairs: the ``n_pairs - n_pairs // 2`` pairs of two different identities with the
  lowest score ``(h1 + h2) mod 2**64``, ``h`` = ``sha256(seed, protocol, face key)`` per face
  (ties: face key order).  The original drew identities and images from a global RNG.  Found
  without enumerating the O(n^2) pairs: the faces with ``h2`` in the window
  ``[-h1, -h1 + T)`` are a binary search away, and ``T`` is widened until the window holds
  enough impostor pairs: O(n log n + n_pairs).
* Stable under refresh (issue 13): every ranking above is a property of the pair (and, for the
  genuine quota, of the identity), never of the rest of the samples.  While the data supply
  less than asked, a refresh that adds faces only adds pairs; beyond that, an old pair leaves
  only when a new pair ranks before it (impostors) or its identity's quota shrinks (genuine:
  its last-ranked pairs go), i.e. about as many rows change as the new faces bring in.
* Fewer pairs than asked: when the data cannot supply ``n_pairs // 2`` unique genuine (or
  impostor) pairs, all that exist are returned and a warning is logged;
  :func:`pair_supply` tells how many exist.
* ``issame`` is a bool in the rows (``WHERE issame`` in SQL); :func:`write_pairs_tsv` writes 1/0,
  the integer form insightface's eval lists read.

The genuine/impostor identity caveats of 3.5 (a VFHQ "id" is a YouTube video, a CelebV "id" a clip)
are fixed upstream: ``identity_id`` comes from ``face_identities``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

__all__ = [
    "PROTOCOLS",
    "VERIFICATION_PAIRS_COLUMNS",
    "landmarks_inside",
    "sample_verification_faces",
    "degrade",
    "DEGRADATION_PRESETS",
    "DEFAULT_DEGRADATION",
    "pair_supply",
    "make_pairs",
    "write_pairs_tsv",
]

log = logging.getLogger(__name__)

FRONTAL = "frontal"
PROTOCOLS = ("f2f", "f2p", "p2p")
VERIFICATION_PAIRS_COLUMNS = ("protocol", "path1", "path2", "issame", "identity1", "identity2", "video_id1",
                              "frame_index1", "face_index1", "video_id2", "frame_index2", "face_index2")
#: protocol -> (side of image 1, side of image 2): True = frontal, False = non-frontal
_SIDES = {"f2f": (True, True), "f2p": (True, False), "p2p": (False, False)}
_SAFE = re.compile(r"[^A-Za-z0-9_+.\-]+")


def _h64(*parts: Any) -> int:
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def _slug(value: Any) -> str:
    s = _SAFE.sub("_", str(value)).strip("._") or "_"
    return s.replace("..", "_")


def _face_key(r: Mapping[str, Any]) -> str:
    return f"{r['video_id']}:{int(r['frame_index'])}:{int(r['face_index'])}"


# --------------------------------------------------------------------------------------------
# sampling
# --------------------------------------------------------------------------------------------
def landmarks_inside(r: Mapping[str, Any], margin: float = 10.0) -> bool:
    """EFHQ rule: all 5 landmarks lie inside the box grown by ``margin`` px."""
    lmk = r.get("lmk5")
    if lmk is None:
        return False
    try:
        pts = np.asarray(lmk, dtype=np.float64).reshape(-1)
        box = [float(r[k]) for k in ("x1", "y1", "x2", "y2")]
    except (TypeError, ValueError, KeyError):
        return False
    if pts.size != 10 or not np.all(np.isfinite(pts)) or not all(math.isfinite(v) for v in box):
        return False
    xs, ys = pts[0::2], pts[1::2]
    x1, y1, x2, y2 = box
    return bool(
        np.all(xs >= x1 - margin) and np.all(xs <= x2 + margin) and np.all(ys >= y1 - margin) and np.all(ys <= y2 + margin)
    )


def sample_verification_faces(
    faces: Iterable[Mapping[str, Any]],
    n_frontal: int = 50,
    n_per_bin: int = 100,
    seed: int = 0,
    margin: float = 10.0,
    exclude_labels: Sequence[str] = ("confused", "remove"),
) -> list[dict[str, Any]]:
    """The benchmark's images: per identity up to ``n_frontal`` frontal faces and ``n_per_bin``
    faces of each non-frontal bin.  A face (video_id, frame_index, face_index) listed twice
    (overlapping clips) counts once.

    Returns one dict per kept face (sorted by identity_id, bin, video_id, frame_index,
    face_index): every input column, plus
    ``bin`` (= label), ``frontal`` (bool), ``clip_id`` (video_id when missing),
    ``path`` (relative: ``images/{identity}/{bin}/{video}_{frame:08d}_{face}.png``; EFHQ wrote
    ``images/<id>/<bin>/<frame>.png``, the video id keeps frames of two videos apart),
    ``degrade_seed`` (int, the seed :func:`degrade` takes for this face).
    """
    groups: dict[tuple[str, str], list[tuple[int, dict[str, Any]]]] = {}
    excluded = set(exclude_labels)
    unique: dict[str, Mapping[str, Any]] = {}
    for r in faces:
        label = r.get("label")
        if label is None or label in excluded or r.get("identity_id") is None:
            continue
        if not landmarks_inside(r, margin):
            continue
        key = _face_key(r)
        old = unique.get(key)  # one face listed under two overlapping clips: keep the lower clip id
        if old is None or str(r.get("clip_id") or "") < str(old.get("clip_id") or ""):
            unique[key] = r
    for key, r in unique.items():
        groups.setdefault((str(r["identity_id"]), str(r["label"])), []).append((_h64(seed, "verif-sample", key), dict(r)))
    out: list[dict[str, Any]] = []
    for (ident, label), members in groups.items():
        cap = n_frontal if label == FRONTAL else n_per_bin
        members.sort(key=lambda hr: (hr[0], _face_key(hr[1])))
        for _, r in members[: max(0, int(cap))]:
            r["bin"] = label
            r["frontal"] = label == FRONTAL
            r["clip_id"] = r.get("clip_id") or r["video_id"]
            r["path"] = (
                f"images/{_slug(ident)}/{_slug(label)}/{_slug(r['video_id'])}_"
                f"{int(r['frame_index']):08d}_{int(r['face_index'])}.png"
            )
            r["degrade_seed"] = _h64(seed, "verif-degrade", _face_key(r)) & 0x7FFFFFFF
            out.append(r)
    out.sort(key=lambda r: (str(r["identity_id"]), r["bin"], str(r["video_id"]), int(r["frame_index"]), int(r["face_index"])))
    return out


# --------------------------------------------------------------------------------------------
# degradation
# --------------------------------------------------------------------------------------------
#: Degradation presets: EFHQ's (albumentations defaults, the default here) and a harder one.
DEGRADATION_PRESETS: dict[str, dict[str, Any]] = {
    "efhq": {"p": 0.5, "brightness_limit": 0.2, "contrast_limit": 0.2, "downscale": (0.25, 0.35),
             "jpeg_quality": (99, 100)},
    "hard": {"p": 0.5, "brightness_limit": 0.2, "contrast_limit": 0.2, "downscale": (0.25, 0.35),
             "jpeg_quality": (30, 70)},
}
DEFAULT_DEGRADATION = "efhq"


def degrade(
    image: np.ndarray,
    seed: int,
    preset: str = DEFAULT_DEGRADATION,
    **overrides: Any,
) -> np.ndarray:
    """Seeded EFHQ degradation of a uint8 image (HxW or HxWxC); same seed, same output.

    ``preset``: a key of :data:`DEGRADATION_PRESETS`; ``overrides`` (``p``, ``brightness_limit``,
    ``contrast_limit``, ``downscale``, ``jpeg_quality``) replace single parameters.

    In this order, each with probability ``p``:

    1. brightness/contrast (albumentations ``RandomBrightnessContrast`` defaults):
       ``img * (1 + U(-c, c)) + U(-b, b) * 255``;
    2. downscale by ``U(0.25, 0.35)`` and back up, nearest-neighbour both ways
       (albumentations ``Downscale`` default interpolation);
    3. JPEG re-encoding at an integer quality in ``jpeg_quality`` (inclusive).

    All random numbers are drawn up front from ``np.random.default_rng(seed)``, so which steps run
    never changes the parameters of the others.
    """
    import cv2

    if preset not in DEGRADATION_PRESETS:
        raise ValueError(f"unknown degradation preset {preset!r}: use one of {sorted(DEGRADATION_PRESETS)}")
    unknown = set(overrides) - set(DEGRADATION_PRESETS[preset])
    if unknown:
        raise TypeError(f"unknown degradation parameter(s) {sorted(unknown)}")
    params = {**DEGRADATION_PRESETS[preset], **overrides}
    p, brightness_limit, contrast_limit = params["p"], params["brightness_limit"], params["contrast_limit"]
    downscale, jpeg_quality = params["downscale"], params["jpeg_quality"]
    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise TypeError(f"degrade expects a uint8 image, got {img.dtype}")
    rng = np.random.default_rng(int(seed))
    u = rng.random(3)
    alpha = 1.0 + rng.uniform(-contrast_limit, contrast_limit)
    beta = rng.uniform(-brightness_limit, brightness_limit)
    scale = rng.uniform(downscale[0], downscale[1])
    quality = int(rng.integers(jpeg_quality[0], jpeg_quality[1], endpoint=True))
    out = img
    if u[0] < p:
        out = np.clip(out.astype(np.float32) * np.float32(alpha) + np.float32(beta * 255.0), 0, 255)
        out = np.rint(out).astype(np.uint8)
    if u[1] < p:
        h, w = out.shape[:2]
        small = cv2.resize(out, (max(1, int(round(w * scale))), max(1, int(round(h * scale)))), interpolation=cv2.INTER_NEAREST)
        out = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST).reshape(out.shape)
    if u[2] < p:
        ok, buf = cv2.imencode(".jpg", out, [int(cv2.IMWRITE_JPEG_QUALITY), quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        flag = cv2.IMREAD_GRAYSCALE if out.ndim == 2 else cv2.IMREAD_COLOR
        out = cv2.imdecode(buf, flag).reshape(out.shape)
    return np.ascontiguousarray(out)


# --------------------------------------------------------------------------------------------
# pairs
# --------------------------------------------------------------------------------------------
def _splitmix(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint64)
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return x


def _prepare(samples: Iterable[Mapping[str, Any]], seed: int, protocol: str):
    if protocol not in _SIDES:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
    rows = sorted((dict(r) for r in samples), key=_face_key)
    keys = [_face_key(r) for r in rows]
    if len(set(keys)) != len(keys):
        raise ValueError("samples hold the same face twice")
    by_id: dict[str, dict[bool, list[int]]] = {}
    for i, r in enumerate(rows):
        frontal = bool(r.get("frontal", r.get("bin", r.get("label")) == FRONTAL))
        by_id.setdefault(str(r["identity_id"]), {True: [], False: []})[frontal].append(i)
    hashes = np.array([_h64(seed, protocol, "verif-pair", k) for k in keys], dtype=np.uint64)
    return rows, by_id, hashes


def _genuine_supply(sides, idx) -> int:
    a, b = sides
    if a == b:
        n = len(idx[a])
        return n * (n - 1) // 2
    return len(idx[a]) * len(idx[b])


def _supply(by_id: Mapping[str, Mapping[bool, list[int]]], a: bool, b: bool) -> dict[str, int]:
    genuine = sum(_genuine_supply((a, b), idx) for idx in by_id.values())
    na = sum(len(idx[a]) for idx in by_id.values())
    nb = sum(len(idx[b]) for idx in by_id.values())
    total = na * (na - 1) // 2 if a == b else na * nb
    return {"genuine": genuine, "impostor": total - genuine}


def pair_supply(samples: Iterable[Mapping[str, Any]], protocol: str) -> dict[str, int]:
    """How many unique genuine and impostor pairs the samples allow for ``protocol``."""
    _, by_id, _ = _prepare(samples, 0, protocol)
    a, b = _SIDES[protocol]
    return _supply(by_id, a, b)


def _quotas(supplies: dict[str, int], n: int, seed: int, protocol: str) -> dict[str, int]:
    """Equal share per identity, capped by supply (water-filling); remainder to hashed ids.

    Equivalent to ranking every genuine pair by (its rank inside its identity, hash of the
    identity) and keeping the ``n`` first: an identity's share only depends on the level, so
    a refresh moves at most one "round" of pairs per identity.
    """
    ids = [i for i, s in supplies.items() if s > 0]
    total = sum(supplies[i] for i in ids)
    if n >= total:
        return {i: supplies[i] for i in ids}
    lo, hi = 0, max(supplies[i] for i in ids)
    while lo < hi:  # largest t with sum(min(s, t)) <= n
        mid = (lo + hi + 1) // 2
        if sum(min(supplies[i], mid) for i in ids) <= n:
            lo = mid
        else:
            hi = mid - 1
    q = {i: min(supplies[i], lo) for i in ids}
    rest = n - sum(q.values())
    room = sorted((i for i in ids if supplies[i] > lo), key=lambda i: (_h64(seed, protocol, "verif-quota", i), i))
    for i in room[:rest]:
        q[i] += 1
    return q


def _row(protocol, r1, r2, issame):
    out = {
        "protocol": protocol,
        "path1": r1["path"],
        "path2": r2["path"],
        "issame": bool(issame),
        "identity1": r1["identity_id"],
        "identity2": r2["identity_id"],
    }
    for n, r in (("1", r1), ("2", r2)):
        out[f"video_id{n}"] = r["video_id"]
        out[f"clip_id{n}"] = r.get("clip_id") or r["video_id"]
        out[f"frame_index{n}"] = int(r["frame_index"])
        out[f"face_index{n}"] = int(r["face_index"])
        out[f"bin{n}"] = r.get("bin", r.get("label"))
    return out


def _window_pairs(ia: np.ndarray, ib: np.ndarray, hashes: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (i, j), i in ``ia``, j in ``ib``, whose impostor score ``(h_i + h_j) mod 2**64`` is
    below ``limit`` (a Python int; ``>= 2**64`` means every pair).

    ``h_j`` lies in the window ``[-h_i, -h_i + limit)`` (mod 2**64): two binary searches per ``i``
    in the sorted ``h`` of ``ib``; O((|ia| + |ib|) log |ib| + output).
    """
    empty = np.zeros(0, np.int64)
    if len(ia) == 0 or len(ib) == 0:
        return empty, empty
    ib_sorted = ib[np.argsort(hashes[ib], kind="stable")]
    hb = hashes[ib_sorted]
    if limit >= 1 << 64:
        return np.repeat(ia, len(ib)), np.tile(ib_sorted, len(ia))
    with np.errstate(over="ignore"):
        lo = np.uint64(0) - hashes[ia]  # -h_i mod 2**64
        end = lo + np.uint64(limit)  # exclusive, mod 2**64
    wraps = end < lo  # window runs past 2**64: [lo, 2**64) and [0, end)
    s1 = np.searchsorted(hb, lo, side="left")
    e1 = np.where(wraps, len(hb), np.searchsorted(hb, end, side="left"))
    e2 = np.where(wraps, np.searchsorted(hb, end, side="left"), 0)
    starts = np.concatenate([s1, np.zeros(len(ia), np.int64)]).astype(np.int64)
    counts = np.maximum(np.concatenate([e1, e2]).astype(np.int64) - starts, 0)
    total = int(counts.sum())
    if total == 0:
        return empty, empty
    p1 = np.repeat(np.concatenate([ia, ia]), counts)
    offs = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    p2 = ib_sorted[np.repeat(starts, counts) + offs]
    return p1.astype(np.int64), p2.astype(np.int64)


def _impostors(
    ia: np.ndarray, ib: np.ndarray, same_side: bool, ident: np.ndarray, hashes: np.ndarray, k: int, supply: int
) -> list[tuple[int, int]]:
    """The ``k`` impostor pairs with the lowest score ``(h_i + h_j) mod 2**64`` (ties: the
    smaller row index pair), never two samples of one identity, each unordered pair once.

    The score is a property of the pair alone, so the result is the bottom-k of a fixed ranking:
    new samples can only push old pairs out by bringing pairs with a lower score.  The search
    widens a score window (start: the expected k-th score with a margin, x4 per miss) and finds
    the window's pairs by binary search; cost O(n log n + pairs in the window) per round, about
    O(n log n + k) in all, against O(n^2) for enumerating the pairs (when most pairs are
    genuine, i.e. very few identities, the window also holds ~total/supply times more genuine
    pairs that are filtered out).
    """
    k = min(int(k), int(supply))
    if k <= 0:
        return []
    # expected accepted pairs under a window of width T: supply * T / 2**64 (same side: each pair seen twice)
    limit = int((1 << 64) * min(1.0, 1.5 * k / supply)) + (1 << 40)
    while True:
        p1, p2 = _window_pairs(ia, ib, hashes, limit)
        keep = ident[p1] != ident[p2]
        if same_side:
            keep &= p1 < p2
        p1, p2 = p1[keep], p2[keep]
        if len(p1) >= k or limit >= 1 << 64:
            break
        limit *= 4
    if not same_side:
        lo, hi = np.minimum(p1, p2), np.maximum(p1, p2)
    else:
        lo, hi = p1, p2
    with np.errstate(over="ignore"):
        score = hashes[p1] + hashes[p2]
    order = np.lexsort((hi, lo, score))[:k]
    return list(zip(p1[order].tolist(), p2[order].tolist()))


def make_pairs(
    samples: Iterable[Mapping[str, Any]],
    protocol: str,
    n_pairs: int = 20_000,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """``n_pairs`` verification pairs (half genuine, half impostor) for ``protocol`` in f2f/f2p/p2p.

    ``samples``: rows of :func:`sample_verification_faces` (needs identity_id, video_id,
    frame_index, face_index, path, and ``frontal`` or ``bin``/``label``; ``clip_id`` optional).
    Returns rows (genuine first, then impostor, each in a seeded order):
    protocol, path1, path2, issame (bool), identity1, identity2, video_id1, clip_id1,
    frame_index1, face_index1, bin1, video_id2, clip_id2, frame_index2, face_index2, bin2.
    For f2p image 1 is the frontal one.  Fewer rows than ``n_pairs`` when the data cannot
    supply enough unique pairs (logged as a warning).

    Every pair is picked from a fixed ranking that depends only on (seed, protocol) and the
    two faces, never on the rest of the sample set, so a refresh that adds samples keeps every
    old pair while the supply is short of ``n_pairs`` and otherwise swaps out only the pairs
    that new, better-ranked pairs (or a lower per-identity genuine quota) push out.
    Cost: genuine O(sum over identities of m_i^2) (vectorised), impostor O(n log n + n_pairs).
    """
    rows, by_id, hashes = _prepare(samples, seed, protocol)
    a, b = _SIDES[protocol]
    n_gen = int(n_pairs) // 2
    n_imp = int(n_pairs) - n_gen
    clip_names = [str(r.get("clip_id") or r["video_id"]) for r in rows]
    clip_code = {c: k for k, c in enumerate(sorted(set(clip_names)))}
    clip = np.array([clip_code[c] for c in clip_names], dtype=np.int64)
    id_names = sorted(by_id)
    id_code = {c: k for k, c in enumerate(id_names)}
    ident = np.zeros(len(rows), dtype=np.int64)
    for name, idx in by_id.items():
        ident[idx[True] + idx[False]] = id_code[name]

    # ---- genuine: per-identity quota; inside an identity cross-clip pairs first, then by pair hash
    supplies = {i: _genuine_supply((a, b), idx) for i, idx in by_id.items()}
    quotas = _quotas(supplies, n_gen, seed, protocol)
    genuine: list[tuple[int, int]] = []
    for name in sorted(quotas):
        q = quotas[name]
        if q <= 0:
            continue
        ia = np.asarray(by_id[name][a], dtype=np.int64)
        if a == b:
            u, v = np.triu_indices(len(ia), 1)
            p1, p2 = ia[u], ia[v]
        else:
            ib = np.asarray(by_id[name][b], dtype=np.int64)
            p1, p2 = np.repeat(ia, len(ib)), np.tile(ib, len(ia))
        same_clip = (clip[p1] == clip[p2]).astype(np.int64)
        h1, h2 = hashes[p1], hashes[p2]
        with np.errstate(over="ignore"):
            ph = _splitmix(np.minimum(h1, h2) ^ _splitmix(np.maximum(h1, h2)))
        lo, hi = np.minimum(p1, p2), np.maximum(p1, p2)
        order = np.lexsort((hi, lo, ph, same_clip))[:q]
        genuine.extend(zip(p1[order].tolist(), p2[order].tolist()))

    # ---- impostor: the n_imp lowest-score pairs of two identities
    ia_all = np.array(sorted(i for idx in by_id.values() for i in idx[a]), dtype=np.int64)
    ib_all = ia_all if a == b else np.array(sorted(i for idx in by_id.values() for i in idx[b]), dtype=np.int64)
    sup = _supply(by_id, a, b)
    impostor = _impostors(ia_all, ib_all, a == b, ident, hashes, n_imp, sup["impostor"])

    if len(genuine) < n_gen or len(impostor) < n_imp:
        log.warning(
            "%s: asked for %d genuine + %d impostor pairs, the samples supply %d + %d unique pairs",
            protocol, n_gen, n_imp, len(genuine), len(impostor),
        )

    def ordered(i: int, j: int) -> tuple[int, int]:
        if a != b:  # f2p: the frontal image first
            fi = bool(rows[i].get("frontal", rows[i].get("bin", rows[i].get("label")) == FRONTAL))
            return (i, j) if fi == a else (j, i)
        return (i, j) if (hashes[i], i) <= (hashes[j], j) else (j, i)

    out = []
    for i, j in genuine:
        i, j = ordered(i, j)
        out.append(_row(protocol, rows[i], rows[j], True))
    for i, j in impostor:
        i, j = ordered(i, j)
        out.append(_row(protocol, rows[i], rows[j], False))
    return out


def write_pairs_tsv(rows: Iterable[Mapping[str, Any]], path: str | os.PathLike) -> int:
    """Write ``path1<TAB>path2<TAB>issame`` lines (issame as 1/0, no header), atomically.

    Returns the number of lines.  Paths are written as stored (relative to the export root).
    """
    path = os.fspath(path)
    d = os.path.dirname(path) or "."
    os.makedirs(d, exist_ok=True)
    tmp = os.path.join(d, f".{os.path.basename(path)}.tmp{os.getpid()}")
    n = 0
    with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        for r in rows:
            p1, p2 = str(r["path1"]), str(r["path2"])
            if "\t" in p1 or "\t" in p2 or "\n" in p1 or "\n" in p2:
                raise ValueError(f"a path holds a tab or newline: {p1!r} / {p2!r}")
            fh.write(f"{p1}\t{p2}\t{1 if bool(r['issame']) else 0}\n")
            n += 1
    os.replace(tmp, path)
    return n
