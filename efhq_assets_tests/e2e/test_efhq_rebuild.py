"""Rebuild from EFHQ's released metadata: a CSV with EFHQ's literal columns produces a split (issue 13)."""

import csv
import json

import numpy as np

from efhq_assets_tests.conftest import run_efhq


def test_rebuild_from_efhq_metadata_produces_a_split(tmp_path):
    from efhq_assets.core.models.mtcnn import MtcnnDetector
    from efhq_assets.core.models.sample_images import astronaut_bgr
    from efhq_assets.core.video import write_test_video

    videos = tmp_path / "videos"
    videos.mkdir()
    img = astronaut_bgr()
    frames = [np.ascontiguousarray(np.roll(img, 2 * i, axis=1)) for i in range(12)]
    write_test_video(videos / "efhqDemoYt1.mp4", frames)
    detector = MtcnnDetector()
    clip = "Clip+efhqDemoYt1+P0+C0+F2-9"
    meta = tmp_path / "train_vfhq_reenactment.csv"
    columns = ["frameid", "x1", "y1", "x2", "y2", "iqa", "synergy_yaw", "synergy_pitch", "synergy_roll",
               "poseanh_yaw", "poseanh_pitch", "poseanh_roll", "mhp_yaw", "mhp_pitch", "mhp_roll", "lmks5pts",
               "lmks68pts", "synergy_bin", "poseanh_bin", "mhp_bin", "hardbin", "softbin", "user_id", "video_id"]
    with meta.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for frameid in range(2, 10):  # VFHQ: absolute frame ids in the source video
            det = detector.detect([frames[frameid]])[0][0]
            x1, y1, x2, y2 = (round(float(v), 2) for v in det.box)
            lmk = [round(float(v), 2) for v in det.lmk5.reshape(-1)]
            writer.writerow([frameid, x1, y1, x2, y2, 55.0, -3.0, 2.0, 1.0, 4.0, 1.0, 0.5, 2.5, 0.0, 1.0,
                             json.dumps(lmk), "", "frontal", "frontal", "frontal", "frontal", "frontal",
                             "efhqDemoYt1", clip])
    root = tmp_path / "root"
    run_efhq("build", "--videos", str(videos), "--efhq-metadata", str(meta), data_root=root)

    def sql(query):
        out = run_efhq("sql", query, "--format", "csv", data_root=root).stdout
        return list(csv.reader(out.splitlines()))[1:]

    assert sql("select count(*), min(frame_index), max(frame_index), any_value(detector) from faces") == [
        ["8", "2", "9", "efhq_metadata"]]
    estimators = {r[0] for r in sql("select distinct estimator from poses")}
    assert estimators == {"synergy", "poseanh", "mhp", "combined"}
    # SynergyNet's published yaw -3 reads +3 in the project convention (subject's left positive).
    yaw = float(sql("select avg(yaw) from poses where estimator = 'synergy'")[0][0])
    assert abs(yaw - 3.0) < 0.5
    assert sql("select distinct softbin from bins") == [["frontal"]]
    assert int(sql("select count(*) from split_gan")[0][0]) > 0
    bad = tmp_path / "bad.csv"
    bad.write_text("frameid,x1,y1\n1,2,3\n")
    proc = run_efhq("build", "--efhq-metadata", str(bad), data_root=root, check=False)
    errors = sql("select message from errors where stage = 'sources'")
    assert any("missing" in e[0] and "lmks5pts" in e[0] for e in errors), errors
    assert "Traceback" not in proc.stderr
