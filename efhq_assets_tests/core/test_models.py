"""Face model backends on real photos (no mocks) + the weights registry.

Photos: skimage's astronaut (public domain) and insightface's bundled t1.jpg,
read at run time from the installed packages (never copied into the repo).
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from efhq_assets.core.models import registry
from efhq_assets.core.models.base import (
    Detection,
    FaceDetector,
    FaceEmbedder,
    Landmarker,
    box_area,
    files_sha256,
    passes_efhq_filter,
)
from efhq_assets.core.models.sample_images import astronaut_bgr, insightface_t1_bgr

cv2 = pytest.importorskip("cv2")


# --------------------------------------------------------------------------- #
# fixtures (module scope: models load once)
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def detector():
    return registry.create("detector", "mtcnn")


@pytest.fixture(scope="module")
def astronaut():
    return astronaut_bgr()


@pytest.fixture(scope="module")
def t1():
    return insightface_t1_bgr()


@pytest.fixture(scope="module")
def astro_det(detector, astronaut):
    dets = detector.detect([astronaut])[0]
    assert len(dets) == 1
    return dets[0]


@pytest.fixture(scope="module")
def t1_dets(detector, t1):
    return detector.detect([t1])[0]


@pytest.fixture(scope="module")
def facemesh():
    fm = registry.create("landmarker", "facemesh")
    yield fm
    fm.close()


@pytest.fixture(scope="module")
def dlib68():
    return registry.create("landmarker", "dlib68")


@pytest.fixture(scope="module")
def embedder():
    return registry.create("embedder", "dlib_resnet")


def iou(a, b) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return inter / (box_area(a) + box_area(b) - inter)


def assert_lmk5_order(det: Detection) -> None:
    le, re, nose, ml, mr = det.lmk5
    assert le[0] < re[0], "left eye (image) must have the smaller x"
    assert ml[0] < mr[0], "left mouth corner (image) must have the smaller x"
    assert le[0] < nose[0] < re[0]
    assert max(ml[1], mr[1]) > max(le[1], re[1]), "mouth below the eyes"
    assert nose[1] > min(le[1], re[1])
    x1, y1, x2, y2 = det.box
    assert np.all((det.lmk5[:, 0] > x1) & (det.lmk5[:, 0] < x2) & (det.lmk5[:, 1] > y1) & (det.lmk5[:, 1] < y2))


# --------------------------------------------------------------------------- #
# base
# --------------------------------------------------------------------------- #
def test_passes_efhq_filter_rule():
    assert passes_efhq_filter(0.9, [0, 0, 256, 256])
    assert not passes_efhq_filter(0.899, [0, 0, 300, 300])
    assert not passes_efhq_filter(0.99, [0, 0, 255, 256])
    # EFHQ compares the area (65,536 px), not each side
    assert passes_efhq_filter(0.95, [10, 10, 410, 180])
    assert passes_efhq_filter(0.5, [0, 0, 100, 100], min_score=0.5, min_side=100)
    d = Detection(box=[0, 0, 300, 300], score=0.95, lmk5=np.zeros((5, 2)))
    assert d.passes_efhq_filter() and d.box.dtype == np.float32
    assert len(d.as_row()["lmk5"]) == 10


def test_core_models_import_without_heavy_modules():
    code = (
        "import sys\n"
        "import efhq_assets.core.models.base, efhq_assets.core.models.registry\n"
        "import efhq_assets.core.models.mtcnn, efhq_assets.core.models.facemesh\n"
        "import efhq_assets.core.models.dlib68, efhq_assets.core.models.sample_images\n"
        "bad = [m for m in ('cv2', 'onnxruntime', 'mediapipe', 'dlib', 'dagster', 'polars', 'av', 'torch') "
        "if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --------------------------------------------------------------------------- #
# MTCNN
# --------------------------------------------------------------------------- #
def test_mtcnn_astronaut_one_face_landmark_order(detector, astro_det):
    assert isinstance(detector, FaceDetector)
    assert astro_det.score > 0.9
    assert_lmk5_order(astro_det)
    x1, y1, x2, y2 = astro_det.box
    assert 150 < x1 < 200 and 40 < y1 < 80 and 250 < x2 < 290 and 150 < y2 < 200
    assert not astro_det.passes_efhq_filter()  # 88x114 px face: too small for EFHQ
    assert len(detector.weights_sha256) == 64 and detector.name == "mtcnn" and detector.version


def test_mtcnn_t1_finds_all_six_faces(t1_dets):
    assert len(t1_dets) == 6
    assert all(d.score >= 0.9 for d in t1_dets)
    # best score first, boxes disjoint
    assert [d.score for d in t1_dets] == sorted((d.score for d in t1_dets), reverse=True)
    for i in range(6):
        for j in range(i + 1, 6):
            assert iou(t1_dets[i].box, t1_dets[j].box) < 0.05
    for d in t1_dets:
        le, re, nose, ml, mr = d.lmk5
        assert le[0] < re[0] and ml[0] < mr[0]
        # mouth below the eyes along the face's own vertical axis (faces are rolled)
        eye_mid, mouth_mid = (le + re) / 2, (ml + mr) / 2
        eye_dir = (re - le) / np.linalg.norm(re - le)
        down = np.array([-eye_dir[1], eye_dir[0]])
        assert float(np.dot(mouth_mid - eye_mid, down)) > 0.2 * d.width


def test_mtcnn_t1_enlarged_3x(detector, t1, t1_dets):
    big = cv2.resize(t1, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)
    det = registry.create("detector", "mtcnn", min_face=120)
    det.detect([big[:64, :64]])  # warm-up
    t0 = time.perf_counter()
    dets = det.detect([big])[0]
    elapsed = time.perf_counter() - t0
    print(f"MTCNN on {big.shape[1]}x{big.shape[0]} (min_face=120): {elapsed * 1000:.0f} ms, {len(dets)} faces")
    strong = [d for d in dets if d.score >= 0.9]
    assert len(strong) == 6
    for ref in t1_dets:
        best = max(strong, key=lambda d: iou(d.box, ref.box * 3))
        assert iou(best.box, ref.box * 3) > 0.6
        assert np.abs(best.lmk5 - ref.lmk5 * 3).max() < 0.15 * best.width
    # 3x the 1x face sizes: every face now passes the EFHQ area rule
    assert all(d.passes_efhq_filter() for d in strong)
    assert elapsed < 5.0

    # the default detector (min_face=40) also finds the 6 faces at 4K; anything
    # extra it finds there is tiny and fails the EFHQ filter
    dets40 = detector.detect([big])[0]
    for ref in t1_dets:
        best = max(dets40, key=lambda d: iou(d.box, ref.box * 3))
        assert iou(best.box, ref.box * 3) > 0.6 and best.score >= 0.9
    assert sum(d.passes_efhq_filter() for d in dets40) == 6


def test_mtcnn_batch_equals_single(detector, astronaut, t1, astro_det, t1_dets):
    both = detector.detect([astronaut, t1])
    assert [len(x) for x in both] == [1, 6]
    np.testing.assert_allclose(both[0][0].box, astro_det.box, atol=1e-3)
    np.testing.assert_allclose(
        np.stack([d.box for d in both[1]]), np.stack([d.box for d in t1_dets]), atol=1e-3
    )
    assert detector.detect([]) == []
    assert detector.detect([np.zeros((100, 120, 3), np.uint8)]) == [[]]


def test_mtcnn_flip_mirrors_detections(detector, astronaut, astro_det):
    W = astronaut.shape[1]
    flipped = np.ascontiguousarray(astronaut[:, ::-1])
    dets = detector.detect([flipped])[0]
    assert len(dets) == 1
    f = dets[0]
    mirrored = np.array([W - astro_det.box[2], astro_det.box[1], W - astro_det.box[0], astro_det.box[3]])
    # MTCNN is not exactly flip-equivariant (P-net grid, stride 2 per pyramid level):
    # a few px on an 88 px face
    assert np.abs(f.box - mirrored).max() < 6.0
    assert abs(f.width - astro_det.width) < 4.0 and abs(f.height - astro_det.height) < 4.0
    # the image-left eye of the flip is the mirrored image-right eye of the original
    assert np.abs(f.lmk5[0] - [W - astro_det.lmk5[1, 0], astro_det.lmk5[1, 1]]).max() < 5.0
    assert np.abs(f.lmk5[3] - [W - astro_det.lmk5[4, 0], astro_det.lmk5[4, 1]]).max() < 5.0
    assert_lmk5_order(f)


def test_mtcnn_rejects_bad_input(detector, astronaut):
    with pytest.raises(TypeError):
        detector.detect(astronaut)
    with pytest.raises(ValueError):
        detector.detect([astronaut.astype(np.float32)])
    with pytest.raises(ValueError):
        registry.create("detector", "mtcnn", min_face=5)


def test_mtcnn_max_side_caps_pyramid(detector):
    capped = registry.create("detector", "mtcnn", min_face=20, max_side=1280)
    assert capped.scales(2658, 3840)[0] == pytest.approx(1280 / 3840)
    assert capped.scales(600, 800)[0] == pytest.approx(12 / 20)  # cap not binding
    assert detector.scales(886, 1280)[0] == pytest.approx(12 / 40)
    assert all(s * 886 >= 12 for s in detector.scales(886, 1280))


# --------------------------------------------------------------------------- #
# Landmarkers
# --------------------------------------------------------------------------- #
def _inside(points: np.ndarray, box: np.ndarray, margin: float) -> float:
    x1, y1, x2, y2 = box
    m = margin * max(x2 - x1, y2 - y1)
    ok = (points[:, 0] > x1 - m) & (points[:, 0] < x2 + m) & (points[:, 1] > y1 - m) & (points[:, 1] < y2 + m)
    return float(ok.mean())


def test_facemesh_on_astronaut(facemesh, astronaut, astro_det):
    assert isinstance(facemesh, Landmarker)
    (pts,) = facemesh.landmarks(astronaut, [astro_det.box])
    assert pts is not None and pts.shape == (478, 3) and pts.dtype == np.float32
    assert _inside(pts[:, :2], astro_det.box, 0.0) > 0.95
    assert _inside(pts[:, :2], astro_det.box, 0.1) == 1.0
    size = max(astro_det.width, astro_det.height)
    iris = pts[[468, 473], :2]  # iris centres: image-left eye, image-right eye
    assert np.abs(iris - astro_det.lmk5[:2]).max() < 0.1 * size
    eyes = np.stack([pts[[33, 133], :2].mean(0), pts[[362, 263], :2].mean(0)])
    assert np.abs(eyes - astro_det.lmk5[:2]).max() < 0.1 * size
    # z is in pixels (same scale as x): a face is roughly as deep as it is wide
    assert 0.3 * size < np.ptp(pts[:, 2]) < 1.5 * size


def test_facemesh_all_t1_faces_and_no_face(facemesh, t1, t1_dets):
    res = facemesh.landmarks(t1, [d.box for d in t1_dets])
    assert all(r is not None for r in res)
    for r, d in zip(res, t1_dets):
        assert np.abs(r[[468, 473], :2] - d.lmk5[:2]).max() < 0.15 * max(d.width, d.height)
    blank = np.full((300, 300, 3), 127, np.uint8)
    assert facemesh.landmarks(blank, [np.array([100, 100, 200, 200], np.float32)]) == [None]


def test_dlib68_on_astronaut(dlib68, astronaut, astro_det):
    assert isinstance(dlib68, Landmarker)
    (pts,) = dlib68.landmarks(astronaut, [astro_det.box])
    assert pts.shape == (68, 2)
    assert _inside(pts, astro_det.box, 0.0) > 0.9
    assert _inside(pts, astro_det.box, 0.1) == 1.0
    size = max(astro_det.width, astro_det.height)
    eyes = np.stack([pts[36:42].mean(0), pts[42:48].mean(0)])
    assert np.abs(eyes - astro_det.lmk5[:2]).max() < 0.1 * size
    assert dlib68.weights_sha256 == registry.get_spec("dlib68").sha256


def test_dlib68_and_facemesh_agree_on_t1(dlib68, facemesh, t1, t1_dets):
    boxes = [d.box for d in t1_dets]
    a = dlib68.landmarks(t1, boxes)
    b = facemesh.landmarks(t1, boxes)
    close = 0
    for pa, pb, d in zip(a, b, t1_dets):
        nose_a, nose_b = pa[30], pb[1, :2]
        close += np.linalg.norm(nose_a - nose_b) < 0.1 * max(d.width, d.height)
    assert close >= 5


# --------------------------------------------------------------------------- #
# Embedder
# --------------------------------------------------------------------------- #
def test_dlib_embedder_same_and_different_faces(embedder, detector, astronaut, astro_det, t1, t1_dets):
    assert isinstance(embedder, FaceEmbedder)
    e1 = embedder.embed(astronaut, [astro_det.box])
    assert e1.shape == (1, 128) and e1.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e1, axis=1), 1.0, atol=1e-5)

    M = np.float32([[1.1, 0, -20], [0, 1.1, -15]])
    moved = cv2.warpAffine(astronaut, M, (512, 512))
    (d2,) = detector.detect([moved])[0]
    e2 = embedder.embed(moved, [d2.box])
    same = float(np.linalg.norm(e1 - e2))
    assert same < 0.6 and same < embedder.same_person_threshold

    E = embedder.embed(t1, [d.box for d in t1_dets])
    assert E.shape == (6, 128)
    iu = np.triu_indices(6, 1)
    D = np.linalg.norm(E[:, None] - E[None], axis=2)[iu]
    assert (D > embedder.same_person_threshold).mean() >= 0.9
    assert D.min() > 3 * same

    raw = registry.create("embedder", "dlib_resnet", normalize=False)
    R = raw.embed(t1, [d.box for d in t1_dets])
    Dr = np.linalg.norm(R[:, None] - R[None], axis=2)[iu]
    assert (Dr > 0.6).mean() >= 0.8  # dlib's own threshold on raw descriptors
    assert embedder.embed(t1, []).shape == (0, 128)


# --------------------------------------------------------------------------- #
# Registry
# --------------------------------------------------------------------------- #
def test_registry_by_name():
    assert "mtcnn" in registry.available("detector")
    assert {"facemesh", "dlib68"} <= set(registry.available("landmarker"))
    assert "dlib_resnet" in registry.available("embedder")
    with pytest.raises(registry.UnknownModelError, match="no detector backend named 'nope'"):
        registry.create("detector", "nope")
    with pytest.raises(ValueError, match="unknown model kind"):
        registry.available("teleporter")
    with pytest.raises(ValueError, match="already registered"):
        registry.register("detector", "mtcnn", lambda: None)
    registry.register("quality", "_test_const", lambda value=1.0: value)
    try:
        assert registry.create("quality", "_test_const", value=3.0) == 3.0
    finally:
        registry._REGISTRY["quality"].pop("_test_const")


def test_manifest_is_package_data_and_import_registers_nothing():
    """MANIFEST is read from core/models/manifest.json as shipped (no module rewrites it); importing the registry
    registers no backend: the first use registers every BUILTIN_BACKENDS entry, which names a manifest model."""
    import json
    from importlib import resources

    from efhq_assets.core.models import manifest

    shipped = json.loads(resources.files("efhq_assets.core.models").joinpath("manifest.json").read_text())
    assert [e["name"] for e in shipped] == list(manifest.load_manifest()) == list(registry.MANIFEST)
    assert manifest.load_manifest() == registry.MANIFEST
    code = ("import efhq_assets.core.models.registry as r\n"
            "assert not r._builtins_registered and not any(r._REGISTRY.values())\n"
            "assert r.available('quality') == ['hyperiqa_koniq'] and r._builtins_registered\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    for kind, name, *_ in registry.BUILTIN_BACKENDS:
        assert name in registry.available(kind)
        assert registry.get_spec(name).backend == name


def test_offline_weights_found_and_verified():
    for name in ("mtcnn", "facemesh", "dlib68", "dlib_resnet"):
        spec = registry.get_spec(name)
        assert spec.offline and spec.sha256
        paths = registry.find_weight_files(name)
        assert all(p.is_file() for p in paths)
        digests = registry.verify(name)
        assert list(digests.values())[0] == spec.sha256
    det_paths = registry.find_weight_files("mtcnn")
    assert files_sha256(det_paths) == files_sha256(list(reversed(det_paths)))


def test_list_models(monkeypatch, tmp_path):
    monkeypatch.setenv("EFHQ_MODEL_DIR", str(tmp_path))
    rows = {r["name"]: r for r in registry.list_models()}
    for name in ("scrfd_10g_bnkps", "insightface_1k3d68", "arcface_w600k_r50", "6drepnet", "6drepnet360",
                 "synergynet", "hyperiqa_koniq"):
        r = rows[name]
        assert not r["offline"] and not r["present"] and r["path"].startswith(str(tmp_path))
        assert r["licence"] and r["url"].startswith("https://")
    assert rows["mtcnn"]["present"] and rows["mtcnn"]["offline"] and rows["mtcnn"]["configured"]
    assert registry.get_spec("scrfd_10g_bnkps").file == "scrfd_10g_bnkps.onnx"
    assert registry.get_spec("insightface_1k3d68").file == "1k3d68.onnx"
    assert registry.get_spec("arcface_w600k_r50").file == "w600k_r50.onnx"
    assert "non-commercial" in registry.get_spec("arcface_w600k_r50").licence
    (tmp_path / "w600k_r50.onnx").write_bytes(b"x")
    assert {r["name"]: r for r in registry.list_models()}["arcface_w600k_r50"]["present"]


def test_missing_weights_message(monkeypatch, tmp_path):
    monkeypatch.setenv("EFHQ_MODEL_DIR", str(tmp_path / "models"))
    with pytest.raises(registry.MissingWeightsError) as e:
        registry.find_weights("6drepnet")
    msg = str(e.value)
    assert "6DRepNet_300W_LP_AFLW2000.pth" in msg
    assert str(tmp_path / "models") in msg
    assert "efhq models fetch 6drepnet" in msg
    with pytest.raises(registry.MissingWeightsError, match="efhq models fetch scrfd_10g_bnkps"):
        registry.find_weights("scrfd_10g_bnkps")
    with pytest.raises(registry.UnknownModelError):
        registry.find_weights("no_such_model")


def test_verify_checksums(monkeypatch, tmp_path):
    monkeypatch.setenv("EFHQ_MODEL_DIR", str(tmp_path))
    # sha256 unknown in the manifest: presence only, digest returned
    (tmp_path / "best.pth.tar").write_bytes(b"synergy")
    assert registry.verify("synergynet") == {"best.pth.tar": hashlib.sha256(b"synergy").hexdigest()}
    spec = registry.ModelSpec(
        name="_test_model", kind="pose", files=(registry.WeightFile("m.bin", hashlib.sha256(b"good").hexdigest()),),
        url=None, licence="test",
    )
    monkeypatch.setitem(registry.MANIFEST, "_test_model", spec)
    (tmp_path / "m.bin").write_bytes(b"bad")
    with pytest.raises(registry.ChecksumError, match="checksum mismatch for model '_test_model'"):
        registry.verify("_test_model")
    (tmp_path / "m.bin").write_bytes(b"good")
    registry.verify("_test_model")


@pytest.fixture()
def http_server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))

    class Quiet(handler.func):  # type: ignore[misc, name-defined]
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_fetch_from_local_http(http_server, tmp_path, monkeypatch):
    root, base = http_server
    payload = os.urandom(300_000)
    (root / "weights.bin").write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    spec = registry.ModelSpec(
        name="_test_fetch", kind="pose", files=(registry.WeightFile("w.pth", digest),),
        url=f"{base}/weights.bin", licence="test", url_is_direct=True,
    )
    monkeypatch.setitem(registry.MANIFEST, "_test_fetch", spec)
    monkeypatch.setenv("EFHQ_MODEL_DIR", str(tmp_path / "models"))

    path = registry.fetch("_test_fetch")
    assert path == tmp_path / "models" / "w.pth"
    assert path.read_bytes() == payload
    assert registry.find_weights("_test_fetch") == path
    assert registry.verify("_test_fetch") == {"w.pth": digest}
    assert sorted(p.name for p in path.parent.iterdir()) == ["w.pth"]  # no temp files left

    # explicit url + dest
    other = tmp_path / "elsewhere"
    p2 = registry.fetch("_test_fetch", url=f"{base}/weights.bin", dest=other)
    assert p2 == other / "w.pth" and p2.read_bytes() == payload


def test_fetch_wrong_checksum_leaves_nothing(http_server, tmp_path, monkeypatch):
    root, base = http_server
    (root / "weights.bin").write_bytes(b"not the weights")
    spec = registry.ModelSpec(
        name="_test_bad", kind="pose", files=(registry.WeightFile("w.pth", "0" * 64),),
        url=f"{base}/weights.bin", licence="test", url_is_direct=True,
    )
    monkeypatch.setitem(registry.MANIFEST, "_test_bad", spec)
    dest = tmp_path / "models"
    with pytest.raises(registry.ChecksumError, match="checksum mismatch"):
        registry.fetch("_test_bad", dest=dest)
    assert list(dest.iterdir()) == []
    with pytest.raises(registry.FetchError, match="failed"):
        registry.fetch("_test_bad", url=f"{base}/missing.bin", dest=dest)
    assert list(dest.iterdir()) == []


def test_fetch_refuses_without_direct_url(tmp_path):
    with pytest.raises(registry.FetchError, match="by hand"):
        registry.fetch("scrfd_10g_bnkps", dest=tmp_path)
    with pytest.raises(registry.FetchError, match="ships in the Python package"):
        registry.fetch("mtcnn", dest=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_facemesh_averages_its_crops():
    """The default landmarker averages a tight and a loose crop; each crop alone is a valid landmarker."""
    pytest.importorskip("mediapipe")
    from efhq_assets.core.models.facemesh import FaceMeshLandmarker
    from efhq_assets.core.models.mtcnn import MtcnnDetector
    from efhq_assets.core.models.sample_images import astronaut_bgr

    image = astronaut_bgr()
    box = max(MtcnnDetector().detect([image])[0], key=lambda d: d.score).box
    both = FaceMeshLandmarker()
    assert both.expands == (1.3, 1.8) and both.config()["expands"] == [1.3, 1.8]
    singles = [FaceMeshLandmarker(expand=e).landmarks(image, [box])[0] for e in both.expands]
    np.testing.assert_allclose(both.landmarks(image, [box])[0], np.mean(singles, axis=0), atol=1e-3)
    assert np.abs(singles[0] - singles[1])[:, :2].max() > 0.1  # the crops really differ
    with pytest.raises(ValueError, match="at least one"):
        FaceMeshLandmarker(expands=())


def test_facemesh_crops_run_side_by_side_and_callers_may_share_it():
    """Each crop has its own graph (run in parallel); two threads calling one landmarker get what one caller gets,
    and a closed landmarker refuses work."""
    pytest.importorskip("mediapipe")
    from concurrent.futures import ThreadPoolExecutor

    from efhq_assets.core.models.facemesh import FaceMeshLandmarker
    from efhq_assets.core.models.mtcnn import MtcnnDetector
    from efhq_assets.core.models.sample_images import insightface_t1_bgr

    image = insightface_t1_bgr()
    boxes = [d.box for d in MtcnnDetector().detect([image])[0]]
    mesh = FaceMeshLandmarker()
    alone = mesh.landmarks(image, boxes)
    with ThreadPoolExecutor(2) as pool:
        shared = list(pool.map(lambda _: mesh.landmarks(image, boxes), range(4)))
    for got in shared:
        for a, b in zip(alone, got):
            np.testing.assert_array_equal(a, b)
    mesh.close()
    with pytest.raises(RuntimeError, match="closed"):
        mesh.landmarks(image, boxes[:1])
