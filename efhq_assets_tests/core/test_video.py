"""Tests for the streaming video decode core: tiny synthetic H.264 clips whose pixels encode
their own frame index, so every test checks by content which frame it got."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from efhq_assets.core.video import (
    ClipWindow,
    SamplingPolicy,
    VideoError,
    _indexed_frames,
    frame_hash,
    frames_rows,
    iter_clip_frames,
    probe_video,
    write_test_video,
)

W, H = 64, 48
BITS = 8  # the index is drawn as 8 black/white blocks, 8 px wide, in rows 0..15


def indexed_frame(i: int, width: int = W, height: int = H) -> np.ndarray:
    """A BGR frame whose top stripe spells `i` in binary and with a square at x = i % 40."""
    image = np.full((height, width, 3), 40, np.uint8)
    for bit in range(BITS):
        if (i >> bit) & 1:
            image[0:16, bit * 8 : bit * 8 + 8] = 255
    x = 8 + i % 40
    image[24:40, x : x + 8] = (0, 200, 255)
    return image


def read_index(image: np.ndarray, origin: tuple[int, int] = (0, 0)) -> int:
    """Decode the index from an upright full frame (origin must be (0, 0))."""
    assert origin == (0, 0)
    gray = image.mean(axis=2) if image.ndim == 3 else image
    return sum(1 << bit for bit in range(BITS) if gray[4:12, bit * 8 + 2 : bit * 8 + 6].mean() > 128)


def make_video(path: Path, n: int, fps: float = 25.0, **kw) -> Path:
    write_test_video(path, (indexed_frame(i) for i in range(n)), fps=fps, **kw)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("video") / "clip.mp4", 60)


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("video") / "long.mp4", 240, keyint=20)


# --------------------------------------------------------------------------- probe


def test_probe_fields(clip):
    probe = probe_video(clip)
    assert probe.codec == "h264"
    assert probe.fps == pytest.approx(25.0)
    assert probe.frame_count == 60
    assert (probe.width, probe.height) == (W, H)
    assert probe.duration_s == pytest.approx(60 / 25.0, abs=0.05)
    assert probe.rotation == 0


def test_probe_fractional_fps(tmp_path):
    probe = probe_video(make_video(tmp_path / "ntsc.mp4", 10, fps=30000 / 1001))
    assert probe.fps == pytest.approx(29.97, abs=0.01)
    assert probe.frame_count == 10


# --------------------------------------------------------------------------- windows


def test_window_inclusive_range_and_content(clip):
    got = list(iter_clip_frames(clip, [ClipWindow("c", 5, 9)]))
    assert [f.frame_index for f in got] == [5, 6, 7, 8, 9]
    assert [read_index(f.image) for f in got] == [5, 6, 7, 8, 9]
    assert all(f.image.shape == (H, W, 3) and f.image.dtype == np.uint8 for f in got)
    assert all(f.origin == (0, 0) and (f.width, f.height) == (W, H) for f in got)
    assert [f.pts_s for f in got] == pytest.approx([i / 25.0 for i in range(5, 10)])


def test_window_end_is_clipped_to_last_frame(clip):
    got = list(iter_clip_frames(clip, [ClipWindow("c", 55, 1000)]))
    assert [f.frame_index for f in got] == [55, 56, 57, 58, 59]


def test_window_past_the_end_yields_nothing(clip):
    assert list(iter_clip_frames(clip, [ClipWindow("c", 100, 200)])) == []


def test_crop_shape_origin_and_pixels(clip):
    (full,) = list(iter_clip_frames(clip, [ClipWindow("full", 7, 7)]))
    (crop,) = list(iter_clip_frames(clip, [ClipWindow("crop", 7, 7, crop=(10, 20, 42, 44))]))
    assert crop.image.shape == (24, 32, 3)
    assert crop.origin == (10, 20) and (crop.width, crop.height) == (32, 24)
    np.testing.assert_array_equal(crop.image, full.image[20:44, 10:42])


def test_crop_is_clamped_to_frame(clip):
    (got,) = list(iter_clip_frames(clip, [ClipWindow("c", 3, 3, crop=(-10, 40, 100, 90))]))
    assert got.origin == (0, 40)
    assert got.image.shape == (H - 40, W, 3)


def test_crop_outside_frame_is_a_clear_error(clip):
    with pytest.raises(VideoError, match="outside the 64x48 frame"):
        list(iter_clip_frames(clip, [ClipWindow("c", 0, 1, crop=(100, 100, 120, 120))]))


def test_invalid_window_rejected():
    with pytest.raises(ValueError, match="start_frame <= end_frame"):
        ClipWindow("bad", 10, 5)


def test_overlapping_windows_in_one_pass(clip):
    windows = [ClipWindow("a", 10, 20), ClipWindow("b", 15, 25, crop=(0, 0, 32, 32))]
    got = list(iter_clip_frames(clip, windows))
    by_clip = {cid: [f.frame_index for f in got if f.clip_id == cid] for cid in "ab"}
    assert by_clip == {"a": list(range(10, 21)), "b": list(range(15, 26))}
    # file order: a shared frame is yielded once per window, back to back
    assert [f.frame_index for f in got] == sorted(f.frame_index for f in got)
    assert all(read_index(f.image) == f.frame_index for f in got if f.clip_id == "a")


def test_want_pixels_false(clip):
    got = list(iter_clip_frames(clip, [ClipWindow("c", 0, 4)], want_pixels=False))
    assert [f.frame_index for f in got] == [0, 1, 2, 3, 4]
    assert all(f.image is None and f.frame_hash == "" for f in got)


# --------------------------------------------------------------------------- sampling


def test_sampling_indices():
    assert SamplingPolicy().indices(3, 7, 25.0) == [3, 4, 5, 6, 7]
    assert SamplingPolicy("fps", 5).indices(0, 24, 25.0) == [0, 5, 10, 15, 20]
    assert SamplingPolicy("fps", 50).indices(0, 3, 25.0) == [0, 1, 2, 3]  # above native: all
    assert SamplingPolicy("fps", 10).indices(0, 9, 30000 / 1001) == [0, 3, 6, 9]
    assert SamplingPolicy("max_n", 3).indices(0, 10, 25.0) == [0, 5, 10]
    assert SamplingPolicy("max_n", 100).indices(0, 4, 25.0) == [0, 1, 2, 3, 4]
    assert SamplingPolicy("max_n", 1).indices(10, 20, 25.0) == [15]
    assert SamplingPolicy("max_n", 4).indices(5, 4, 25.0) == []


def test_sampling_is_deterministic_sorted_and_in_range():
    for policy in (SamplingPolicy("fps", 7.3), SamplingPolicy("max_n", 17)):
        first = policy.indices(13, 500, 29.97)
        assert first == policy.indices(13, 500, 29.97)
        assert first == sorted(set(first))
        assert 13 <= first[0] and first[-1] <= 500


def test_sampling_policy_validation():
    with pytest.raises(ValueError, match="sampling mode"):
        SamplingPolicy("every_other")
    with pytest.raises(ValueError, match="positive value"):
        SamplingPolicy("fps", 0)


@pytest.mark.parametrize(
    "policy, expected",
    [
        (SamplingPolicy(), list(range(20, 30))),
        (SamplingPolicy("fps", 12.5), [20, 22, 24, 26, 28]),
        (SamplingPolicy("max_n", 4), [20, 23, 26, 29]),
    ],
)
def test_sampling_in_decode(clip, policy, expected):
    got = list(iter_clip_frames(clip, [ClipWindow("c", 20, 29)], policy))
    assert [f.frame_index for f in got] == expected
    assert [read_index(f.image) for f in got] == expected


# --------------------------------------------------------------------------- seeking


def test_seek_gives_correct_indices_by_content(long_clip):
    got = list(iter_clip_frames(long_clip, [ClipWindow("late", 203, 210)]))
    assert [f.frame_index for f in got] == list(range(203, 211))
    assert [read_index(f.image) for f in got] == list(range(203, 211))
    assert [f.pts_s for f in got] == pytest.approx([i / 25.0 for i in range(203, 211)])


def test_seek_skips_the_start_and_stops_after_the_end(long_clip):
    indexed = _indexed_frames(long_clip, 203, 25.0)
    first_index, frame, _ = next(indexed)
    assert 0 < first_index <= 203  # started at a keyframe, not at frame 0
    assert read_index(frame.to_ndarray(format="bgr24")) == first_index
    indexed.close()


def test_late_windows_with_sampling_and_overlap(long_clip):
    windows = [ClipWindow("a", 150, 180), ClipWindow("b", 170, 239)]
    got = list(iter_clip_frames(long_clip, windows, SamplingPolicy("max_n", 5)))
    assert all(read_index(f.image) == f.frame_index for f in got)
    assert [f.frame_index for f in got if f.clip_id == "b"] == SamplingPolicy("max_n", 5).indices(170, 239, 25)


# --------------------------------------------------------------------------- hashing and rows


def test_frame_hash_stable_and_distinct(clip):
    first = [f.frame_hash for f in iter_clip_frames(clip, [ClipWindow("c", 0, 59)])]
    second = [f.frame_hash for f in iter_clip_frames(clip, [ClipWindow("c", 0, 59)])]
    assert first == second
    assert all(len(h) == 16 and int(h, 16) >= 0 for h in first)
    assert len(set(first)) == len(first)
    assert frame_hash(indexed_frame(3)) == frame_hash(indexed_frame(3).copy())
    assert frame_hash(indexed_frame(3)) != frame_hash(indexed_frame(4))


def test_frame_hash_reads_a_strided_subsample_at_1080p():
    """Cheap because it reads one pixel in `step` per axis (its speed is measured by benchmarks/decode.py,
    `frame_hash_ms_1080`): pixels off that grid do not reach the hash, a change on it does."""
    image = cv2.resize(indexed_frame(5), (1920, 1080))
    step = 1080 // (8 * 16)
    assert step > 1
    off_grid = image.copy()
    off_grid[1::step, 1::step] = 255 - off_grid[1::step, 1::step]
    assert frame_hash(off_grid) == frame_hash(image)
    on_grid = image.copy()
    on_grid[::step, ::step] = 255 - on_grid[::step, ::step]
    assert frame_hash(on_grid) != frame_hash(image)


def test_frames_rows_schema_and_order(clip):
    import polars as pl

    windows = [ClipWindow("b", 4, 8, crop=(8, 4, 40, 36)), ClipWindow("a", 0, 5)]
    df = frames_rows("vid1", clip, windows, SamplingPolicy("max_n", 3))
    assert df.schema == pl.Schema(
        {
            "video_id": pl.String,
            "clip_id": pl.String,
            "frame_index": pl.Int64,
            "pts_s": pl.Float64,
            "width": pl.Int32,
            "height": pl.Int32,
            "crop_x0": pl.Int32,
            "crop_y0": pl.Int32,
            "frame_hash": pl.String,
        }
    )
    assert df["clip_id"].to_list() == ["a"] * 3 + ["b"] * 3
    assert df["frame_index"].to_list() == [0, 2, 5, 4, 6, 8]
    b = df.filter(pl.col("clip_id") == "b").row(0, named=True)
    assert (b["width"], b["height"], b["crop_x0"], b["crop_y0"]) == (32, 32, 8, 4)
    assert df.equals(frames_rows("vid1", clip, windows, SamplingPolicy("max_n", 3)))


def test_frames_rows_empty_has_schema(clip):
    df = frames_rows("vid1", clip, [], SamplingPolicy())
    assert df.height == 0 and df.width == 9


# --------------------------------------------------------------------------- broken files


def test_missing_file(tmp_path):
    with pytest.raises(VideoError, match="not found"):
        probe_video(tmp_path / "nope.mp4")


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.mp4"
    path.touch()
    with pytest.raises(VideoError, match="empty"):
        probe_video(path)


def test_text_named_mp4(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 50)
    with pytest.raises(VideoError, match="cannot read notes.mp4 as a media file"):
        probe_video(path)


def test_truncated_mp4(tmp_path, clip):
    data = clip.read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError, match="cut.mp4.*truncated"):
        probe_video(path)
    with pytest.raises(VideoError):
        list(iter_clip_frames(path, [ClipWindow("c", 0, 5)]))


def test_audio_only_file(tmp_path):
    path = tmp_path / "voice.m4a"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000, layout="mono")
        for k in range(10):
            tone = np.sin(np.arange(1024) * 0.05 + k).astype(np.float32)[None, :] * 0.2
            frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
            frame.sample_rate = 16000
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(VideoError, match="no video stream.*audio"):
        probe_video(path)


# --------------------------------------------------------------------------- odd sources


def _check_upright(frames, rotation: int) -> None:
    for f in frames:
        expected = np.rot90(indexed_frame(f.frame_index), k=rotation // 90)  # CCW like the display matrix
        assert f.image.shape == expected.shape
        assert np.abs(f.image.astype(int) - expected).mean() < 8


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_metadata_written_by_pyav(tmp_path, rotation):
    path = make_video(tmp_path / f"rot{rotation}.mp4", 6, rotation=rotation)
    probe = probe_video(path)
    assert probe.rotation == rotation
    assert (probe.width, probe.height) == ((H, W) if rotation in (90, 270) else (W, H))
    _check_upright(list(iter_clip_frames(path, [ClipWindow("c", 0, 5)])), rotation)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="the ffmpeg CLI is not installed")
def test_rotation_matches_ffmpeg_autorotate(tmp_path, clip):
    path = tmp_path / "phone.mp4"
    cmd = ["ffmpeg", "-v", "error", "-y", "-i", str(clip), "-c", "copy", "-metadata:s:v", "rotate=90", str(path)]
    subprocess.run(cmd, check=True)
    probe = probe_video(path)
    assert probe.rotation in (90, 270) and (probe.width, probe.height) == (H, W)
    png = tmp_path / "f.png"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(path), "-frames:v", "1", str(png)], check=True)
    reference = cv2.imread(str(png))
    (ours,) = list(iter_clip_frames(path, [ClipWindow("c", 0, 0)]))
    assert ours.image.shape == reference.shape
    assert np.abs(ours.image.astype(int) - reference).mean() < 4


def test_grayscale_source(tmp_path):
    path = tmp_path / "gray.mp4"
    write_test_video(path, (indexed_frame(i)[:, :, 0] for i in range(12)))
    got = list(iter_clip_frames(path, [ClipWindow("c", 0, 11)]))
    assert [read_index(f.image) for f in got] == list(range(12))
    assert all(f.image.shape == (H, W, 3) for f in got)


def test_gray_pixel_format_stream(tmp_path):
    path = tmp_path / "y8.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = W, H, "gray"
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(indexed_frame(i)[:, :, 0]), format="gray")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    probe = probe_video(path)
    assert probe.frame_count == 5 and probe.codec == "ffv1"
    got = list(iter_clip_frames(path, [ClipWindow("c", 1, 3)]))
    assert [read_index(f.image) for f in got] == [1, 2, 3]


def test_single_frame_video(tmp_path):
    path = make_video(tmp_path / "one.mp4", 1)
    probe = probe_video(path)
    assert probe.frame_count == 1
    (got,) = list(iter_clip_frames(path, [ClipWindow("c", 0, 10)]))
    assert got.frame_index == 0 and read_index(got.image) == 0 and got.pts_s == 0.0


def test_write_test_video_rejects_odd_size(tmp_path):
    with pytest.raises(ValueError, match="even"):
        write_test_video(tmp_path / "odd.mp4", [np.zeros((5, 7, 3), np.uint8)])
    assert not (tmp_path / "odd.mp4").exists()
