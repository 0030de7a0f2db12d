"""Head pose: the project's one angle convention, rotation math, a batched landmark pose fit, the landmark
estimators and their ensemble.

Modules, cut along their seams (:mod:`.rotations`, :mod:`.large_yaw` and :mod:`.pitch_gain` import nothing of the package;
:mod:`.convention` and :mod:`.fit` build on :mod:`.rotations`, :mod:`.estimators` on :mod:`.fit`):

* :mod:`.convention`: the angle convention (degrees, signs, frames, composition, the mirror and in-plane
  invariants) and the weak-perspective projection it defines;
* :mod:`.rotations`: (yaw, pitch, roll) <-> rotation matrix, torch and numpy;
* :mod:`.fit`: the batched weak-perspective and POSIT-style perspective solvers (:func:`~.fit.fit_pose`);
* :mod:`.estimators`: the landmark estimators (FaceMesh, dlib 68: a 3D reference, its pitch zero and the points
  fitted) and the ensemble (:func:`~.estimators.combine`);
* :mod:`.large_yaw`: reading large yaw right (FaceMesh's gain past its saturation, the detector's five points,
  temporal outliers along a track).
* :mod:`.pitch_gain`: reading pitch at full strength (FaceMesh follows a nod only part of the way).

Import the names from their module (``from efhq_assets.core.pose.rotations import euler_to_matrix``); this
package re-exports nothing.

Only numpy and torch are imported here (the GPU machine has nothing else); the 3D reference shapes are loaded
lazily from :mod:`efhq_assets.core.face_models_3d` (numpy only).
"""
