"""Track identities on real photos (no mocks): clustering, stable ids, merges, metric.

Seven real people: the six faces of insightface's t1.jpg and skimage's astronaut
(read at run time from the installed packages, never copied into the repo).  A
synthetic "track" of a person is a few augmented crops of that face (scale,
shift, brightness jitter, horizontal flip), embedded with dlib's ResNet
(L2-normalised) and pooled with ``track_embedding``.
"""

from __future__ import annotations

import itertools
import random
import subprocess
import sys

import numpy as np
import pytest

from efhq_assets.core.identities import (
    DEFAULT_THRESHOLD,
    IdentityRow,
    MergeRow,
    TrackEmb,
    assign_identities,
    identity_id_for,
    identity_rows,
    method_name,
    pairwise_precision_recall,
    resolve_merges,
    track_embedding,
)
from efhq_assets.core.ids import is_safe_id

cv2 = pytest.importorskip("cv2")
pytest.importorskip("dlib")

N_PEOPLE = 7
N_SLOTS = 4  # distinct tracks per person (each a different set of augmentations)
FACES_PER_TRACK = 3


def _augment(img: np.ndarray, box: np.ndarray, scale: float, shift: tuple[float, float], gain: float, flip: bool):
    """Crop around the face (1x margin), jitter brightness / scale / box shift, optionally flip."""
    x1, y1, x2, y2 = [float(v) for v in box]
    w, h = x2 - x1, y2 - y1
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    X1, X2 = int(max(0, cx - w)), int(min(img.shape[1], cx + w))
    Y1, Y2 = int(max(0, cy - h)), int(min(img.shape[0], cy + h))
    crop = np.clip(img[Y1:Y2, X1:X2].astype(np.float32) * gain, 0, 255).astype(np.uint8)
    crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    dx, dy = shift
    nb = np.array([(x1 - X1) * scale + dx, (y1 - Y1) * scale + dy, (x2 - X1) * scale + dx, (y2 - Y1) * scale + dy], np.float32)
    if flip:
        crop = np.ascontiguousarray(crop[:, ::-1])
        W = crop.shape[1]
        nb = np.array([W - nb[2], nb[1], W - nb[0], nb[3]], np.float32)
    return crop, nb


@pytest.fixture(scope="module")
def people():
    """emb[p][slot] = track embedding (unit, 128-D) of person p; faces[p] = per-face embeddings."""
    from efhq_assets.core.models.dlib68 import DlibResNetEmbedder
    from efhq_assets.core.models.mtcnn import MtcnnDetector
    from efhq_assets.core.models.sample_images import astronaut_bgr, insightface_t1_bgr

    det = MtcnnDetector()
    embedder = DlibResNetEmbedder()
    assert embedder.same_person_threshold == DEFAULT_THRESHOLD
    t1, astro = insightface_t1_bgr(), astronaut_bgr()
    d_t1 = sorted(det.detect([t1])[0], key=lambda d: float(d.box[0]))
    d_astro = det.detect([astro])[0]
    assert len(d_t1) == 6 and len(d_astro) >= 1
    sources = [(t1, d.box) for d in d_t1] + [(astro, max(d_astro, key=lambda d: d.score).box)]
    rng = np.random.default_rng(1234)
    track_emb, face_emb = [], []
    for img, box in sources:
        per_slot, per_face = [], []
        for slot in range(N_SLOTS):
            e = []
            for f in range(FACES_PER_TRACK):
                crop, nb = _augment(
                    img, box,
                    scale=float(rng.uniform(0.85, 1.2)),
                    shift=tuple(rng.uniform(-4, 4, 2)),
                    gain=float(rng.uniform(0.8, 1.2)),
                    flip=(slot + f) % 2 == 1,
                )
                e.append(embedder.embed(crop, [nb])[0])
            e = np.stack(e)
            per_face.append(e)
            per_slot.append(track_embedding(e))
        track_emb.append(per_slot)
        face_emb.append(np.concatenate(per_face))
    return {"track": track_emb, "face": face_emb}


def _tracks(people, source: str, video: str, persons: list[int], slot: int, first_track: int = 0) -> list[TrackEmb]:
    return [
        TrackEmb(video, first_track + i, source, people["track"][p][slot], FACES_PER_TRACK)
        for i, p in enumerate(persons)
    ]


def _ids(rows) -> dict[tuple[str, int], str]:
    return {(r.video_id, r.track_id): r.identity_id for r in rows}


# --------------------------------------------------------------------------- #
# embeddings and distances on the real photos
# --------------------------------------------------------------------------- #
def test_measured_distances_separate_people(people):
    faces = people["face"]
    same = [float(np.linalg.norm(a - b)) for f in faces for a, b in itertools.combinations(f, 2)]
    diff = [float(np.linalg.norm(a - b)) for f, g in itertools.combinations(faces, 2) for a in f for b in g]
    tr = people["track"]
    t_same = [float(np.linalg.norm(a - b)) for p in tr for a, b in itertools.combinations(p, 2)]
    t_diff = [float(np.linalg.norm(a - b)) for p, q in itertools.combinations(tr, 2) for a in p for b in q]
    msg = (f"faces: same {min(same):.3f}-{max(same):.3f}, different {min(diff):.3f}-{max(diff):.3f}; "
           f"tracks: same {min(t_same):.3f}-{max(t_same):.3f}, different {min(t_diff):.3f}-{max(t_diff):.3f}")
    print(msg)
    assert max(same) < DEFAULT_THRESHOLD, msg
    assert max(t_same) < DEFAULT_THRESHOLD < min(t_diff), msg


def test_track_embedding_is_robust_and_unit():
    rng = np.random.default_rng(0)
    base = rng.normal(size=128)
    base /= np.linalg.norm(base)
    faces = base + 0.05 * rng.normal(size=(10, 128))
    faces *= rng.uniform(0.5, 2.0, size=(10, 1))  # unnormalised input is normalised per face
    outlier = -base  # a tracker switch / garbage face
    with_outlier = np.vstack([faces, outlier[None]])
    e_clean = track_embedding(faces, trim=0.0)
    e_trim = track_embedding(with_outlier, trim=0.1)  # 11 faces -> drops 1, the outlier
    e_plain = track_embedding(with_outlier, trim=0.0)
    assert e_clean.dtype == np.float32 and e_clean.shape == (128,)
    assert abs(np.linalg.norm(e_trim) - 1) < 1e-5
    assert np.linalg.norm(e_trim - e_clean) < 1e-6
    assert np.linalg.norm(e_plain - e_clean) > np.linalg.norm(e_trim - e_clean)
    # non-finite / zero rows are dropped, a single face is its own unit vector
    bad = np.vstack([faces[:3], np.full((1, 128), np.nan), np.zeros((1, 128))])
    assert np.allclose(track_embedding(bad, trim=0), track_embedding(faces[:3], trim=0), atol=1e-6)
    assert np.allclose(track_embedding(faces[0]), faces[0] / np.linalg.norm(faces[0]), atol=1e-6)
    assert np.array_equal(track_embedding(with_outlier), track_embedding(with_outlier))  # deterministic
    for junk in (np.zeros((0, 128)), np.full((2, 128), np.nan), np.zeros((3, 128))):
        with pytest.raises(ValueError):
            track_embedding(junk)
    with pytest.raises(ValueError):
        track_embedding(faces, trim=1.0)


# --------------------------------------------------------------------------- #
# clustering one source
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("linkage", ["average", "complete"])
def test_same_person_across_clips_clusters_and_people_stay_apart(people, linkage):
    # two "videos" of one source: every person appears once in each, in a different track order
    tracks = _tracks(people, "ytA", "ytA_0001", list(range(N_PEOPLE)), slot=0) + _tracks(
        people, "ytA", "ytA_0002", list(reversed(range(N_PEOPLE))), slot=1, first_track=10
    )
    truth = {(t.video_id, t.track_id): p for t, p in zip(tracks, list(range(N_PEOPLE)) + list(reversed(range(N_PEOPLE))))}
    rows, merges = assign_identities(tracks, [], DEFAULT_THRESHOLD, linkage=linkage)
    assert merges == []
    pred = _ids(rows)
    assert pairwise_precision_recall(pred, truth) == (1.0, 1.0)
    assert len(set(pred.values())) == N_PEOPLE
    for r in rows:
        assert r.source_id == "ytA" and r.n_faces == FACES_PER_TRACK
        assert r.method == method_name("dlib_resnet", DEFAULT_THRESHOLD, linkage)
        assert 0 <= r.distance_to_centroid < DEFAULT_THRESHOLD / 2
        assert r.identity_id.startswith("ytA+i") and is_safe_id(r.identity_id)


def test_ids_are_order_independent(people):
    tracks = _tracks(people, "ytA", "v1", [0, 1, 2, 3, 4], slot=0) + _tracks(people, "ytA", "v2", [4, 2, 0, 5, 6], slot=1)
    tracks += _tracks(people, "ytB", "w1", [0, 1], slot=2)
    ref_rows, _ = assign_identities(tracks, [])
    rnd = random.Random(7)
    for _ in range(4):
        shuffled = tracks[:]
        rnd.shuffle(shuffled)
        rows, merges = assign_identities(shuffled, [])
        assert rows == ref_rows and merges == []
    # ... and also when existing rows come in another order
    first = [t for t in tracks if t.video_id == "v1"]
    existing, _ = assign_identities(first, [])
    a, _ = assign_identities(tracks, existing)
    b, _ = assign_identities(list(reversed(tracks)), list(reversed(existing)))
    assert a == b


def test_different_sources_never_share_an_identity(people):
    tracks = _tracks(people, "ytA", "a1", [0, 1], slot=0) + _tracks(people, "ytB", "b1", [0, 1], slot=1)
    rows, _ = assign_identities(tracks, [])
    ids = _ids(rows)
    assert ids[("a1", 0)] != ids[("b1", 0)] and ids[("a1", 1)] != ids[("b1", 1)]
    assert {r.identity_id.split("+i")[0] for r in rows if r.source_id == "ytB"} == {"ytB"}
    # a later track of person 0 in source B joins B's identity, not A's (even though A is also a match)
    later, merges = assign_identities(tracks + _tracks(people, "ytB", "b2", [0], slot=2), rows)
    assert _ids(later)[("b2", 0)] == ids[("b1", 0)] and merges == []


# --------------------------------------------------------------------------- #
# stability when videos are added
# --------------------------------------------------------------------------- #
def test_existing_ids_are_stable_and_new_tracks_join_or_found(people):
    batch1 = _tracks(people, "ytA", "v1", [0, 1, 2, 3], slot=0) + _tracks(people, "ytA", "v2", [3, 1, 0], slot=1)
    rows1, merges1 = assign_identities(batch1, [])
    assert merges1 == [] and len({r.identity_id for r in rows1}) == 4
    ids1 = _ids(rows1)
    person_id = {p: ids1[("v1", i)] for i, p in enumerate([0, 1, 2, 3])}

    # v3: two known people (1, 2) and two new ones (5, 6)
    batch2 = batch1 + _tracks(people, "ytA", "v3", [5, 2, 6, 1], slot=2)
    rows2, merges2 = assign_identities(batch2, rows1)
    ids2 = _ids(rows2)
    assert merges2 == []
    assert all(ids2[k] == v for k, v in ids1.items())  # nothing renumbered
    assert ids2[("v3", 1)] == person_id[2] and ids2[("v3", 3)] == person_id[1]
    new5, new6 = ids2[("v3", 0)], ids2[("v3", 2)]
    assert new5 != new6 and {new5, new6}.isdisjoint(person_id.values())
    # the new id is the hash of its founding member: independent of when it was founded
    assert new5 == identity_id_for("ytA", [("v3", 0)])

    # re-running with the written rows changes nothing (idempotent)
    rows3, merges3 = assign_identities(batch2, rows2)
    assert rows3 == rows2 and merges3 == []

    # existing rows whose embeddings are not passed are kept verbatim
    only_v3 = [t for t in batch2 if t.video_id == "v3"]
    rows4, _ = assign_identities(only_v3, rows2)
    assert {r for r in rows4 if r.video_id != "v3"} == {r for r in rows2 if r.video_id != "v3"}
    assert _ids(rows4) == ids2


def test_existing_assignment_wins_even_when_it_looks_wrong(people):
    # an earlier run (or a human) put person 1's track under person 0's id: it is never reassigned
    tracks = _tracks(people, "ytA", "v1", [0, 1], slot=0)
    existing = [IdentityRow("v1", 0, "ytA+imanual", "ytA"), IdentityRow("v1", 1, "ytA+imanual", "ytA")]
    rows, merges = assign_identities(tracks, existing)
    assert _ids(rows) == {("v1", 0): "ytA+imanual", ("v1", 1): "ytA+imanual"} and merges == []


def test_new_track_bridging_two_identities_records_a_merge(people):
    # an earlier run split person 0 into two identities (one per clip)
    old = _tracks(people, "ytA", "v1", [0, 1], slot=0) + _tracks(people, "ytA", "v2", [0], slot=1)
    existing = [
        IdentityRow("v1", 0, "ytA+iaaaa", "ytA"),
        IdentityRow("v1", 1, "ytA+ibbbb", "ytA"),
        IdentityRow("v2", 0, "ytA+icccc", "ytA"),
    ]
    new = _tracks(people, "ytA", "v3", [0, 1], slot=2)
    rows, merges = assign_identities(old + new, existing)
    ids = _ids(rows)
    # nothing renumbered
    assert ids[("v1", 0)] == "ytA+iaaaa" and ids[("v2", 0)] == "ytA+icccc" and ids[("v1", 1)] == "ytA+ibbbb"
    # one merge: the identity founded later (v2) into the one founded first (v1)
    assert [(m.identity_id, m.merged_into) for m in merges] == [("ytA+icccc", "ytA+iaaaa")]
    assert "v3:0" in merges[0].reason
    assert ids[("v3", 0)] == "ytA+iaaaa" and ids[("v3", 1)] == "ytA+ibbbb"
    resolved = resolve_merges(merges)
    canon = {k: resolved.get(v, v) for k, v in ids.items()}
    truth = {("v1", 0): 0, ("v2", 0): 0, ("v3", 0): 0, ("v1", 1): 1, ("v3", 1): 1}
    assert pairwise_precision_recall(canon, truth) == (1.0, 1.0)
    # distance_to_centroid is measured against the merged identity
    assert all(r.distance_to_centroid < DEFAULT_THRESHOLD / 2 for r in rows)

    # a later call that knows the merge neither repeats it nor splits the identity again
    more = _tracks(people, "ytA", "v4", [0], slot=3)
    rows2, merges2 = assign_identities(old + new + more, rows, existing_merges=merges)
    assert merges2 == [] and _ids(rows2)[("v4", 0)] == "ytA+iaaaa"
    assert all(_ids(rows2)[k] == v for k, v in ids.items())


# --------------------------------------------------------------------------- #
# ids, rows, merges, metric
# --------------------------------------------------------------------------- #
def test_identity_id_scheme():
    a = identity_id_for("ytA", [("v2", 3), ("v1", 0)])
    assert a == identity_id_for("ytA", [("v1", 0), ("v2", 3), ("v1", 0)])
    assert a.startswith("ytA+i") and len(a) == len("ytA+i") + 10 and is_safe_id(a)
    assert a != identity_id_for("ytB", [("v2", 3), ("v1", 0)])
    longer = identity_id_for("ytA", [("v2", 3), ("v1", 0)], taken={a})
    assert longer != a and longer.startswith(a) and len(longer) == len(a) + 6


def test_resolve_merges_follows_chains_and_cycles():
    merges = [MergeRow("c", "b", "x"), MergeRow("b", "a", "y"), MergeRow("e", "d", "z")]
    assert resolve_merges(merges) == {"c": "a", "b": "a", "e": "d"}
    assert resolve_merges([("p", "q"), ("q", "p")]) == {"q": "p"}


def test_identity_rows_and_bad_input():
    e0 = np.eye(4, dtype=np.float32)[0]
    tracks = [TrackEmb("v", 1, "s", e0, 5), TrackEmb("v", 0, "s", 2 * e0, 7)]
    rows = identity_rows(tracks, {("v", 0): "s+ix", ("v", 1): "s+ix"}, method="m")
    assert [(r.track_id, r.n_faces, r.method, r.distance_to_centroid) for r in rows] == [(0, 7, "m", 0.0), (1, 5, "m", 0.0)]
    with pytest.raises(ValueError, match="no identity"):
        identity_rows(tracks, {("v", 0): "s+ix"})
    with pytest.raises(ValueError, match="duplicate"):
        assign_identities(tracks + tracks[:1], [])
    with pytest.raises(ValueError, match="non-finite"):
        assign_identities([TrackEmb("v", 0, "s", np.full(4, np.nan))], [])
    with pytest.raises(ValueError, match="linkage"):
        assign_identities(tracks, [], linkage="single")
    assert assign_identities([], []) == ([], [])


def test_pairwise_precision_recall():
    truth = {"a": 1, "b": 1, "c": 1, "d": 2, "e": 2}
    assert pairwise_precision_recall(truth, truth) == (1.0, 1.0)
    # everything in one cluster: all 4 true pairs found, 4 of 10 predicted pairs right
    assert pairwise_precision_recall({k: 0 for k in truth}, truth) == (0.4, 1.0)
    # all singletons: nothing claimed (precision 1), nothing found (recall 0)
    assert pairwise_precision_recall({k: k for k in truth}, truth) == (1.0, 0.0)
    # c split off: pairs ab, de right; ac, bc missed
    p, r = pairwise_precision_recall({"a": "x", "b": "x", "c": "y", "d": "z", "e": "z"}, truth)
    assert (p, r) == (1.0, 0.5)
    # only keys present in both count; label values are arbitrary
    assert pairwise_precision_recall({"a": 9, "b": 9, "zz": 9}, {"a": "p", "b": "p"}) == (1.0, 1.0)


def test_module_imports_nothing_heavy():
    code = (
        "import sys, efhq_assets.core.identities\n"
        "bad = [m for m in ('dagster', 'polars', 'av', 'dlib', 'cv2', 'torch', 'scipy') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
