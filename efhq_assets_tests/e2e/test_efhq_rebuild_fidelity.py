"""Rebuild EFHQ from metadata written the way EFHQ's scripts write it, for VFHQ and for CelebV (issue 20).

Upstream (VinAIResearch/EFHQ @ 6883f41623373ad52ea0797937fc61d258f04645):
* CelebV: 0_dataset_download/download_celeb.py process_ffmpeg (crop + `-ss`/`-to` via secs_to_timestr, frames
  %08d.png from 1), then 2_merging/celeb/cli.py writes one CSV per clip named `<clip id>.csv` with no clip column.
* VFHQ: 0_dataset_download/download_vfhq.py resizes frames to the annotation's H x W, and the annotation's
  coordinates are in that size; 2_merging/vfhq combine-multiid writes `<ytid>.csv` with user_id and video_id.

The test runs EFHQ's literal CelebV ffmpeg command, detects the face on what it wrote (crop coordinates, as
EFHQ's RetinaFace step did), writes the CSVs, runs `efhq build`, and checks that the released labels are the
labels, that every frame id landed on the frame EFHQ's command wrote, that coordinates are right on a stream
of another resolution than the annotation, and that the text-to-image split is not empty.
"""

from __future__ import annotations

import csv
import json
import shlex
import subprocess

import numpy as np
import pytest

from efhq_assets_tests.conftest import run_efhq
from efhq_assets_tests.core.test_efhq_fidelity import CELEB_COLUMNS, FFMPEG, _efhq_process_ffmpeg_crop

SHIFT = 6  # px the face moves per frame: a frame off by one lands 6 px away


def _frames(canvas_hw, n, offset):
    from efhq_assets.core.models.sample_images import astronaut_bgr

    face = astronaut_bgr()
    out = []
    for i in range(n):
        img = np.zeros((*canvas_hw, 3), np.uint8)
        img[:] = (40, 60, 80)
        x, y = offset[0] + SHIFT * i, offset[1]
        img[y:y + 512, x:x + 512] = face
        out.append(img)
    return out


def _row(frameid, det, scale=1.0, dx=0.0, dy=0.0, **over):
    x1, y1, x2, y2 = (float(v) for v in det.box)
    lmk = np.asarray(det.lmk5, np.float64).reshape(5, 2)
    row = {"frameid": frameid, "idx": 0, "x1": round(x1 * scale + dx, 2), "y1": round(y1 * scale + dy, 2),
           "x2": round(x2 * scale + dx, 2), "y2": round(y2 * scale + dy, 2), "iqa": 55.0,
           "synergy_yaw": -3.0, "synergy_pitch": 2.0, "synergy_roll": 1.0, "poseanh_yaw": 4.0, "poseanh_pitch": -1.0,
           "poseanh_roll": 0.5, "mhp_yaw": -2.5, "mhp_pitch": 0.0, "mhp_roll": 1.0,
           "lmks5pts": json.dumps([round(float(v) * scale, 2) for v in (lmk + [dx, dy]).reshape(-1)]),
           "lmks68pts": "", "synergy_bin": "frontal", "poseanh_bin": "frontal", "mhp_bin": "frontal",
           "hardbin": "frontal", "softbin": "frontal"}
    row.update(over)
    return row


def _write_csv(path, rows, columns):
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def test_rebuild_vfhq_and_celebv_as_efhq_wrote_them(tmp_path):
    import cv2

    from efhq_assets.core.efhq_metadata import efhq_timestr
    from efhq_assets.core.models.mtcnn import MtcnnDetector
    from efhq_assets.core.video import write_test_video

    detector = MtcnnDetector()
    videos, ann_dir, meta = tmp_path / "videos", tmp_path / "vfhq_ann", tmp_path / "meta"
    for d in (videos, ann_dir, meta):
        d.mkdir()

    # ---- VFHQ: the downloaded stream is 640x560, the annotation (and EFHQ's coordinates) 1280x1120
    ytid, n_vfhq = "efhqVfhqYt1", 10
    vf_frames = _frames((560, 640), n_vfhq, (20, 24))
    write_test_video(videos / f"{ytid}.mp4", vf_frames, fps=25.0, crf=14)
    clip = f"Clip+{ytid}+P0+C0+F0-{n_vfhq - 1}"
    dets = {i: detector.detect([vf_frames[i]])[0][0] for i in range(n_vfhq)}
    lines = [f"Video {ytid}", "H 1120", "W 1280", "FPS 25", "", "FRAME INDEX X0 Y0 W H [Landmarks (5 Points)]", ""]
    for i, d in dets.items():
        x1, y1, x2, y2 = (2 * float(v) for v in d.box)
        lm = " ".join(f"{2 * float(v):.3f}" for v in np.asarray(d.lmk5).reshape(-1))
        lines.append(f"{i} 0 {x1:.3f} {y1:.3f} {x2 - x1:.3f} {y2 - y1:.3f} {lm}")
    lines.append("CROP 0 0 1280 1120")
    (ann_dir / f"{clip}.txt").write_text("\n".join(lines) + "\n")
    vf_rows = []
    for i in range(1, n_vfhq - 1):  # EFHQ extracts [start + 1, end - 1]
        # the reviewer's labels: 1-4 frontal, 5-8 profile_left (EFHQ's name) although the angles say frontal
        label = "frontal" if i <= 4 else "profile_left"
        vf_rows.append(_row(i, dets[i], scale=2.0, softbin=label, hardbin="confused" if i > 4 else "frontal",
                            iqa=30.0 if i == 1 else 55.0, user_id=ytid, video_id=clip))
    _write_csv(meta / f"{ytid}.csv", vf_rows, [*CELEB_COLUMNS, "user_id", "video_id"])

    # ---- CelebV: a full video, EFHQ's literal ffmpeg command, RetinaFace-like detection on what it wrote
    cv_ytid, cv_clip, fps = "efhqCelebYt", "efhqCelebYt_0", 25.0
    cv_frames = _frames((720, 720), 20, (40, 100))
    write_test_video(videos / f"{cv_ytid}.mp4", cv_frames, fps=fps, crf=14)
    start, end = 0.29, 0.69  # -ss 00:00:00.28: EFHQ's first frame is 7, the exact start's would be 8
    bbox = {"top": 0.1, "bottom": 0.9, "left": 0.08, "right": 0.94}
    (tmp_path / "celebvhq_info.json").write_text(json.dumps({"clips": {cv_clip: {
        "ytb_id": cv_ytid, "duration": {"start_sec": start, "end_sec": end}, "bbox": bbox}}}))
    w, h, x, y = _efhq_process_ffmpeg_crop((bbox["top"], bbox["bottom"], bbox["left"], bbox["right"]), 720, 720)
    extracted = tmp_path / "extracted" / cv_clip
    extracted.mkdir(parents=True)
    cmd = (f"{FFMPEG} -i {videos / (cv_ytid + '.mp4')} -vf crop=w={w}:h={h}:x={x}:y={y} -ss {efhq_timestr(start)} "
           f"-to {efhq_timestr(end)} -loglevel error {extracted}/%08d.png")
    subprocess.run(shlex.split(cmd), check=True, capture_output=True)
    cv_rows = []
    for png in sorted(extracted.glob("*.png")):
        det = detector.detect([cv2.imread(str(png))])[0][0]
        cv_rows.append(_row(int(png.stem), det, softbin="profile_right" if int(png.stem) % 2 else "frontal"))
    assert len(cv_rows) >= 8
    _write_csv(meta / f"{cv_clip}.csv", cv_rows, CELEB_COLUMNS)  # per clip, named by the clip id, no video_id

    root = tmp_path / "root"
    run_efhq("build", "--videos", str(videos), "--vfhq-annotations", str(ann_dir), "--celebv-info",
             str(tmp_path / "celebvhq_info.json"), "--efhq-metadata", str(meta), data_root=root)

    def sql(query):
        out = run_efhq("sql", query, "--format", "csv", data_root=root).stdout
        return list(csv.reader(out.splitlines()))[1:]

    assert sql("select message from errors") == []
    # released labels are the labels (project names), EFHQ's names and the recomputed bins beside them
    got = {int(f): (label, efhq, soft, efhq_label) for f, label, efhq, soft, efhq_label in sql(
        f"select frame_index, label, efhq_softbin, softbin, efhq_label from bins where clip_id = '{clip}'")}
    assert set(got) == set(range(1, n_vfhq - 1))
    for i, (label, efhq, soft, efhq_label) in got.items():
        assert efhq == ("frontal" if i <= 4 else "profile_left") and efhq_label == efhq
        assert label == ("frontal" if i <= 4 else "profile_right") and soft == "frontal"
    # VFHQ coordinates: annotation size 1280x1120 -> the 640x560 stream
    for f, x1, y1 in sql(f"select frame_index, x1, y1 from faces where clip_id = '{clip}'"):
        d = dets[int(f)]
        assert abs(float(x1) - float(d.box[0])) < 0.05 and abs(float(y1) - float(d.box[1])) < 0.05
    # CelebV frame ids: each face sits where the face of that file frame is (6 px per frame of error otherwise)
    # (compared by the mean x of the 5 landmarks, steadier than a box edge)
    cv_faces = sql("select frame_index, (lmk5[1] + lmk5[3] + lmk5[5] + lmk5[7] + lmk5[9]) / 5, "
                   f"(lmk5[2] + lmk5[4] + lmk5[6] + lmk5[8] + lmk5[10]) / 5 from faces where clip_id = '{cv_clip}' "
                   "order by 1")
    assert len(cv_faces) == len(cv_rows) and int(cv_faces[0][0]) == 7  # ceil(0.28 * 25), not ceil(0.29 * 25)

    def mean_xy(i):
        return np.asarray(detector.detect([cv_frames[i]])[0][0].lmk5, np.float64).reshape(5, 2).mean(0)

    truth = {i: mean_xy(i) for i in range(6, int(cv_faces[-1][0]) + 2)}
    for f, mx, my in cv_faces:
        f, mx, my = int(f), float(mx), float(my)
        errors = {i: abs(mx - truth[i][0]) for i in (f - 1, f, f + 1)}
        assert errors[f] < 2.0 and errors[f] < min(errors[f - 1], errors[f + 1]), (f, errors)
        assert abs(my - truth[f][1]) < 2.0, (f, my, truth[f])
    # released iqa is the quality score, judged by HyperIQA's 42
    assert sql(f"select distinct scorer from quality where clip_id = '{clip}'") == [["hyperiqa"]]
    assert sql(f"select count(*) from split_gan where clip_id = '{clip}' and frame_index = 1") == [["0"]]
    # FaceMesh landmarks were computed for the imported faces, so the text-to-image split is not empty
    assert int(sql("select count(*) from landmarks where lmk478 is not null")[0][0]) == len(vf_rows) + len(cv_rows)
    assert int(sql("select count(*) from split_t2i")[0][0]) > 0
