"""Head-turn ground truth by "face profiling": a textured 3D face mesh fitted to one real photo,
rendered turned through known yaw / pitch / roll (the idea used to build 300W-LP).

Fit (:func:`fit_textured_mesh`)
-------------------------------
1. MediaPipe FaceMesh (:class:`~efhq_assets.core.models.facemesh.FaceMeshLandmarker`) on the
   photo gives 478 3D points of *this* person: x, y in pixels, z depth (same pixel scale, larger =
   farther).  Camera-frame points ``q = (x, -y, -z)`` (x right, y up, z toward the viewer).
2. Head frame of this person, found from the mesh's own geometry (no pose estimator involved):

   * yaw and roll zero: the face's symmetry plane.  FaceMesh's topology is mirror symmetric
     (``face_models_3d.facemesh_mirror_permutation``); the plane normal is the principal direction
     of the left-right pair differences and becomes the head x axis;
   * pitch zero: the project's pitch convention, i.e. the dlib68 mean shape's frame (the same
     tie the ``facemesh`` estimator's reference uses): a rotation about x fitted (2D Procrustes in
     y-z) on the 19 corresponding points ``IBUG68_TO_FACEMESH``;
   * with ``yaw_zero="template"``, yaw zero moves to the template's (:func:`template_yaw_zeroed`): for a photo
     taken turned the symmetry plane of FaceMesh's depth guess is 3-6 degrees off what a symmetric face model
     reads as frontal, so the mesh is turned about its vertical axis until the ``facemesh`` reference, fitted to
     its own vertices, reads yaw 0 (the convention of 3D-model-fitted pose datasets such as 300W-LP).

   The mesh is de-rotated into that frame, centred on the centroid of the 468 mesh vertices and
   scaled so the frontal face is 1 unit wide (x extent of the 468 vertices).  The rotation taken
   out is the still's own pose (``TexturedFace.still_pose``, project convention).  So rendered
   angles are **absolute** in the project convention, relative to this person's template yaw zero
   (or symmetry plane) and the dlib68 pitch zero; they are *not* relative to the still.  These zeros
   are definitions.  The pitch zero is shared by construction with the ``facemesh`` estimator's
   reference (built the same way on another person); the template yaw zero uses that reference on
   the mesh's own exact vertices, so with perfect landmarks the estimator reads a frontal view 0,
   and what it reads on a rendered picture is the landmarker's part.  Neither is fitted to any
   landmarker's output.
3. Triangles: scipy Delaunay on the frontal (x, y) of the 468 mesh vertices plus the shell (below).
   A frontal face is a height field over (x, y), so this is a valid surface triangulation.
4. Shell: a few rings of extra vertices around the face oval (MediaPipe's FACEMESH_FACE_OVAL
   loop), pushed outward in (x, y) and back in depth, so the sides of the head, ears and hair of
   the photo turn with the face instead of a floating mask.
5. Texture coordinates: every vertex (mesh and shell) projected back into the photo with the
   still's own pose (weak perspective), so rendering at ``still_pose`` reproduces the photo.

Render (:func:`render`)
-----------------------
Rotate with the project's ``euler_to_matrix_np`` (head -> camera), weak-perspective projection
(``u = s x + cx``, ``v = -s y + cy``) or, with ``focal_px``, a pinhole camera, back-face culling, painter's algorithm (triangles sorted far
-> near, each drawn into a triangle-id buffer with ``cv2.fillConvexPoly``, so a nearer triangle
overwrites a farther one), then the per-triangle affine warp of the texture: each pixel takes its
triangle's affine map (frame -> photo), evaluated for all pixels at once and sampled with one
``cv2.remap``.  This is the same math as one ``cv2.warpAffine`` per triangle bounding rect with a
mask, ~10x faster (about 10-20 ms per 512^2 frame on 2 CPU cores).

Limits (honest): the geometry is FaceMesh's depth estimate of one photo (no scan); parts hidden in
the still (the far cheek of a turned face, the back of the head) are stretched from what the photo
shows; no relighting; the shell is a coarse proxy for hair/ears.

numpy, cv2 and scipy; mediapipe (for the fit) is imported where it is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy.spatial import Delaunay

from efhq_assets.core import face_models_3d as fm3d
from efhq_assets.core.pose.rotations import euler_to_matrix_np, matrix_to_euler_np

__all__ = ["TexturedFace", "fit_textured_mesh", "template_yaw", "template_yaw_zeroed", "render", "render_turn_segment",
           "LMK5_INDICES", "default_background"]

#: FaceMesh indices of the 5 landmarks returned by :func:`render` (iris centres, nose tip, mouth corners).
LMK5_INDICES = (468, 473, 1, 61, 291)

#: Shell rings around the face oval: (radial factor in x-y about the oval centre, depth pushed
#: back in face widths).  Chosen by eye so a 60-80 deg turn shows the side of the head.
SHELL_RINGS = ((1.10, 0.10), (1.25, 0.28), (1.42, 0.52), (1.58, 0.80))

#: Texture crop kept around the face: side = this x the box's long side.
TEXTURE_CROP = 3.4


@dataclass
class TexturedFace:
    """A person's textured mesh in the project's head frame (x right, y up, z toward the camera).

    vertices:  (V, 3) float64; rows 0..477 are FaceMesh's points, the rest the shell; the frontal
               face (468 mesh vertices) is 1 unit wide, origin at their centroid.
    uv:        (V, 2) float32 texture coordinates in ``texture`` pixels.
    triangles: (T, 3) int32 vertex indices, all with the same frontal orientation.
    texture:   BGR uint8 crop of the photo.
    still_pose: (yaw, pitch, roll) of the face in the photo (project convention), from the mesh's
               own symmetry plane and the dlib68 pitch zero.
    face_px_in_still: width of the frontal face in photo pixels (texture scale).
    """

    vertices: np.ndarray
    uv: np.ndarray
    triangles: np.ndarray
    texture: np.ndarray = field(repr=False)
    still_pose: tuple[float, float, float]
    face_px_in_still: float
    n_mesh: int = 478
    _orient: float = 1.0  # sign of the frontal image-space area of every triangle
    #: "symmetry" (the mesh's own symmetry plane) or "template" (:func:`template_yaw_zeroed`), and the yaw the
    #: template zero turned the mesh by, degrees
    yaw_zero: str = "symmetry"
    yaw_zero_shift: float = 0.0

    @property
    def n_shell(self) -> int:
        return len(self.vertices) - self.n_mesh


# ------------------------------------------------------------------------------------------
# Fit
# ------------------------------------------------------------------------------------------

def _face_oval_loop() -> np.ndarray:
    """The 36 FaceMesh face-oval vertices in loop order (from MediaPipe's FACEMESH_FACE_OVAL edges)."""
    from mediapipe.python.solutions import face_mesh as mp_face_mesh  # lazy: mediapipe is slow to import and logs

    nxt: dict[int, list[int]] = {}
    for a, b in mp_face_mesh.FACEMESH_FACE_OVAL:
        nxt.setdefault(a, []).append(b)
        nxt.setdefault(b, []).append(a)
    start = min(nxt)
    loop, prev, cur = [start], None, start
    while True:
        cand = [v for v in sorted(nxt[cur]) if v != prev]
        if not cand or cand[0] == start:
            break
        prev, cur = cur, cand[0]
        loop.append(cur)
    return np.asarray(loop, np.int64)


def _head_frame(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation B (camera -> head, rows = head axes in camera coordinates) and centre c for
    camera-frame points q (478, 3): x = symmetry-plane normal, pitch zero from the dlib68 mean shape."""
    perm = fm3d.facemesh_mirror_permutation()[:468]
    idx = np.arange(468)
    pair = idx[perm > idx]
    diffs = q[pair] - q[perm[pair]]
    # each pair difference points from the subject's right to left or back; orient toward +x
    diffs = diffs * np.sign(diffs[:, :1] + 1e-12)
    _, _, vt = np.linalg.svd(diffs, full_matrices=False)
    nx = vt[0] * np.sign(vt[0, 0])
    up = np.array([0.0, 1.0, 0.0]) - nx[1] * nx
    up /= np.linalg.norm(up)
    nz = np.cross(nx, up)
    basis = np.stack([nx, up, nz])
    c = q[:468].mean(axis=0)
    p = (q - c) @ basis.T
    # pitch zero: rotation about x aligning the 19 corresponding points with the dlib68 mean shape
    ref68 = fm3d.dlib68_reference()
    ib = np.array(list(fm3d.IBUG68_TO_FACEMESH.keys()))
    fmi = np.array(list(fm3d.IBUG68_TO_FACEMESH.values()))
    a = p[fmi][:, 1:]
    b = ref68[ib][:, 1:]
    a0, b0 = a - a.mean(0), b - b.mean(0)
    theta = np.arctan2((a0[:, 0] * b0[:, 1] - a0[:, 1] * b0[:, 0]).sum(), (a0 * b0).sum())
    ct, st = np.cos(theta), np.sin(theta)
    rx = np.array([[1.0, 0.0, 0.0], [0.0, ct, -st], [0.0, st, ct]])
    return rx @ basis, c


def fit_textured_mesh(image_bgr: np.ndarray, box, landmarker=None, landmarks_px: np.ndarray | None = None,
                      yaw_zero: str = "symmetry") -> TexturedFace:
    """Fit a textured mesh to the face in ``box`` (x1, y1, x2, y2) of a BGR photo.

    ``landmarker``: a :class:`FaceMeshLandmarker` to reuse (one is created otherwise);
    ``landmarks_px``: FaceMesh's (478, 3) output if already computed (skips FaceMesh);
    ``yaw_zero``: ``"symmetry"`` (default: the mesh's own symmetry plane) or ``"template"`` (where the
    symmetric reference reads the mesh 0, :func:`template_yaw_zeroed`).
    Raises ValueError when FaceMesh finds no face.
    """
    if yaw_zero not in ("template", "symmetry"):
        raise ValueError(f"yaw_zero must be 'template' or 'symmetry', got {yaw_zero!r}")
    image_bgr = np.asarray(image_bgr)
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.dtype != np.uint8:
        raise ValueError(f"expected a BGR uint8 image (H, W, 3), got {image_bgr.dtype} {image_bgr.shape}")
    box = np.asarray(box, np.float64).reshape(4)
    if landmarks_px is None:
        if landmarker is None:
            from efhq_assets.core.models.facemesh import FaceMeshLandmarker  # lazy: loads MediaPipe's graph

            landmarker = FaceMeshLandmarker()
        landmarks_px = landmarker.landmarks(image_bgr, [box])[0]
        if landmarks_px is None:
            raise ValueError(f"FaceMesh found no face in box {box.tolist()}")
    lm = np.asarray(landmarks_px, np.float64).reshape(478, 3)

    q = lm * np.array([1.0, -1.0, -1.0])  # camera frame: x right, y up, z toward the viewer
    B, c = _head_frame(q)
    head = (q - c) @ B.T
    width = float(np.ptp(head[:468, 0]))
    head /= width
    still_pose = tuple(float(v) for v in matrix_to_euler_np(B.T))

    # shell rings around the face oval
    loop = _face_oval_loop()
    oval = head[loop]
    centre_xy = oval[:, :2].mean(axis=0)
    rings = []
    for factor, depth in SHELL_RINGS:
        ring = oval.copy()
        ring[:, :2] = centre_xy + factor * (oval[:, :2] - centre_xy)
        ring[:, 2] = oval[:, 2] - depth
        rings.append(ring)
    verts = np.concatenate([head] + rings, axis=0)

    # texture: a square crop around the face (reflected at the photo's borders)
    x1, y1, x2, y2 = box
    side = TEXTURE_CROP * max(x2 - x1, y2 - y1)
    ox = int(np.floor((x1 + x2) / 2 - side / 2))
    oy = int(np.floor((y1 + y2) / 2 - side / 2))
    s = int(np.ceil(side))
    h, w = image_bgr.shape[:2]
    pad = max(0, -ox, -oy, ox + s - w, oy + s - h)
    src = cv2.copyMakeBorder(image_bgr, pad, pad, pad, pad, cv2.BORDER_REFLECT_101) if pad else image_bgr
    texture = np.ascontiguousarray(src[oy + pad: oy + pad + s, ox + pad: ox + pad + s])

    # uv: every vertex back into the photo under the still's own pose
    qv = width * verts @ B + c
    uv = np.stack([qv[:, 0] - ox, -qv[:, 1] - oy], axis=1).astype(np.float32)

    # triangulate the frontal (x, y) of mesh vertices + shell (iris points 468..477 left out)
    tri_idx = np.concatenate([np.arange(468), np.arange(478, len(verts))])
    tri = Delaunay(verts[tri_idx, :2]).simplices
    triangles = tri_idx[tri].astype(np.int32)
    # drop sliver triangles along the convex hull between distant shell vertices (none expected)
    p = verts[triangles][:, :, :2]
    area = (p[:, 1, 0] - p[:, 0, 0]) * (p[:, 2, 1] - p[:, 0, 1]) - (p[:, 2, 0] - p[:, 0, 0]) * (p[:, 1, 1] - p[:, 0, 1])
    triangles = triangles[np.abs(area) > 1e-9]
    orient = float(np.sign(np.median(area)))  # Delaunay: all the same sign in (x, y-up)
    face = TexturedFace(verts, uv, triangles, texture, still_pose, width, 478, -orient)  # image v is down
    return template_yaw_zeroed(face) if yaw_zero == "template" else face


def template_yaw(face: TexturedFace, yaw: float = 0.0) -> float:
    """What the ``facemesh`` reference's equal-weight rigid fit (weak perspective) reads on the mesh's own 478
    points, turned to ``yaw`` (pitch and roll 0) and projected orthographically: the yaw perfect landmarks would
    give.  The pipeline's near-frontal oval weighting (``FACEMESH_OVAL_YAW_WEIGHT``) is left out, so that this zero
    is a property of the mesh and the symmetric model, not of the estimator's tuning."""
    from efhq_assets.core.pose.estimators import facemesh_estimator  # torch; only when asked  # noqa: PLC0415

    pts = face.vertices[:478] @ euler_to_matrix_np(float(yaw), 0.0, 0.0).T
    uv = np.stack([pts[:, 0], -pts[:, 1]], axis=1) * 200.0  # image-like pixels, v down
    return float(facemesh_estimator().fit(uv[None].astype(np.float32)).yaw[0])  # fit(): the equal-weight fit


def template_yaw_zeroed(face: TexturedFace, iterations: int = 4) -> TexturedFace:
    """The same textured mesh with yaw zero where a symmetric template reads it 0.

    The symmetry plane of FaceMesh's depth estimate of one photo is a poor zero for photos taken turned: their
    far half is FaceMesh's guess, and a rigid fit of the (mirror-symmetric) ``facemesh`` reference to the mesh's
    own vertices, projected exactly, reads its "frontal" view 3-6 degrees turned toward the side the photo saw
    (docs/pose_accuracy.md).  Pose datasets fitted with a symmetric 3D model (300W-LP, AFLW2000) put zero where
    the template reads 0.  This turns the mesh about its vertical axis until the reference's fit (weak
    perspective, i.e. the orthographic projection of the 478 points) reads yaw 0 at (0, 0, 0); pitch and roll
    zeros stay the mesh's.  Texture coordinates ride with the vertices, so every view is the same picture as
    before, under an angle shifted by ``yaw_zero_shift``.
    """
    shift = 0.0
    for _ in range(iterations):
        read = template_yaw(face, shift)
        if abs(read) < 1e-3:
            break
        shift -= read
    R = euler_to_matrix_np(shift, 0.0, 0.0)
    verts = face.vertices @ R.T
    # the still's camera pose in the new head frame: camera = R_still h = R_still R^T h'
    still = matrix_to_euler_np(euler_to_matrix_np(*face.still_pose) @ R.T)
    return TexturedFace(verts, face.uv, face.triangles, face.texture, tuple(float(v) for v in still),
                        face.face_px_in_still, face.n_mesh, face._orient, "template", face.yaw_zero_shift + shift)


# ------------------------------------------------------------------------------------------
# Render
# ------------------------------------------------------------------------------------------

def default_background(size: int = 512) -> np.ndarray:
    """A plain, deterministic grey-blue vertical gradient (no structure a detector could take for a face)."""
    t = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None, None]
    top = np.array([120, 110, 100], np.float32)
    bottom = np.array([70, 75, 85], np.float32)
    col = top * (1 - t) + bottom * t
    return np.ascontiguousarray(np.broadcast_to(col, (size, size, 3)).round().astype(np.uint8))


def render(face: TexturedFace, yaw: float, pitch: float, roll: float, size: int = 512, face_px: float = 320,
           background: np.ndarray | None = None, center: tuple[float, float] | None = None,
           focal_px: float | None = None):
    """Render ``face`` turned to (yaw, pitch, roll) degrees (project convention).

    ``face_px``: width of the frontal face (468 mesh vertices) in frame pixels; ``center``: where the
    face's centroid lands (default the frame centre); ``background``: (size, size, 3) BGR uint8.
    ``focal_px``: a pinhole camera with this focal length (pixels, principal point at ``center``): the head's
    centroid sits on the optical axis at the distance where the frontal face is ``face_px`` wide, so nearer
    parts look larger as in a real video; None (default): weak perspective. The angles are the head's
    rotation in the camera frame (on the optical axis, the same as relative to the line of sight).
    Returns ``(image_bgr, box, lmk5, truth)``: the frame, the bounding box (x1, y1, x2, y2) of the
    projected 468 mesh vertices, (5, 2) landmarks (image-left eye centre, image-right eye centre,
    nose tip, image-left mouth corner, image-right mouth corner) and ``{"yaw", "pitch", "roll"}``.
    """
    size = int(size)
    if background is None:
        frame = default_background(size)
    else:
        frame = np.array(background, dtype=np.uint8, copy=True)
        if frame.shape != (size, size, 3):
            raise ValueError(f"background must be ({size}, {size}, 3), got {frame.shape}")
    cx, cy = (size / 2.0, size / 2.0) if center is None else (float(center[0]), float(center[1]))
    R = euler_to_matrix_np(float(yaw), float(pitch), float(roll))
    cam = face.vertices @ R.T
    if focal_px is None:
        uv = np.stack([face_px * cam[:, 0] + cx, -face_px * cam[:, 1] + cy], axis=1)
    else:
        f = float(focal_px)
        dist = f / float(face_px) - cam[:, 2]  # distance of each vertex from the camera, in face widths
        uv = np.stack([f * cam[:, 0] / dist + cx, -f * cam[:, 1] / dist + cy], axis=1)

    tri = face.triangles
    p = uv[tri]  # (T, 3, 2)
    area = (p[:, 1, 0] - p[:, 0, 0]) * (p[:, 2, 1] - p[:, 0, 1]) - (p[:, 2, 0] - p[:, 0, 0]) * (p[:, 1, 1] - p[:, 0, 1])
    keep = area * face._orient > 1e-3  # front-facing, not degenerate
    tri, p = tri[keep], p[keep]
    depth = cam[tri, 2].mean(axis=1)
    order = np.argsort(depth, kind="stable")  # far (small z) first; nearer ones overwrite
    tri, p = tri[order], p[order]

    ids = np.zeros((size, size), np.int32)
    fixed = np.round(p * 16.0).astype(np.int32)  # 4 fractional bits
    for k in range(len(tri)):
        cv2.fillConvexPoly(ids, fixed[k], k + 1, cv2.LINE_8, 4)

    # per-triangle affine maps frame (u, v, 1) -> texture (s, t)
    S = np.concatenate([p, np.ones((len(p), 3, 1))], axis=2)  # (T, 3, 3)
    Tx = face.uv[tri].astype(np.float64)  # (T, 3, 2)
    A = np.linalg.solve(S, Tx)  # (T, 3, 2): [u v 1] @ A = [s t]
    A = np.concatenate([np.zeros((1, 3, 2)), A], axis=0).astype(np.float32)

    ys, xs = np.nonzero(ids)
    if len(ys):
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        sub = ids[y0:y1, x0:x1]
        gy, gx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        a = A[sub]  # (h, w, 3, 2)
        mapx = a[..., 0, 0] * gx + a[..., 1, 0] * gy + a[..., 2, 0]
        mapy = a[..., 0, 1] * gx + a[..., 1, 1] * gy + a[..., 2, 1]
        warped = cv2.remap(face.texture, mapx, mapy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        # feather the silhouette by ~1 px so it is not a hard aliased cut-out
        alpha = cv2.GaussianBlur((sub > 0).astype(np.float32), (3, 3), 0.8)
        alpha = np.where(sub > 0, np.maximum(alpha, 0.5), alpha)[..., None]
        region = frame[y0:y1, x0:x1].astype(np.float32)
        frame[y0:y1, x0:x1] = np.clip(warped * alpha + region * (1 - alpha) + 0.5, 0, 255).astype(np.uint8)

    mesh_uv = uv[:468]
    box = np.array([*mesh_uv.min(axis=0), *mesh_uv.max(axis=0)], np.float32)
    l5 = uv[list(LMK5_INDICES)].astype(np.float32)
    if l5[0, 0] > l5[1, 0]:
        l5[[0, 1]] = l5[[1, 0]]
    if l5[3, 0] > l5[4, 0]:
        l5[[3, 4]] = l5[[4, 3]]
    truth = {"yaw": float(yaw), "pitch": float(pitch), "roll": float(roll)}
    return frame, box, l5, truth


#: A view is a valid ground truth when at least this share of its visible face area is drawn from
#: surface the photo saw within :data:`PHOTO_VIEW_LIMIT_DEG` of head-on (see :func:`texture_fidelity`).
VALID_VIEW_FIDELITY = 0.8
PHOTO_VIEW_LIMIT_DEG = 70.0


def texture_fidelity(face: TexturedFace, yaw: float, pitch: float, roll: float,
                     photo_view_limit_deg: float = PHOTO_VIEW_LIMIT_DEG) -> float:
    """Share of the face's visible area in the view (yaw, pitch, roll) whose texture the photo really saw.

    Each of the 468-point mesh's triangles has a texture patch from the photo; where the photo saw
    that surface edge-on (or from behind), the patch is a smear, and a view made mostly of smears is
    not a face at that pose: turning a photo taken at -48 deg yaw to +60 shows the side the camera
    never saw.  Returns the rendered area (front-facing triangles, weak perspective) of triangles
    whose normal made less than ``photo_view_limit_deg`` with the photo's viewing direction,
    divided by the whole rendered area; 1.0 for a view the photo covers completely.
    """
    tri = face.triangles[(face.triangles < 468).all(axis=1)]
    v = face.vertices
    cam = v @ euler_to_matrix_np(float(yaw), float(pitch), float(roll)).T
    p = cam[tri][:, :, :2]  # y up
    view_area = (p[:, 1, 0] - p[:, 0, 0]) * (p[:, 2, 1] - p[:, 0, 1]) - (p[:, 2, 0] - p[:, 0, 0]) * (p[:, 1, 1] - p[:, 0, 1])
    t = face.uv[tri].astype(np.float64)  # photo pixels, v down: the orientation flips
    photo_area = (t[:, 1, 0] - t[:, 0, 0]) * (t[:, 2, 1] - t[:, 0, 1]) - (t[:, 2, 0] - t[:, 0, 0]) * (t[:, 1, 1] - t[:, 0, 1])
    true_area = np.linalg.norm(np.cross(v[tri[:, 1]] - v[tri[:, 0]], v[tri[:, 2]] - v[tri[:, 0]]), axis=1)
    front = -face._orient  # sign of a front-facing triangle's (x, y-up) area
    visible = np.clip(front * view_area, 0.0, None)
    cos_in_photo = (-front * photo_area) / (face.face_px_in_still ** 2 * np.maximum(true_area, 1e-12))
    seen = cos_in_photo >= np.cos(np.radians(photo_view_limit_deg))
    total = visible.sum()
    return float((visible * seen).sum() / total) if total > 0 else 0.0


def render_turn_segment(face: TexturedFace, n_frames: int, yaw_range=(-60.0, 60.0), pitch=0.0, roll=0.0,
                        size: int = 512, face_px: float = 320, background: np.ndarray | None = None,
                        back_and_forth: bool = False):
    """A head turn: yaw swept linearly from ``yaw_range[0]`` to ``yaw_range[1]`` over ``n_frames``
    (``back_and_forth``: there and back, a cosine ease).  ``pitch`` / ``roll``: constants or
    per-frame sequences.  Returns ``(frames, boxes, lmks, truths)`` like ``segments.steady_segment``,
    with ``truths[i] = {"yaw", "pitch", "roll"}`` (degrees, project convention, absolute)."""
    n = int(n_frames)
    t = np.linspace(0.0, 1.0, n) if n > 1 else np.zeros(1)
    if back_and_forth:
        t = 0.5 - 0.5 * np.cos(2 * np.pi * t)
    yaws = yaw_range[0] + (yaw_range[1] - yaw_range[0]) * t
    pitches = np.broadcast_to(np.asarray(pitch, np.float64), (n,))
    rolls = np.broadcast_to(np.asarray(roll, np.float64), (n,))
    frames, boxes, lmks, truths = [], [], [], []
    for i in range(n):
        f, b, l5, tr = render(face, round(float(yaws[i]), 3), round(float(pitches[i]), 3), round(float(rolls[i]), 3),
                              size=size, face_px=face_px, background=background)
        frames.append(f)
        boxes.append(b)
        lmks.append(l5)
        truths.append(tr)
    return frames, boxes, lmks, truths
