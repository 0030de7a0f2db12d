"""Face-profiling renderer (demo/face_render.py): convention, mirror symmetry, detectability, determinism.

Uses the first (leftmost) face of insightface's t1.jpg, read at run time from the installed wheel
(never written anywhere).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mediapipe")
pytest.importorskip("insightface")

from efhq_assets.demo import face_render as FR  # noqa: E402
from efhq_assets.core.pose.convention import project_np  # noqa: E402
from efhq_assets.core.pose.fit import estimate_batch  # noqa: E402


@pytest.fixture(scope="module")
def models():
    from efhq_assets.core.models.facemesh import FaceMeshLandmarker
    from efhq_assets.core.models.mtcnn import MtcnnDetector

    return MtcnnDetector(), FaceMeshLandmarker()


@pytest.fixture(scope="module")
def photo(models):
    from efhq_assets.core.models.sample_images import insightface_t1_bgr

    image = insightface_t1_bgr()
    det = sorted(models[0].detect([image])[0], key=lambda d: float(d.box[0]))[0]
    return image, det.box.astype(np.float64)


@pytest.fixture(scope="module")
def face(photo, models):
    return FR.fit_textured_mesh(*photo, landmarker=models[1])


def _iou(a, b):
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_fit_structure(face):
    assert face.vertices.shape[1] == 3 and face.n_mesh == 478 and face.n_shell > 0
    assert face.uv.shape == (len(face.vertices), 2)
    assert face.triangles.min() >= 0 and face.triangles.max() < len(face.vertices)
    assert not np.isin(np.arange(468, 478), face.triangles).any()  # iris points are not surface
    assert np.ptp(face.vertices[:468, 0]) == pytest.approx(1.0)
    assert np.abs(face.vertices[:468].mean(axis=0)).max() < 1e-9
    # this photo's face is near frontal in yaw (its roll is about -27 deg)
    assert abs(face.still_pose[0]) < 15


def test_render_truth_is_the_projected_geometry(face):
    """The returned angles are exactly those of the rendered geometry (core/pose/convention.py)."""
    for angles in [(30.0, 0.0, 0.0), (-55.0, 15.0, -10.0), (70.0, -20.0, 15.0)]:
        _, box, lmk5, truth = FR.render(face, *angles, face_px=300)
        assert (truth["yaw"], truth["pitch"], truth["roll"]) == angles
        uv = project_np(face.vertices[:468], *angles, scale=300.0, translation=(256.0, 256.0))
        y, p, r = estimate_batch(uv[None], face.vertices[:468])
        assert np.allclose([y[0], p[0], r[0]], angles, atol=1e-2)
        assert np.allclose(box, [*uv.min(0), *uv.max(0)], atol=1e-3)
        assert lmk5[0, 0] < lmk5[1, 0] and lmk5[3, 0] < lmk5[4, 0]


def test_positive_yaw_moves_the_nose_to_the_image_right(face, models):
    """Convention, read from the pixels: MTCNN's nose point moves right of the eyes' midpoint."""
    detector = models[0]
    offsets = {}
    for yaw in (0.0, 30.0):
        frame, _, lmk5, _ = FR.render(face, yaw, 0.0, 0.0)
        det = max(detector.detect([frame])[0], key=lambda d: d.score)
        offsets[yaw] = det.lmk5[2, 0] - det.lmk5[:2, 0].mean()
        # the renderer's own nose point agrees in direction
        assert (lmk5[2, 0] - lmk5[:2, 0].mean() > 5) == (yaw > 0)
    assert offsets[30.0] > offsets[0.0] + 15


def test_mirror_symmetry(photo, face, models):
    """render(face, yaw) mirrored ~ render(mirrored photo's face, -yaw) (loosely: FaceMesh refits)."""
    image, box = photo
    w = image.shape[1]
    flipped = np.ascontiguousarray(image[:, ::-1])
    face_f = FR.fit_textured_mesh(flipped, [w - box[2], box[1], w - box[0], box[3]], landmarker=models[1])
    assert face_f.still_pose[0] == pytest.approx(-face.still_pose[0], abs=3)
    assert face_f.still_pose[2] == pytest.approx(-face.still_pose[2], abs=3)
    a, box_a, _, _ = FR.render(face, 30.0, 10.0, 5.0)
    a = a[:, ::-1].astype(np.float32)
    box_a = np.array([512 - box_a[2], box_a[1], 512 - box_a[0], box_a[3]])
    b, box_b, _, _ = FR.render(face_f, -30.0, 10.0, -5.0)
    wrong, _, _, _ = FR.render(face_f, 30.0, 10.0, 5.0)
    assert _iou(box_a, box_b) > 0.9
    x1, y1, x2, y2 = (int(v) for v in box_b)
    same = np.abs(a[y1:y2, x1:x2] - b[y1:y2, x1:x2].astype(np.float32)).mean()
    other = np.abs(a[y1:y2, x1:x2] - wrong[y1:y2, x1:x2].astype(np.float32)).mean()
    assert same < 20 and same < 0.5 * other, (same, other)


@pytest.mark.parametrize("yaw", [0.0, -45.0, 45.0])
def test_mtcnn_detects_the_rendered_face(face, models, yaw):
    frame, box, _, _ = FR.render(face, yaw, 0.0, 0.0)
    dets = models[0].detect([frame])[0]
    assert dets, f"MTCNN found no face at yaw {yaw}"
    best = max(dets, key=lambda d: _iou(d.box, box))
    assert _iou(best.box, box) > 0.4 and best.score > 0.9


def test_deterministic(photo, models, face):
    again = FR.fit_textured_mesh(*photo, landmarker=models[1])
    for angles in [(0.0, 0.0, 0.0), (-65.0, 20.0, 15.0)]:
        f1, b1, l1, _ = FR.render(face, *angles)
        f2, b2, l2, _ = FR.render(again, *angles)
        assert f1.tobytes() == f2.tobytes()
        assert b1.tobytes() == b2.tobytes() and l1.tobytes() == l2.tobytes()


def test_turn_segment(face):
    bg = np.full((256, 256, 3), 50, np.uint8)
    frames, boxes, lmks, truths = FR.render_turn_segment(face, 5, (-60, 60), pitch=10, roll=[0, 1, 2, 3, 4],
                                                         size=256, face_px=120, background=bg)
    assert len(frames) == len(boxes) == len(lmks) == len(truths) == 5
    assert [t["yaw"] for t in truths] == [-60.0, -30.0, 0.0, 30.0, 60.0]
    assert [t["roll"] for t in truths] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert all(t["pitch"] == 10.0 for t in truths)
    assert frames[0].shape == (256, 256, 3) and (frames[0][0, 0] == 50).all()  # background kept
    with pytest.raises(ValueError):
        FR.render(face, 0, 0, 0, size=128, background=bg)


def test_texture_fidelity_falls_as_the_view_leaves_the_photo(face):
    """Views near the photo's own pose show surface the photo saw; turning far away shows smears."""
    yaw0, pitch0, _ = face.still_pose
    assert FR.texture_fidelity(face, yaw0, pitch0, 0.0) >= 0.9
    for side in (-1, 1):
        values = [FR.texture_fidelity(face, yaw0 + side * d, pitch0, 0.0) for d in (0, 20, 40, 60, 80, 100)]
        assert all(a >= b - 0.01 for a, b in zip(values, values[1:])), values  # flat near the photo, then falling
        assert values[-1] < FR.VALID_VIEW_FIDELITY <= values[2] and values[-1] < values[0] - 0.2
    # in-plane roll changes nothing the photo saw or did not see
    assert FR.texture_fidelity(face, 30.0, 0.0, 25.0) == pytest.approx(FR.texture_fidelity(face, 30.0, 0.0, 0.0))
    # a stricter notion of "seen" can only lower it
    assert FR.texture_fidelity(face, 50.0, 0.0, 0.0, photo_view_limit_deg=45.0) <= FR.texture_fidelity(face, 50.0, 0.0, 0.0)


def test_template_yaw_zero_is_where_the_symmetric_reference_reads_the_mesh_frontal(photo, models):
    """A photo taken turned (t1.jpg's person 3, about -22 degrees): its mesh's symmetry plane is a zero that perfect
    landmarks read several degrees turned; the template zero turns the mesh until they read 0. Every view is the same
    picture under an angle shifted by ``yaw_zero_shift``, and the photo's own pose moves with it."""
    from efhq_assets.core.pose.rotations import euler_to_matrix_np

    image = photo[0]
    box = sorted(models[0].detect([image])[0], key=lambda d: float(d.box[0]))[3].box.astype(np.float64)
    sym = FR.fit_textured_mesh(image, box, landmarker=models[1])
    tmpl = FR.fit_textured_mesh(image, box, landmarker=models[1], yaw_zero="template")
    assert sym.yaw_zero == "symmetry" and sym.yaw_zero_shift == 0.0 and tmpl.yaw_zero == "template"
    off = FR.template_yaw(sym)
    assert off < -2.0  # turned further toward the side the photo saw (docs/pose_accuracy.md)
    assert abs(FR.template_yaw(tmpl)) < 0.05
    assert 0.5 * -off < tmpl.yaw_zero_shift < 1.5 * -off  # turned back by about what it read (the fit's gain is not 1)
    # the same picture: the symmetric mesh at yaw a is the template mesh at a - shift
    a = -25.0
    fs, bs, ls, _ = FR.render(sym, a, 0.0, 0.0, size=256, face_px=120)
    ft, bt, lt, _ = FR.render(tmpl, a - tmpl.yaw_zero_shift, 0.0, 0.0, size=256, face_px=120)
    assert np.abs(fs.astype(int) - ft.astype(int)).mean() < 0.5
    np.testing.assert_allclose(ls, lt, atol=1e-3)
    # the photo's own pose in the new frame puts every vertex where it was
    np.testing.assert_allclose(sym.vertices @ euler_to_matrix_np(*sym.still_pose).T,
                               tmpl.vertices @ euler_to_matrix_np(*tmpl.still_pose).T, atol=1e-9)
    # mirrored photo, mirrored shift
    w = image.shape[1]
    flipped = np.ascontiguousarray(image[:, ::-1])
    mirror = FR.fit_textured_mesh(flipped, [w - box[2], box[1], w - box[0], box[3]], landmarker=models[1],
                                  yaw_zero="template")
    assert mirror.yaw_zero_shift == pytest.approx(-tmpl.yaw_zero_shift, abs=1.0)
    with pytest.raises(ValueError, match="yaw_zero"):
        FR.fit_textured_mesh(image, box, landmarker=models[1], yaw_zero="nose")
