"""The literal FFHQ / EFHQ ``image_align_5`` recipe (``align_ffhq_reference``), kept for the tests: the measure
that ``core.align.align_ffhq_fast`` is checked against, with PIL's ``Image.resize(..., ANTIALIAS)`` re-implemented
(Lanczos-3, support scaled by the reduction, weights renormalised at the borders, horizontal pass rounded to
uint8 before the vertical pass) so the reference needs no PIL. See core/align.py's docstring for the recipe.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from efhq_assets.core.align import _check_image, _quad_inverse_matrix, ffhq_prepare, ffhq_quad, warp_points


def _lanczos(x: np.ndarray) -> np.ndarray:
    out = np.sinc(x) * np.sinc(x / 3.0)
    return np.where((x >= -3.0) & (x < 3.0), out, 0.0)


def _pil_coeffs(in_size: int, out_size: int):
    """PIL's ``precompute_coeffs`` for the Lanczos filter: (xmin (out,), weights (out, K))."""
    scale = in_size / out_size
    fs = max(scale, 1.0)
    support = 3.0 * fs
    centers = (np.arange(out_size) + 0.5) * scale
    xmin = np.maximum(np.trunc(centers - support + 0.5).astype(np.int64), 0)
    xmax = np.minimum(np.trunc(centers + support + 0.5).astype(np.int64), in_size)
    n = xmax - xmin
    k = int(n.max())
    xs = np.arange(k)
    w = _lanczos((xs[None, :] + xmin[:, None] - centers[:, None] + 0.5) / fs)
    w = np.where(xs[None, :] < n[:, None], w, 0.0)
    ww = w.sum(1, keepdims=True)
    w = w / np.where(ww == 0, 1.0, ww)
    return xmin, w


def _resample_axis(img: np.ndarray, out_size: int, axis: int) -> np.ndarray:
    """One PIL Lanczos pass along ``axis`` (0 = rows/height, 1 = columns/width), float32 in/out."""
    in_size = img.shape[axis]
    if in_size == out_size:
        return img
    s = in_size / out_size
    if s >= 1 and float(s).is_integer():
        # Integer reduction: every output uses the same kernel (shifted by s); filter at full
        # resolution with zero borders, subsample, and renormalise the border outputs exactly.
        s = int(s)
        support = 3.0 * s
        c0 = 0.5 * s
        start0 = math.floor(c0 - support + 0.5)
        k = int(math.floor(c0 + support + 0.5) - start0)
        kern = _lanczos((np.arange(k) + start0 - c0 + 0.5) / s)
        kern = kern / kern.sum()
        anchor = k // 2
        kx = kern.astype(np.float32)  # cv2 filters are correlations: dst(x) = sum k[j] src(x + j - a)
        one = np.ones(1, np.float32)
        if axis == 1:
            f = cv2.sepFilter2D(img, cv2.CV_32F, kx, one, anchor=(anchor, 0), borderType=cv2.BORDER_CONSTANT)
        else:
            f = cv2.sepFilter2D(img, cv2.CV_32F, one, kx, anchor=(0, anchor), borderType=cv2.BORDER_CONSTANT)
        starts = np.arange(out_size) * s + start0
        pos = starts + anchor
        idx = np.clip(pos, 0, in_size - 1)
        # weight mass inside [0, in_size) for each output
        j = starts[:, None] + np.arange(k)[None, :]
        norm = (kern[None, :] * ((j >= 0) & (j < in_size))).sum(1)
        ok = (pos >= 0) & (pos < in_size)
        if not ok.all():  # output whose anchor falls outside: fall back to the generic path
            return _resample_axis_generic(img, out_size, axis)
        out = np.take(f, idx, axis=axis)
        shape = [1] * out.ndim
        shape[axis] = out_size
        return out / norm.reshape(shape).astype(np.float32)
    return _resample_axis_generic(img, out_size, axis)


def _resample_axis_generic(img: np.ndarray, out_size: int, axis: int) -> np.ndarray:
    in_size = img.shape[axis]
    xmin, w = _pil_coeffs(in_size, out_size)
    shape = [1] * img.ndim
    shape[axis] = out_size
    out = np.zeros(img.shape[:axis] + (out_size,) + img.shape[axis + 1:], np.float32)
    for k in range(w.shape[1]):
        idx = np.minimum(xmin + k, in_size - 1)
        out += np.take(img, idx, axis=axis) * w[:, k].reshape(shape).astype(np.float32)
    return out


def _round_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(x + 0.5), 0, 255).astype(np.uint8)


def _resize_lanczos_pil(img: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """PIL ``Image.resize(..., ANTIALIAS)`` for uint8 images: horizontal pass, uint8 rounding,
    vertical pass."""
    x = img.astype(np.float32)
    if x.shape[1] != out_w:
        x = _round_u8(_resample_axis(x, out_w, 1)).astype(np.float32)
    if x.shape[0] != out_h:
        x = _resample_axis(x, out_h, 0)
    return _round_u8(x)



def align_ffhq_reference(image_bgr, lmk5, output_size: int = 1024, transform_size: int = 4096,
                         enable_padding: bool = True) -> np.ndarray:
    """FFHQ / EFHQ ``image_align_5`` alignment (see the module docstring) -> (S, S, C) uint8."""
    img = _check_image(image_bgr)
    quad = ffhq_quad(lmk5)
    img, quad, _ = ffhq_prepare(img, quad, output_size, enable_padding, resize=_resize_lanczos_pil,
                                round_half_up=True, exact_blur=True)
    A = _quad_inverse_matrix(quad, transform_size)
    big = cv2.warpAffine(img, A, (transform_size, transform_size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                         borderMode=cv2.BORDER_REPLICATE)
    # PIL returns black where the sample point lies outside [0, W) x [0, H) (continuous coords).
    h, w = img.shape[:2]
    corners = warp_points(np.array([[0, 0], [transform_size - 1, 0], [0, transform_size - 1],
                                    [transform_size - 1, transform_size - 1]], float), A)
    if corners.min() < -0.5 or corners[:, 0].max() >= w - 0.5 or corners[:, 1].max() >= h - 0.5:
        jj, ii = np.mgrid[0:transform_size, 0:transform_size].astype(np.float32)
        sx = A[0, 0] * ii + A[0, 1] * jj + A[0, 2]
        sy = A[1, 0] * ii + A[1, 1] * jj + A[1, 2]
        outside = (sx < -0.5) | (sx >= w - 0.5) | (sy < -0.5) | (sy >= h - 0.5)
        big[outside] = 0
    if output_size < transform_size:
        big = _resize_lanczos_pil(big, output_size, output_size)
    return big
