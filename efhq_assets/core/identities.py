"""Face-track identities within one source: the mapping EFHQ never released (their issue #5).

What EFHQ did (docs/efhq.md, stage 2 "Identities"):

* VFHQ: identity = the whole YouTube video, even when it shows several people
  (genuine-pair noise in the verification benchmark);
* CelebV: identity = the clip ``<ytid>_<n>``, so one person in two clips is two
  "identities" (impostor-pair noise);
* reenactment only: "LightFace" (``4_building/reenactment/verify.py``) greedily
  clusters faces, comparing each with up to 5 *random* members of each cluster
  and joining the *first* cluster with a majority of matches, ids ``id<8 digits>``
  in processing order.  Random, order dependent, and with swapped eyes / mixed
  crop axes in the reference faces.

What this module does instead (deterministic, no randomness, order independent):

* The unit is a **face track** (``video_id``, ``track_id``), embedded once by
  :func:`track_embedding` (mean of L2-normalised face embeddings, trimmed of the
  faces farthest from the mean, renormalised).
* Tracks are clustered **within each source** (one YouTube id), across all
  videos/clips of that source, by agglomerative clustering (average linkage by
  default, ``complete`` available) on the euclidean distance of unit vectors,
  cut at the embedder's same-person threshold (dlib ResNet, normalised: 0.4 =
  ``DlibResNetEmbedder.same_person_threshold``; cosine distance = d**2 / 2).
* **Different sources never share an identity** (the default, matching EFHQ's
  per-source notion of identity).  Linking the same celebrity across YouTube
  videos is not attempted.

Stability (ids never move once written):

* A track already in ``existing`` keeps its ``identity_id``, always.
* A new track joins the closest existing identity of its source when its
  distance to that identity's centroid (normalised mean of the member track
  embeddings that are known before this call) is within the threshold.
* A new track within the threshold of **two or more** existing identities
  bridges them: a merge row ``(identity_id, merged_into, reason)`` is recorded.
  No existing row is renumbered; readers resolve ids with :func:`resolve_merges`.
  The surviving id is the identity founded by the smallest track key
  ``(video_id, track_id)``.
* The remaining new tracks are clustered among themselves; a new cluster whose
  centroid is within the threshold of an existing identity joins it (same
  bridging rule), otherwise it founds a new identity.

Identity id scheme: ``f"{source_id}+i{h}"`` where ``h`` is the first 10 hex
digits of sha1 over the sorted founding member keys (``"video_id\\ttrack_id"``
lines).  It depends only on *which* tracks founded the identity, never on input
order, and a later call (more videos) never changes an id already handed out.
Only ``[A-Za-z0-9_+.-]`` characters are used (given a safe source id), so an id
is also a safe file/folder name (``core.ids.is_safe_id``).  On the (practically
impossible) collision with an id already in use the hash is lengthened.

Embeddings of existing identities: centroids are computed from the entries of
``tracks`` whose key is in ``existing``.  Pass the embeddings of every track of
the affected sources (old and new); an existing identity none of whose tracks
is passed cannot attract new tracks (it keeps its rows, it is just not matched).
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from typing import Hashable, Iterable, Mapping, NamedTuple, Sequence

import numpy as np

__all__ = [
    "DEFAULT_THRESHOLD",
    "IdentityRow",
    "MergeRow",
    "TrackEmb",
    "assign_identities",
    "identity_id_for",
    "identity_rows",
    "method_name",
    "pairwise_precision_recall",
    "resolve_merges",
    "track_embedding",
]

# dlib ResNet on L2-normalised vectors (DlibResNetEmbedder.same_person_threshold).
# Measured on t1.jpg + astronaut with augmented crops: same person 0.03-0.22 per
# face, different people 0.40-0.66 per face, 0.43-0.62 between track embeddings.
DEFAULT_THRESHOLD = 0.4
DEFAULT_EMBEDDER = "dlib_resnet"
LINKAGES = ("average", "complete")
_HASH_LEN = 10

TrackKey = tuple  # (video_id, track_id)


class TrackEmb(NamedTuple):
    """One face track of one video, embedded with :func:`track_embedding`."""

    video_id: str
    track_id: int
    source_id: str
    embedding: np.ndarray
    n_faces: int = 1


class IdentityRow(NamedTuple):
    """A row of the ``identities`` table (one per face track)."""

    video_id: str
    track_id: int
    identity_id: str
    source_id: str = ""
    n_faces: int = 0
    method: str = ""
    distance_to_centroid: float = float("nan")


class MergeRow(NamedTuple):
    """``identity_id`` is the same person as ``merged_into`` (never renumbered, only recorded)."""

    identity_id: str
    merged_into: str
    reason: str


# --------------------------------------------------------------------------- #
# per-track embedding
# --------------------------------------------------------------------------- #
def _unit_rows(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(n, 1e-12)


def track_embedding(face_embeddings: np.ndarray, trim: float = 0.1) -> np.ndarray:
    """Robust (D,) unit embedding of one track from its (N, D) face embeddings.

    Each face embedding is L2-normalised, rows that are non-finite or zero are
    dropped, and the normalised mean is taken.  With ``trim > 0`` the
    ``floor(trim * N)`` faces farthest from that mean (occluded, blurred, a
    tracker switch) are dropped and the mean recomputed; below ``1 / trim``
    faces nothing is trimmed.  Ties are broken by face order, so the result is
    deterministic.  Raises ValueError when no usable face is left.
    """
    e = np.asarray(face_embeddings, dtype=np.float64)
    if e.ndim == 1:
        e = e[None, :]
    if e.ndim != 2 or e.shape[0] == 0:
        raise ValueError(f"track_embedding needs an (N, D) array with N >= 1, got shape {e.shape}")
    if not 0.0 <= trim < 1.0:
        raise ValueError(f"trim must be in [0, 1), got {trim}")
    norms = np.linalg.norm(e, axis=1)
    ok = np.isfinite(e).all(axis=1) & np.isfinite(norms) & (norms > 1e-12)
    if not ok.any():
        raise ValueError("track_embedding: no finite, non-zero face embedding in the track")
    u = e[ok] / norms[ok, None]
    mean = u.mean(axis=0)
    n_drop = int(math.floor(trim * len(u)))
    if n_drop > 0:
        m = mean / max(np.linalg.norm(mean), 1e-12)
        d = np.linalg.norm(u - m, axis=1)
        keep = np.sort(np.argsort(d, kind="stable")[: len(u) - n_drop])
        mean = u[keep].mean(axis=0)
    norm = np.linalg.norm(mean)
    if norm < 1e-12:
        raise ValueError("track_embedding: face embeddings cancel out (mean is zero)")
    return (mean / norm).astype(np.float32)


# --------------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------------- #
def method_name(embedder: str = DEFAULT_EMBEDDER, threshold: float = DEFAULT_THRESHOLD, linkage: str = "average") -> str:
    """The ``method`` column: embedder name, threshold and linkage, e.g. ``dlib_resnet@0.400/average``."""
    return f"{embedder}@{float(threshold):.3f}/{linkage}"


def _key(video_id: str, track_id) -> TrackKey:
    return (str(video_id), int(track_id))


def identity_id_for(source_id: str, member_keys: Iterable[TrackKey], taken: Iterable[str] = (), length: int = _HASH_LEN) -> str:
    """``f"{source_id}+i{sha1(sorted founding keys)[:length]}"``, lengthened if already in ``taken``."""
    keys = sorted({_key(v, t) for v, t in member_keys})
    if not keys:
        raise ValueError("identity_id_for needs at least one member key")
    digest = hashlib.sha1("\n".join(f"{v}\t{t}" for v, t in keys).encode("utf-8", "surrogatepass")).hexdigest()
    taken = set(taken)
    for n in (length, 16, 24, 40):
        ident = f"{source_id}+i{digest[:n]}"
        if ident not in taken:
            return ident
    # Same founding keys twice (cannot happen for disjoint clusters): disambiguate by a counter.
    k = 2
    while f"{source_id}+i{digest}-{k}" in taken:
        k += 1
    return f"{source_id}+i{digest}-{k}"


def resolve_merges(merges: Iterable[MergeRow | Sequence[str]]) -> dict[str, str]:
    """Map every merged identity id to its final surviving id (follows chains; cycles are broken
    deterministically by the smallest id).  Ids that were never merged are absent: use
    ``resolved.get(i, i)``."""
    parent: dict[str, str] = {}
    for m in merges:
        a, b = str(m[0]), str(m[1])
        if a != b:
            parent[a] = b
    out: dict[str, str] = {}
    for start in sorted(parent):
        seen = [start]
        cur = parent[start]
        while cur in parent and cur not in seen:
            seen.append(cur)
            cur = parent[cur]
        if cur in seen:  # cycle: pick its smallest member as the root
            cycle = seen[seen.index(cur):]
            cur = min(cycle)
        for s in seen:
            if s != cur:
                out[s] = cur
    return out


def _centroid(vectors: np.ndarray) -> np.ndarray:
    m = np.asarray(vectors, dtype=np.float64).mean(axis=0)
    return m / max(np.linalg.norm(m), 1e-12)


def _cluster(emb: np.ndarray, threshold: float, linkage: str) -> np.ndarray:
    """Agglomerative cluster labels (0..k-1, numbered by first row) cut at ``threshold``."""
    n = len(emb)
    if n == 0:
        return np.zeros(0, np.int64)
    if n == 1:
        return np.zeros(1, np.int64)
    from scipy.cluster.hierarchy import fcluster, linkage as sp_linkage
    from scipy.spatial.distance import pdist

    d = pdist(np.asarray(emb, np.float64), metric="euclidean")
    z = sp_linkage(d, method=linkage)
    raw = fcluster(z, t=float(threshold), criterion="distance")
    # renumber by first occurrence so labels do not depend on scipy's numbering
    relabel: dict[int, int] = {}
    return np.array([relabel.setdefault(int(r), len(relabel)) for r in raw], np.int64)


# --------------------------------------------------------------------------- #
# assignment
# --------------------------------------------------------------------------- #
def assign_identities(
    tracks: Sequence[TrackEmb],
    existing: Sequence[IdentityRow] = (),
    threshold: float = DEFAULT_THRESHOLD,
    *,
    linkage: str = "average",
    existing_merges: Sequence[MergeRow] = (),
    method: str | None = None,
) -> tuple[list[IdentityRow], list[MergeRow]]:
    """Assign an identity to every track; see the module docstring for the rules.

    ``tracks``: every track to place, old and new (old = key present in
    ``existing``), with unit embeddings.  ``existing``: rows written before;
    their ``identity_id`` is kept verbatim.  ``existing_merges``: merges written
    before (merged identities are treated as one).  ``threshold``: euclidean
    distance on unit vectors (the embedder's ``same_person_threshold``).

    Returns ``(rows, merges)``: the full ``identities`` table (one row per track
    in ``tracks`` plus existing rows without an embedding, copied unchanged),
    sorted by (source_id, video_id, track_id), and the *new* merge rows.
    Deterministic and independent of the order of ``tracks`` and ``existing``.
    """
    if linkage not in LINKAGES:
        raise ValueError(f"linkage must be one of {LINKAGES}, got {linkage!r}")
    threshold = float(threshold)
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    method = method_name(DEFAULT_EMBEDDER, threshold, linkage) if method is None else method

    by_key: dict[TrackKey, TrackEmb] = {}
    for t in tracks:
        k = _key(t.video_id, t.track_id)
        if k in by_key:
            raise ValueError(f"duplicate track {k} in tracks")
        emb = np.asarray(t.embedding, dtype=np.float64).reshape(-1)
        if emb.size == 0 or not np.isfinite(emb).all() or np.linalg.norm(emb) < 1e-12:
            raise ValueError(f"track {k}: embedding is empty, non-finite or zero")
        by_key[k] = t

    old: dict[TrackKey, IdentityRow] = {}
    for r in existing:
        k = _key(r.video_id, r.track_id)
        if k in old and old[k].identity_id != r.identity_id:
            raise ValueError(f"existing rows give track {k} two identities: {old[k].identity_id!r}, {r.identity_id!r}")
        old[k] = r
    merged = resolve_merges(existing_merges)
    all_ids = {r.identity_id for r in old.values()} | set(merged) | set(merged.values())

    assignment: dict[TrackKey, str] = {k: r.identity_id for k, r in old.items()}
    new_merges: list[MergeRow] = []

    def source_of(k: TrackKey) -> str:
        if k in by_key:
            return str(by_key[k].source_id)
        return str(old[k].source_id)

    sources = sorted({str(t.source_id) for t in by_key.values()})
    for src in sources:
        new_keys = sorted(k for k, t in by_key.items() if str(t.source_id) == src and k not in old)
        if not new_keys:
            continue
        # -- existing identities of this source, as canonical groups ---------------- #
        members: dict[str, list[TrackKey]] = {}  # canonical id -> member keys (all existing rows)
        for k, r in old.items():
            if source_of(k) != src:
                continue
            members.setdefault(merged.get(r.identity_id, r.identity_id), []).append(k)
        founder = {i: min(ks) for i, ks in members.items()}  # oldest track key per identity
        canon_ids = sorted(i for i, ks in members.items() if any(k in by_key for k in ks))
        cents = (
            np.stack([_centroid(_unit_rows(np.stack([np.asarray(by_key[k].embedding, np.float64).reshape(-1)
                                                    for k in sorted(members[i]) if k in by_key])))
                      for i in canon_ids])
            if canon_ids else np.zeros((0, 1))
        )
        # union-find over canonical ids of this source; root = smallest founder key
        root: dict[str, str] = {i: i for i in members}

        def find(i: str) -> str:
            while root[i] != i:
                i = root[i]
            return i

        def union(ids: list[str], reason: str) -> str:
            roots = sorted({find(i) for i in ids}, key=lambda i: (founder[i], i))
            winner = roots[0]
            for loser in roots[1:]:
                root[loser] = winner
                new_merges.append(MergeRow(loser, winner, reason))
            return winner

        def match(vec: np.ndarray) -> list[tuple[float, str]]:
            if not canon_ids:
                return []
            d = np.linalg.norm(cents - vec[None, :], axis=1)
            return sorted((float(d[j]), canon_ids[j]) for j in range(len(canon_ids)) if d[j] <= threshold)

        def place(hits: list[tuple[float, str]], what: str) -> str:
            """Identity for a track/cluster that matches ``hits`` (closest first)."""
            if len(hits) == 1:
                return hits[0][1]
            dists = ", ".join(f"{i} d={d:.3f}" for d, i in hits)
            return union([i for _, i in hits], f"{what} within {threshold:.3f} of {dists}")

        vec = {k: _unit_rows(np.asarray(by_key[k].embedding, np.float64).reshape(1, -1))[0] for k in new_keys}
        pending: list[tuple[TrackKey, str]] = []  # (key, identity before final root resolution)
        unmatched: list[TrackKey] = []
        # -- step 1: each new track against the existing identities ----------------- #
        for k in new_keys:
            hits = match(vec[k])
            if hits:
                pending.append((k, place(hits, f"track {k[0]}:{k[1]}")))
            else:
                unmatched.append(k)
        # -- step 2: cluster the rest; a cluster joins an identity or founds one ---- #
        if unmatched:
            labels = _cluster(np.stack([vec[k] for k in unmatched]), threshold, linkage)
            for lab in range(int(labels.max()) + 1):
                ks = [unmatched[j] for j in np.flatnonzero(labels == lab)]
                hits = match(_centroid(np.stack([vec[k] for k in ks])))
                if hits:
                    ident = place(hits, f"cluster of {len(ks)} new track(s) from {ks[0][0]}:{ks[0][1]}")
                else:
                    ident = identity_id_for(src, ks, taken=all_ids)
                    all_ids.add(ident)
                pending.extend((k, ident) for k in ks)
        for k, ident in pending:
            assignment[k] = find(ident) if ident in root else ident

    rows = identity_rows(list(by_key.values()), assignment, merges=[*existing_merges, *new_merges], method=method)
    have = {(r.video_id, r.track_id) for r in rows}
    for k, r in old.items():  # existing rows without an embedding: copied unchanged
        if k not in have:
            rows.append(r)
    rows.sort(key=lambda r: (str(r.source_id), str(r.video_id), int(r.track_id)))
    return rows, new_merges


def identity_rows(
    tracks: Sequence[TrackEmb],
    assignment: Mapping[TrackKey, str],
    *,
    merges: Sequence[MergeRow] = (),
    method: str = "",
) -> list[IdentityRow]:
    """``identities`` table rows for ``tracks`` given ``assignment[(video_id, track_id)] -> identity_id``.

    ``distance_to_centroid`` is the euclidean distance of the track's unit
    embedding to the centroid of its identity after resolving ``merges``
    (normalised mean of the member track embeddings in ``tracks``).  Rows are
    sorted by (source_id, video_id, track_id).
    """
    resolved = resolve_merges(merges)
    keys = sorted(_key(t.video_id, t.track_id) for t in tracks)
    by_key = {_key(t.video_id, t.track_id): t for t in tracks}
    missing = [k for k in keys if k not in assignment]
    if missing:
        raise ValueError(f"no identity for track(s) {missing[:5]}")
    vec = {k: _unit_rows(np.asarray(by_key[k].embedding, np.float64).reshape(1, -1))[0] for k in keys}
    groups: dict[tuple[str, str], list[TrackKey]] = {}
    for k in keys:
        ident = assignment[k]
        groups.setdefault((str(by_key[k].source_id), resolved.get(ident, ident)), []).append(k)
    cent = {g: _centroid(np.stack([vec[k] for k in ks])) for g, ks in groups.items()}
    rows = []
    for k in keys:
        t = by_key[k]
        ident = assignment[k]
        c = cent[(str(t.source_id), resolved.get(ident, ident))]
        rows.append(
            IdentityRow(
                video_id=k[0],
                track_id=k[1],
                identity_id=ident,
                source_id=str(t.source_id),
                n_faces=int(t.n_faces),
                method=method,
                distance_to_centroid=round(float(np.linalg.norm(vec[k] - c)), 6),
            )
        )
    rows.sort(key=lambda r: (r.source_id, r.video_id, r.track_id))
    return rows


# --------------------------------------------------------------------------- #
# benchmark metric
# --------------------------------------------------------------------------- #
def pairwise_precision_recall(pred: Mapping[Hashable, Hashable], truth: Mapping[Hashable, Hashable]) -> tuple[float, float]:
    """Pairwise precision and recall of a clustering over the keys present in both maps.

    A pair of keys is positive when both share a label.  precision = pairs
    together in both / pairs together in ``pred``; recall = pairs together in
    both / pairs together in ``truth``.  A side with no positive pair scores
    1.0 (nothing claimed, nothing missed).  Resolve merged identity ids
    (:func:`resolve_merges`) before scoring.
    """
    keys = [k for k in pred if k in truth]

    def pairs(counter: Counter) -> int:
        return sum(n * (n - 1) // 2 for n in counter.values())

    tp = pairs(Counter((pred[k], truth[k]) for k in keys))
    pp = pairs(Counter(pred[k] for k in keys))
    tt = pairs(Counter(truth[k] for k in keys))
    precision = tp / pp if pp else 1.0
    recall = tp / tt if tt else 1.0
    return float(precision), float(recall)
