import math

from efhq_assets.core.checks import check_bins, check_faces, check_poses, check_quality


def face(i, track=0):
    return {"clip_id": "c", "frame_index": i, "face_index": 0, "track_id": track, "x1": 0, "y1": 0, "x2": 10, "y2": 10}


def pose(i, est, yaw=10.0, pitch=5.0, roll=0.0):
    return {"clip_id": "c", "frame_index": i, "face_index": 0, "estimator": est, "yaw": yaw, "pitch": pitch, "roll": roll}


def test_faces_check_catches_missing_tracks_and_duplicates():
    assert check_faces([face(0), face(1)])[0]
    ok, details = check_faces([face(0), face(0), dict(face(1), track_id=None)])
    assert not ok and details["duplicate_faces"] == 1 and details["faces_without_track"] == 1


def test_poses_check():
    rows = [pose(0, e) for e in ("facemesh", "dlib68", "combined")]
    assert check_poses(rows, 1, ("facemesh", "dlib68"))[0]
    assert not check_poses(rows[:2], 1, ("facemesh", "dlib68"))[0]  # a missing row
    assert not check_poses(rows[:2] + [pose(0, "combined", yaw=200.0)], 1, ("facemesh", "dlib68"))[0]
    assert not check_poses(rows[:2] + [pose(0, "combined", pitch=math.nan)], 1, ("facemesh", "dlib68"))[0]


def test_bins_check_compares_with_the_rules():
    poses = [pose(0, "combined", yaw=60.0, pitch=0.0)]
    good = [{"clip_id": "c", "frame_index": 0, "face_index": 0, "bin_combined": "profile_left"}]
    assert check_bins(good, poses)[0]
    assert not check_bins([dict(good[0], bin_combined="frontal")], poses)[0]


def test_quality_check():
    row = {"score": 50.0, "brightness": 120.0}
    assert check_quality([row], (0, 100), strict=True)[0]
    assert not check_quality([dict(row, score=math.inf)], (0, 100), strict=False)[0]
    assert check_quality([dict(row, score=120.0)], (0, 100), strict=False)[0]
    assert not check_quality([dict(row, score=120.0)], (0, 100), strict=True)[0]
