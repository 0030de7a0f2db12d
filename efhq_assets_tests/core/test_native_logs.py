"""MediaPipe's TensorFlow Lite / absl INFO and WARNING lines stay off stderr; nothing else does."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from efhq_assets.core.models.native_logs import is_native_noise

# FaceMesh on a real face: graph start (static mode), first landmarks, and the ROI graph of turned faces
# each made MediaPipe write W0000 lines before (see efhq_assets/core/models/native_logs.py).
SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    from efhq_assets.core.models.facemesh import FaceMeshLandmarker
    from efhq_assets.core.models.native_logs import quiet_native_logs
    from efhq_assets.core.models.sample_images import astronaut_bgr

    image = astronaut_bgr()
    mesh = FaceMeshLandmarker()
    found = mesh.landmarks(image, [np.array([160.0, 60.0, 270.0, 200.0])])[0]
    roi = mesh._roi_landmarks(image, (215.0, 130.0), 140.0)
    with quiet_native_logs():
        print("a line of our own inside the window", file=sys.stderr)
    mesh.close()
    print("landmarks", found is not None and found.shape == (478, 3), roi is not None)
""")


def test_facemesh_on_a_real_face_writes_no_native_warnings_to_stderr():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "landmarks True True" in proc.stdout
    lines = proc.stderr.splitlines()
    assert not [line for line in lines if line.startswith(("W0000", "I0000"))], proc.stderr
    assert "XNNPACK" not in proc.stderr and "absl::InitializeLog" not in proc.stderr, proc.stderr
    assert "a line of our own inside the window" in lines  # the window hides noise, not output


def test_only_informational_and_warning_native_lines_are_noise():
    assert is_native_noise(b"W0000 00:00:1796308260.677968    1198 inference_feedback_manager.cc:114] Feedback "
                           b"manager requires a model with a single signature inference.\n")
    assert is_native_noise(b"I0000 00:00:1796308260.677968    1198 gl_context.cc:357] GL version: 3.2\n")
    assert is_native_noise(b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
    assert not is_native_noise(b"E0000 00:00:1796308260.677968    1198 calculator_graph.cc:887] INTERNAL: boom\n")
    assert not is_native_noise(b"F0000 00:00:1796308260.677968    1198 check.cc:1] Check failed\n")
    assert not is_native_noise(b"Traceback (most recent call last):\n")
    assert not is_native_noise(b"W0000 is how a user's own message might start\n")
