"""Alignment / crops on real faces (skimage astronaut + insightface t1.jpg, MTCNN 5 points)."""

import math

import numpy as np
import pytest

from efhq_assets.core import align
from efhq_assets.core.pose.rotations import euler_to_matrix_np
from efhq_assets_tests.core.ffhq_reference import align_ffhq_reference

cv2 = pytest.importorskip("cv2")


def psnr(a, b) -> float:
    mse = np.mean((np.asarray(a, float) - np.asarray(b, float)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-12)))


@pytest.fixture(scope="module")
def faces():
    """[(name, image, lmk5)] for the astronaut and the 6 faces of t1.jpg."""
    from efhq_assets.core.models.mtcnn import MtcnnDetector
    from efhq_assets.core.models.sample_images import SampleImageMissing, astronaut_bgr, insightface_t1_bgr

    det = MtcnnDetector()
    out = []
    for name, load in (("astronaut", astronaut_bgr), ("t1", insightface_t1_bgr)):
        try:
            img = load()
        except SampleImageMissing as exc:  # pragma: no cover - environment
            pytest.skip(str(exc))
        for k, d in enumerate(det.detect([img])[0]):
            out.append((f"{name}{k}", img, d.lmk5.astype(np.float64)))
    assert len(out) == 7
    return out


# ------------------------------------------------------------------------------------------
# FFHQ
# ------------------------------------------------------------------------------------------

def test_ffhq_quad_geometry():
    # Symmetric upright face: eyes at y=100 (x 80/120), mouth at y=140 (x 85/115).
    lm = np.array([[80, 100], [120, 100], [100, 120], [85, 140], [115, 140]], float)
    q = align.ffhq_quad(lm)
    # eye_to_eye = (40, 0), eye_to_mouth = (0, 40): x = (40, 0) - (40, 0)*[-1, 1] = (80, 0) -> unit (1, 0),
    # scaled by max(80, 72) = 80; y = (0, 80); c = (100, 100) + 0.1 (0, 40) = (100, 104).
    np.testing.assert_allclose(q, [[20, 24], [20, 184], [180, 184], [180, 24]])
    # A rolled face gives the same square rotated with it.
    th = math.radians(25)
    Rm = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
    q2 = align.ffhq_quad((lm - 100) @ Rm.T + 100)
    np.testing.assert_allclose(q2, (q - 100) @ Rm.T + 100, atol=1e-9)
    # ffhq_matrix maps the quad corners to the output's corners (cv2 pixel centres: -0.5 .. S-0.5).
    M = align.ffhq_matrix(lm, 256)
    np.testing.assert_allclose(align.warp_points(q, M), [[-0.5, -0.5], [-0.5, 255.5], [255.5, 255.5], [255.5, -0.5]],
                               atol=1e-9)


def test_ffhq_outside_frame_rule():
    lm = np.array([[80, 100], [120, 100], [100, 120], [85, 140], [115, 140]], float)
    # tight box 80..120 x 100..140: centre (100, 120), t = 20
    assert align.ffhq_expanded_box(lm) == (round(100 - 28.51), round(120 - 41.182), round(100 + 32.846),
                                           round(120 + 26.174))
    assert align.ffhq_expanded_box(lm) == (71, 79, 133, 146)
    assert not align.ffhq_outside_frame(lm, 133, 146)
    assert align.ffhq_outside_frame(lm, 132, 146)
    assert align.ffhq_outside_frame(lm, 133, 145)
    assert align.ffhq_outside_frame(lm - [0, 80], 400, 400)  # top 79 - 80 < 0
    assert align.ffhq_outside_frame(lm - [72, 0], 400, 400)  # left 71 - 72 < 0


def test_ffhq_fast_matches_reference_on_real_faces(faces):
    vals = []
    for name, img, lm in faces:
        assert not align.ffhq_outside_frame(lm, img.shape[1], img.shape[0]), name
        ref = align_ffhq_reference(img, lm, output_size=256)
        fast = align.align_ffhq_fast(img, lm, output_size=256)
        assert ref.shape == fast.shape == (256, 256, 3) and ref.dtype == fast.dtype == np.uint8
        vals.append(psnr(ref, fast))
    assert min(vals) >= 35.0, vals  # measured 50.7-56.7 dB at 256 (53-59 dB at 512/1024)


def test_ffhq_aligned_faces_are_upright_and_centred(faces):
    for name, img, lm in faces:
        out_lm = align.warp_points(lm, align.ffhq_matrix(lm, 512))
        eye_c, mouth_c = out_lm[:2].mean(0), out_lm[3:].mean(0)
        e2e, e2m = out_lm[1] - out_lm[0], mouth_c - eye_c
        # FFHQ's x axis (eye_to_eye - flipud(eye_to_mouth) * [-1, 1]) is horizontal in the output
        xdir = e2e - np.array([-e2m[1], e2m[0]])
        assert abs(xdir[1]) < 1e-6 * np.linalg.norm(xdir) and xdir[0] > 0, name
        assert abs(math.degrees(math.atan2(e2m[0], e2m[1]))) < 10.0, name  # roughly upright
        assert out_lm[0, 0] < out_lm[1, 0] and out_lm[3, 0] < out_lm[4, 0], name  # not mirrored
        assert 180 < eye_c[1] < 260 and 300 < mouth_c[1] < 400, (name, out_lm)
        assert abs(eye_c[0] - 255.5) < 40, name


def test_ffhq_reference_matches_pil_recipe_when_available(faces):
    """Cross-check the cv2 re-implementation against the literal PIL/scipy FFHQ recipe."""
    PIL_Image = pytest.importorskip("PIL.Image")
    ndimage = pytest.importorskip("scipy.ndimage")

    def pil_ffhq(image, lm, output_size, transform_size=4096):
        quad = align.ffhq_quad(lm)
        qsize = np.hypot(*(quad[3] - quad[0]))
        img = PIL_Image.fromarray(image)
        border = max(int(np.rint(qsize * 0.1)), 3)
        crop = (int(np.floor(min(quad[:, 0]))), int(np.floor(min(quad[:, 1]))),
                int(np.ceil(max(quad[:, 0]))), int(np.ceil(max(quad[:, 1]))))
        crop = (max(crop[0] - border, 0), max(crop[1] - border, 0),
                min(crop[2] + border, img.size[0]), min(crop[3] + border, img.size[1]))
        img = img.crop(crop)
        quad -= crop[0:2]
        pad = (int(np.floor(min(quad[:, 0]))), int(np.floor(min(quad[:, 1]))),
               int(np.ceil(max(quad[:, 0]))), int(np.ceil(max(quad[:, 1]))))
        pad = (max(-pad[0] + border, 0), max(-pad[1] + border, 0),
               max(pad[2] - img.size[0] + border, 0), max(pad[3] - img.size[1] + border, 0))
        padded = max(pad) > border - 4
        if padded:
            pad = np.maximum(pad, int(np.rint(qsize * 0.3)))
            a = np.pad(np.float32(img), ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), "reflect")
            h, w, _ = a.shape
            y, x, _ = np.ogrid[:h, :w, :1]
            mask = np.maximum(1.0 - np.minimum(np.float32(x) / pad[0], np.float32(w - 1 - x) / pad[2]),
                              1.0 - np.minimum(np.float32(y) / pad[1], np.float32(h - 1 - y) / pad[3]))
            blur = qsize * 0.02
            a += (ndimage.gaussian_filter(a, [blur, blur, 0]) - a) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
            a += (np.median(a, axis=(0, 1)) - a) * np.clip(mask, 0.0, 1.0)
            img = PIL_Image.fromarray(np.uint8(np.clip(np.rint(a), 0, 255)), "RGB")
            quad += pad[:2]
        img = img.transform((transform_size, transform_size), PIL_Image.QUAD, (quad + 0.5).flatten(),
                            PIL_Image.BILINEAR)
        return np.array(img.resize((output_size, output_size), PIL_Image.LANCZOS)), padded

    seen = set()
    for name, img, lm in faces[:2]:  # astronaut (no padding) and t1 face 0 (padded)
        want, padded = pil_ffhq(img, lm, 256)
        seen.add(padded)
        got = align_ffhq_reference(img, lm, output_size=256)
        assert psnr(want, got) > 48.0, name  # measured 51 dB, max |diff| 2 levels
        assert np.abs(want.astype(int) - got).max() <= 4
    assert seen == {False, True}


def test_ffhq_reference_black_outside_without_padding(faces):
    name, img, lm = faces[0]
    top = img[60:, 120:].copy()  # the astronaut's quad now leaves the frame at the top
    lm2 = lm - [120, 60]
    assert align.ffhq_quad(lm2)[:, 1].min() < 0
    ref = align_ffhq_reference(top, lm2, 256, enable_padding=False)
    black = (ref == 0).all(-1)
    assert black[:20].mean() > 0.9  # PIL's QUAD transform leaves samples outside the source black
    padded = align_ffhq_reference(top, lm2, 256)
    assert (padded[:20] == 0).all(-1).mean() < 0.001  # blurred reflection + median fill instead
    assert psnr(padded, align.align_ffhq_fast(top, lm2, 256)) >= 35.0


def test_padding_blur_on_a_shrunk_copy_matches_the_full_size_blur(faces):
    """A big face near the frame's edge: FFHQ pads, and its blur (sigma = 2% of the quad) runs on a shrunk copy."""
    name, img, lm = faces[0]
    top = int(3 * lm[:2, 1].min()) - 60  # the frame starts just above the eyes: the quad leaves it
    big = cv2.resize(img, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)[top:]
    lm3 = lm * 3 + 1.0 - [0, top]  # cv2 pixel centres under a 3x resize, then the crop
    quad = align.ffhq_quad(lm3)
    sigma = 0.02 * np.hypot(*(quad[3] - quad[0]))
    assert sigma // align.PAD_BLUR_MIN_SIGMA_PX >= 2, sigma  # the shrunk path runs
    fast, _, padded = align.ffhq_prepare(big, quad, 1024, True)
    exact, _, _ = align.ffhq_prepare(big, quad, 1024, True, exact_blur=True)
    assert padded and fast.shape == exact.shape
    diff = np.abs(fast.astype(int) - exact)
    assert diff.max() <= 2 and psnr(fast, exact) > 55.0, (diff.max(), psnr(fast, exact))
    # the aligned face itself: the fast path against the reference (which blurs at full size)
    assert psnr(align_ffhq_reference(big, lm3, 512), align.align_ffhq_fast(big, lm3, 512)) >= 35.0


def test_ffhq_shrink_path(faces):
    name, img, lm = faces[0]
    big = cv2.resize(img, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)
    lm4 = lm * 4 + 1.5  # cv2 pixel centres under a 4x resize
    # qsize ~ 684 px >= 4 * 128 -> FFHQ first shrinks the frame by an integer factor
    ref = align_ffhq_reference(big, lm4, 128)
    assert psnr(ref, align.align_ffhq_fast(big, lm4, 128)) >= 35.0
    # ... and the result is close to aligning the original frame
    assert psnr(ref, align_ffhq_reference(img, lm, 128)) > 28.0


# ------------------------------------------------------------------------------------------
# ArcFace
# ------------------------------------------------------------------------------------------

def test_similarity_matrix_is_exact_and_never_reflects():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(5, 2)) * 30 + 200
    th, s, t = 0.4, 1.7, np.array([5.0, -7.0])
    R = s * np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
    M = align.similarity_matrix(src, src @ R.T + t)
    np.testing.assert_allclose(M, np.concatenate([R, t[:, None]], 1), atol=1e-9)
    mirrored = src * [-1, 1]
    assert np.linalg.det(align.similarity_matrix(src, mirrored)[:, :2]) > 0


def test_arcface_alignment_on_real_faces(faces):
    T = align.ARCFACE_TEMPLATE_112
    errs = []
    for name, img, lm in faces:
        M = align.arcface_matrix(lm)
        crop = align.align_arcface(img, lm)
        assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
        np.testing.assert_allclose(align.similarity_matrix(lm, T), M)
        out = align.warp_points(lm, M)
        err = np.linalg.norm(out - T, axis=1)
        errs.append(err.mean())
        # eye centre and mouth centre land near the template's
        assert np.linalg.norm(out[:2].mean(0) - T[:2].mean(0)) < 3.0, name
        assert np.linalg.norm(out[3:].mean(0) - T[3:].mean(0)) < 7.0, name
        # least squares: no small similarity perturbation (a, b, tx, ty) lowers the error
        base = ((out - T) ** 2).sum()
        for da, db, dx, dy in np.concatenate([np.eye(4), -np.eye(4)]) * 1e-3:
            Mp = M + np.array([[da, -db, dx], [db, da, dy]])
            assert ((align.warp_points(lm, Mp) - T) ** 2).sum() >= base - 1e-9
    # MTCNN points on real faces are not a similarity copy of the template: mean 5-point
    # residual measured 2.3-5.8 px (most frontal face 2.3 px)
    assert min(errs) < 2.5 and max(errs) < 7.0, errs


def test_arcface_crop_is_invariant_to_a_similarity_of_the_frame(faces):
    name, img, lm = faces[0]
    M = cv2.getRotationMatrix2D((225.0, 120.0), 20.0, 1.25)  # about the face, so it stays in the frame
    rot = cv2.warpAffine(img, M, (512, 512), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101)
    a = align.align_arcface(img, lm)
    b = align.align_arcface(rot, align.warp_points(lm, M))
    assert psnr(a, b) > 30.0


# ------------------------------------------------------------------------------------------
# EG3D
# ------------------------------------------------------------------------------------------

def test_eg3d_template_derivation():
    T = align.EG3D_TEMPLATE_512
    k = 300 * 512 / 700
    np.testing.assert_allclose(T[0], [256 - 0.31148657 * k, 256 - 0.29036078 * k])
    assert T[:2, 1].mean() == pytest.approx(192.36, abs=0.01) and T[3:, 1].mean() == pytest.approx(339.67, abs=0.01)
    assert T[0, 0] < 256 < T[1, 0] and T[3, 0] < 256 < T[4, 0]  # image-left points have smaller x


def test_eg3d_crop_on_real_faces(faces):
    for name, img, lm in faces:
        crop, M = align.eg3d_crop(img, lm)
        assert crop.shape == (512, 512, 3) and crop.dtype == np.uint8 and M.shape == (2, 3)
        out = align.warp_points(lm, M)
        np.testing.assert_allclose(out[:2].mean(0), [256, 192.36], atol=0.02)
        np.testing.assert_allclose(out[3:].mean(0), [256, 339.67], atol=0.02)
        assert out[0, 0] < out[1, 0]  # no reflection
        assert abs(np.linalg.det(M[:, :2])) > 0
    # the warp and the matrix agree: small crop = the 512 crop resized
    name, img, lm = faces[0]
    crop512, _ = align.eg3d_crop(img, lm, 512)
    crop256, M256 = align.eg3d_crop(img, lm, 256)
    np.testing.assert_allclose(align.warp_points(lm[:2].mean(0, keepdims=True), M256), [[128, 96.18]], atol=0.02)
    assert psnr(cv2.resize(crop512, (256, 256), interpolation=cv2.INTER_AREA), crop256) > 28.0


def _cam(label):
    lab = np.asarray(label)
    return lab[:16].reshape(4, 4), lab[16:].reshape(3, 3)


def test_eg3d_camera_frontal():
    lab = align.eg3d_camera_label(0, 0, 0)
    assert len(lab) == 25 and all(isinstance(v, float) for v in lab)
    c2w, K = _cam(lab)
    np.testing.assert_allclose(c2w[:3, 3], [0, 0, 2.7], atol=1e-12)
    np.testing.assert_allclose(c2w[:3, :3], np.diag([1.0, -1.0, -1.0]), atol=1e-12)  # OpenCV: x right, y down, z fwd
    np.testing.assert_allclose(c2w[3], [0, 0, 0, 1])
    np.testing.assert_allclose(K, [[4.2647, 0, 0.5], [0, 4.2647, 0.5], [0, 0, 1]])


def _eg3d_lookat(h, v, radius=2.7):
    """EG3D's LookAtPoseSampler + create_cam2world_matrix (looking at the origin), numpy."""
    phi = math.acos(1 - 2 * v / math.pi)
    o = np.array([radius * math.sin(phi) * math.cos(math.pi - h), radius * math.cos(phi),
                  radius * math.sin(phi) * math.sin(math.pi - h)])
    f = -o / np.linalg.norm(o)
    up = np.array([0.0, 1.0, 0.0])
    r = -np.cross(up, f)
    r /= np.linalg.norm(r)
    u = np.cross(f, r)
    u /= np.linalg.norm(u)
    m = np.eye(4)
    m[:3, :3] = np.stack([r, u, f], axis=-1)
    m[:3, 3] = o
    return m


@pytest.mark.parametrize("yaw", [30.0, -30.0, 75.0])
def test_eg3d_camera_yaw(yaw):
    c2w, _ = _cam(align.eg3d_camera_label(yaw, 0, 0))
    Rc = c2w[:3, :3]
    np.testing.assert_allclose(Rc.T @ Rc, np.eye(3), atol=1e-12)
    assert np.linalg.det(Rc) == pytest.approx(1.0)
    a = math.radians(yaw)
    # yaw > 0 (subject turns to their own left) = the camera orbits about +y toward -x (subject's right)
    np.testing.assert_allclose(c2w[:3, 3], [-2.7 * math.sin(a), 0, 2.7 * math.cos(a)], atol=1e-12)
    np.testing.assert_allclose(Rc[:, 2], -c2w[:3, 3] / 2.7, atol=1e-12)  # looks at the origin
    # same as EG3D's own sampler with horizontal angle pi/2 - yaw
    np.testing.assert_allclose(c2w, _eg3d_lookat(math.pi / 2 - a, math.pi / 2), atol=1e-9)
    # the nose tip (head/world (0, 0, 1)) projects to the image right for yaw > 0, as the pose convention says
    w2c = np.linalg.inv(c2w)
    p = w2c[:3, :3] @ np.array([0, 0, 1.0]) + w2c[:3, 3]
    assert np.sign(p[0]) == np.sign(yaw)


def test_eg3d_camera_pitch_roll_and_pose_consistency():
    c2w, _ = _cam(align.eg3d_camera_label(0, 20, 0))
    assert c2w[1, 3] < 0  # looking up = camera below the face
    np.testing.assert_allclose(c2w[:3, 3], [0, -2.7 * math.sin(math.radians(20)), 2.7 * math.cos(math.radians(20))],
                               atol=1e-12)
    np.testing.assert_allclose(c2w, _eg3d_lookat(math.pi / 2, _v_for_elevation(-20)), atol=1e-9)
    # General pose: projecting head points with the label's camera equals the pose's rotation
    # (world -> OpenCV camera = diag(1, -1, -1) R, camera 2.7 in front).
    rng = np.random.default_rng(1)
    pts = rng.normal(size=(10, 3))
    for yaw, pitch, roll in [(40, -15, 10), (-70, 25, -20)]:
        c2w, _ = _cam(align.eg3d_camera_label(yaw, pitch, roll))
        Rc = c2w[:3, :3]
        np.testing.assert_allclose(Rc.T @ Rc, np.eye(3), atol=1e-12)
        assert np.linalg.det(Rc) == pytest.approx(1.0)
        assert np.linalg.norm(c2w[:3, 3]) == pytest.approx(2.7)
        w2c = np.linalg.inv(c2w)
        cam = pts @ w2c[:3, :3].T + w2c[:3, 3]
        R = euler_to_matrix_np(yaw, pitch, roll)
        want = (pts @ R.T) * [1, -1, -1] + [0, 0, 2.7]
        np.testing.assert_allclose(cam, want, atol=1e-9)
        np.testing.assert_allclose(align.eg3d_camera_position(yaw, pitch, roll), c2w[:3, 3], atol=1e-12)


def _v_for_elevation(elev_deg):
    """EG3D's vertical parameter v for a camera elevation (y / r = sin(elev) = 1 - 2 v / pi)."""
    return (1 - math.sin(math.radians(elev_deg))) * math.pi / 2


# ------------------------------------------------------------------------------------------
# Reenactment tube
# ------------------------------------------------------------------------------------------

def test_tube_box_union_expand_square_clamp():
    boxes = np.array([[100, 100, 300, 400], [150, 120, 320, 380]], float)  # union 100..320 x 100..400 (220 x 300)
    box = align.tube_box(boxes, 1000, 1000, min_side=100)
    # side = 1.2 * 300 = 360 around the union's centre (210, 250)
    left, top, right, bot = box
    assert (right - left, bot - top) == (360, 360)
    assert (left + right) / 2 == pytest.approx(210, abs=1) and (top + bot) / 2 == pytest.approx(250, abs=1)
    assert box == (30, 70, 390, 430)
    # out of bounds allowed, then clamped
    assert align.tube_box(boxes - [80, 80, 80, 80], 1000, 1000, min_side=100) == (0, 0, 310, 350)
    assert align.tube_box(boxes, 350, 1000, min_side=100) == (30, 70, 350, 430)
    # too small -> None
    assert align.tube_box(boxes, 1000, 1000, min_side=361) is None
    assert align.tube_box(boxes, 1000, 1000) == box  # 360 >= 256
    assert align.tube_box(np.zeros((0, 4)), 100, 100) is None


def test_crop_resize_on_real_face(faces):
    name, img, lm = faces[0]
    box = align.tube_box(np.array([[179, 59, 267, 173], [170, 55, 260, 170.0]]), img.shape[1], img.shape[0],
                         min_side=64)
    out = align.crop_resize(img, box, 256)
    assert out.shape == (256, 256, 3) and out.dtype == np.uint8
    l, t, r, b = box
    assert psnr(out, cv2.resize(img[t:b, l:r], (256, 256), interpolation=cv2.INTER_LINEAR)) > 30


def test_warp_points_projective_and_affine():
    pts = np.array([[1.0, 2.0], [3.0, -4.0]])
    M = np.array([[2.0, 0, 1], [0, 3, -1]])
    np.testing.assert_allclose(align.warp_points(pts, M), [[3, 5], [7, -13]])
    H = np.vstack([M, [0, 0, 1]])
    np.testing.assert_allclose(align.warp_points(pts, H), [[3, 5], [7, -13]])
