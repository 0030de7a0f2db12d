"""GAN / EG3D / T2I split builders (core/tasks): selection caps, order, labels, stability under
refresh, and each export read back in its consumer's conventions.

Images are real faces (skimage's astronaut and insightface's t1.jpg, read at run time from installed
packages, never written outside tmp_path), detected with MTCNN and landmarked with FaceMesh.  Parts
that need ``core/align.py`` (FFHQ alignment, EG3D crop, cameras, warp_points) skip until it lands.
"""

from __future__ import annotations

import importlib.util
import json
import random
import zipfile

import numpy as np
import pytest

from efhq_assets.core.tasks import common as C
from efhq_assets.core.tasks import eg3d as E
from efhq_assets.core.tasks import gan as G
from efhq_assets.core.tasks import t2i as T

HAVE_ALIGN = importlib.util.find_spec("efhq_assets.core.align") is not None
needs_align = pytest.mark.skipif(not HAVE_ALIGN, reason="efhq_assets/core/align.py has not landed yet")

never_outside = lambda lmk5, w, h: False  # noqa: E731


def fake_camera(yaw, pitch, roll):
    """Stand-in for align.eg3d_camera_label where only the format matters (25 floats)."""
    return [float(yaw), float(pitch), float(roll)] + [0.0] * 13 + [4.2647, 0, 0.5, 0, 4.2647, 0.5, 0, 0, 1]


# ----------------------------------------------------------------------------- synthetic rows


def mkrow(video_id="vidA", frame=0, face=0, identity="id1", label="profile_left", yaw=60.0, pitch=0.0,
          score=50.0, quality_pass=True, **kw):
    r = {
        "video_id": video_id, "clip_id": f"{video_id}_c0", "frame_index": frame, "face_index": face,
        "track_id": 0, "identity_id": identity, "source_id": "src", "source": "celebv", "label": label,
        "yaw": yaw, "pitch": pitch, "roll": 0.0, "x1": 100.0, "y1": 100.0, "x2": 300.0, "y2": 300.0,
        "lmk5": [150, 170, 250, 170, 200, 210, 160, 250, 240, 250], "lmk478": None, "score": score,
        "quality_pass": quality_pass, "attributes": None, "frame_width": 640, "frame_height": 480,
        "video_path": f"/videos/{video_id}.mp4",
    }
    r.update(kw)
    return r


def group_rows():
    rows = []
    # identity 1, profile_left: 6 rows with distinct |yaw|; two ties on |yaw| and |pitch| broken by score
    for i, (yaw, pitch, score) in enumerate([(50, 0, 60), (80, 5, 40), (-70, 0, 40), (70, 0, 45),
                                             (60, -20, 30), (60, 20, 35)]):
        rows.append(mkrow(frame=i, yaw=yaw, pitch=pitch, score=score))
    for i in range(4):  # identity 1 frontal
        rows.append(mkrow(frame=10 + i, label="frontal", yaw=5.0 * i, pitch=0.0))
    rows.append(mkrow(frame=20, label="profile_up", yaw=10, pitch=50))
    rows.append(mkrow(frame=21, label="profile_up", yaw=10, pitch=70, quality_pass=False))  # dropped
    rows.append(mkrow(frame=22, label="confused", yaw=40, pitch=25, lmk5=None))  # no landmarks: dropped
    rows.append(mkrow("vidB", 0, 0, identity="id2", label="profile_right", yaw=-75))
    rows.append(mkrow("vidB", 0, 1, identity="id2", label="profile_extreme", yaw=95, pitch=95))
    return rows


def keys(rows):
    return [C.row_key(r) for r in rows]


def test_split_of_is_a_stable_hash():
    assert C.split_of("id1") == "train"  # default: everything train
    ids = [f"identity{i}" for i in range(2000)]
    splits = [C.split_of(i, seed=3, test_pct=0.2, val_pct=0.1) for i in ids]
    frac = {s: splits.count(s) / len(ids) for s in C.SPLITS}
    assert abs(frac["test"] - 0.2) < 0.04 and abs(frac["val"] - 0.1) < 0.03
    assert splits == [C.split_of(i, seed=3, test_pct=0.2, val_pct=0.1) for i in ids]  # deterministic
    assert splits != [C.split_of(i, seed=4, test_pct=0.2, val_pct=0.1) for i in ids]  # seeded
    # growing the test share only moves identities into test
    bigger = [C.split_of(i, seed=3, test_pct=0.3, val_pct=0.1) for i in ids]
    assert all(b == "test" or b == a for a, b in zip(splits, bigger))
    with pytest.raises(ValueError):
        C.split_of("x", test_pct=0.8, val_pct=0.3)


def test_relative_path_is_collision_free_and_padded():
    assert C.relative_path("Clip+abc+P0+C1+F10-20", 7, 2) == "Clip+abc+P0+C1+F10-20/00000007_2.png"
    assert C.relative_path(mkrow(frame=123456, face=1), prefix="images/") == "images/vidA/00123456_1.png"
    # the original's collision: same frame/face ids in two clips
    assert C.relative_path("clipA", 5, 0) != C.relative_path("clipB", 5, 0)
    for bad in ("../x", "a/b", "", ".hidden", "a\\b"):
        with pytest.raises(ValueError):
            C.relative_path(bad, 0, 0)
    with pytest.raises(ValueError):
        C.relative_path("ok", -1, 0)


def test_cap_per_group_is_total_and_order_free():
    rows = group_rows()
    got = C.cap_per_group(rows, ("identity_id", "label"), 3)
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    assert keys(C.cap_per_group(shuffled, ("identity_id", "label"), 3)) == keys(got)
    assert keys(C.cap_per_group(rows, lambda r: (r["identity_id"], r["label"]), 3)) == keys(got)
    with pytest.raises(ValueError):
        C.cap_per_group(rows, "label", -1)


def test_select_gan_caps_order_and_labels():
    sel = G.select_gan(group_rows(), per_group=3, outside_frame=never_outside)
    by_group = {}
    for r in sel:
        by_group.setdefault((r["identity_id"], r["bin"]), []).append(r)
    # most extreme first (|yaw| desc, then |pitch| desc, then score desc), not ascending as the CelebV sampler
    left = sorted(by_group[("id1", "profile_left")], key=lambda r: (-abs(r["yaw"]), -abs(r["pitch"]), -r["score"]))
    assert [r["frame_index"] for r in left] == [1, 3, 2]  # |yaw| 80, then 70 (score 45 beats 40)
    assert len(by_group[("id1", "profile_left")]) == 3
    # frontal included, capped too, and class 0; every other bin is class 1 'extreme'
    assert len(by_group[("id1", "frontal")]) == 3
    assert sorted(r["frame_index"] for r in by_group[("id1", "frontal")]) == [11, 12, 13]  # the 3 largest |yaw|
    # ties on |yaw| and |pitch| go to the better score; the last frame (|yaw| 50) is the one left out
    five = [r for r in G.select_gan(group_rows(), per_group=5, outside_frame=never_outside) if r["bin"] == "profile_left"]
    five.sort(key=lambda r: (-abs(r["yaw"]), -abs(r["pitch"]), -r["score"]))
    assert [r["frame_index"] for r in five] == [1, 3, 2, 5, 4]
    for r in sel:
        assert (r["label"], r["class_index"]) == (("frontal", 0) if r["bin"] == "frontal" else ("extreme", 1))
        assert r["split"] == "train"
        assert r["path"] == f"images/{r['video_id']}/{r['frame_index']:08d}_{r['face_index']}.png"
        assert set(G.SPLIT_GAN_COLUMNS) <= set(r) and set(C.RENDER_KEYS) <= set(r)
    # quality_pass False and missing landmarks are dropped
    assert (("vidA", 21, 0) not in keys(sel)) and (("vidA", 22, 0) not in keys(sel))
    assert ("vidA", 20, 0) in keys(sel)
    # the CelebV behaviour is available
    assert all(r["bin"] != "frontal" for r in
               G.select_gan(group_rows(), per_group=3, include_frontal=False, outside_frame=never_outside))
    # faces whose FFHQ crop leaves the frame are dropped
    out_x = lambda lmk5, w, h: float(np.asarray(lmk5)[0, 0]) > 1000  # noqa: E731
    rows = group_rows() + [mkrow("vidC", 0, 0, identity="id3", lmk5=[1500, 170, 1600, 170, 1550, 210, 1510, 250, 1590, 250])]
    assert ("vidC", 0, 0) not in keys(G.select_gan(rows, outside_frame=out_x))
    # the table projection has exactly the table columns
    assert list(C.table_rows(sel, G.SPLIT_GAN_COLUMNS)[0]) == list(G.SPLIT_GAN_COLUMNS)


def test_selection_stable_when_a_new_identity_or_video_arrives():
    base = group_rows()
    new = [mkrow("vidNew", i, 0, identity="idNew", label="profile_left", yaw=89.0, score=99.0) for i in range(15)]
    for select in (
        lambda rows: G.select_gan(rows, per_group=3, seed=7, test_pct=0.5, outside_frame=never_outside),
        lambda rows: E.select_eg3d(rows, per_group=3, seed=7, test_pct=0.5, outside_frame=never_outside,
                                   camera_fn=fake_camera),
    ):
        before = select(base)
        after = select(base + new)
        old = [r for r in after if r["identity_id"] != "idNew"]
        assert C.table_rows(old, ["video_id", "frame_index", "face_index", "split", "path", "label"]) == \
            C.table_rows(before, ["video_id", "frame_index", "face_index", "split", "path", "label"])
        assert sum(r["identity_id"] == "idNew" for r in after) == 3
        # one identity, one split
        assert len({r["split"] for r in after if r["identity_id"] == "id1"}) == 1
    # deterministic regardless of input order
    sh = base[:]
    random.Random(0).shuffle(sh)
    assert G.select_gan(sh, outside_frame=never_outside) == G.select_gan(base, outside_frame=never_outside)


def test_select_eg3d_rows_have_25_float_cameras():
    sel = E.select_eg3d(group_rows(), per_group=3, outside_frame=never_outside, camera_fn=fake_camera)
    assert sel and all(len(r["camera"]) == 25 and all(isinstance(v, float) for v in r["camera"]) for r in sel)
    assert all(r["label"] == r["bin"] and r["path"] == C.relative_path(r) for r in sel)
    assert [r["camera"][0] for r in sel] == [float(r["yaw"]) for r in sel]
    # eg3d_crop removes in-plane roll, so the camera is made with roll 0 unless asked
    rolled = [dict(r, roll=12.0) for r in group_rows()]
    assert all(r["camera"][2] == 0.0 and r["camera_roll"] == 0.0 for r in
               E.select_eg3d(rolled, outside_frame=never_outside, camera_fn=fake_camera))
    assert all(r["camera"][2] == 12.0 and r["camera_roll"] == 12.0 for r in
               E.select_eg3d(rolled, outside_frame=never_outside, camera_fn=fake_camera, camera_roll=True))
    assert E.mirror_camera(30.0, 10.0, 5.0, fake_camera)[:3] == [-30.0, 10.0, -5.0]


# ----------------------------------------------------------------------------- captions


def _attrs(on=(), emotion="happy", n=40):
    vec = [0] * n
    for name in on:
        vec[T.CELEBVHQ_APPEARANCE.index(name)] = 1
    return json.dumps({"appearance": vec, "action": [0] * 35, "emotion": {"sep_flag": False, "labels": emotion}})


def test_caption_pose_words_follow_the_convention():
    assert T.caption(mkrow(label="frontal", yaw=2, pitch=1)) == "a frontal portrait of a person"
    assert T.caption(mkrow(label="profile_left", yaw=60, pitch=15)) == \
        "a profile portrait of a person turned to their left, looking slightly up"
    assert T.caption(mkrow(label="profile_right", yaw=-70, pitch=-2)) == \
        "a profile portrait of a person turned to their right"
    assert T.caption(mkrow(label="profile_down", yaw=25, pitch=-40)) == \
        "a portrait of a person turned slightly to their left, looking down"
    assert T.caption(mkrow(label="profile_extreme", yaw=-80, pitch=50)) == \
        "a profile portrait of a person turned to their right, looking up"


def test_caption_attributes_only_when_present():
    words = ("young", "man", "hair", "eyeglasses", "happy", "expression", "wearing", "beard", "chubby")
    for attrs in (None, "", "not json", json.dumps({"appearance": [1] * 39}), json.dumps([1, 2])):
        text = T.caption(mkrow(label="profile_left", attributes=attrs))
        assert text == "a profile portrait of a person turned to their left"
        assert not any(w in text for w in words)
    # decoded with the CelebV-HQ order
    text = T.caption(mkrow(label="profile_left", yaw=60, pitch=0,
                           attributes=_attrs(("male", "young", "black_hair", "eyeglasses", "wearing_hat", "blurry"))))
    assert text == ("a profile portrait of a young man turned to their left, with black hair, eyeglasses and "
                    "a happy expression, wearing a hat")
    assert T.decode_appearance(json.loads(_attrs(("pale_skin", "wearing_mask")))) == ["pale_skin", "wearing_mask"]
    # a wrong-length vector is ignored, the emotion alone still used
    assert T.caption(mkrow(label="frontal", yaw=0, pitch=0, attributes=_attrs(n=41, emotion="sadness"))) == \
        "a frontal portrait of a person, with a sad expression"
    # multi-emotion clips: only when every segment agrees; unknown labels ignored
    multi = {"appearance": [0] * 40, "action": [0] * 35,
             "emotion": {"sep_flag": True, "labels": [{"emotion": "neutral", "start_sec": 0, "end_sec": 1},
                                                       {"emotion": "happy", "start_sec": 1, "end_sec": 2}]}}
    assert T.emotion_of(multi) is None
    multi["emotion"]["labels"][1]["emotion"] = "neutral"
    assert T.emotion_of(multi) == "neutral"
    assert T.emotion_of({"emotion": {"labels": "ecstatic"}}) is None
    # an explicit mapping from the file's meta_info wins
    assert T.decode_appearance({"appearance": [1, 0], "appearance_mapping": ["Male", "Young"]}) == ["male"]
    assert len(T.CELEBVHQ_APPEARANCE) == 40 == len(set(T.CELEBVHQ_APPEARANCE))
    assert len(T.CELEBVHQ_ACTIONS) == 35 == len(set(T.CELEBVHQ_ACTIONS))


# ----------------------------------------------------------------------------- real faces


@pytest.fixture(scope="module")
def real_faces():
    """Input rows for the 7 faces of two real photos (MTCNN boxes + 5 points, FaceMesh 478)."""
    pytest.importorskip("mediapipe")
    from efhq_assets.core.models.facemesh import FaceMeshLandmarker
    from efhq_assets.core.models.mtcnn import MtcnnDetector
    from efhq_assets.core.models.sample_images import astronaut_bgr, insightface_t1_bgr

    det, fm = MtcnnDetector(), FaceMeshLandmarker()
    images, rows = {}, []
    # labels EFHQ's review kept (confused / horizontal / vertical never reach a split by default)
    bins = ["frontal", "profile_left", "profile_right", "profile_up", "profile_down", "profile_extreme", "frontal"]
    for vid, loader in (("astronaut", astronaut_bgr), ("t1", insightface_t1_bgr)):
        try:
            img = loader()
        except Exception as exc:  # pragma: no cover - optional sample package missing
            pytest.skip(f"sample image unavailable: {exc}")
        images[vid] = img
        dets = sorted(det.detect([img])[0], key=lambda d: float(d.box[0]))
        lmks = fm.landmarks(img, [d.box for d in dets])
        for i, (d, lm) in enumerate(zip(dets, lmks)):
            k = len(rows)
            rows.append(mkrow(
                vid, frame=3, face=i, identity=f"{vid}-{i}", label=bins[k % len(bins)],
                yaw=[0, 60, -60, 5, -5, 80, 30][k % 7], pitch=[0, 0, 0, 40, -40, 50, 20][k % 7], score=50.0 + k,
                x1=float(d.box[0]), y1=float(d.box[1]), x2=float(d.box[2]), y2=float(d.box[3]),
                lmk5=np.asarray(d.lmk5, np.float64).reshape(-1).tolist(),
                lmk478=None if lm is None else np.asarray(lm[:, :2], np.float64).reshape(-1).tolist(),
                frame_width=img.shape[1], frame_height=img.shape[0],
                attributes=_attrs(("male",), "neutral") if vid == "t1" and i == 0 else None,
            ))
    fm.close()
    assert len(rows) >= 5
    return images, rows


def box_crop(images, size):
    """render_fn without align.py: square crop around the detector box (real pixels)."""
    import cv2

    def render(row):
        img = images[row["video_id"]]
        x1, y1, x2, y2 = (float(row[k]) for k in ("x1", "y1", "x2", "y2"))
        cx, cy, s = (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1) * 1.4
        M = np.array([[size / s, 0, size / 2 - cx * size / s], [0, size / s, size / 2 - cy * size / s]])
        return cv2.warpAffine(img, M, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)

    return render


def read_stylegan_zip(path):
    """What StyleGAN2-ADA's ImageFolderDataset does with a zip: image files (by extension), sorted,
    labels from dataset.json looked up by forward-slash name; returns (names, images, labels).
    The loader itself is :func:`read_eg3d_dataset` (EFHQ's vendored StyleGAN2-ADA,
    training_code/efhq_stylegan/training/dataset.py, has the same ImageFolderDataset): class labels
    come back as int64 (N,)."""
    import cv2

    _, _, loader_labels = read_eg3d_dataset(path)
    assert loader_labels.dtype == np.int64 and loader_labels.ndim == 1

    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        image_names = sorted(n for n in names if n.lower().endswith((".png", ".jpg", ".jpeg")))
        labels = dict(json.loads(zf.read("dataset.json"))["labels"])
        imgs = [cv2.imdecode(np.frombuffer(zf.read(n), np.uint8), cv2.IMREAD_UNCHANGED) for n in image_names]
        meta = json.loads(zf.read("metadata.json"))
        infos = zf.infolist()
    assert set(labels) == set(image_names)  # every image labelled, every label has its image
    assert all(i.date_time == C.ZIP_DATE_TIME for i in infos)
    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    return image_names, imgs, [labels[n] for n in image_names], meta


def test_stylegan_zip_reads_back_like_imagefolderdataset(real_faces, tmp_path):
    images, rows = real_faces
    sel = G.select_gan(rows, outside_frame=never_outside)
    assert len(sel) == len(rows)
    out = tmp_path / "efhq_64.zip"
    res = G.export_stylegan_zip(sel, box_crop(images, 96), out, resolution=64)  # 96 -> resized to 64
    assert res["count"] == len(sel) and res["skipped"] == []
    names, imgs, labels, meta = read_stylegan_zip(out)
    assert names == sorted(r["path"] for r in sel)
    assert all(im is not None and im.shape == (64, 64, 3) and im.dtype == np.uint8 for im in imgs)
    assert all(im.std() > 10 for im in imgs)  # real pixels, not blanks
    by_path = {r["path"]: r for r in sel}
    assert labels == [by_path[n]["class_index"] for n in names]
    assert set(labels) == {0, 1}
    for n in names:
        m = meta["images"][n]
        assert (m["video_id"], m["frame_index"], m["face_index"]) == C.row_key(by_path[n])
        assert m["identity_id"] == by_path[n]["identity_id"] and m["label"] == by_path[n]["label"]
    # deterministic bytes, atomic (no temp files left), and None renders skipped
    out2 = tmp_path / "again.zip"
    G.export_stylegan_zip(list(reversed(sel)), box_crop(images, 96), out2, resolution=64)
    assert out.read_bytes() == out2.read_bytes()
    render = box_crop(images, 64)
    res3 = G.export_stylegan_zip(sel, lambda r: None if r["face_index"] == 0 else render(r), tmp_path / "s.zip", 64)
    assert len(res3["skipped"]) == sum(r["face_index"] == 0 for r in sel)
    assert len(read_stylegan_zip(tmp_path / "s.zip")[0]) == res3["count"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.zip", "efhq_64.zip", "s.zip"]
    with pytest.raises(ValueError):
        G.export_stylegan_zip(sel, render, tmp_path / "bad.zip", resolution=100)
    assert not (tmp_path / "bad.zip").exists()
    # a failing render leaves nothing where a reader looks
    with pytest.raises(RuntimeError):
        G.export_stylegan_zip(sel, lambda r: (_ for _ in ()).throw(RuntimeError("decode failed")), tmp_path / "f.zip", 64)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.zip", "efhq_64.zip", "s.zip"]


def test_task_exports_use_the_one_atomic_writer(tmp_path, monkeypatch):
    """Every task file goes through core/storage's writer (fsync, temp files a crash leaves are swept)."""
    from efhq_assets.core import storage

    assert C.atomic_write_bytes is storage.atomic_write_bytes
    temps = []
    real = C.atomic_path

    def recording(target):
        temps.append(target)
        return real(target)

    monkeypatch.setattr(C, "atomic_path", recording)
    with C.DeterministicZip(tmp_path / "x.zip") as zf:
        zf.add("a.txt", b"a")
    assert temps == [tmp_path / "x.zip"] and zipfile.ZipFile(tmp_path / "x.zip").namelist() == ["a.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.zip"]


def test_eg3d_dataset_json_folder_and_zip(real_faces, tmp_path):
    import cv2

    images, rows = real_faces
    camera_fn = None if HAVE_ALIGN else fake_camera
    sel = E.select_eg3d(rows, outside_frame=never_outside, camera_fn=camera_fn)
    render = box_crop(images, 512)
    res = E.export_eg3d(sel, render, tmp_path / "eg3d", camera_fn=camera_fn)  # mirrored by default, as EFHQ
    assert res["count"] == 2 * len(sel)
    labels = json.loads((tmp_path / "eg3d" / "dataset.json").read_text())["labels"]
    assert len(labels) == 2 * len(sel)
    for name, cam in labels:
        assert isinstance(name, str) and len(cam) == 25 and all(isinstance(v, float) for v in cam)
        img = cv2.imread(str(tmp_path / "eg3d" / name))
        assert img is not None and img.shape == (512, 512, 3)
    lab = dict(labels)
    r = sel[0]
    assert lab[r["path"]] == r["camera"]
    mname = r["path"].replace(".png", "_mirror.png")
    assert lab[mname] == E.mirror_camera(r["yaw"], r["pitch"], r["camera_roll"], camera_fn)
    if HAVE_ALIGN:  # the mirrored camera sits at the mirrored position (x negated), same intrinsics
        c, m = np.asarray(lab[r["path"]]), np.asarray(lab[mname])
        assert np.allclose(m[[3, 7, 11]], c[[3, 7, 11]] * [-1, 1, 1]) and np.allclose(m[16:], c[16:])
    mirrored = cv2.imread(str(tmp_path / "eg3d" / mname))
    assert np.array_equal(mirrored, cv2.imread(str(tmp_path / "eg3d" / r["path"]))[:, ::-1])
    # zip target, unmirrored option: same labels, readable images
    E.export_eg3d(sel, render, tmp_path / "eg3d.zip", camera_fn=camera_fn, mirror=False)
    with zipfile.ZipFile(tmp_path / "eg3d.zip") as zf:
        zl = json.loads(zf.read("dataset.json"))["labels"]
        assert [n for n, _ in zl] == sorted(r["path"] for r in sel)
        for n, cam in zl:
            assert len(cam) == 25
            assert cv2.imdecode(np.frombuffer(zf.read(n), np.uint8), cv2.IMREAD_COLOR).shape == (512, 512, 3)


def test_facemesh_condition_from_real_landmarks(real_faces):
    images, rows = real_faces
    r = next(r for r in rows if r["lmk478"] is not None)
    xy = np.asarray(r["lmk478"], np.float64).reshape(478, 2)
    # move into a 512 box around the face (any similarity works for the drawing check)
    x1, y1, x2, y2 = r["x1"], r["y1"], r["x2"], r["y2"]
    s = 512 / (max(x2 - x1, y2 - y1) * 1.6)
    xy_c = (xy - [(x1 + x2) / 2, (y1 + y2) / 2]) * s + 256
    cond = T.draw_facemesh_condition(xy_c, size=512)
    assert cond.shape == (512, 512, 3) and cond.dtype == np.uint8
    lit = cond.any(axis=2)
    assert 0.005 < lit.mean() < 0.2  # lines, not a filled blob
    for idx, name in ((468, "right_pupil"), (473, "left_pupil")):
        x, y = np.round(xy_c[idx]).astype(int)
        assert tuple(cond[y, x]) == T.CONDITION_COLORS[name]
    # colours of every part appear
    colours = {tuple(c) for c in cond[lit]}
    assert {T.CONDITION_COLORS[k] for k in ("face_oval", "lips", "left_eye", "right_eye")} <= colours
    assert np.array_equal(cond, T.draw_facemesh_condition(xy_c, size=512))  # deterministic
    # points off the canvas or NaN are skipped, not clamped onto the border
    bad = xy_c.copy()
    bad[:] = np.nan
    assert not T.draw_facemesh_condition(bad).any()
    assert not T.draw_facemesh_condition(xy_c + 2000).any()


def _condition_with_mediapipes_drawing(xy, size):
    """The condition's lines as EFHQ drew them: MediaPipe's drawing_utils.draw_landmarks on normalised points."""
    from mediapipe.framework.formats import landmark_pb2
    from mediapipe.python.solutions import drawing_utils

    canvas = np.zeros((size, size, 3), np.uint8)
    lst = landmark_pb2.NormalizedLandmarkList()
    for x, y in xy:
        ok = np.isfinite(x) and np.isfinite(y)
        lst.landmark.add(x=float((x + 0.5) / size) if ok else -1.0, y=float((y + 0.5) / size) if ok else -1.0)
    t = max(1, round(size / 256))
    for name, conns in T._facemesh_parts():
        drawing_utils.draw_landmarks(canvas, lst, connections=conns, landmark_drawing_spec=None,
                                     connection_drawing_spec=drawing_utils.DrawingSpec(color=T.CONDITION_COLORS[name],
                                                                                       thickness=t))
    return canvas


def _without_pupils(canvas, xy):
    """EFHQ's pupils are drawn over the lines: black out their squares to compare the lines alone."""
    size = canvas.shape[0]
    for idx in (T.PUPIL_LEFT_IMG, T.PUPIL_RIGHT_IMG):
        x, y = xy[idx]
        if np.isfinite(x) and np.isfinite(y) and 0 <= x < size and 0 <= y < size:
            canvas[max(int(y) - 2, 0):int(y) + 2, max(int(x) - 2, 0):int(x) + 2] = 0
    return canvas


def test_facemesh_condition_lines_are_mediapipes_pixel_for_pixel(real_faces):
    images, rows = real_faces
    rng = np.random.default_rng(3)
    r = next(r for r in rows if r["lmk478"] is not None)
    xy = np.asarray(r["lmk478"], np.float64).reshape(478, 2)
    x1, y1, x2, y2 = r["x1"], r["y1"], r["x2"], r["y2"]
    for size in (512, 256):
        base = (xy - [(x1 + x2) / 2, (y1 + y2) / 2]) * size / (max(x2 - x1, y2 - y1) * 1.6) + size / 2
        off_edge = base + [size * 0.4, 0]  # part of the face leaves the canvas
        holes = base.copy()
        holes[rng.choice(478, 40, replace=False)] = np.nan
        border = base.copy()
        border[:20] = [[-0.5, size - 0.5]] * 20  # exactly on the canvas' edges (normalised 0 and 1)
        for case in (base, off_edge, holes, border, base + rng.normal(0, 0.3, base.shape)):
            lines = _without_pupils(T.draw_facemesh_condition(case, size=size), case)
            want = _without_pupils(_condition_with_mediapipes_drawing(case, size), case)
            assert want.any() and np.array_equal(lines, want)


def test_select_t2i_filters(real_faces):
    _, rows = real_faces
    sel = T.select_t2i(rows, outside_frame=never_outside)
    assert len(sel) == sum(r["lmk478"] is not None for r in rows)
    assert all(len(r["lmk478"]) == 956 and r["source_path"].startswith("source/") and
               r["target_path"].startswith("target/") and r["path"] == r["target_path"] for r in sel)
    assert list(C.table_rows(sel, T.SPLIT_T2I_COLUMNS)[0]) == list(T.SPLIT_T2I_COLUMNS)
    with_attrs = [r for r in sel if r["video_id"] == "t1" and r["face_index"] == 0]
    assert with_attrs and "man" in with_attrs[0]["prompt"] and "neutral" in with_attrs[0]["prompt"]
    assert all(" man" not in r["prompt"] for r in sel if r not in with_attrs)
    # the MediaPipe filter: image short side >= 384, face >= 64, landmarks present
    small = [dict(r, frame_height=300) for r in rows]
    assert T.select_t2i(small, outside_frame=never_outside) == []
    tiny = [dict(r, x2=r["x1"] + 50) for r in rows]
    assert T.select_t2i(tiny, outside_frame=never_outside) == []
    nolm = [dict(r, lmk478=None) for r in rows]
    assert T.select_t2i(nolm, outside_frame=never_outside) == []


# ----------------------------------------------------------------------------- with core/align.py


@needs_align
def test_t2i_export_with_eg3d_crops(real_faces, tmp_path):
    import cv2

    from efhq_assets.core import align

    images, rows = real_faces
    sel = T.select_t2i(rows)

    def render_target(row):
        return align.eg3d_crop(images[row["video_id"]], np.asarray(row["lmk5"], np.float64).reshape(5, 2), size=512)

    res = T.export_t2i(sel, render_target, tmp_path / "cn")
    assert res["count"] == len(sel) > 0
    stock = controlnet_stock_dataset(tmp_path / "cn")
    efhq = controlnet_efhq_dataset(tmp_path / "cn")
    assert len(stock) == len(efhq) == len(sel)
    by_prompt = {}
    for item in stock:
        assert item["hint"].shape == item["jpg"].shape == (512, 512, 3) and item["txt"]
        assert 0.0 <= item["hint"].min() and item["hint"].max() <= 1.0 and -1.0 <= item["jpg"].min()
        assert item["hint"].any() and item["jpg"].std() > 0.05
        # the drawn face sits on the face in the crop: lit pixels lie mostly inside the central region
        ys, xs = np.nonzero(item["hint"].any(axis=2))
        assert 128 < xs.mean() < 384 and 128 < ys.mean() < 400
        by_prompt.setdefault(item["txt"], []).append(item)
    for item in efhq:  # EFHQ's loader sees the same pairs with the same prompts
        assert any(np.array_equal(item["hint"], o["hint"]) and np.array_equal(item["jpg"], o["jpg"])
                   for o in by_prompt[item["txt"]])


def controlnet_stock_dataset(base):
    """lllyasviel/ControlNet @ ed85cd1e25a5ed592f7d8178495b4483de0331bf tutorial_dataset.py MyDataset, with
    './training/fill50k/' as `base`: prompt.json read line by line with json.loads, images by
    cv2.imread(base + '/' + name), BGR->RGB, hint in [0, 1], target in [-1, 1]."""
    import cv2

    data = []
    with open(str(base) + "/prompt.json", "rt") as f:
        for line in f:
            data.append(json.loads(line))
    out = []
    for item in data:
        source = cv2.cvtColor(cv2.imread(str(base) + "/" + item["source"]), cv2.COLOR_BGR2RGB)
        target = cv2.cvtColor(cv2.imread(str(base) + "/" + item["target"]), cv2.COLOR_BGR2RGB)
        out.append(dict(jpg=(target.astype(np.float32) / 127.5) - 1.0, txt=item["prompt"],
                        hint=source.astype(np.float32) / 255.0))
    return out


def controlnet_efhq_dataset(base):
    """VinAIResearch/EFHQ @ 6883f41623373ad52ea0797937fc61d258f04645 5_train_eval/controlnet/tutorial_dataset.py
    MyDataset: prompts.json = {filename: prompt}; target_images/<filename>.png must exist (assert);
    condition_images/<filename>.png skipped when missing; same normalisation as the stock loader."""
    import cv2
    from pathlib import Path

    source_dir, target_dir = Path(base) / "condition_images", Path(base) / "target_images"
    with open(Path(base) / "prompts.json") as f:
        prompts = json.load(f)
    data = []
    for filename, prompt in prompts.items():
        source_path, target_path = source_dir / (filename + ".png"), target_dir / (filename + ".png")
        assert target_path.exists(), f"Target path: {target_path} not exist"
        if not source_path.exists():
            continue
        data.append({"source": source_path.as_posix(), "target": target_path.as_posix(), "prompt": prompt})
    out = []
    for item in data:
        source = cv2.cvtColor(cv2.imread(item["source"]), cv2.COLOR_BGR2RGB)
        target = cv2.cvtColor(cv2.imread(item["target"]), cv2.COLOR_BGR2RGB)
        out.append(dict(jpg=(target.astype(np.float32) / 127.5) - 1.0, txt=item["prompt"],
                        hint=source.astype(np.float32) / 255.0))
    return out


# EFHQ 1_attributes_extraction/mediapipeface.py DrawingSpec colours (drawn on a BGR canvas, written by cv2.imwrite)
EFHQ_PALETTE = {"face_oval": (10, 200, 10), "lips": (10, 180, 10), "left_eye": (180, 200, 10),
                "right_eye": (10, 200, 180), "left_eyebrow": (180, 220, 10), "right_eyebrow": (10, 220, 180),
                "left_pupil": (250, 200, 10), "right_pupil": (10, 200, 250)}


@pytest.mark.parametrize("part", sorted(EFHQ_PALETTE))
def test_condition_palette_is_efhqs(part):
    assert T.CONDITION_COLORS[part] == EFHQ_PALETTE[part]


@needs_align
def test_gan_and_eg3d_end_to_end_with_align(real_faces, tmp_path):
    from efhq_assets.core import align

    images, rows = real_faces
    sel = G.select_gan(rows)  # the real ffhq_outside_frame
    assert sel, "every real face was rejected as outside the frame"

    def render(row):
        return align.align_ffhq_fast(images[row["video_id"]], np.asarray(row["lmk5"], np.float64).reshape(5, 2),
                                     output_size=256)

    G.export_stylegan_zip(sel, render, tmp_path / "ffhq256.zip", resolution=256)
    names, imgs, labels, _ = read_stylegan_zip(tmp_path / "ffhq256.zip")
    assert len(names) == len(sel) and all(im.shape == (256, 256, 3) for im in imgs)
    esel = E.select_eg3d(rows)
    assert all(len(r["camera"]) == 25 for r in esel)
    E.export_eg3d(esel, lambda r: align.eg3d_crop(images[r["video_id"]],
                                                  np.asarray(r["lmk5"], np.float64).reshape(5, 2))[0],
                  tmp_path / "eg3d.zip")
    with zipfile.ZipFile(tmp_path / "eg3d.zip") as zf:
        assert len(json.loads(zf.read("dataset.json"))["labels"]) == 2 * len(esel)  # + _mirror copies


def read_eg3d_dataset(path, resolution=None):
    """NVlabs/eg3d ImageFolderDataset as EFHQ vendors it (VinAIResearch/EFHQ @ 6883f41623373ad52ea0797937fc61d258f04645
    training_code/efhq_eg3d/eg3d/training/dataset.py): file names from os.walk (folder) or namelist (zip), images =
    sorted names whose extension PIL knows, all one shape (CHW uint8, square, `resolution` when given),
    labels = dict(dataset.json["labels"])[name] for every image, as float32 (N, 25)."""
    import io
    import os

    import PIL.Image

    PIL.Image.init()
    if os.path.isdir(path):
        all_fnames = {os.path.relpath(os.path.join(root, f), start=path) for root, _d, files in os.walk(path)
                      for f in files}

        def open_file(name):
            return open(os.path.join(path, name), "rb")
    else:
        zf = zipfile.ZipFile(path)
        all_fnames = set(zf.namelist())

        def open_file(name):
            return io.BytesIO(zf.read(name))
    image_fnames = sorted(f for f in all_fnames if os.path.splitext(f)[1].lower() in PIL.Image.EXTENSION)
    images = []
    for name in image_fnames:
        with open_file(name) as f:
            img = np.array(PIL.Image.open(f))
        images.append(img.transpose(2, 0, 1))
    raw_shape = [len(images)] + list(images[0].shape)
    assert all(list(im.shape) == raw_shape[1:] for im in images)
    if resolution is not None:
        assert raw_shape[2] == raw_shape[3] == resolution, "Image files do not match the specified resolution"
    with open_file("dataset.json") as f:
        labels = dict(json.load(f)["labels"])
    labels = np.array([labels[fname.replace("\\", "/")] for fname in image_fnames])
    labels = labels.astype({1: np.int64, 2: np.float32}[labels.ndim])
    return image_fnames, np.stack(images), labels


@pytest.mark.parametrize("size,target", [(512, "eg3d"), (1024, "eg3d.zip")])
def test_eg3d_export_reads_back_in_eg3ds_loader(real_faces, tmp_path, size, target):
    images, rows = real_faces
    camera_fn = None if HAVE_ALIGN else fake_camera
    sel = E.select_eg3d(rows, outside_frame=never_outside, camera_fn=camera_fn)
    E.export_eg3d(sel, box_crop(images, size), tmp_path / target, size=size, camera_fn=camera_fn)
    names, imgs, labels = read_eg3d_dataset(tmp_path / target, resolution=size)
    assert len(names) == 2 * len(sel) and labels.shape == (len(names), 25) and labels.dtype == np.float32
    assert imgs.dtype == np.uint8 and imgs.shape[1:] == (3, size, size)
    by_name = dict(zip(names, range(len(names))))
    for r in sel:  # each image and its _mirror copy (EFHQ's preprocess_face_cameras.py), flipped pixels and camera
        a, b = by_name[r["path"]], by_name[r["path"][:-4] + "_mirror.png"]
        assert np.array_equal(imgs[b], imgs[a][:, :, ::-1])
        assert np.allclose(labels[a], np.float32(r["camera"]))
        assert np.allclose(labels[b], np.float32(E.mirror_camera(r["yaw"], r["pitch"], r["camera_roll"], camera_fn)))


def test_png_encoding_is_lossless_deterministic_and_no_bigger_than_zlibs_default():
    """The exports' PNGs (zlib's run-length strategy, tasks/common.encode_png) on a real aligned face."""
    import cv2

    from efhq_assets.core.align import align_ffhq_fast
    from efhq_assets.core.models.mtcnn import MtcnnDetector
    from efhq_assets.core.models.sample_images import astronaut_bgr

    image = astronaut_bgr()
    face = max(MtcnnDetector().detect([image])[0], key=lambda d: d.score)
    crop = align_ffhq_fast(image, np.asarray(face.lmk5, np.float64), output_size=512)
    data = C.encode_png(crop)
    assert data == C.encode_png(crop)  # same pixels, same bytes
    assert np.array_equal(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED), crop)
    ok, default = cv2.imencode(".png", crop, [cv2.IMWRITE_PNG_COMPRESSION, 6])
    assert ok and len(data) <= 1.05 * len(default), (len(data), len(default))


def test_progress_ticker_reports_now_and_then_and_always_the_last_item():
    seen = []
    ticker = C.ProgressTicker(5, lambda done, total: seen.append((done, total)), every_s=3600)
    for _ in range(5):
        ticker.tick()
    assert seen == [(5, 5)]  # nothing in between within the interval; the last item always
    seen.clear()
    ticker = C.ProgressTicker(3, lambda done, total: seen.append(done), every_s=0)
    ticker.tick(2)
    ticker.tick()
    assert seen == [2, 3]
    C.ProgressTicker(2).tick(2)  # no report: counts only



def test_ordered_parallel_map_keeps_the_order_and_raises_at_the_failing_items_turn():
    import time

    def slow_square(i):
        time.sleep(0.002 * ((7 * i) % 5))  # later items often finish first
        if i == 13:
            raise KeyError(i)
        return i * i

    assert list(C.ordered_parallel_map(slow_square, range(13), workers=4)) == [i * i for i in range(13)]
    assert list(C.ordered_parallel_map(slow_square, range(5), workers=1)) == [0, 1, 4, 9, 16]
    got = []
    with pytest.raises(KeyError):
        for v in C.ordered_parallel_map(slow_square, range(40), workers=3, window=4):
            got.append(v)
    assert got == [i * i for i in range(13)]  # every item before the failing one, in order


def test_exports_are_the_same_bytes_with_one_thread_or_several(real_faces, tmp_path, monkeypatch):
    images, rows = real_faces
    gan = G.select_gan(rows, outside_frame=never_outside)
    eg3d = E.select_eg3d(rows, outside_frame=never_outside, camera_fn=None if HAVE_ALIGN else fake_camera)
    written = {}
    for threads in (1, 3):
        monkeypatch.setattr(C, "EXPORT_THREADS", threads)
        G.export_stylegan_zip(gan, box_crop(images, 96), tmp_path / f"gan{threads}.zip", resolution=64)
        E.export_eg3d(eg3d, box_crop(images, 512), tmp_path / f"eg3d{threads}.zip")
        written[threads] = [(tmp_path / f"{task}{threads}.zip").read_bytes() for task in ("gan", "eg3d")]
    assert written[1] == written[3] and all(len(b) > 1000 for b in written[1])
