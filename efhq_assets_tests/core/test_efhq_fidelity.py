"""Rebuilding EFHQ from its released metadata exactly as its scripts wrote it (issue 20).

Upstream code read (re-implemented here from reading, not copied):
  VinAIResearch/EFHQ @ 6883f41623373ad52ea0797937fc61d258f04645
    0_dataset_download/download_celeb.py  (process_ffmpeg, secs_to_timestr)
    0_dataset_download/download_vfhq.py   (resize to the annotation's H x W)
    2_merging/celeb/cli.py                (per-clip CSVs named by the clip id, binning/bin_a_pose)
    2_merging/celeb/helper.py             (bin_a_pose)
    2_merging/pose_grid.py                (left/right vote over [-synergy_yaw, poseanh_yaw, mhp_yaw])
    3_align_sample/cli_face_verification.py (get_lmk: 5 points from SynergyNet's 68)
  hnuzhy/DirectMHP @ a51b06bc34ed4202a9e9d1aad1c1cac9b6de05d0
    exps/AGORA/hpe_utils.py (draw_axis, HopeNet's), exps/AGORA/data_process_hpe.py (yaw = -yaw, roll = -roll),
    exps/convert_coco_style_300wlp_aflw2000.py (300W-LP Pose_Para kept as labels)
"""

from __future__ import annotations

import csv
import json
import math
import shlex
import subprocess
from pathlib import Path

import numpy as np
import pytest

from efhq_assets.core.efhq_metadata import (
    EfhqMetadataError,
    celebv_efhq_first_frame,
    celebv_first_frame,
    efhq_metadata_files,
    efhq_name,
    efhq_seconds,
    efhq_timestr,
    file_frame_index,
    lmk5_from_lmk68,
    read_efhq_metadata,
    read_efhq_metadata_source,
    rescale_coordinates,
    sign_agreement,
)
from efhq_assets.core.video import ClipWindow, iter_clip_frames, write_test_video
from efhq_assets_tests.core.test_efhq_metadata import OX, _decode_index, _pattern, indexed_video  # noqa: F401

from efhq_assets_tests.core.test_efhq_metadata import FFMPEG

# The columns EFHQ's celeb-directmhp-merge writes (2_merging/celeb/cli.py), then `binning` appends its five.
CELEB_COLUMNS = ["frameid", "idx", "x1", "y1", "x2", "y2", "iqa", "synergy_yaw", "synergy_pitch", "synergy_roll",
                 "poseanh_yaw", "poseanh_pitch", "poseanh_roll", "mhp_yaw", "mhp_pitch", "mhp_roll", "lmks5pts",
                 "lmks68pts", "synergy_bin", "poseanh_bin", "mhp_bin", "hardbin", "softbin"]


def _celeb_row(frameid: int, **over) -> dict:
    row = {"frameid": frameid, "idx": 0, "x1": 10.0, "y1": 20.0, "x2": 110.0, "y2": 140.0, "iqa": 55.0,
           "synergy_yaw": -60.0, "synergy_pitch": 0.0, "synergy_roll": 0.0,
           "poseanh_yaw": 60.0, "poseanh_pitch": 0.0, "poseanh_roll": 0.0,
           "mhp_yaw": -60.0, "mhp_pitch": 0.0, "mhp_roll": 0.0,
           "lmks5pts": json.dumps([30, 50, 70, 50, 50, 70, 35, 90, 65, 90]), "lmks68pts": "",
           "synergy_bin": "profile_right", "poseanh_bin": "profile_left", "mhp_bin": "profile_right",
           "hardbin": "confused", "softbin": "profile_right"}
    row.update(over)
    return row


def _write(path: Path, rows: list[dict], columns: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


# ------------------------------------------------------- CelebV per-clip CSVs (no video_id column)


def test_celebv_per_clip_csv_named_by_clip_id_is_read(tmp_path):
    path = _write(tmp_path / "M2Ohb0FAaJU_1.csv", [_celeb_row(1), _celeb_row(2)], CELEB_COLUMNS)
    rows = read_efhq_metadata(path)
    assert [r["video_id"] for r in rows] == ["M2Ohb0FAaJU_1"] * 2
    assert {r["dataset"] for r in rows} == {"celebv"} and rows[0]["youtube_id"] == "M2Ohb0FAaJU"
    # a VFHQ per-clip CSV before combine-multiid is named by its Clip+... name
    vf = read_efhq_metadata(_write(tmp_path / "Clip+Cxsg9YD3CGM+P0+C0+F12714-12860.csv",
                                   [_celeb_row(12715)], CELEB_COLUMNS))
    assert vf[0]["video_id"] == "Clip+Cxsg9YD3CGM+P0+C0+F12714-12860" and vf[0]["dataset"] == "vfhq"
    # a combined file with a clip column instead of video_id
    combined = _write(tmp_path / "all.csv", [dict(_celeb_row(3), clip_id="-PFdr0SiAEw_0")],
                      [*CELEB_COLUMNS, "clip_id"])
    assert read_efhq_metadata(combined)[0]["video_id"] == "-PFdr0SiAEw_0"
    # a combined, aligned file: the clip is the first folder of aligned_path (<clip>/<frameid>_<faceid>.png)
    aligned = _write(tmp_path / "train_celebv.csv", [dict(_celeb_row(4), aligned_path="zzzzzzzzzzz_7/4_0.png")],
                     [*CELEB_COLUMNS, "aligned_path"])
    assert read_efhq_metadata(aligned)[0]["video_id"] == "zzzzzzzzzzz_7"
    # a combined file with no clip column and a name that is no clip id: a clear error
    with pytest.raises(EfhqMetadataError, match="video_id"):
        read_efhq_metadata(_write(tmp_path / "train_celebv_reenactment.csv", [_celeb_row(1)], CELEB_COLUMNS))


def test_folder_of_per_clip_csvs_including_the_review_layout(tmp_path):
    # EFHQ's review (pose_grid.py process_csv) writes 4_binned_edited/<bin>/<id>.csv
    root = tmp_path / "4_binned_edited"
    _write(root / "frontal" / "M2Ohb0FAaJU_1.csv", [_celeb_row(1, softbin="frontal")], CELEB_COLUMNS)
    _write(root / "profile_left" / "M2Ohb0FAaJU_1.csv", [_celeb_row(2, softbin="profile_left")], CELEB_COLUMNS)
    _write(root / "profile_left" / "abcdefghijk_0.csv", [_celeb_row(5, softbin="profile_left")], CELEB_COLUMNS)
    files = efhq_metadata_files(root)
    assert [f.relative_to(root).as_posix() for f in files] == [
        "frontal/M2Ohb0FAaJU_1.csv", "profile_left/M2Ohb0FAaJU_1.csv", "profile_left/abcdefghijk_0.csv"]
    got = {(r["video_id"], r["frameid"], r["bins"]["softbin"])
           for _, rows in read_efhq_metadata_source(root) for r in rows}
    assert got == {("M2Ohb0FAaJU_1", "1", "frontal"), ("M2Ohb0FAaJU_1", "2", "profile_left"),
                   ("abcdefghijk_0", "5", "profile_left")}
    (tmp_path / "empty").mkdir()
    with pytest.raises(EfhqMetadataError, match="no .csv"):
        efhq_metadata_files(tmp_path / "empty")


def test_catalog_attaches_a_folder_and_a_clip_spread_over_bin_files(tmp_path):
    from efhq_assets.core.sources import SourceConfig, build_catalog

    root = tmp_path / "meta"
    _write(root / "frontal" / "M2Ohb0FAaJU_1.csv", [_celeb_row(1, softbin="frontal")], CELEB_COLUMNS)
    _write(root / "profile_right" / "M2Ohb0FAaJU_1.csv", [_celeb_row(2)], CELEB_COLUMNS)
    info = tmp_path / "celebvhq_info.json"
    info.write_text(json.dumps({"clips": {"M2Ohb0FAaJU_1": {
        "ytb_id": "M2Ohb0FAaJU", "duration": {"start_sec": 1.13, "end_sec": 3.57},
        "bbox": {"top": 0.1, "bottom": 0.6, "left": 0.2, "right": 0.7}}}}))
    catalog = build_catalog(SourceConfig(celebv_info=[str(info)], efhq_metadata=[str(root)]))
    assert catalog.errors == []
    (clip,) = catalog.clips
    assert clip["efhq_metadata"].split("\n") == [str((root / "frontal" / "M2Ohb0FAaJU_1.csv").resolve()),
                                                 str((root / "profile_right" / "M2Ohb0FAaJU_1.csv").resolve())]
    # the window is the one EFHQ's command cut: -ss 00:00:01.12 -to 00:00:03.56
    assert (clip["start_sec"], clip["end_sec"]) == (1.12, 3.56)


# -------------------------------------------------------------------------------- signs


def _hopenet_nose_dx(yaw_deg: float) -> float:
    """DirectMHP exps/AGORA/hpe_utils.py draw_axis (HopeNet's): the drawn z axis (out of the face) has
    image x component size * sin(-yaw): positive yaw points the nose toward the image's LEFT."""
    return math.sin(-math.radians(yaw_deg))


def _hopenet_nose_dy(yaw_deg: float, pitch_deg: float) -> float:
    """Same function: y3 = -cos(yaw) * sin(pitch) (image y grows downward): positive pitch looks up."""
    return -math.cos(-math.radians(yaw_deg)) * math.sin(math.radians(pitch_deg))


@pytest.mark.parametrize("yaw,pitch", [(60, 0), (-70, 0), (0, 40), (0, -35), (50, 10)])
def test_directmhp_convention_from_its_own_drawing(tmp_path, yaw, pitch):
    """DirectMHP's labels are 300W-LP's (its AGORA labels negate yaw and roll to match, and are drawn with
    HopeNet's draw_axis). The converted project angles must point the nose the way DirectMHP draws it:
    project yaw > 0 = nose toward the image's right, pitch > 0 = up."""
    row = _celeb_row(1, mhp_yaw=yaw, mhp_pitch=pitch, mhp_roll=0.0)
    (r,) = read_efhq_metadata(_write(tmp_path / "abcdefghijk_0.csv", [row], CELEB_COLUMNS))
    p_yaw, p_pitch, _ = r["angles"]["mhp"]
    if yaw:
        assert np.sign(p_yaw) == np.sign(_hopenet_nose_dx(yaw)) and abs(abs(p_yaw) - abs(yaw)) < 1.0
    if pitch:
        assert np.sign(p_pitch) == -np.sign(_hopenet_nose_dy(yaw, pitch))  # image y down, project up


def _pose_grid_vote(row: dict) -> str:
    """EFHQ 2_merging/pose_grid.py, profile_horizontal branch: positives of [-synergy_yaw, poseanh_yaw, mhp_yaw]
    outnumbering negatives -> profile_right, else profile_left."""
    votes = [-row["synergy_yaw"], row["poseanh_yaw"]]
    if isinstance(row["mhp_yaw"], float) and not math.isnan(row["mhp_yaw"]):
        votes.append(row["mhp_yaw"])
    return "profile_right" if sum(v > 0 for v in votes) > sum(v < 0 for v in votes) else "profile_left"


def _bin_a_pose(yaw, pitch):
    """EFHQ 2_merging/celeb/helper.py bin_a_pose (roll unused)."""
    if abs(yaw) < 45 and abs(pitch) < 30:
        return "frontal"
    if abs(yaw) > 90 and abs(pitch) > 90:
        return "profile_extreme"
    if 45 < yaw < 180 and abs(pitch) < 30:
        return "profile_left"
    if -180 < yaw < -45 and abs(pitch) < 30:
        return "profile_right"
    if abs(yaw) < 45 and 30 < pitch < 180:
        return "profile_up"
    if abs(yaw) < 45 and -180 < pitch < -30:
        return "profile_down"
    return "profile_extreme"


def _efhq_softbin(bins):
    from collections import Counter

    label, n = Counter(bins).most_common(1)[0]
    return label if n > 1 else "confused"


@pytest.mark.parametrize("turn", [60.0, -60.0, 75.0, -50.0])
def test_sign_conventions_agree_on_profiles_and_name_sides_as_efhq(tmp_path, turn):
    """A head turned `turn` degrees (project convention: > 0 = subject's own left = nose toward image right)
    as each estimator publishes it: SynergyNet and DirectMHP in 300W-LP's sign (-turn), FacePoseNet with the
    opposite sign (pose_grid.py negates SynergyNet to vote it with FacePoseNet)."""
    rows = [_celeb_row(i + 1, synergy_yaw=-turn + d, poseanh_yaw=turn + d, mhp_yaw=-turn - d)
            for i, d in enumerate((0.0, 3.0, -4.0))]
    parsed = read_efhq_metadata(_write(tmp_path / "abcdefghijk_1.csv", rows, CELEB_COLUMNS))
    for r in parsed:
        yaws = [r["angles"][e][0] for e in ("synergy", "poseanh", "mhp")]
        assert all(np.sign(y) == np.sign(turn) for y in yaws), yaws
        assert abs(np.mean(yaws) - turn) < 5.0  # not shrunk to a third by a wrong sign
    agreement = sign_agreement(parsed)
    assert set(agreement) == {"synergy~poseanh", "synergy~mhp", "poseanh~mhp"}
    assert all(v["agree"] == 1.0 and v["n"] == 3 for v in agreement.values())
    # The side EFHQ names: its automatic softbin (majority of raw bins) and its review vote agree with each
    # other, and are the project's label through efhq_name.
    project_label = "profile_left" if turn > 0 else "profile_right"
    for raw in rows:
        auto = _efhq_softbin([_bin_a_pose(raw["synergy_yaw"], 0), _bin_a_pose(raw["poseanh_yaw"], 0),
                              _bin_a_pose(raw["mhp_yaw"], 0)])
        assert auto == _pose_grid_vote({k: float(v) for k, v in raw.items() if k.endswith("_yaw")})
        assert efhq_name(project_label) == auto and efhq_name(auto) == project_label


def test_sign_agreement_exposes_a_wrong_convention(tmp_path):
    # the old reading took DirectMHP's yaw with the project's sign: on profiles it then always disagrees
    rows = [_celeb_row(1, synergy_yaw=-60.0, mhp_yaw=60.0), _celeb_row(2, synergy_yaw=10.0, mhp_yaw=-10.0)]
    parsed = read_efhq_metadata(_write(tmp_path / "abcdefghijk_2.csv", rows, CELEB_COLUMNS))
    agreement = sign_agreement(parsed)
    assert agreement["synergy~mhp"] == {"n": 1, "agree": 0.0}  # the frontal row is not counted


@pytest.mark.parametrize("label,expected", [
    ("profile_left", "profile_right"), ("profile_right", "profile_left"), ("profile_up", "profile_up"),
    ("frontal", "frontal"), ("left_50_60", "right_50_60"), ("down_30_40", "down_30_40"), (None, None),
    ("profile_horizontal", "profile_horizontal"), ("confused", "confused")])
def test_efhq_name_table(label, expected):
    assert efhq_name(label) == expected and efhq_name(expected) == label


# ------------------------------------------------------------------ CelebV -ss through secs_to_timestr


@pytest.mark.parametrize("secs,text", [(1.13, "00:00:01.12"), (0.29, "00:00:00.28"), (1.5, "00:00:01.50"),
                                       (3725.07, "01:02:05.07"), (59.999, "00:00:59.99"), (0.0, "00:00:00.00")])
def test_secs_to_timestr_table(secs, text):
    """download_celeb.py secs_to_timestr: int() of float centiseconds truncates."""
    assert efhq_timestr(secs) == text
    assert efhq_seconds(secs) == pytest.approx(int(text[:2]) * 3600 + int(text[3:5]) * 60 + float(text[6:]))


@pytest.fixture(scope="module")
def videos(tmp_path_factory, indexed_video):  # indexed_video: skips (or fails on CI) without ffmpeg
    out = {}
    for fps in (25.0, 30000 / 1001, 30.0):
        path = tmp_path_factory.mktemp("celebv") / f"v{fps:.2f}.mp4"
        write_test_video(path, (_pattern(i) for i in range(64)), fps=fps, crf=10, keyint=10)
        out[round(fps, 2)] = (path, fps)
    return out


@pytest.mark.parametrize("fps_key,start", [(25.0, 0.29), (25.0, 1.13), (25.0, 0.40), (29.97, 0.57),
                                           (29.97, 1.14), (29.97, 0.50), (30.0, 1.17), (30.0, 1.41), (30.0, 0.43)])
def test_celebv_frame_ids_equal_efhqs_literal_command(videos, tmp_path, fps_key, start):
    """Runs process_ffmpeg's command string with secs_to_timestr, as EFHQ did (os.system), and checks that
    every written %08d.png is the file frame file_frame_index maps its id to."""
    import cv2

    path, fps = videos[fps_key]
    end = start + 0.5
    out = tmp_path / "frames"
    out.mkdir()
    left, top, w, h = 16, 8, 160, 80
    cmd = (f"{FFMPEG} -i {path} -vf crop=w={w}:h={h}:x={left}:y={top} -ss {efhq_timestr(start)} "
           f"-to {efhq_timestr(end)} -loglevel error {out}/%08d.png")
    subprocess.run(shlex.split(cmd), check=True, capture_output=True)
    files = sorted(out.glob("*.png"))
    assert files and files[0].stem == "00000001"
    for f in files:
        index = file_frame_index({"dataset": "celebv", "frameid": f.stem}, start, fps)
        assert _decode_index(cv2.imread(str(f)), OX - left) == index, (f.name, index)
    truth = _decode_index(cv2.imread(str(files[0])), OX - left)
    assert truth == celebv_efhq_first_frame(start, fps)
    if start in (0.29, 1.13, 0.57, 1.14, 1.17, 1.41):  # the cases the exact start_sec got wrong
        assert celebv_first_frame(start, fps) == truth + 1
    # and the project decodes the same pixels at that index
    decoded = {d.frame_index: d.image for d in iter_clip_frames(path, [ClipWindow("c", truth, truth)])}
    assert _decode_index(decoded[truth], OX) == truth


# ------------------------------------------------------------- VFHQ size and aligned coordinates


def test_rescale_to_the_stream_and_aligned_rows_are_refused(tmp_path):
    row = read_efhq_metadata(_write(tmp_path / "abcdefghijk_3.csv", [_celeb_row(1)], CELEB_COLUMNS))[0]
    half = rescale_coordinates(row, 0.5, 0.5)
    assert half["box"] == (5.0, 10.0, 55.0, 70.0) and half["lmk5"][0].tolist() == [15.0, 25.0]
    with pytest.raises(EfhqMetadataError, match="aligned"):
        rescale_coordinates(dict(row, coordinates="aligned"), 0.5, 0.5)


def test_lmk5_from_lmk68_follows_efhqs_get_lmk():
    rng = np.random.default_rng(0)
    lmk68 = rng.uniform(0, 500, (68, 3))
    # get_lmk: lm_idx = [31, 37, 40, 43, 46, 49, 55] - 1; [nose, eye, eye, m49, m55] reordered [1, 2, 0, 3, 4]
    idx = np.array([31, 37, 40, 43, 46, 49, 55]) - 1
    lm = lmk68[:, :2]
    five = np.stack([lm[idx[0]], lm[idx[[1, 2]]].mean(0), lm[idx[[3, 4]]].mean(0), lm[idx[5]], lm[idx[6]]])[[1, 2, 0, 3, 4]]
    assert np.allclose(lmk5_from_lmk68(lmk68), five)


# ------------------------------------------------------------------- smallbin, table against upstream


def _poseizer_stepbin(yaws, pitches, softbin):
    """EFHQ 2_merging/celeb/cli.py poseizer_stepbin `func` (values already NaN-free; the 90 crash aside)."""
    vals = None
    if softbin in ["profile_left", "profile_right", "profile_horizontal"]:
        vals = list(yaws)
    elif softbin in ["profile_up", "profile_down", "profile_vertical"]:
        vals = list(pitches)
    elif softbin == "profile_extreme":
        my = sum(abs(x) for x in yaws) / len(yaws)
        mp = sum(abs(x) for x in pitches) / len(pitches)
        vals, softbin = (list(yaws), "profile_horizontal") if my > mp else (list(pitches), "profile_vertical")
    if vals is None:
        return softbin
    final = sum(abs(v) for v in vals) / len(vals)
    ranges = range(30, 91, 10)
    if final < 30:
        return "frontal"
    label = None
    for i, th in enumerate(ranges):
        if final < th:
            label = f"{ranges[i - 1]}_{ranges[i]}"
            break
    if label is None:
        label = f"{ranges[-2]}_{ranges[-1]}"
    if "horizontal" in softbin or "vertical" in softbin:
        n_positive = sum(x > 0 for x in vals)
        if n_positive > len(vals) // 2:
            direction = "left" if softbin == "profile_horizontal" else "up"
        else:
            direction = "right" if softbin == "profile_horizontal" else "down"
    else:
        direction = softbin.split("_")[-1]
    return f"{direction}_{label}"


SMALLBIN_TABLE = [
    ([60, -50], [0, 0], "profile_horizontal"), ([60, 0, -70], [0, 0, 0], "profile_horizontal"),
    ([0, 0], [40, -40], "profile_vertical"), ([50, 50, -50], [0, 0, 0], "profile_horizontal"),
    ([-40, 0, 45], [0, 0, 0], "profile_horizontal"), ([0, 0, 0], [-35, 0, 40], "profile_vertical"),
    ([70, 80, 75], [0, 0, 0], "profile_left"), ([-70, -80], [10, 0], "profile_right"),
    ([10, 20], [50, 60], "profile_up"), ([100, -120], [95, 100], "profile_extreme"),
    ([10, 12, 8], [0, 0, 0], "frontal"), ([20, 25], [10, 5], "profile_left"),
]


@pytest.mark.parametrize("yaws,pitches,soft", SMALLBIN_TABLE)
def test_smallbin_table_matches_efhqs_poseizer_stepbin(yaws, pitches, soft):
    from efhq_assets.core.bins import smallbin

    assert smallbin(yaws, pitches, soft) == _poseizer_stepbin(yaws, pitches, soft)


def test_smallbin_comes_from_the_reviewed_label():
    from efhq_assets.core.bins import bin_rows

    poses = [{"video_id": "v", "clip_id": "c", "frame_index": 0, "face_index": 0, "estimator": e, "yaw": y,
              "pitch": 0.0} for e, y in (("synergy", 62.0), ("poseanh", -3.0), ("mhp", 58.0))]
    # EFHQ's reviewer relabelled this face profile_right (EFHQ's name): project profile_left
    (row,) = bin_rows(poses, voters=("synergy", "poseanh", "mhp"),
                      released={("v", "c", 0, 0): {"softbin": "profile_right", "hardbin": "confused",
                                                   "smallbin": "right_40_50"}})
    assert row["softbin"] == "profile_left" and row["label"] == "profile_left"
    assert row["efhq_softbin"] == "profile_right" and row["efhq_label"] == "profile_right"
    assert row["smallbin"] == "left_40_50"  # mean |yaw| of the three = 41: from the label's axis and side
    assert row["efhq_hardbin"] == "confused" and row["hardbin"] == "confused"


# ------------------------------------------------------------- selection defaults against upstream rules

# 2_merging/pose_grid.py process_csv drops these softbins before writing 4_binned_edited/<bin>/<id>.csv
POSE_GRID_REMOVED = ["confused", "trash", "remove", "profile_vertical", "profile_horizontal"]
ALL_LABELS = ["frontal", "profile_left", "profile_right", "profile_up", "profile_down", "profile_extreme",
              "profile_horizontal", "profile_vertical", "confused", "remove"]


def _row(i, label, clip="c0", identity="id1", yaw=60.0, pitch=0.0, score=50.0, **kw):
    r = {"video_id": clip.split("_")[0], "clip_id": clip, "frame_index": i, "face_index": 0, "track_id": 0,
         "identity_id": identity, "source": "vfhq", "label": label, "yaw": yaw, "pitch": pitch, "roll": 0.0,
         "x1": 100.0, "y1": 100.0, "x2": 300.0, "y2": 300.0, "lmk5": [150, 170, 250, 170, 200, 210, 160, 250, 240, 250],
         "lmk478": None, "score": score, "quality_pass": score >= 42, "frame_width": 640, "frame_height": 480,
         "video_path": "/v.mp4", "attributes": None}
    r.update(kw)
    return r


@pytest.mark.parametrize("label", ALL_LABELS)
def test_default_selection_keeps_exactly_what_efhqs_review_kept(label):
    from efhq_assets.core.tasks.gan import select_gan

    sel = select_gan([_row(0, label)], outside_frame=lambda *a: False)
    assert bool(sel) == (label not in POSE_GRID_REMOVED)
    if label != "remove":  # the project's option keeps the unreviewed labels
        assert select_gan([_row(0, label)], outside_frame=lambda *a: False, drop_labels=())


def _efhq_vfhq_sampler(rows, per=10, iqa_threshold=42):
    """3_align_sample/cli_sample_gan.py vfhq: groupby(["video_id", "softbin"]), sort by |synergy_yaw|,
    |synergy_pitch|, iqa descending, keep iqa >= threshold, head(10). video_id is the clip."""
    groups = {}
    for r in rows:
        groups.setdefault((r["clip_id"], r["label"]), []).append(r)
    out = set()
    for members in groups.values():
        members = sorted(members, key=lambda r: (-abs(r["yaw"]), -abs(r["pitch"]), -r["score"]))
        out |= {(r["clip_id"], r["frame_index"]) for r in [m for m in members if m["score"] >= iqa_threshold][:per]}
    return out


def test_gan_cap_is_10_per_clip_and_bin_as_efhq_sampled():
    from efhq_assets.core.tasks.gan import PROJECT_GAN_GROUP, select_gan

    rng = np.random.default_rng(3)
    rows = []
    for clip in ("Clip+a+P0+C0+F1-99", "Clip+a+P0+C1+F200-299", "Clip+b+P1+C0+F1-99"):
        for i in range(14):
            rows.append(_row(i, ["profile_left", "frontal"][i % 2], clip=clip, identity="person-a",
                             yaw=float(rng.uniform(-80, 80)), pitch=float(rng.uniform(-20, 20)),
                             score=float(rng.uniform(30, 80))))
    rows = [dict(r, video_id=r["clip_id"].split("+")[1]) for r in rows]
    chosen = {(r["clip_id"], r["frame_index"]) for r in select_gan(rows, outside_frame=lambda *a: False)}
    assert chosen == _efhq_vfhq_sampler(rows)
    per_person = select_gan(rows, outside_frame=lambda *a: False, group_by=PROJECT_GAN_GROUP)
    assert len(per_person) <= 20 < len(chosen)  # one identity: at most 10 per label


@pytest.mark.parametrize("scorer,score,passes", [("hyperiqa", 42.0, True), ("hyperiqa", 41.99, False),
                                                 ("hyperiqa", 87.0, True), ("brisque_live_inv", 50.0, True),
                                                 ("brisque_live_inv", 10.0, False)])
def test_quality_cut_is_the_scorers_own(tmp_path, scorer, score, passes):
    """EFHQ keeps iqa >= 42 (cli_sample_gan.py iqa_threshold); a face scored by HyperIQA (EFHQ's released iqa)
    is judged by that cut, a BRISQUE-scored face by the frozen BRISQUE cut (here 30)."""
    import polars as pl

    from efhq_assets.core.storage import DataRoot, write_table
    from efhq_assets.core.tasks.candidates import candidate_rows

    root = DataRoot(tmp_path / "root")
    root.ensure()
    key = {"video_id": ["v"], "clip_id": ["v"], "frame_index": [0], "face_index": [0]}
    write_table(root, "faces", "v", pl.DataFrame({**key, "track_id": [0], "x1": [1.0], "y1": [1.0], "x2": [9.0],
                                                 "y2": [9.0], "score": [None], "lmk5": [[0.0] * 10],
                                                 "passes_efhq_filter": [True], "detector": ["d"],
                                                 "detector_sha256": ["x"]}))
    write_table(root, "bins", "v", pl.DataFrame({**key, "label": ["profile_left"], "softbin": ["profile_left"]}))
    write_table(root, "poses", "v", pl.DataFrame({**key, "estimator": ["combined"], "yaw": [60.0], "pitch": [0.0],
                                                 "roll": [0.0]}))
    write_table(root, "quality", "v", pl.DataFrame({**key, "score": [score], "scorer": [scorer]}))
    write_table(root, "videos", "v", pl.DataFrame({"video_id": ["v"], "path": ["/v.mp4"], "width": [640],
                                                  "height": [480], "source": ["vfhq"], "status": ["ok"]}))
    rows, threshold = candidate_rows(root, frozen_threshold=30.0)
    assert threshold == 30.0
    (row,) = rows
    assert row["scorer"] == scorer and row["quality_pass"] is passes
    assert row["quality_threshold"] == (42.0 if scorer == "hyperiqa" else 30.0)


# ------------------------------------------------------------------- CelebV crop origin, with real ffmpeg


def _efhq_process_ffmpeg_crop(bbox, height, width):
    """download_celeb.py process_ffmpeg: to_square(denorm(expand(bbox, 0.02), height, width)) -> the
    crop=w:h:x:y values it formats into the command."""
    top, bottom = max(bbox[0] - 0.02, 0), min(bbox[1] + 0.02, 1)
    left, right = max(bbox[2] - 0.02, 0), min(bbox[3] + 0.02, 1)
    top, bottom, left, right = round(top * height), round(bottom * height), round(left * width), round(right * width)
    c = min(bottom - top, right - left) // 2
    c_h, c_w = (top + bottom) / 2, (left + right) / 2
    top, bottom, left, right = c_h - c, c_h + c, c_w - c, c_w + c
    return right - left, bottom - top, left, top


@pytest.mark.parametrize("bbox", [(0.41015705765408605, 0.6252812268592216, 0.4779032023974406, 0.7353738430489991),
                                  (0.1, 0.55, 0.2, 0.61), (0.0, 0.9, 0.55, 0.99), (0.3, 0.71, 0.013, 0.4)])
def test_celebv_crop_origin_is_where_efhqs_ffmpeg_cut(indexed_video, tmp_path, bbox):
    import cv2

    from efhq_assets.core.efhq_metadata import efhq_celebv_crop

    W, H = 640, 360
    frame = np.zeros((H, W, 3), np.uint8)
    marks = [(x, y) for x in range(8, W - 16, 40) for y in range(8, H - 16, 40)]
    for x, y in marks:
        frame[y:y + 6, x:x + 6] = 255
    src = tmp_path / "src.mp4"
    write_test_video(src, [frame] * 3, fps=25.0, crf=4)
    w, h, x, y = _efhq_process_ffmpeg_crop(bbox, H, W)
    out = tmp_path / "out"
    out.mkdir()
    cmd = (f"{FFMPEG} -i {src} -vf crop=w={w}:h={h}:x={x}:y={y} -ss {efhq_timestr(0.0)} -to {efhq_timestr(0.1)} "
           f"-loglevel error {out}/%08d.png")
    subprocess.run(shlex.split(cmd), check=True, capture_output=True)
    img = cv2.imread(str(out / "00000001.png"), cv2.IMREAD_GRAYSCALE)
    x0, y0, x1, y1 = efhq_celebv_crop(bbox, W, H)
    assert img.shape == (y1 - y0, x1 - x0)
    # every marker inside the crop is found where the computed origin puts it
    inside = [(mx - x0, my - y0) for mx, my in marks if x0 <= mx and mx + 6 <= x1 and y0 <= my and my + 6 <= y1]
    assert inside
    for mx, my in inside:  # the marker's edges are exactly there: bright on them, dark one pixel outside
        assert img[my + 1:my + 5, mx].mean() > 150 and img[my + 1:my + 5, mx + 5].mean() > 150, (mx, my)
        assert img[my, mx + 1:mx + 5].mean() > 150 and img[my + 5, mx + 1:mx + 5].mean() > 150, (mx, my)
        if mx >= 1:
            assert img[my + 1:my + 5, mx - 1].mean() < 100, (mx, my)
        if my >= 1:
            assert img[my - 1, mx + 1:mx + 5].mean() < 100, (mx, my)


@pytest.mark.parametrize("name,good,bad", [("selection", "project", "efhq2"),
                                           ("verification_degradation", "hard", "lossless")])
def test_fidelity_settings_default_to_efhq_and_refuse_typos(name, good, bad):
    from efhq_assets.core.settings import Settings, SettingsError, validate

    assert getattr(Settings(), name) == "efhq"
    assert getattr(validate({name: good}), name) == good
    with pytest.raises(SettingsError, match=name):
        validate({name: bad})


def test_selection_setting_reaches_the_split_builders(tmp_path):
    from efhq_assets.core.settings import update_settings
    from efhq_assets.core.storage import DataRoot
    from efhq_assets.core.tasks.gan import EFHQ_GAN_GROUP, PROJECT_GAN_GROUP
    from efhq_assets.core.tasks.exports import select_options

    root = DataRoot(tmp_path / "root")
    root.ensure()
    assert select_options(root, "gan") == {"group_by": EFHQ_GAN_GROUP} and select_options(root, "reenactment") == {}
    update_settings(root, selection="project")
    assert select_options(root, "t2i") == {"group_by": PROJECT_GAN_GROUP}


def test_quality_scorer_choice_and_card(tmp_path):
    """`quality_scorer`: HyperIQA (EFHQ's scorer) scores the crops when chosen; without its weights `auto` falls
    back to the offline scorer and `hyperiqa` says which weights are missing; the card names each scorer's cut."""
    from collections import Counter

    from efhq_assets.core.card import card_markdown
    from efhq_assets.core.models import registry
    from efhq_assets.core.models.hyperiqa import HyperIQAScorer
    from efhq_assets.core.models.sample_images import astronaut_bgr
    from efhq_assets.core.quality import DEFAULT_SCORER, face_crop, quality_rows, resolve_scorer

    img = astronaut_bgr()
    box = np.array([[180.0, 60.0, 300.0, 220.0]])
    crop = face_crop(img, box[0])
    model = HyperIQAScorer(random_init=True, device="cpu")
    (row,) = quality_rows([crop], box, model, "hyperiqa")
    assert row["scorer"] == "hyperiqa" and row["score"] == pytest.approx(float(model.score_images([crop])[0]))
    (offline,) = quality_rows([crop], box)
    assert offline["scorer"] == DEFAULT_SCORER and offline["score"] != row["score"]
    try:
        registry.find_weights("hyperiqa_koniq")
        have_weights = True
    except registry.MissingWeightsError:
        have_weights = False
    if not have_weights:
        assert resolve_scorer("auto") == (DEFAULT_SCORER, None)
        with pytest.raises(registry.MissingWeightsError):
            resolve_scorer("hyperiqa")
    assert resolve_scorer(DEFAULT_SCORER) == (DEFAULT_SCORER, None)
    md = card_markdown([], {}, {}, 0, {}, Counter(), {"hyperiqa": (3, "42"), DEFAULT_SCORER: (5, "31.20 (frozen)")})
    assert "| hyperiqa | 3 | 42 |" in md and f"| {DEFAULT_SCORER} | 5 | 31.20 (frozen) |" in md


def test_pose_sign_agreement_on_pose_rows():
    from efhq_assets.core.efhq_import import pose_sign_agreement

    rows = []
    for i, (s, p, m) in enumerate([(60, 58, 62), (-70, -65, -72), (50, 55, -52), (10, -10, 10)]):
        for est, yaw in (("synergy", s), ("poseanh", p), ("mhp", m), ("combined", 0.0)):
            rows.append({"video_id": "v", "clip_id": "c", "frame_index": i, "face_index": 0, "estimator": est,
                         "yaw": float(yaw)})
    got = pose_sign_agreement(rows)
    assert got["synergy~poseanh"] == {"n": 3, "agree": 1.0}
    assert got["synergy~mhp"]["n"] == 3 and got["synergy~mhp"]["agree"] == pytest.approx(2 / 3)


def test_eg3d_resolution_setting():
    from efhq_assets.core.settings import Settings, SettingsError, validate

    assert Settings().eg3d_resolution == 512 and validate({"eg3d_resolution": 1024}).eg3d_resolution == 1024
    with pytest.raises(SettingsError, match="eg3d_resolution"):
        validate({"eg3d_resolution": 768})
