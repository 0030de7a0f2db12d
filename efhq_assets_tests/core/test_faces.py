import numpy as np
import pytest

from efhq_assets.core.faces import FaceModels, IouTracker, analyse_video, iou
from efhq_assets.core.models import registry
from efhq_assets.core.video import SamplingPolicy, write_test_video


def test_iou():
    assert iou([[0, 0, 10, 10]], [[0, 0, 10, 10]])[0, 0] == pytest.approx(1.0)
    assert iou([[0, 0, 10, 10]], [[5, 0, 15, 10]])[0, 0] == pytest.approx(50 / 150)
    assert iou([[0, 0, 10, 10]], [[20, 20, 30, 30]])[0, 0] == 0


def test_tracker_links_moving_faces_and_splits_after_a_gap():
    tracker = IouTracker(iou_threshold=0.3, max_gap=2)
    a, b = np.array([0, 0, 100, 100.0]), np.array([300, 0, 400, 100.0])
    ids = [tracker.update(i, np.stack([a + 5 * i, b - 5 * i])) for i in range(4)]
    assert all(frame == ids[0] for frame in ids) and ids[0][0] != ids[0][1]
    # Faces swap order in the list: ids follow the boxes, not the list position.
    assert tracker.update(4, np.stack([b - 20, a + 20])) == ids[0][::-1]
    # After more than max_gap frames unseen, the same place starts a new track.
    assert tracker.update(10, np.stack([a]))[0] not in ids[0]


@pytest.fixture(scope="module")
def models():
    return FaceModels(registry.create("detector", "mtcnn"), registry.create("landmarker", "facemesh"),
                      registry.create("landmarker", "dlib68"))


def test_analyse_video_on_a_real_face_with_a_crop(tmp_path, models):
    from efhq_assets.core.models.sample_images import astronaut_bgr

    img = astronaut_bgr()
    frames = [np.ascontiguousarray(np.roll(img, 4 * i, axis=1)) for i in range(6)]
    path = tmp_path / "astro.mp4"
    write_test_video(path, frames, fps=25)
    video = {"video_id": "astro", "path": str(path), "fps": 25.0}
    clips = [{"clip_id": "astro", "start_frame": 0, "end_frame": 5, "crop": [100, 0, 400, 300]}]
    faces, marks = analyse_video(video, clips, SamplingPolicy(), models, batch=4)
    assert [f["frame_index"] for f in faces] == list(range(6))
    assert len({f["track_id"] for f in faces}) == 1
    # Coordinates are in full-frame pixels: the face (x ~ 170-275 in the still) moved right 4 px a frame.
    x1 = np.array([f["x1"] for f in faces])
    assert 150 < x1[0] < 200 and np.all(np.diff(x1) > 0)
    assert all(f["passes_efhq_filter"] is False for f in faces)  # ~100 px face: fails EFHQ's 256x256 area rule
    assert all(len(m["lmk478"]) == 478 * 2 and len(m["lmk68"]) == 136 for m in marks)
    lmk68 = np.array(marks[0]["lmk68"]).reshape(68, 2)
    assert faces[0]["x1"] - 10 < lmk68[:, 0].mean() < faces[0]["x2"] + 10


def test_model_identity_changes_with_settings_and_versions(models, monkeypatch):
    """The face fingerprint includes each backend's version and settings: a threshold change redoes videos."""
    from efhq_assets.core.models.mtcnn import MtcnnDetector

    base = models.identity()
    assert set(base) == {"mtcnn", "facemesh", "dlib68"}
    assert base["mtcnn"][2]["thresholds"] == list(models.detector.thresholds)
    other = FaceModels(MtcnnDetector(thresholds=(0.6, 0.7, 0.7)), models.facemesh, models.dlib68).identity()
    assert other["mtcnn"] != base["mtcnn"] and other["facemesh"] == base["facemesh"]
    monkeypatch.setattr(type(models.facemesh), "version", "another-version")
    assert models.identity()["facemesh"] != base["facemesh"]
