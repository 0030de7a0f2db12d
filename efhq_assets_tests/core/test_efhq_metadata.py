"""EFHQ metadata reader, frame-id mapping (checked against EFHQ's literal ffmpeg commands), crop offset."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from efhq_assets.core.efhq_metadata import (
    EfhqMetadataError,
    celebv_first_frame,
    file_frame_index,
    from_clip_coordinates,
    read_efhq_metadata,
    to_clip_coordinates,
)
from efhq_assets.core.models.published_angles import synergynet_angles_to_project, w300lp_angles_to_project
from efhq_assets.core.sources import seconds_to_frames
from efhq_assets.core.video import ClipWindow, frame_hash, iter_clip_frames, write_test_video

FFMPEG = "/usr/bin/ffmpeg"
VFHQ_CLIP = "Clip+abc_DEF-123+P0+C1+F100-200"
LITERAL = [
    "frameid", "idx", "x1", "y1", "x2", "y2", "iqa",
    "synergy_yaw", "synergy_pitch", "synergy_roll",
    "poseanh_yaw", "poseanh_pitch", "poseanh_roll",
    "lmks5pts", "lmks68pts",
    "mhp_yaw", "mhp_pitch", "mhp_roll",
    "user_id", "video_id",
    "synergy_bin", "poseanh_bin", "mhp_bin", "hardbin", "softbin",
]


def _lmk68_flat() -> list[float]:
    xs = [float(i) for i in range(68)]
    ys = [100.0 + i for i in range(68)]
    zs = [200.0 + i for i in range(68)]
    return xs + ys + zs  # 3x68 row-major: all x, all y, all z


def _row(**over) -> dict:
    row = {
        "frameid": "00000007", "idx": "0", "x1": "10.5", "y1": "20", "x2": "110", "y2": "140", "iqa": "55.12",
        "synergy_yaw": "-30", "synergy_pitch": "0", "synergy_roll": "0",
        "poseanh_yaw": "28.5", "poseanh_pitch": "-3", "poseanh_roll": "1",
        "lmks5pts": json.dumps([30, 50, 70, 50, 50, 70, 35, 90, 65, 90]),
        "lmks68pts": json.dumps(_lmk68_flat()),
        "mhp_yaw": "31", "mhp_pitch": "2", "mhp_roll": "-1",
        "user_id": "abc_DEF-123", "video_id": VFHQ_CLIP,
        "synergy_bin": "frontal", "poseanh_bin": "frontal", "mhp_bin": "frontal",
        "hardbin": "frontal", "softbin": "frontal",
    }
    row.update(over)
    return row


def _write(path: Path, rows: list[dict], columns: list[str] | None = None) -> Path:
    import csv

    columns = columns or list(rows[0])
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r)
    return path


# ------------------------------------------------------------------------------ reader


def test_reads_literal_columns(tmp_path):
    path = _write(tmp_path / "train_vfhq_reenactment.csv", [_row()], LITERAL)
    warns: list[str] = []
    (row,) = read_efhq_metadata(path, warnings_out=warns)
    assert warns == []
    assert row["video_id"] == VFHQ_CLIP and row["dataset"] == "vfhq" and row["youtube_id"] == "abc_DEF-123"
    assert row["frameid"] == "00000007" and row["face_idx"] == 0 and row["line"] == 2
    assert row["box"] == (10.5, 20.0, 110.0, 140.0)
    assert row["lmk5"].shape == (5, 2) and row["lmk5"][1].tolist() == [70, 50]
    assert row["iqa"] == pytest.approx(55.12)
    assert row["bins"]["softbin"] == "frontal" and "smallbin" not in row["bins"]
    assert row["coordinates"] == "source" and row["user_id"] == "abc_DEF-123"
    # SynergyNet: published yaw -30 for a pure turn is project yaw +30 (subject's own left)
    syn = row["angles"]["synergy"]
    assert syn == pytest.approx((30.0, 0.0, 0.0), abs=1e-5)
    assert row["angles_raw"]["synergy"] == (-30.0, 0.0, 0.0)
    # poseanh: pose_grid.py votes -synergy_yaw with poseanh_yaw and -synergy_pitch with poseanh_pitch
    assert row["angles"]["poseanh"] == (28.5, 3.0, 1.0)
    # DirectMHP: 300W-LP angles (yaw sign = SynergyNet's raw), converted through the rotation matrix
    assert np.allclose(row["angles"]["mhp"], w300lp_angles_to_project(2.0, 31.0, -1.0).numpy(), atol=1e-9)
    assert row["angles"]["mhp"][0] == pytest.approx(-31.0, abs=1.0)


def test_synergy_conversion_matches_published_converter(tmp_path):
    path = _write(tmp_path / "m.csv", [_row(synergy_yaw="-25", synergy_pitch="12", synergy_roll="-8")], LITERAL)
    (row,) = read_efhq_metadata(path)
    expected = synergynet_angles_to_project(-25.0, 12.0, -8.0).numpy()
    assert np.allclose(row["angles"]["synergy"], expected, atol=1e-9)


def test_lmks68_reshape_row_major(tmp_path):
    (row,) = read_efhq_metadata(_write(tmp_path / "m.csv", [_row()], LITERAL))
    lmk = row["lmk68"]
    assert lmk.shape == (68, 3)
    assert lmk[5].tolist() == [5.0, 105.0, 205.0]  # point 5 = (x[5], y[5], z[5])
    assert lmk[67].tolist() == [67.0, 167.0, 267.0]


def test_optional_and_null_values(tmp_path):
    cols = [c for c in LITERAL if not c.startswith("mhp_") and c != "idx"]
    rows = [_row(lmks68pts="None", iqa="", poseanh_yaw="nan")]
    (row,) = read_efhq_metadata(_write(tmp_path / "m.csv", rows, cols))
    assert row["lmk68"] is None and row["iqa"] is None and row["face_idx"] is None
    assert row["angles"]["poseanh"] is None and row["angles"]["mhp"] is None
    assert "mhp_bin" not in row["bins"] and row["bins"]["softbin"] == "frontal"


def test_missing_required_columns_named(tmp_path):
    cols = [c for c in LITERAL if c not in ("lmks5pts", "video_id")]
    path = _write(tmp_path / "bad.csv", [_row()], cols)
    with pytest.raises(EfhqMetadataError) as err:
        read_efhq_metadata(path)
    msg = str(err.value)
    assert "lmks5pts" in msg and "video_id" in msg and "bad.csv" in msg and "x1" not in msg.split("(found")[0]


@pytest.mark.parametrize(
    "over, needle",
    [
        ({"x1": "abc"}, "x1"),
        ({"lmks5pts": "[1, 2, 3]"}, "lmks5pts"),
        ({"lmks5pts": "[1, 2,"}, "lmks5pts"),
        ({"lmks68pts": json.dumps(list(range(136)))}, "lmks68pts"),
        ({"frameid": "frame7"}, "frameid"),
        ({"video_id": "../etc"}, "video_id"),
        ({"y2": ""}, "y2"),
    ],
)
def test_bad_row_names_line(tmp_path, over, needle):
    path = _write(tmp_path / "m.csv", [_row(), _row(), _row(**over)], LITERAL)
    with pytest.raises(EfhqMetadataError) as err:
        read_efhq_metadata(path)
    assert "line 4" in str(err.value) and needle in str(err.value) and "m.csv" in str(err.value)


def test_wrong_field_count_names_line(tmp_path):
    path = _write(tmp_path / "m.csv", [_row()], LITERAL)
    with open(path, "a") as fh:
        fh.write("1,2,3\n")
    with pytest.raises(EfhqMetadataError, match="line 3"):
        read_efhq_metadata(path)


def test_unknown_columns_warned_and_ignored(tmp_path):
    rows = [dict(_row(), brightness="0.5", Unnamed="x")]
    path = _write(tmp_path / "m.csv", rows, [*LITERAL, "brightness", "Unnamed", "smallbin", "aligned_path"])
    warns: list[str] = []
    (row,) = read_efhq_metadata(path, warnings_out=warns)
    assert len(warns) == 2 and any("brightness" in w for w in warns) and any("Unnamed" in w for w in warns)
    assert "brightness" not in row
    assert row["coordinates"] == "aligned" and row["bins"]["smallbin"] is None


def test_vfhq_and_celebv_detection(tmp_path):
    rows = [_row(), _row(video_id="-0BsTQ8y_go_12", user_id="id00000003", frameid="1")]
    vf, cv = read_efhq_metadata(_write(tmp_path / "m.csv", rows, LITERAL))
    assert (vf["dataset"], vf["youtube_id"]) == ("vfhq", "abc_DEF-123")
    assert (cv["dataset"], cv["youtube_id"], cv["user_id"]) == ("celebv", "-0BsTQ8y_go", "id00000003")


# ---------------------------------------------------------------------- frame ids, crop


def test_frame_index_arithmetic():
    assert file_frame_index({"dataset": "vfhq", "frameid": "00000123"}) == 123
    assert file_frame_index({"dataset": "celebv", "frameid": "00000001"}, 1.3, 25.0) == 33
    assert file_frame_index({"dataset": "celebv", "frameid": "5"}, first_frame=10) == 14
    # the same first frame as sources.seconds_to_frames computes, on and between boundaries
    for start in (0.0, 0.04, 0.4, 1.0, 1.3, 2.02):
        assert celebv_first_frame(start, 25.0) == seconds_to_frames(start, start + 1, 25.0, 10_000)[0]
    with pytest.raises(EfhqMetadataError):
        file_frame_index({"dataset": "celebv", "frameid": "0"}, 1.0, 25.0)
    with pytest.raises(EfhqMetadataError):
        file_frame_index({"dataset": "celebv", "frameid": "3"})


def test_crop_offset_roundtrip(tmp_path):
    (row,) = read_efhq_metadata(_write(tmp_path / "m.csv", [_row()], LITERAL))
    crop = (400, 60, 912, 572)
    clip = to_clip_coordinates(row, crop)
    assert clip["box"] == (10.5 - 400, 20 - 60, 110 - 400, 140 - 60)
    assert clip["lmk5"][0].tolist() == [30 - 400, 50 - 60]
    assert clip["lmk68"][5].tolist() == [5 - 400, 105 - 60, 205]  # z unchanged
    back = from_clip_coordinates(clip, crop)
    assert back["box"] == row["box"] and np.array_equal(back["lmk5"], row["lmk5"])
    assert np.array_equal(back["lmk68"], row["lmk68"])
    assert row["box"] == (10.5, 20.0, 110.0, 140.0)  # input untouched
    with pytest.raises(EfhqMetadataError, match="aligned"):
        to_clip_coordinates(dict(row, coordinates="aligned"), crop)


# ------------------------------------------- the frame mapping against EFHQ's literal ffmpeg

W, H, N, FPS = 192, 96, 60, 25.0
BITS, STRIPE, OX = 8, 16, 32  # index bits as 16-px black/white stripes starting at x = 32


def _pattern(i: int) -> np.ndarray:
    """BGR frame: the index as 8 black/white stripes, plus a colour gradient (chroma, so the
    YUV->RGB conversions of the two FFmpeg builds are really compared) left of the stripes."""
    img = np.full((H, W, 3), 128, np.uint8)
    yy, xx = np.mgrid[0:H, 0:OX]
    img[:, :OX, 0] = (xx * 8 + i) % 256
    img[:, :OX, 1] = (yy * 2) % 256
    img[:, :OX, 2] = (255 - xx * 6) % 256
    for b in range(BITS):
        img[:, OX + b * STRIPE : OX + (b + 1) * STRIPE] = 255 if (i >> b) & 1 else 0
    return img


def _decode_index(img_bgr: np.ndarray, ox: int) -> int:
    gray = cv2.cvtColor(img_bgr, cv2.COLOR_BGR2GRAY) if img_bgr.ndim == 3 else img_bgr
    value = 0
    for b in range(BITS):
        x = ox + b * STRIPE + STRIPE // 2
        if gray[gray.shape[0] // 2, x - 3 : x + 3].mean() > 128:
            value |= 1 << b
    return value


@pytest.fixture(scope="module")
def indexed_video(tmp_path_factory):
    if not os.path.exists(FFMPEG):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{FFMPEG} is missing (CI=true: required for the frame-mapping proof)")
        pytest.skip(f"{FFMPEG} is missing")
    path = tmp_path_factory.mktemp("efhqvid") / "src.mp4"
    write_test_video(path, (_pattern(i) for i in range(N)), fps=FPS, crf=12, keyint=12)
    assert [_decode_index(_pattern(i), OX) for i in range(N)] == list(range(N))
    return path


def _ffmpeg(args: list[str]) -> None:
    res = subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", *args], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def _compare(video, out: Path, index_of, crop, ox, report):
    files = sorted(out.glob("*.png"))
    assert files, "ffmpeg wrote nothing"
    ours_idx = {index_of(f.stem): f for f in files}
    window = ClipWindow("c", min(ours_idx), max(ours_idx), crop=crop)
    decoded = {d.frame_index: d for d in iter_clip_frames(video, [window])}
    max_diff = 0
    hashes_equal = True
    for idx, f in ours_idx.items():
        theirs = cv2.imread(str(f), cv2.IMREAD_COLOR)
        mine = decoded[idx]
        # the proof: both carry the same encoded frame index, and it is the mapped one
        assert _decode_index(theirs, ox) == idx == _decode_index(mine.image, ox), f.name
        max_diff = max(max_diff, int(np.abs(theirs.astype(int) - mine.image.astype(int)).max()))
        hashes_equal &= frame_hash(theirs) == mine.frame_hash
    report.append((out.name, len(files), max_diff, hashes_equal))
    return max_diff, hashes_equal


@pytest.mark.parametrize("start,end", [(0.0, 0.6), (0.4, 1.2), (0.5, 1.3), (0.43, 1.01), (0.3, 0.7), (1.0, 2.4)])
def test_celebv_literal_ffmpeg_mapping(indexed_video, tmp_path, start, end):
    """download_celeb.py: `ffmpeg -i video -vf crop=w:h:x:y -ss <start> -to <end> %08d.png`."""
    x, y, w, h = 16, 8, 160, 80
    out = tmp_path / "celebv"
    out.mkdir()
    _ffmpeg(["-i", str(indexed_video), "-vf", f"crop={w}:{h}:{x}:{y}", "-ss", str(start), "-to", str(end),
             str(out / "%08d.png")])
    first = celebv_first_frame(start, FPS)
    exp_first, exp_last = seconds_to_frames(start, end, FPS, N)
    files = sorted(out.glob("*.png"))
    assert files[0].stem == "00000001"
    # ffmpeg 5.1's CFR output sync may drop the LAST frame of [start, end) when start is at
    # least half a frame past a frame boundary; the first written frame is always ceil(start*fps)
    assert len(files) in (exp_last - exp_first + 1, exp_last - exp_first)
    report: list = []
    max_diff, equal = _compare(
        indexed_video, out,
        lambda stem: file_frame_index({"dataset": "celebv", "frameid": stem}, start, FPS),
        (x, y, x + w, y + h), OX - x, report,
    )
    assert first == exp_first
    print(f"celebv ss={start} to={end}: {report}")
    assert max_diff <= 8, max_diff  # swscale (Debian ffmpeg) vs PyAV's bundled FFmpeg


@pytest.mark.parametrize("s,e", [(0, 9), (13, 30), (47, 59)])
def test_vfhq_literal_ffmpeg_mapping(indexed_video, tmp_path, s, e):
    """download_vfhq.py: `-vf "select=between(n\\,s\\,e)" -qscale:v 1 -vsync 0 -start_number s`,
    written as PNG instead of JPEG to avoid JPEG loss."""
    out = tmp_path / "vfhq"
    out.mkdir()
    _ffmpeg(["-i", str(indexed_video), "-vf", f"select=between(n\\,{s}\\,{e})", "-qscale:v", "1", "-vsync", "0",
             "-start_number", str(s), str(out / "%08d.png")])
    files = sorted(out.glob("*.png"))
    assert [int(f.stem) for f in files] == list(range(s, e + 1))
    report: list = []
    max_diff, _ = _compare(
        indexed_video, out, lambda stem: file_frame_index({"dataset": "vfhq", "frameid": stem}), None, OX, report
    )
    print(f"vfhq {s}-{e}: {report}")
    assert max_diff <= 8, max_diff
