"""Face alignment and crops for the task outputs: FFHQ quad (GAN), EG3D crop + camera label,
ArcFace 112 (verification), reenactment tube boxes.

Conventions
-----------
* 5-point landmarks everywhere: ``[left_eye_img, right_eye_img, nose, mouth_left_img,
  mouth_right_img]`` ("left" = smaller x in the image), shape (5, 2), full-frame pixels.
* Pixel coordinates are OpenCV's: the centre of pixel (i, j) is at (x=i, y=j).  Every 2x3
  matrix returned here maps full-frame points to output-image points in that convention
  (``warp_points(lmk5, M)`` gives the landmarks in the output image; ``cv2.warpAffine(img, M,
  size)`` produces the output).
* Angles follow :mod:`efhq_assets.core.pose` (degrees; yaw > 0 = the subject turns to their
  own left, nose toward the image's right; pitch > 0 looks up; roll > 0 tilts the top of the
  head toward the image's right; head frame x = subject's left = image right on a frontal
  face, y up, z out of the face toward the camera; ``R = euler_to_matrix_np(...)`` maps head
  to camera coordinates (camera x right, y up, z toward the viewer)).

FFHQ alignment (EFHQ ``2_merging/align/face_align.py::image_align_5``, which is FFHQ's
``recreate_aligned_images`` fed with 5 points)
-------------------------------------------------------------------------------------------
:func:`ffhq_quad` builds the oriented square; the tests' ``align_ffhq_reference``
(``efhq_assets_tests/core/ffhq_reference.py``, the measure of the fast path) follows the recipe step by step (shrink by an integer factor with an antialiased Lanczos resize when the
quad is >= 4x the output, crop to the quad + 10% border, reflect-pad with the blur ramp and
median fill when the quad leaves the image, bilinear QUAD transform to ``transform_size``,
antialiased Lanczos resize to ``output_size``).  PIL is not used: the QUAD transform of a
square quad is an affine map, done with ``cv2.warpAffine`` (sampling exactly where PIL does:
output pixel centres, PIL's ``quad + 0.5`` offset; PIL's "outside the source -> black" is
reproduced), and PIL's ``ANTIALIAS`` (Lanczos-3, support scaled by the reduction, weights
renormalised at the borders, horizontal pass rounded to uint8 before the vertical pass) is
re-implemented with the same coefficients.  :func:`align_ffhq_fast` does the same shrink /
crop / pad on the source (cheap, source resolution) and then ONE ``cv2.warpAffine`` straight
to ``k * output_size`` (k = 1 when the face is upsampled, else ceil(source px per output px),
at most 4) followed by an ``INTER_AREA`` reduction by k.

Measured (astronaut + the 6 faces of insightface t1.jpg, MTCNN points; 2-core CPU):
reference vs the literal PIL/scipy recipe 51 dB PSNR (max |diff| 2-3 levels); fast vs
reference 50.7-56.7 dB at 256, 53-59 dB at 512/1024 (44 dB on a shrink-path case at 128);
without the blur padding (``enable_padding=False`` on the fast path) 35.4-59 dB, so the
padding is kept.  Speed per face: reference ~300-500 ms (1024 or 512), fast 0.5-2.6 ms when
no padding is needed and 10-14 ms when it is (the float blur/median fill dominates).

Rejection (:func:`ffhq_outside_frame`): EFHQ calls ``cropByInputLM(img, lmk5, rescale=[1.4255,
2.0591, 1.6423, 1.3087])``: centre (cx, cy) = centre of the landmarks' tight box, ``t = max(box
w, box h) / 2`` ("half the landmark box size" = half its LARGER side), expanded box =
``round(cx - 1.4255 t), round(cy - 2.0591 t), round(cx + 1.6423 t), round(cy + 1.3087 t)``
(left, top, right, bottom; Python's round), rejected when left < 0 or top < 0 or right > W
or bottom > H.

EG3D (see :func:`eg3d_crop` and :func:`eg3d_camera_label` for the derivations).

Only numpy is imported at module level; cv2 inside the functions.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = [
    "warp_points",
    "similarity_matrix",
    "ffhq_quad",
    "ffhq_matrix",
    "ffhq_outside_frame",
    "ffhq_expanded_box",
    "FFHQ_REJECT_RESCALE",
    "ffhq_prepare",
    "align_ffhq_fast",
    "ARCFACE_TEMPLATE_112",
    "arcface_matrix",
    "align_arcface",
    "EG3D_LM3D_STD",
    "EG3D_TEMPLATE_512",
    "EG3D_EYE_MOUTH_512",
    "eg3d_matrix",
    "eg3d_crop",
    "eg3d_camera_label",
    "eg3d_camera_position",
    "tube_box",
    "crop_resize",
]


# ------------------------------------------------------------------------------------------
# Small helpers
# ------------------------------------------------------------------------------------------

def _lmk5(lmk5) -> np.ndarray:
    a = np.asarray(lmk5, dtype=np.float64)
    if a.shape != (5, 2):
        raise ValueError(f"expected (5, 2) landmarks, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError("landmarks contain NaN/inf")
    return a


def warp_points(points, M) -> np.ndarray:
    """Apply a 2x3 affine (or 3x3 projective) matrix to (N, 2) points -> (N, 2) float64."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    M = np.asarray(M, dtype=np.float64)
    ph = np.concatenate([p, np.ones((len(p), 1))], axis=1)
    if M.shape == (2, 3):
        return ph @ M.T
    if M.shape == (3, 3):
        q = ph @ M.T
        return q[:, :2] / q[:, 2:3]
    raise ValueError(f"expected a 2x3 or 3x3 matrix, got {M.shape}")


def similarity_matrix(src, dst) -> np.ndarray:
    """Least-squares similarity (rotation + uniform scale + translation, no reflection)
    mapping ``src`` (N, 2) onto ``dst`` (N, 2) (Umeyama 1991) -> 2x3 float64."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    n = len(src)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    var_s = (s0 ** 2).sum() / n
    cov = d0.T @ s0 / n
    U, S, Vt = np.linalg.svd(cov)
    D = np.eye(2)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        D[1, 1] = -1.0
    R = U @ D @ Vt
    scale = (S * np.diag(D)).sum() / var_s if var_s > 0 else 1.0
    t = mu_d - scale * R @ mu_s
    return np.concatenate([scale * R, t[:, None]], axis=1)


def _invert_affine(M) -> np.ndarray:
    M = np.asarray(M, dtype=np.float64)
    A = np.linalg.inv(M[:, :2])
    return np.concatenate([A, -A @ M[:, 2:3]], axis=1)


# ------------------------------------------------------------------------------------------
# FFHQ quad alignment
# ------------------------------------------------------------------------------------------

def ffhq_quad(lmk5) -> np.ndarray:
    """FFHQ's oriented crop square from 5 points -> (4, 2) corners
    [top-left, bottom-left, bottom-right, top-right] of the aligned image, in source pixels."""
    lm = _lmk5(lmk5)
    eye_left, eye_right = lm[0], lm[1]
    mouth_left, mouth_right = lm[3], lm[4]
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (mouth_left + mouth_right) * 0.5
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * np.array([-1.0, 1.0])
    x = x / np.hypot(*x)
    x = x * max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * np.array([-1.0, 1.0])
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def _quad_inverse_matrix(quad: np.ndarray, size: int) -> np.ndarray:
    """2x3 map output pixel (cv2 centres) -> source pixel, sampling like PIL's QUAD transform
    with ``(quad + 0.5)``: output pixel centre i + 0.5 (PIL continuous coords) -> quad point."""
    q0 = quad[0]
    ex = (quad[3] - quad[0]) / size  # per output pixel along x
    ey = (quad[1] - quad[0]) / size  # per output pixel along y
    # PIL continuous source coordinate = (q0 + 0.5) + (i + 0.5) ex + (j + 0.5) ey; cv2 pixel = that - 0.5.
    t = q0 + 0.5 * (ex + ey)
    return np.stack([ex, ey, t], axis=1)  # rows: x, y


def ffhq_matrix(lmk5, output_size: int = 1024) -> np.ndarray:
    """2x3 matrix mapping full-frame points to the FFHQ-aligned ``output_size`` image (cv2
    pixel centres; EFHQ's aligned-landmark .txt files are these + 0.5 px)."""
    return _invert_affine(_quad_inverse_matrix(ffhq_quad(lmk5), output_size))


#: EFHQ's ``cropByInputLM`` rescale factors (left, top, right, bottom) in units of half the
#: larger side of the landmarks' tight box.
FFHQ_REJECT_RESCALE = (1.4255, 2.0591, 1.6423, 1.3087)


def ffhq_expanded_box(lmk5, rescale: Sequence[float] = FFHQ_REJECT_RESCALE) -> tuple[int, int, int, int]:
    """EFHQ's landmark-derived expanded box (left, top, right, bottom), integer pixels."""
    lm = _lmk5(lmk5)
    l, t = lm.min(0)
    r, b = lm.max(0)
    cx, cy = l + (r - l) / 2.0, t + (b - t) / 2.0
    ts = max(r - l, b - t) / 2.0
    return (int(round(cx - rescale[0] * ts)), int(round(cy - rescale[1] * ts)),
            int(round(cx + rescale[2] * ts)), int(round(cy + rescale[3] * ts)))


def ffhq_outside_frame(lmk5, width: int, height: int) -> bool:
    """EFHQ's rejection rule: True when the expanded box leaves the ``width x height`` frame."""
    bl, bt, br, bb = ffhq_expanded_box(lmk5)
    return bool(bl < 0 or bt < 0 or br > width or bb > height)


def _area_resize(img: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    import cv2  # noqa: PLC0415

    return cv2.resize(img, (out_w, out_h), interpolation=cv2.INTER_AREA)


#: The padding's blur (sigma = 2% of the quad, 10-40 px) runs on a copy shrunk so that sigma stays at least this
#: many of its pixels: the blurred image holds nothing finer than sigma, so the shrink loses nothing visible
#: (tests/core/test_align.py: against the exact blur) and a 1024 px export's padded faces blur ~20x faster.
PAD_BLUR_MIN_SIGMA_PX = 3.0


def _pad_blur(f: np.ndarray, sigma: float, *, exact: bool = False) -> np.ndarray:
    """FFHQ's ``scipy.ndimage.gaussian_filter(img, [sigma, sigma, 0])`` (mode reflect, truncate 4) of a float32
    image; ``exact=False`` blurs a copy shrunk by ``d = floor(sigma / PAD_BLUR_MIN_SIGMA_PX)`` (area average, which
    adds 1/12 px^2 of variance there, and linear upsampling, which adds 1/6) and brings it back."""
    import cv2  # noqa: PLC0415

    def gaussian(img: np.ndarray, s: float) -> np.ndarray:
        radius = int(4.0 * s + 0.5)  # truncate 4; cv2 BORDER_REFLECT == scipy's mode='reflect'
        return cv2.GaussianBlur(img, (2 * radius + 1, 2 * radius + 1), s, s, borderType=cv2.BORDER_REFLECT)

    h, w = f.shape[:2]
    d = int(sigma // PAD_BLUR_MIN_SIGMA_PX)
    if exact or d < 2:
        return gaussian(f, sigma)
    small = cv2.resize(f, (max(1, round(w / d)), max(1, round(h / d))), interpolation=cv2.INTER_AREA)
    small = gaussian(small, float(np.sqrt((sigma / d) ** 2 - 1.0 / 12.0 - 1.0 / 6.0)))
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def ffhq_prepare(img: np.ndarray, quad: np.ndarray, output_size: int, enable_padding: bool, resize=_area_resize,
                 round_half_up: bool = False, exact_blur: bool = False):
    """FFHQ's shrink / crop / pad.  Returns (image, quad in that image, padded?).

    ``resize(img, w, h)`` shrinks by the integer factor (``INTER_AREA``; the test reference passes PIL's
    Lanczos); ``round_half_up`` rounds the padded image as PIL does (floor(x + 0.5)) instead of ``np.rint``;
    ``exact_blur``: the padding's blur at full size (the reference) instead of on a shrunk copy (:func:`_pad_blur`)."""
    import cv2  # noqa: PLC0415

    quad = quad.copy()
    qsize = np.hypot(*(quad[3] - quad[0]) / 2.0) * 2.0
    h0, w0 = img.shape[:2]

    # Shrink.
    shrink = int(np.floor(qsize / output_size * 0.5))
    if shrink > 1:
        rw, rh = int(np.rint(float(w0) / shrink)), int(np.rint(float(h0) / shrink))
        img = resize(img, rw, rh)
        quad /= shrink
        qsize /= shrink

    # Crop.
    h, w = img.shape[:2]
    border = max(int(np.rint(qsize * 0.1)), 3)
    crop = (int(np.floor(quad[:, 0].min())), int(np.floor(quad[:, 1].min())),
            int(np.ceil(quad[:, 0].max())), int(np.ceil(quad[:, 1].max())))
    crop = (max(crop[0] - border, 0), max(crop[1] - border, 0), min(crop[2] + border, w), min(crop[3] + border, h))
    if crop[2] - crop[0] < w or crop[3] - crop[1] < h:
        img = img[crop[1]:crop[3], crop[0]:crop[2]]
        quad -= np.array(crop[0:2], dtype=np.float64)

    # Pad.
    h, w = img.shape[:2]
    pad = (int(np.floor(quad[:, 0].min())), int(np.floor(quad[:, 1].min())),
           int(np.ceil(quad[:, 0].max())), int(np.ceil(quad[:, 1].max())))
    pad = (max(-pad[0] + border, 0), max(-pad[1] + border, 0), max(pad[2] - w + border, 0), max(pad[3] - h + border, 0))
    padded = False
    if enable_padding and max(pad) > border - 4:
        padded = True
        pad = np.maximum(pad, int(np.rint(qsize * 0.3)))
        f = np.pad(img.astype(np.float32), ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), "reflect")
        h, w = f.shape[:2]
        yy = np.arange(h, dtype=np.float32)[:, None, None]
        xx = np.arange(w, dtype=np.float32)[None, :, None]
        mask = np.maximum(1.0 - np.minimum(xx / pad[0], (w - 1 - xx) / pad[2]),
                          1.0 - np.minimum(yy / pad[1], (h - 1 - yy) / pad[3]))
        g = _pad_blur(f, qsize * 0.02, exact=exact_blur)
        if g.ndim == 2:
            g = g[..., None]
        f += (g - f) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
        f += (np.median(f, axis=(0, 1)) - f) * np.clip(mask, 0.0, 1.0)
        img = np.clip(np.floor(f + 0.5) if round_half_up else np.rint(f), 0, 255).astype(np.uint8)
        quad += np.array(pad[:2], dtype=np.float64)
    return np.ascontiguousarray(img), quad, padded


def _check_image(image_bgr) -> np.ndarray:
    img = np.asarray(image_bgr)
    if img.ndim != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, C) uint8 image, got {img.shape} {img.dtype}")
    return img


def align_ffhq_fast(image_bgr, lmk5, output_size: int = 1024, enable_padding: bool = True) -> np.ndarray:
    """Single-warp FFHQ alignment: same shrink/crop/pad as the reference on the source, then one
    ``cv2.warpAffine`` to ``k * output_size`` and an ``INTER_AREA`` reduction by k (k = 1 when
    the face is upsampled, else ceil(source px per output px), at most 4).  Border: reflect
    (only reached when ``enable_padding=False`` or the quad sits inside the frame)."""
    import cv2  # noqa: PLC0415

    img = _check_image(image_bgr)
    quad = ffhq_quad(lmk5)
    img, quad, _ = ffhq_prepare(img, quad, output_size, enable_padding)
    qsize = np.hypot(*(quad[3] - quad[0]))
    k = int(min(4, max(1, math.ceil(qsize / output_size - 1e-9))))
    size = k * output_size
    A = _quad_inverse_matrix(quad, size)
    out = cv2.warpAffine(img, A, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                         borderMode=cv2.BORDER_REFLECT_101)
    if k > 1:
        out = cv2.resize(out, (output_size, output_size), interpolation=cv2.INTER_AREA)
    return out


# ------------------------------------------------------------------------------------------
# ArcFace 112
# ------------------------------------------------------------------------------------------

#: insightface's ArcFace 112x112 5-point template (``insightface.utils.face_align.arcface_dst``).
ARCFACE_TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)


def arcface_matrix(lmk5, size: int = 112) -> np.ndarray:
    """2x3 least-squares similarity (Umeyama, no reflection) full frame -> ArcFace ``size`` crop
    (the template scaled by size / 112, as insightface's ``estimate_norm``)."""
    return similarity_matrix(_lmk5(lmk5), ARCFACE_TEMPLATE_112 * (size / 112.0))


def align_arcface(image_bgr, lmk5, size: int = 112) -> np.ndarray:
    """ArcFace crop (insightface ``norm_crop``): similarity warp, bilinear, black border."""
    import cv2  # noqa: PLC0415

    M = arcface_matrix(lmk5, size)
    return cv2.warpAffine(_check_image(image_bgr), M, (size, size), flags=cv2.INTER_LINEAR, borderValue=0.0)


# ------------------------------------------------------------------------------------------
# EG3D
# ------------------------------------------------------------------------------------------

#: Deep3DFaceRecon's standard 5 landmarks (``load_lm3d``: BFM's similarity_Lm3D_all.mat, eyes
#: = mean of the two corners, order [left eye, right eye, nose, mouth left, mouth right]; BFM
#: units, y up).
EG3D_LM3D_STD = np.array(
    [[-0.31148657, 0.29036078, 0.13377953],
     [0.30979887, 0.28972036, 0.13179526],
     [0.0032535, -0.04617932, 0.55244243],
     [-0.25216928, -0.38133916, 0.22405732],
     [0.2484662, -0.38128236, 0.22235769]],
    dtype=np.float64,
)

#: Where EG3D's in-the-wild crop puts the 5 points of a frontal face matching the standard
#: landmarks, in the 512 output.  Derivation: Deep3DFaceRecon's ``align_img`` fits the
#: weak-perspective pose (POS) of ``EG3D_LM3D_STD``, resizes the frame to 300 px per BFM unit
#: (``rescale_factor=300``) and crops 1024 centred on the BFM origin; EG3D centre-crops 700
#: and resizes to 512.  So a point (X, Y) lands at 256 + (300 * 512 / 700) * (X, -Y).
EG3D_TEMPLATE_512 = 256.0 + (300.0 * 512.0 / 700.0) * EG3D_LM3D_STD[:, :2] * np.array([1.0, -1.0])

#: Eye centre and mouth centre targets used by :func:`eg3d_crop` (symmetrised, x = 256):
#: eye centre (256, 192.36), mouth centre (256, 339.68) in the 512 crop.
EG3D_EYE_MOUTH_512 = np.array(
    [[256.0, EG3D_TEMPLATE_512[:2, 1].mean()], [256.0, EG3D_TEMPLATE_512[3:, 1].mean()]], dtype=np.float64
)


def eg3d_matrix(lmk5, size: int = 512) -> np.ndarray:
    """2x3 similarity full frame -> EG3D-like ``size`` crop (see :func:`eg3d_crop`)."""
    lm = _lmk5(lmk5)
    src = np.stack([(lm[0] + lm[1]) / 2.0, (lm[3] + lm[4]) / 2.0])
    dst = EG3D_EYE_MOUTH_512 * (size / 512.0)
    # Exact 2-point similarity (rotation + scale + translation).
    vs, vd = src[1] - src[0], dst[1] - dst[0]
    a = complex(*vd) / complex(*vs)
    R = np.array([[a.real, -a.imag], [a.imag, a.real]])
    t = dst[0] - R @ src[0]
    return np.concatenate([R, t[:, None]], axis=1)


def eg3d_crop(image_bgr, lmk5, size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """EG3D-like crop from 5 landmarks -> (crop (size, size, C) uint8, 2x3 matrix).

    EG3D's own preprocessing needs Deep3DFaceRecon (not available here); this approximates
    its framing with a similarity transform that puts the eye centre at (256, 192.36) and the
    mouth centre at (256, 339.68) of a 512 crop: where EG3D's crop puts them for a frontal
    face (:data:`EG3D_TEMPLATE_512`).  Two points (not all five) because the eye-to-mouth
    segment is the one that keeps its length and direction as the head yaws, so a profile is
    not shrunk.  Differences from EG3D: EG3D centres the head's BFM origin (about 0.2-0.5 BFM
    units behind the landmarks), so at large yaw EG3D's face sits off-centre by roughly
    ``0.2 * sin(yaw) * 219`` px where this crop keeps the features centred; EG3D keeps the
    in-plane roll (its crop is scale + translation only) while this crop makes the
    eye-to-mouth axis vertical (roll removed, like the FFHQ quad); Lanczos (EG3D) vs
    bilinear (+ INTER_AREA when shrinking) here; border reflected.
    """
    import cv2  # noqa: PLC0415

    img = _check_image(image_bgr)
    M = eg3d_matrix(lmk5, size)
    scale = math.hypot(M[0, 0], M[0, 1])
    if scale < 0.5:  # strong downscale: supersample then area-reduce
        k = int(min(4, math.ceil(1.0 / scale)))
        Mk = M * k
        Mk[:, 2] += (k - 1) / 2.0  # keep pixel centres aligned: x_k = k x + (k - 1) / 2
        big = cv2.warpAffine(img, Mk, (size * k, size * k), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        return cv2.resize(big, (size, size), interpolation=cv2.INTER_AREA), M
    return cv2.warpAffine(img, M, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101), M


def eg3d_camera_position(yaw: float, pitch: float, roll: float = 0.0, radius: float = 2.7) -> np.ndarray:
    """Camera centre in EG3D world coordinates for a head at the origin with this pose."""
    from efhq_assets.core.pose.rotations import euler_to_matrix_np  # noqa: PLC0415

    R = np.asarray(euler_to_matrix_np(float(yaw), float(pitch), float(roll)), dtype=np.float64)
    return R.T @ np.array([0.0, 0.0, radius])


def eg3d_camera_label(yaw: float, pitch: float, roll: float, radius: float = 2.7, focal: float = 4.2647,
                      principal: float = 0.5) -> list[float]:
    """EG3D 25-value camera label: cam2world 4x4 (row-major) + normalised intrinsics 3x3.

    EG3D world (``camera_utils.py``: "y-up, z-forward, x-left"; ``create_cam2world_matrix``):
    the head sits at the origin facing +z, y up, +x = the subject's left = image right in a
    frontal view; the frontal camera is at (0, 0, radius) looking at the origin, and its
    cam2world rotation has columns (right, down, forward) = (+x, -y, -z): an OpenCV camera
    (x right, y down, z forward).  That world frame IS this project's head frame.

    Derivation.  A head pose ``R = euler_to_matrix_np(yaw, pitch, roll)`` maps head (= world)
    coordinates to the project camera frame (x right, y up, z toward the viewer), with the
    head ``radius`` in front of the camera: ``p_cam = R p_world + (0, 0, -radius)``.  The
    OpenCV camera frame is ``F p_cam`` with ``F = diag(1, -1, -1)``, so world->camera is
    ``p_cv = F R p_world + (0, 0, radius)`` and

        cam2world rotation = R^T F,      camera centre = R^T (0, 0, radius).

    Checks: frontal -> rotation diag(1, -1, -1), centre (0, 0, 2.7) (EG3D's frontal pose);
    yaw +30 (subject turns to their own left) -> centre 2.7 (-sin 30, 0, cos 30): the camera
    orbits 30 deg about +y toward -x, the subject's RIGHT side (it sees the right cheek, and
    the nose (0, 0, 1) projects to the image right, as the convention says).  In EG3D's
    ``LookAtPoseSampler`` terms: horizontal angle ``h = pi/2 - yaw``.  Pitch +p (looks up) ->
    centre 2.7 (0, -sin p, cos p): camera below the face.  Roll rotates the camera about its
    optical axis (EG3D's samplers assume no roll; its dataset labels carry it).

    Intrinsics: ``[focal, 0, principal, 0, focal, principal, 0, 0, 1]`` (EG3D FFHQ: 4.2647 =
    2985.29 / 700, principal point 0.5, normalised by the image size).
    """
    from efhq_assets.core.pose.rotations import euler_to_matrix_np  # noqa: PLC0415

    R = np.asarray(euler_to_matrix_np(float(yaw), float(pitch), float(roll)), dtype=np.float64)
    F = np.diag([1.0, -1.0, -1.0])
    c2w = np.eye(4)
    c2w[:3, :3] = R.T @ F
    c2w[:3, 3] = R.T @ np.array([0.0, 0.0, radius])
    K = np.array([[focal, 0.0, principal], [0.0, focal, principal], [0.0, 0.0, 1.0]])
    return [float(v) for v in c2w.reshape(-1)] + [float(v) for v in K.reshape(-1)]


# ------------------------------------------------------------------------------------------
# Reenactment tube crops
# ------------------------------------------------------------------------------------------

def tube_box(boxes, frame_w: int, frame_h: int, expand: float = 0.1, min_side: int = 256):
    """Reenactment tube box (AliaksandrSiarohin video-preprocessing, EFHQ ``preprocess_vox.py``).

    ``boxes`` (N, 4) x1, y1, x2, y2 of one face over the clip.  The tube = their union.  Aspect
    preserved expansion as ``compute_aspect_preserved_bbox``: each side grows by ``expand`` x
    the size, and the shorter side more so that the result is square: side = (1 + 2 expand) x
    max(w, h) around the union's centre (so ``expand=0.1`` = 10% per side, 1.2x overall).
    Coordinates are truncated to int as the reference, then clamped to the frame (the crop may
    be non-square after clamping; :func:`crop_resize` resizes it to a square as the reference
    does).  Returns (left, top, right, bottom) ints, or None when the clamped box's shorter
    side is < ``min_side`` (or there are no boxes).
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    b = b[np.all(np.isfinite(b), axis=1)]
    if len(b) == 0:
        return None
    left, top = b[:, 0].min(), b[:, 1].min()
    right, bot = b[:, 2].max(), b[:, 3].max()
    width, height = right - left, bot - top
    if width <= 0 or height <= 0:
        return None
    wi = max(expand, ((1 + 2 * expand) * height - width) / (2 * width))
    hi = max(expand, ((1 + 2 * expand) * width - height) / (2 * height))
    left, top = int(left - wi * width), int(top - hi * height)
    right, bot = int(right + wi * width), int(bot + hi * height)
    left, top = max(0, left), max(0, top)
    right, bot = min(right, int(frame_w)), min(bot, int(frame_h))
    if min(right - left, bot - top) < min_side:
        return None
    return (left, top, right, bot)


def crop_resize(image, box, size: int = 256) -> np.ndarray:
    """Crop ``box`` (left, top, right, bottom; clamped to the image) and resize to size x size
    (INTER_AREA when shrinking, like skimage's anti-aliased resize; bilinear when enlarging)."""
    import cv2  # noqa: PLC0415

    img = np.asarray(image)
    h, w = img.shape[:2]
    l, t, r, b = (int(round(v)) for v in box)
    l, t, r, b = max(0, l), max(0, t), min(w, r), min(h, b)
    if r <= l or b <= t:
        raise ValueError(f"empty crop {box} in a {w}x{h} image")
    crop = img[t:b, l:r]
    interp = cv2.INTER_AREA if (r - l) >= size and (b - t) >= size else cv2.INTER_LINEAR
    return cv2.resize(crop, (size, size), interpolation=interp)
