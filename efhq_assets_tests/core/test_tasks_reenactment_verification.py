"""Reenactment split, verification benchmark and its metrics (core/tasks), on synthetic face rows."""

from __future__ import annotations

import math
import os
from collections import Counter, defaultdict

import numpy as np
import pytest

from efhq_assets.core.tasks import metrics as M
from efhq_assets.core.tasks import reenactment as R
from efhq_assets.core.tasks import verification as V

NONFRONTAL = ["profile_left", "profile_right", "profile_up", "profile_down", "profile_extreme", "profile_horizontal", "confused"]
LMK_IN = [200.0, 200.0, 300.0, 200.0, 250.0, 250.0, 210.0, 320.0, 290.0, 320.0]


def face(video, clip, frame, ident, label, face_index=0, score=0.95, lmk=None, box=(100.0, 100.0, 400.0, 400.0)):
    x1, y1, x2, y2 = box
    return {
        "video_id": video, "clip_id": clip, "frame_index": frame, "face_index": face_index, "track_id": face_index,
        "identity_id": ident, "source_id": "src", "label": label, "yaw": 0.0, "pitch": 0.0, "roll": 0.0,
        "x1": x1, "y1": y1, "x2": x2, "y2": y2, "lmk5": list(LMK_IN if lmk is None else lmk), "score": score,
        "video_path": f"/videos/{video}.mp4",
    }


def clip_faces(video, clip, ident, n_frontal, n_extreme, start=0, rng=None):
    labels = ["frontal"] * n_frontal + [NONFRONTAL[k % len(NONFRONTAL)] for k in range(n_extreme)]
    if rng is not None:
        rng.shuffle(labels)
    return [face(video, clip, start + 2 * k, ident, lab) for k, lab in enumerate(labels)]


def corpus(n_ids=40, clips=3, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_ids):
        for c in range(clips):
            nf = int(rng.integers(0, 4))
            ne = int(rng.integers(0, 12))
            out += clip_faces(f"vid{i:03d}", f"vid{i:03d}+C{c}", f"id{i:03d}", nf, ne, start=c * 1000, rng=rng)
    return out


# ------------------------------------------------------------------ reenactment
def test_reenactment_identity_disjoint_and_eligibility():
    faces = corpus()
    rows, pairs = R.reenactment_rows(faces, test_pct=0.25, seed=0)
    split_of = defaultdict(set)
    for r in rows:
        split_of[r["identity_id"]].add(r["split"])
        assert r["label"] == ("frontal" if r["bin_label"] == "frontal" else "extreme")
        assert r["path"] == f"{r['split']}/{r['identity_id']}/{r['video_id']}/{r['clip_id']}/{r['frame_index']:08d}_{r['face_index']}.png"
    assert all(len(s) == 1 for s in split_of.values()), "an identity in train and test"
    test_ids = {i for i, s in split_of.items() if s == {"test"}}
    assert test_ids and len(test_ids) < len(split_of)
    # the split is the hash of the identity id alone
    for i in split_of:
        assert R.identity_in_test(i, 0.25, 0) == (i in test_ids)
    # every test instance is eligible; every ineligible instance of a test identity is dropped
    per_inst = defaultdict(Counter)
    for r in rows:
        per_inst[(r["instance_id"], r["split"])][r["label"]] += 1
    for (iid, split), c in per_inst.items():
        if split == "test":
            assert c["frontal"] >= 1 and c["extreme"] >= 5
    inst = R.reenactment_instances(faces, 0.25, 0)
    for r in inst:
        assert r["split"] == ("train" if not r["identity_test"] else ("test" if r["eligible"] else "dropped"))
        assert r["eligible"] == (r["n_frontal"] >= 1 and r["n_extreme"] >= 5)
    dropped = [r for r in inst if r["split"] == "dropped"]
    assert dropped and all(r["reason"] for r in dropped)
    kept = {r["instance_id"] for r in inst if r["split"] != "dropped"}
    assert kept == {r["instance_id"] for r in rows}
    # test share is about test_pct of identities (hash), not name order
    many = [f"person{k}" for k in range(4000)]
    share = np.mean([R.identity_in_test(i, 0.25, 0) for i in many])
    assert abs(share - 0.25) < 0.03
    assert not all(R.identity_in_test(i, 0.25, 0) == R.identity_in_test(i, 0.25, 1) for i in many[:200])


def test_reenactment_deterministic_and_stable_under_new_data():
    faces = corpus()
    rows, pairs = R.reenactment_rows(faces, seed=0)
    rows2, pairs2 = R.reenactment_rows(list(reversed(faces)), seed=0)
    assert rows == rows2 and pairs == pairs2

    # a new identity (two clips) and a new clip of an existing identity of each split
    train_id = next(r["identity_id"] for r in rows if r["split"] == "train")
    test_id = next(r["identity_id"] for r in rows if r["split"] == "test")
    extra = clip_faces("newvid", "newvid+C0", "id_new", 2, 8) + clip_faces("newvid", "newvid+C1", "id_new", 1, 7, start=500)
    extra += clip_faces("morevid", "morevid+C0", train_id, 1, 9)
    extra += clip_faces("morevid", "morevid+C1", test_id, 1, 9, start=300)
    extra += clip_faces("morevid", "morevid+C2", test_id, 0, 3, start=600)  # not eligible: dropped
    rows3, pairs3 = R.reenactment_rows(faces + extra, seed=0)
    old = {(r["video_id"], r["clip_id"], r["frame_index"], r["face_index"]): r for r in rows}
    new = {(r["video_id"], r["clip_id"], r["frame_index"], r["face_index"]): r for r in rows3}
    for k, r in old.items():
        assert new[k] == r, "an existing row moved"
    assert not any(r["clip_id"] == "morevid+C2" for r in rows3)
    # train and self pairs of the existing instances are unchanged
    key = lambda p: (p["kind"], p["source_instance"], p["driving_path"])  # noqa: E731
    p_new = {key(p): p for p in pairs3}
    for p in pairs:
        if p["kind"] in ("train", "self"):
            assert p_new[key(p)] == p


def test_reenactment_pair_rules():
    faces = corpus()
    rows, pairs = R.reenactment_rows(faces, seed=0)
    by_path = {r["path"]: r for r in rows}
    by_inst = defaultdict(list)
    for r in rows:
        by_inst[r["instance_id"]].append(r)
    kinds = Counter(p["kind"] for p in pairs)
    assert kinds["train"] and kinds["self"] and kinds["cross"]
    for p in pairs:
        src = by_path[p["source_path"]]
        assert src["instance_id"] == p["source_instance"] and src["identity_id"] == p["identity_source"]
        drv = [by_path[x] for x in p["driving_paths"]]
        assert all(d["instance_id"] == p["driving_instance"] for d in drv)
        assert p["n_driving"] == len(drv)
        if p["kind"] == "train":
            assert p["split"] == "train" and src["split"] == "train"
            (d,) = drv
            assert p["driving_path"] == d["path"] and d["label"] == "extreme"
            assert d["instance_id"] == src["instance_id"] and d["path"] != src["path"]
            has_frontal = any(r["label"] == "frontal" for r in by_inst[src["instance_id"]])
            assert src["label"] == ("frontal" if has_frontal else "extreme")
        else:
            assert p["split"] == "test" and src["split"] == "test" and src["label"] == "frontal"
            expected = [r["path"] for r in by_inst[p["driving_instance"]] if r["label"] == "extreme"]
            assert p["driving_paths"] == expected  # all extreme frames, in frame order
            assert [by_path[x]["frame_index"] for x in expected] == sorted(by_path[x]["frame_index"] for x in expected)
            if p["kind"] == "self":
                assert p["driving_instance"] == p["source_instance"]
            else:
                assert p["identity_driving"] != p["identity_source"]
    # one train pair per extreme frame of a train instance (with >= 2 frames)
    for iid, rs in by_inst.items():
        if rs[0]["split"] != "train":
            continue
        n_ext = sum(r["label"] == "extreme" for r in rs)
        n_pairs = sum(1 for p in pairs if p["kind"] == "train" and p["source_instance"] == iid)
        assert n_pairs == (n_ext if len(rs) >= 2 else 0)
    # self and cross: one per test instance (cross needs >= 2 test identities)
    test_inst = {r["instance_id"] for r in rows if r["split"] == "test"}
    assert {p["source_instance"] for p in pairs if p["kind"] == "self"} == test_inst
    assert {p["source_instance"] for p in pairs if p["kind"] == "cross"} == test_inst
    # the cross/self source is the same frame
    src = {p["source_instance"]: p["source_path"] for p in pairs if p["kind"] == "self"}
    assert all(src[p["source_instance"]] == p["source_path"] for p in pairs if p["kind"] == "cross")


def test_reenactment_one_face_per_frame_and_small_boxes():
    faces = clip_faces("v", "v+C0", "idA", 2, 6)
    dup = dict(faces[3], face_index=1, score=0.99)
    small = face("v", "v+C0", 999, "idA", "frontal", box=(0, 0, 50, 50))
    rows, _ = R.reenactment_rows(faces + [dup, small], test_pct=0.0)
    at3 = [r for r in rows if r["frame_index"] == faces[3]["frame_index"]]
    assert [r["face_index"] for r in at3] == [1]  # higher score kept
    assert not any(r["frame_index"] == 999 for r in rows)


def test_render_reenactment_writes_tube_crops(tmp_path):
    faces = clip_faces("v", "v+C0", "idA", 1, 5)
    rows, _ = R.reenactment_rows(faces, test_pct=0.0)
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[150:350, 150:350] = 200
    written = R.render_reenactment(rows, lambda i: frame, 640, 480, tmp_path)
    assert written == [r["path"] for r in rows]
    import cv2

    img = cv2.imread(os.fspath(tmp_path / written[0]))
    assert img.shape == (256, 256, 3)
    assert not any(p.name.count(".tmp") for p in tmp_path.rglob("*"))


def _efhq_ext256_parse(root_dir, data_list):
    """VinAIResearch/EFHQ @ 6883f41623373ad52ea0797937fc61d258f04645 5_train_eval/lia/dataset.py Ext256.__init__,
    non-VFHQ, non-Vox branch: `img_path, category = line.strip().split()`, img_name = last component,
    instance = "/".join(components[:-1]); frames per instance and category; __getitem__ globs
    os.path.join(root_dir, instance)."""
    video_ids, videos = [], {}
    with open(data_list) as f:
        for file_name in f.readlines():
            img_path, category = file_name.strip().split()
            img_name = img_path.split("/")[-1]
            instance_id = "/".join(img_path.split("/")[:-1])
            if ["efhq_assets", instance_id] not in video_ids:
                video_ids.append(["efhq_assets", instance_id])
            videos.setdefault(instance_id, {"frontal": [], "extreme": []})[category].append(img_name)
    for _, instance in video_ids:
        assert os.path.isdir(os.path.join(root_dir, instance))
    return video_ids, videos


def _efhq_tps_parse(data_list):
    """Same commit, 5_train_eval/tps/frames_dataset.py FramesDataset_ExtremeHQ (id_sampling, celeb branch):
    video_id = "/".join(instance.split("/")[:2]) groups the instances of one person."""
    out = {}
    with open(data_list) as f:
        for file_name in f.readlines():
            img_path, category = file_name.strip().split()
            instance_id = "/".join(img_path.split("/")[:-1])
            video_id = "/".join(instance_id.split("/")[:2])
            out.setdefault(video_id, {}).setdefault(instance_id, {"frontal": [], "extreme": []})[category].append(
                img_path.split("/")[-1])
    return out


def test_efhq_train_test_lists_read_by_efhqs_tps_and_lia_loaders(tmp_path):
    import cv2

    faces = corpus(n_ids=10, clips=2, seed=4)
    rows, _ = R.reenactment_rows(faces, test_pct=0.25, seed=0)
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[150:350, 150:350] = 200
    written = []
    by_inst = defaultdict(list)
    for r in rows:
        by_inst[r["instance_id"]].append(r)
    for inst_rows in by_inst.values():
        written += R.render_reenactment(inst_rows, lambda i: frame, 640, 480, tmp_path)
    counts = R.write_train_test_lists(rows, written[:-3], tmp_path)  # the last 3 frames "failed to render"
    assert sorted(p.name for p in tmp_path.glob("*.txt")) == ["test_0.25.txt", "train_0.25.txt"]
    listed = {}
    for split in ("train", "test"):
        ids, videos = _efhq_ext256_parse(tmp_path, tmp_path / f"{split}_0.25.txt")
        assert len(ids) and sum(len(v["frontal"]) + len(v["extreme"]) for v in videos.values()) == counts[split]
        for instance, cats in videos.items():
            assert instance.startswith(f"{split}/") and instance.count("/") == 3
            for category, names in cats.items():
                for name in names:
                    img = cv2.imread(os.path.join(tmp_path, instance, name))
                    assert img is not None and img.shape == (256, 256, 3)
                    listed[f"{instance}/{name}"] = category
        persons = _efhq_tps_parse(tmp_path / f"{split}_0.25.txt")
        by_identity = {r["identity_id"] for r in rows if r["split"] == split}
        assert {p.split("/")[1] for p in persons} <= by_identity
    expected = {r["path"]: r["label"] for r in rows if r["path"] in set(written[:-3])}
    assert listed == expected  # every rendered frame once, with its frontal/extreme label; no unrendered one


# ------------------------------------------------------------------ verification
def verif_corpus(n_ids=12, seed=1):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_ids):
        n_clips = 1 if i % 4 == 0 else 3
        for c in range(n_clips):
            for k in range(60):
                lab = "frontal" if rng.random() < 0.4 else NONFRONTAL[int(rng.integers(len(NONFRONTAL)))]
                out.append(face(f"v{i}", f"v{i}+C{c}", c * 10_000 + k, f"id{i:02d}", lab))
    return out


def test_landmark_rule():
    ok = face("v", "c", 0, "a", "frontal")
    assert V.landmarks_inside(ok)
    lm = list(LMK_IN)
    lm[0] = 100.0 - 10.0  # exactly 10 px outside: kept
    assert V.landmarks_inside(dict(ok, lmk5=lm))
    lm[0] = 100.0 - 10.5
    assert not V.landmarks_inside(dict(ok, lmk5=lm))
    lm = list(LMK_IN)
    lm[9] = 411.0
    assert not V.landmarks_inside(dict(ok, lmk5=lm))
    assert not V.landmarks_inside(dict(ok, lmk5=None))
    assert not V.landmarks_inside(dict(ok, lmk5=LMK_IN[:8]))
    assert not V.landmarks_inside(dict(ok, lmk5=[float("nan")] * 10))


def test_sampling_caps_rule_and_stability():
    faces = verif_corpus()
    bad = dict(faces[0], frame_index=777777, lmk5=[0.0] * 10)
    samples = V.sample_verification_faces(faces + [bad], n_frontal=20, n_per_bin=15, seed=0)
    counts = Counter((s["identity_id"], s["bin"]) for s in samples)
    avail = Counter((f["identity_id"], f["label"]) for f in faces)
    for (ident, b), n in avail.items():
        if b == "confused":
            assert counts[(ident, b)] == 0
            continue
        cap = 20 if b == "frontal" else 15
        assert counts[(ident, b)] == min(cap, n)
    assert not any(s["frame_index"] == 777777 for s in samples)
    assert len({s["path"] for s in samples}) == len(samples)
    assert all(s["path"].startswith(f"images/{s['identity_id']}/{s['bin']}/") for s in samples)
    # deterministic, order independent; seed matters
    assert samples == V.sample_verification_faces(list(reversed(faces)), n_frontal=20, n_per_bin=15, seed=0)
    other = V.sample_verification_faces(faces, n_frontal=20, n_per_bin=15, seed=1)
    assert {s["path"] for s in other} != {s["path"] for s in samples}
    # a new identity leaves every other group's sample unchanged
    more = faces + [face("vz", "vz+C0", k, "id_new", "frontal") for k in range(30)]
    again = V.sample_verification_faces(more, n_frontal=20, n_per_bin=15, seed=0)
    assert [s for s in again if s["identity_id"] != "id_new"] == samples
    # same face listed under two overlapping clips counts once
    twice = V.sample_verification_faces(faces + [dict(faces[5], clip_id="zzz")], n_frontal=1000, n_per_bin=1000)
    assert len(twice) == len({(s["video_id"], s["frame_index"], s["face_index"]) for s in twice})


@pytest.mark.parametrize("protocol", V.PROTOCOLS)
def test_pairs_rules(protocol):
    samples = V.sample_verification_faces(verif_corpus(), n_frontal=20, n_per_bin=15)
    pairs = V.make_pairs(samples, protocol, n_pairs=600, seed=0)
    assert len(pairs) == 600
    gen = [p for p in pairs if p["issame"]]
    imp = [p for p in pairs if not p["issame"]]
    assert len(gen) == len(imp) == 300
    keys = [frozenset((p["path1"], p["path2"])) for p in pairs]
    assert len(set(keys)) == len(keys) and all(len(k) == 2 for k in keys)
    side = {"f2f": (True, True), "f2p": (True, False), "p2p": (False, False)}[protocol]
    for p in pairs:
        assert p["protocol"] == protocol
        assert ((p["bin1"] == "frontal"), (p["bin2"] == "frontal")) == side
        assert (p["identity1"] == p["identity2"]) == p["issame"]
    # genuine pairs spread over identities and cross-clip whenever the identity has > 1 clip
    gen_ids = Counter(p["identity1"] for p in gen)
    assert len(gen_ids) == len({s["identity_id"] for s in samples})
    assert max(gen_ids.values()) - min(gen_ids.values()) <= 1
    for p in gen:
        multi_clip = not p["identity1"].endswith(("00", "04", "08"))
        assert (p["clip_id1"] != p["clip_id2"]) == multi_clip
    # deterministic and order independent
    assert pairs == V.make_pairs(list(reversed(samples)), protocol, n_pairs=600, seed=0)
    assert pairs != V.make_pairs(samples, protocol, n_pairs=600, seed=1)


def test_pairs_fewer_when_data_is_short(caplog):
    samples = V.sample_verification_faces(
        [face("a", "a+C0", k, "A", "frontal") for k in range(3)]
        + [face("b", "b+C0", k, "B", "frontal") for k in range(2)]
        + [face("b", "b+C0", 10 + k, "B", "profile_left") for k in range(2)]
    )
    sup = V.pair_supply(samples, "f2f")
    assert sup == {"genuine": 3 + 1, "impostor": 3 * 2}
    with caplog.at_level("WARNING"):
        pairs = V.make_pairs(samples, "f2f", n_pairs=100)
    assert "supply" in caplog.text
    assert sum(p["issame"] for p in pairs) == 4 and sum(not p["issame"] for p in pairs) == 6
    assert len({frozenset((p["path1"], p["path2"])) for p in pairs}) == 10
    # f2p: frontal image first; only B has both sides
    f2p = V.make_pairs(samples, "f2p", n_pairs=100)
    assert sum(p["issame"] for p in f2p) == 2 * 2
    assert sum(not p["issame"] for p in f2p) == 3 * 2
    assert all(p["bin1"] == "frontal" and p["bin2"] == "profile_left" for p in f2p)
    assert V.make_pairs(samples, "p2p", n_pairs=100) == [
        p for p in V.make_pairs(samples, "p2p", n_pairs=100) if p["issame"]
    ]
    with pytest.raises(ValueError):
        V.make_pairs(samples, "x2y", 10)


def _pair_key(p):
    return frozenset(((p["video_id1"], p["frame_index1"], p["face_index1"]), (p["video_id2"], p["frame_index2"], p["face_index2"])))


def _refresh_extra(samples):
    """Samples of one new identity (two clips) and a new clip of an existing identity."""
    old_id = sorted({s["identity_id"] for s in samples})[1]
    extra = [face("vnew", f"vnew+C{c}", c * 100 + k, "id_new", "frontal" if k % 3 else "profile_left") for c in range(2) for k in range(6)]
    extra += [face("vmore", "vmore+C0", k, old_id, "frontal" if k % 2 else "profile_up") for k in range(6)]
    return V.sample_verification_faces(extra, n_frontal=1000, n_per_bin=1000)


@pytest.mark.parametrize("protocol", V.PROTOCOLS)
def test_pairs_refresh_only_adds_when_short(protocol):
    """Issue 13: supply below the request -> a refresh keeps every old row, unchanged."""
    samples = V.sample_verification_faces(verif_corpus(5), n_frontal=4, n_per_bin=3)
    more = samples + _refresh_extra(samples)
    sup = V.pair_supply(more, protocol)
    n = 2 * max(sup["genuine"], sup["impostor"]) + 2  # short before and after
    old = V.make_pairs(samples, protocol, n_pairs=n, seed=3)
    new = V.make_pairs(more, protocol, n_pairs=n, seed=3)
    assert len(new) > len(old) and len(new) == sup["genuine"] + sup["impostor"]
    new_rows = [tuple(sorted(p.items())) for p in new]
    for p in old:
        assert tuple(sorted(p.items())) in new_rows, p
    # genuine short, impostor not: every old genuine row stays; an impostor row leaves only for
    # a new row with a new face (the minimal change)
    sup_old = V.pair_supply(samples, protocol)
    n = 2 * sup["genuine"] + 2
    assert sup_old["impostor"] > n // 2
    old = V.make_pairs(samples, protocol, n_pairs=n, seed=3)
    new = V.make_pairs(more, protocol, n_pairs=n, seed=3)
    new_rows = {tuple(sorted(p.items())) for p in new}
    assert all(tuple(sorted(p.items())) in new_rows for p in old if p["issame"])
    old_keys = {_pair_key(p) for p in old}
    old_faces = {(s["video_id"], s["frame_index"], s["face_index"]) for s in samples}
    added = [p for p in new if not p["issame"] and _pair_key(p) not in old_keys]
    assert all(not _pair_key(p) <= old_faces for p in added)
    kept = sum(1 for p in new if not p["issame"] and _pair_key(p) in old_keys)
    assert kept + len(added) == n - n // 2 and kept > 0


@pytest.mark.parametrize("protocol", V.PROTOCOLS)
def test_pairs_refresh_minimal_when_supply_exceeds(protocol):
    samples = V.sample_verification_faces(verif_corpus(), n_frontal=20, n_per_bin=15)
    pairs = V.make_pairs(samples, protocol, n_pairs=600, seed=0)
    # deterministic and independent of the input order
    shuffled = list(samples)
    np.random.default_rng(7).shuffle(shuffled)
    assert pairs == V.make_pairs(shuffled, protocol, n_pairs=600, seed=0)
    assert pairs == V.make_pairs(samples, protocol, n_pairs=600, seed=0)
    extra = _refresh_extra(samples)
    more = samples + extra
    again = V.make_pairs(more, protocol, n_pairs=600, seed=0)
    assert again == V.make_pairs(list(reversed(more)), protocol, n_pairs=600, seed=0)
    old_faces = {(s["video_id"], s["frame_index"], s["face_index"]) for s in samples}
    # impostors: a row that is new holds a new face (old rows only leave for better-ranked new ones)
    old_imp = {_pair_key(p) for p in pairs if not p["issame"]}
    new_imp = [p for p in again if not p["issame"]]
    assert len(new_imp) == 300
    assert all(not _pair_key(p) <= old_faces for p in new_imp if _pair_key(p) not in old_imp)
    assert len(old_imp & {_pair_key(p) for p in new_imp}) >= 250
    # genuine: an identity without new faces keeps a prefix of its own ranking (nested sets)
    touched = {s["identity_id"] for s in extra}
    for ident in {s["identity_id"] for s in samples} - touched:
        before = {_pair_key(p) for p in pairs if p["issame"] and p["identity1"] == ident}
        after = {_pair_key(p) for p in again if p["issame"] and p["identity1"] == ident}
        assert before <= after or after <= before
        assert len(before ^ after) <= 2


def test_pairs_scale_5k_samples():
    rng = np.random.default_rng(0)
    samples = []
    for i in range(100):
        for k in range(50):
            lab = "frontal" if rng.random() < 0.35 else NONFRONTAL[int(rng.integers(len(NONFRONTAL) - 1))]
            samples.append({
                "identity_id": f"id{i:04d}", "video_id": f"v{i}", "clip_id": f"v{i}+C{k % 3}", "frame_index": k,
                "face_index": 0, "bin": lab, "frontal": lab == "frontal", "path": f"images/id{i}/{lab}/{k}.png",
            })
    for protocol in V.PROTOCOLS:
        pairs = V.make_pairs(samples, protocol, n_pairs=20_000, seed=0)
        assert len(pairs) == 20_000
        assert len({_pair_key(p) for p in pairs}) == 20_000
        assert all((p["identity1"] == p["identity2"]) == p["issame"] for p in pairs)


def test_write_pairs_tsv(tmp_path):
    samples = V.sample_verification_faces(verif_corpus(4), n_frontal=5, n_per_bin=5)
    pairs = V.make_pairs(samples, "f2p", n_pairs=20)
    out = tmp_path / "sub" / "f2p.tsv"
    assert V.write_pairs_tsv(pairs, out) == len(pairs)
    lines = out.read_text().splitlines()
    assert len(lines) == len(pairs)
    for line, p in zip(lines, pairs):
        a, b, s = line.split("\t")
        assert (a, b) == (p["path1"], p["path2"]) and s == ("1" if p["issame"] else "0")
    assert os.listdir(out.parent) == ["f2p.tsv"]


def test_degrade_deterministic_and_varied():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(112, 112, 3), dtype=np.uint8)
    a = V.degrade(img, 123)
    assert np.array_equal(a, V.degrade(img.copy(), 123))
    assert a.shape == img.shape and a.dtype == np.uint8
    outs = [V.degrade(img, s) for s in range(40)]
    changed = [not np.array_equal(o, img) for o in outs]
    # each step has p = 0.5: P(no step) = 1/8
    assert 25 <= sum(changed) <= 40
    assert len({o.tobytes() for o in outs}) > 20
    assert np.array_equal(V.degrade(img, 5, p=0.0), img)
    gray = img[..., 0].copy()
    assert V.degrade(gray, 7, p=1.0).shape == gray.shape
    with pytest.raises(TypeError):
        V.degrade(img.astype(np.float32), 0)


# ------------------------------------------------------------------ metrics
def _normal_cdf(x):
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _normal_ppf(p):
    lo, hi = -10.0, 10.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _normal_cdf(mid) < p else (lo, mid)
    return (lo + hi) / 2


def test_tar_at_far_matches_analytic_gaussians():
    rng = np.random.default_rng(42)
    g = rng.normal(0.6, 0.1, 200_000)
    im = rng.normal(0.2, 0.1, 200_000)
    res = {r["far"]: r for r in M.tar_at_far(g, im)}
    for far in (1e-1, 1e-2, 1e-3):
        thr = 0.2 + 0.1 * _normal_ppf(1.0 - far)
        tar = 1.0 - _normal_cdf((thr - 0.6) / 0.1)
        # sampling error of the threshold dominates at small FAR; 4 sigma bound
        sd_far = math.sqrt(far * (1 - far) / (0.9 * len(im)))
        dens_i = math.exp(-0.5 * ((thr - 0.2) / 0.1) ** 2) / (0.1 * math.sqrt(2 * math.pi))
        dens_g = math.exp(-0.5 * ((thr - 0.6) / 0.1) ** 2) / (0.1 * math.sqrt(2 * math.pi))
        tol = 4 * (dens_g * sd_far / dens_i + math.sqrt(tar * (1 - tar) / len(g))) + 1e-4
        assert abs(res[far]["tar"] - tar) < tol, (far, res[far]["tar"], tar, tol)
        assert abs(res[far]["threshold"] - thr) < 0.01
        assert res[far]["far_measured"] <= far * 1.5
    assert res[1e-5]["tar"] is None  # 20,000 impostors per fold: 1e-5 unobservable
    assert res[1e-4]["tar"] is not None


def _brute_tar_at_far(g, im, far, n_folds, seed):
    """Independent per-fold computation: scan every candidate threshold."""
    rng = np.random.default_rng(seed)
    pg, pi = rng.permutation(len(g)), rng.permutation(len(im))
    fg = np.zeros(len(g), int)
    fi = np.zeros(len(im), int)
    for k, idx in enumerate(pg):
        fg[idx] = k % n_folds
    for k, idx in enumerate(pi):
        fi[idx] = k % n_folds
    tars = []
    for f in range(n_folds):
        train = [s for s, ff in zip(im, fi) if ff != f]
        best = None
        for t in sorted(set(train) | {-1e9}):
            if sum(s > t for s in train) <= far * len(train) + 1e-12:
                best = t
                break
        test_g = [s for s, ff in zip(g, fg) if ff == f]
        tars.append(sum(s > best for s in test_g) / len(test_g))
    return float(np.mean(tars)), float(np.std(tars))


def test_tar_at_far_matches_brute_force_and_none_rule():
    rng = np.random.default_rng(3)
    g = np.round(rng.normal(0.5, 0.2, 700), 2)  # rounded: ties
    im = np.round(rng.normal(0.1, 0.2, 1000), 2)
    res = M.tar_at_far(g, im, fars=(0.3, 0.1, 0.05, 0.01, 0.005), n_folds=10, seed=7)
    for r in res:
        if r["far"] < 1 / 100:  # 100 impostors per fold
            assert r["tar"] is None and r["tar_std"] is None and r["threshold"] is None
            continue
        tar, std = _brute_tar_at_far(g.tolist(), im.tolist(), r["far"], 10, 7)
        assert r["tar"] == pytest.approx(tar, abs=1e-12) and r["tar_std"] == pytest.approx(std, abs=1e-12)
        assert r["n_genuine"] == 700 and r["n_impostor"] == 1000
    # too few scores for the folds: None, not a number
    (r,) = M.tar_at_far([0.9] * 5, [0.1] * 50, fars=(0.1,))
    assert r["tar"] is None
    with pytest.raises(ValueError):
        M.tar_at_far([float("nan")], [0.1])


def _brute_cfp(s, y, n_folds, seed):
    rng = np.random.default_rng(seed)
    pos = [i for i in range(len(s)) if y[i]]
    neg = [i for i in range(len(s)) if not y[i]]
    fold = {}
    for group in (pos, neg):
        perm = rng.permutation(len(group))
        for k, p in enumerate(perm):
            fold[group[p]] = k % n_folds
    accs = []
    for f in range(n_folds):
        tr = [i for i in range(len(s)) if fold[i] != f]
        te = [i for i in range(len(s)) if fold[i] == f]
        best_t, best_acc = None, -1.0
        for t in [-1e9] + sorted({s[i] for i in tr}):
            acc = sum((s[i] > t) == y[i] for i in tr) / len(tr)
            if acc > best_acc:
                best_t, best_acc = t, acc
        accs.append(sum((s[i] > best_t) == y[i] for i in te) / len(te))
    return float(np.mean(accs)), float(np.std(accs))


def test_cfp_accuracy_matches_brute_force_and_drop():
    rng = np.random.default_rng(5)
    s = np.round(np.r_[rng.normal(0.55, 0.15, 300), rng.normal(0.25, 0.15, 300)], 3)
    y = np.r_[np.ones(300, bool), np.zeros(300, bool)]
    r = M.cfp_accuracy(s, y, n_folds=10, seed=0)
    acc, std = _brute_cfp(s.tolist(), y.tolist(), 10, 0)
    assert r["accuracy"] == pytest.approx(acc, abs=1e-12) and r["accuracy_std"] == pytest.approx(std, abs=1e-12)
    # analytic Bayes accuracy for equal-variance Gaussians: Phi(d / 2)
    assert abs(r["accuracy"] - _normal_cdf(1.0)) < 0.05
    assert M.cfp_accuracy([1.0, 0.0], [1, 0])["accuracy"] is None
    assert M.drop(0.8, 0.6) == pytest.approx(0.25)
    assert M.drop(None, 0.5) is None and M.drop(0.5, None) is None and M.drop(0.0, 0.1) is None


def test_verification_report_rows():
    samples = V.sample_verification_faces(verif_corpus(), n_frontal=20, n_per_bin=15)
    pairs = []
    for proto in V.PROTOCOLS:
        pairs += V.make_pairs(samples, proto, n_pairs=400)
    rng = np.random.default_rng(0)
    shift = {"f2f": 0.6, "f2p": 0.45, "p2p": 0.4}
    scores = [rng.normal(shift[p["protocol"]] if p["issame"] else 0.1, 0.1) for p in pairs]
    rows = M.verification_report_rows(pairs, scores, model="toy", fars=(1e-1, 1e-3))
    assert [(r["protocol"], r["far"]) for r in rows] == [(p, f) for p in ("f2f", "f2p", "p2p") for f in (1e-1, 1e-3)]
    for r in rows:
        assert r["model"] == "toy" and r["n_genuine"] == 200 and r["n_impostor"] == 200
        if r["far"] == 1e-3:
            assert r["tar"] is None and r["drop_vs_f2f"] is None
    f2f, f2p = rows[0]["tar"], rows[2]["tar"]
    assert rows[2]["drop_vs_f2f"] == pytest.approx((f2f - f2p) / f2f)
    assert rows[2]["drop_vs_f2f"] > 0 and rows[0]["drop_vs_f2f"] is None


# albumentations defaults EFHQ's transform used (3_align_sample/cli_face_verification.py @ 6883f41: RandomBrightnessContrast(p=0.5),
# Downscale(scale_min=0.25, scale_max=0.35, p=0.5), ImageCompression(p=0.5) with quality_lower=99, quality_upper=100)
@pytest.mark.parametrize("preset,key,value", [("efhq", "jpeg_quality", (99, 100)), ("efhq", "downscale", (0.25, 0.35)),
                                              ("efhq", "brightness_limit", 0.2), ("efhq", "contrast_limit", 0.2),
                                              ("efhq", "p", 0.5), ("hard", "jpeg_quality", (30, 70))])
def test_degradation_presets_table(preset, key, value):
    assert V.DEGRADATION_PRESETS[preset][key] == value
    assert V.DEFAULT_DEGRADATION == "efhq"


def test_efhq_preset_jpeg_is_near_lossless_and_hard_is_not():
    from efhq_assets.core.models.sample_images import astronaut_bgr

    img = np.ascontiguousarray(astronaut_bgr()[100:212, 180:292])
    only_jpeg = dict(p=1.0, brightness_limit=0.0, contrast_limit=0.0, downscale=(1.0, 1.0))

    def psnr(a):
        mse = np.mean((a.astype(np.float64) - img.astype(np.float64)) ** 2)
        return 10 * np.log10(255.0 ** 2 / max(mse, 1e-12))

    efhq = [psnr(V.degrade(img, s, "efhq", **only_jpeg)) for s in range(6)]
    hard = [psnr(V.degrade(img, s, "hard", **only_jpeg)) for s in range(6)]
    assert min(efhq) > 42 and max(hard) < 38, (efhq, hard)
    assert np.array_equal(V.degrade(img, 3), V.degrade(img, 3, "efhq"))  # the default is EFHQ's
    with pytest.raises(ValueError):
        V.degrade(img, 0, "nope")
    with pytest.raises(TypeError):
        V.degrade(img, 0, jpeg=(1, 2))


def _efhq_read_pairs(pair_txt_path, paths_txt):
    """VinAIResearch/EFHQ @ 6883f41623373ad52ea0797937fc61d258f04645 3_align_sample/cli_face_verification.py evaluate:
    paths.txt lists the aligned images (one embedding each); every pair line `p1\\tp2\\tissame` is split on tabs,
    both paths looked up in that index, `bool(int(issame))`; genuine and impostor pairs are then zipped in
    alternation (so equal counts are needed)."""
    with open(paths_txt) as f:
        index = {line.strip(): i for i, line in enumerate(f.readlines())}
    same, diff = [], []
    with open(pair_txt_path) as f:
        for line in f.readlines():
            p1, p2, issame = line.strip().split("\t")
            pair = (index[p1], index[p2])
            (same if bool(int(issame)) else diff).append(pair)
    return same, diff


@pytest.mark.parametrize("protocol", ["f2f", "f2p", "p2p"])
def test_pair_lists_read_by_efhqs_evaluation(tmp_path, protocol):
    samples = V.sample_verification_faces(verif_corpus(8), n_frontal=6, n_per_bin=6)
    (tmp_path / "paths.txt").write_text("".join(f"{s['path']}\n" for s in samples))
    pairs = V.make_pairs(samples, protocol, n_pairs=40)
    V.write_pairs_tsv(pairs, tmp_path / f"{protocol}_pairs.txt")
    same, diff = _efhq_read_pairs(tmp_path / f"{protocol}_pairs.txt", tmp_path / "paths.txt")
    assert len(same) == len(diff) == 20
    ident = {i: s["identity_id"] for i, s in enumerate(samples)}
    assert all(ident[a] == ident[b] for a, b in same) and all(ident[a] != ident[b] for a, b in diff)
