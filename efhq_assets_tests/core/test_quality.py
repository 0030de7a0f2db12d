"""core/quality.py on real photos: distortion monotonicity, EFHQ's brightness, determinism, thresholds."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from efhq_assets.core import quality as q  # noqa: E402
from efhq_assets.core.models.sample_images import SampleImageMissing, astronaut_bgr, insightface_t1_bgr  # noqa: E402

ASTRONAUT_BOX = (170.0, 50.0, 275.0, 180.0)


def _blur(c, s):
    return c if s == 0 else cv2.GaussianBlur(c, (0, 0), s)


def _jpeg(c, quality):
    ok, buf = cv2.imencode(".jpg", c, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def _noise(c, s, seed=0):
    if s == 0:
        return c
    rng = np.random.default_rng(seed)
    return np.clip(c.astype(np.float64) + rng.normal(0.0, s, c.shape), 0, 255).astype(np.uint8)


BLUR = (0, 1, 2, 4)
JPEG = (95, 50, 20, 5)
NOISE = (0, 5, 15, 30)


@pytest.fixture(scope="module")
def astronaut_crop():
    return q.face_crop(astronaut_bgr(), ASTRONAUT_BOX)


@pytest.fixture(scope="module")
def t1_crops():
    try:
        img = insightface_t1_bgr()
    except SampleImageMissing as exc:
        pytest.skip(str(exc))
    from efhq_assets.core.models.mtcnn import MtcnnDetector

    dets = MtcnnDetector().detect([img])[0]
    assert len(dets) == 6, "insightface t1.jpg has 6 faces"
    return [q.face_crop(img, d.box) for d in dets], [d.box for d in dets]


def _strictly_decreasing(xs):
    return all(a > b for a, b in zip(xs, xs[1:]))


def _all_crops(astronaut_crop, t1_crops):
    return [("astronaut", astronaut_crop)] + [(f"t1[{i}]", c) for i, c in enumerate(t1_crops[0])]


@pytest.mark.parametrize("kind,fn,levels", [("blur", _blur, BLUR), ("jpeg", _jpeg, JPEG)])
def test_score_falls_strictly_with_blur_and_jpeg(astronaut_crop, t1_crops, kind, fn, levels):
    for name, crop in _all_crops(astronaut_crop, t1_crops):
        scores = [q.offline_score(fn(crop, lv)) for lv in levels]
        assert _strictly_decreasing(scores), (name, kind, scores)


def test_score_falls_strictly_with_noise_on_a_clean_source(astronaut_crop):
    scores = [q.offline_score(_noise(astronaut_crop, s)) for s in NOISE]
    assert _strictly_decreasing(scores), scores


def test_noise_on_soft_jpeg_faces(t1_crops):
    """BRISQUE's known limit: on the soft, JPEG-compressed t1 faces light noise (sigma 5) can RAISE
    the score (it masks blur); from sigma 5 up the score falls strictly, and the ``noise`` column
    rises strictly from 0 on every face, so noisy faces remain filterable."""
    for i, crop in enumerate(t1_crops[0]):
        imgs = [_noise(crop, s) for s in NOISE]
        scores = [q.offline_score(x) for x in imgs]
        assert _strictly_decreasing(scores[1:]), (i, scores)
        sig = [q.noise_sigma(x) for x in imgs]
        assert all(a < b for a, b in zip(sig, sig[1:])), (i, sig)


def test_sharpness_and_noise_columns_track_distortions(astronaut_crop):
    sh = [q.sharpness(_blur(astronaut_crop, s)) for s in BLUR]
    assert _strictly_decreasing(sh), sh
    ns = [q.noise_sigma(_noise(astronaut_crop, s)) for s in NOISE]
    assert all(a < b for a, b in zip(ns, ns[1:])), ns
    # per-channel N(0, 30) noise has sigma 30 * |(0.299, 0.587, 0.114)| = 20.0 in BT.601 luma;
    # Immerkaer's estimate lands near it (clipping at 0/255 and the crop's own grain move it a little)
    expect = 30.0 * math.sqrt(0.299**2 + 0.587**2 + 0.114**2)
    assert abs(ns[-1] - expect) < 2.5, (ns[-1], expect)


def test_brightness_matches_efhq_formula(astronaut_crop):
    c = astronaut_crop
    b_mean = float(np.mean(c[:, :, 0].astype(np.float64)))
    g_mean = float(np.mean(c[:, :, 1].astype(np.float64)))
    r_mean = float(np.mean(c[:, :, 2].astype(np.float64)))
    hand = math.sqrt(0.299 * r_mean**2 + 0.587 * g_mean**2 + 0.114 * b_mean**2)
    assert q.brightness(c) == pytest.approx(hand, rel=1e-12)
    flat = np.zeros((16, 16, 3), np.uint8)
    flat[:] = (10, 20, 200)  # B, G, R
    assert q.brightness(flat) == pytest.approx(math.sqrt(0.299 * 200**2 + 0.587 * 20**2 + 0.114 * 10**2), rel=1e-12)


def test_exposure_clipped_and_face_side():
    img = np.full((20, 20, 3), 128, np.uint8)
    img[:5] = 0
    img[5:10] = 255
    assert q.exposure_clipped(img) == 0.5
    assert q.face_side_px((10, 20, 60, 100)) == 80.0


def _bits(rows):
    out = []
    for r in rows:
        for k in ("score", "sharpness", "brightness", "exposure_clipped", "noise", "face_side_px"):
            out.append(struct.pack("<d", r[k]))
    return b"".join(out)


def test_byte_identical_across_runs_and_copies(astronaut_crop, t1_crops):
    crops = [astronaut_crop] + list(t1_crops[0])
    boxes = [ASTRONAUT_BOX] + [tuple(float(v) for v in b) for b in t1_crops[1]]
    a = q.quality_rows(crops, boxes)
    b = q.quality_rows([np.array(c, copy=True) for c in crops], np.asarray(boxes))
    # a copy at a different memory offset (not the same alignment)
    shifted = []
    for c in crops:
        buf = np.empty(c.nbytes + 3, np.uint8)
        v = buf[3:].reshape(c.shape)
        v[...] = c
        shifted.append(v)
    c3 = q.quality_rows(shifted, boxes)
    assert _bits(a) == _bits(b) == _bits(c3)
    assert [repr(r["score"]) for r in a] == [repr(r["score"]) for r in c3]


def test_rows_shape_and_ranges(astronaut_crop, t1_crops):
    crops = [astronaut_crop] + list(t1_crops[0])
    boxes = [ASTRONAUT_BOX] + list(t1_crops[1])
    rows = q.quality_rows(crops, boxes)
    assert len(rows) == 7
    lo, hi = q.SCORERS[q.DEFAULT_SCORER].range
    for r in rows:
        assert set(r) == {"scorer", "score", "sharpness", "brightness", "exposure_clipped", "noise", "face_side_px"}
        assert r["scorer"] == q.DEFAULT_SCORER
        assert lo <= r["score"] <= hi
        assert 0 <= r["brightness"] <= 255 and 0 <= r["exposure_clipped"] <= 1
        assert r["sharpness"] > 0 and r["noise"] > 0 and r["face_side_px"] > 40
    # heavy distortion stays inside the nominal range too
    for x in (_blur(astronaut_crop, 4), _jpeg(astronaut_crop, 5), _noise(astronaut_crop, 30)):
        assert lo <= q.offline_score(x) <= hi
    with pytest.raises(ValueError):
        q.quality_rows(crops, boxes[:-1])


def test_face_crop_square_reflect_and_resize():
    img = astronaut_bgr()
    c = q.face_crop(img, ASTRONAUT_BOX, expand=1.2)
    assert c.shape == (156, 156, 3) and c.dtype == np.uint8
    # centred: the box centre pixel is the crop centre pixel
    assert np.array_equal(c[78, 78], img[115, 223])  # left = round(222.5 - 78) = 145
    # a box over the top-left corner is reflect-padded, not zero-filled
    e = q.face_crop(img, (-20, -20, 20, 20), expand=1.0)
    assert e.shape == (40, 40, 3)
    assert np.array_equal(e[19, 19], img[1, 1]) and np.array_equal(e[20, 20], img[0, 0])
    assert np.array_equal(e[21, 21], img[1, 1])
    o = q.face_crop(img, ASTRONAUT_BOX, out=224)
    assert o.shape == (224, 224, 3)
    with pytest.raises(ValueError):
        q.face_crop(img, (10, 10, 5, 20))
    with pytest.raises(ValueError):
        q.face_crop(img, (1000, 1000, 1100, 1100), expand=1.0)


def test_percentile_threshold_rule():
    scores = list(range(1, 101))  # 1..100
    t = q.percentile_threshold(scores, q=20)
    assert t == pytest.approx(20.8)
    keep = q.keep_mask(scores)  # default scorer: percentile:20
    assert keep.sum() == 80 and not keep[:20].any() and keep[20:].all()
    assert q.keep_mask([float("nan"), 1.0, 2.0]).tolist() == [False, False, True]
    # HyperIQA keeps EFHQ's fixed cut iqa >= 42
    assert q.SCORERS["hyperiqa"].default_threshold == 42.0
    assert q.keep_mask([41.9, 42.0, 80.0], scorer="hyperiqa").tolist() == [False, True, True]
    with pytest.raises(ValueError):
        q.percentile_threshold([], 20)
    with pytest.raises(ValueError):
        q.percentile_threshold([1.0], 120)
