"""Hostile and awkward inputs: each handled, and every other video completes (issue 14)."""

import csv
import io
import json
import shutil
from fractions import Fraction

import av
import numpy as np
import pytest

from efhq_assets_tests.conftest import moving_square_frames, run_efhq


def write_audio_only(path):
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=16000)
        samples = (np.sin(np.arange(16000) / 10.0) * 0.2).astype(np.float32)[None]
        for i in range(0, 16000, 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, i:i + 1024]), format="fltp", layout="mono")
            frame.rate = 16000
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def write_vfr(path, n=10):
    """Variable frame rate: frames at irregular timestamps."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        stream.time_base = Fraction(1, 1000)
        t = 0
        for i, img in enumerate(moving_square_frames(n)):
            frame = av.VideoFrame.from_ndarray(img, format="bgr24")
            frame.pts = t
            frame.time_base = stream.time_base
            t += 40 if i % 2 else 90
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def sql_rows(root, query):
    out = run_efhq("sql", query, "--format", "csv", data_root=root).stdout
    return list(csv.reader(io.StringIO(out)))[1:]


@pytest.fixture(scope="module")
def hostile_build(tmp_path_factory):
    from efhq_assets.core.video import write_test_video

    base = tmp_path_factory.mktemp("hostile")
    videos = base / "videos"
    videos.mkdir()
    frames = moving_square_frames(8)
    # must fail, each with one clear errors row
    (videos / "zero.mp4").write_bytes(b"")
    write_test_video(videos / "fine.mp4", frames)
    data = (videos / "fine.mp4").read_bytes()
    (videos / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (videos / "text.mp4").write_text("definitely not a video\n" * 50)
    write_audio_only(videos / "audio_only.mp4")
    # must succeed
    write_test_video(videos / "single.mp4", frames[:1])
    write_vfr(videos / "vfr.mp4")
    write_test_video(videos / "rotated.mp4", frames, rotation=90)
    write_test_video(videos / "uhd.mp4", [np.full((2160, 3840, 3), 90, np.uint8)] * 2)
    write_test_video(videos / "gray.mp4", [f[:, :, 0] for f in frames])
    write_test_video(videos / "name with spaces é ü.mp4", moving_square_frames(8, seed=3))
    shutil.copyfile(videos / "fine.mp4", videos / "fine copy.mp4")
    info = base / "celebvhq_info.json"
    clip = {"ytb_id": "fine", "duration": {"start_sec": 0.0, "end_sec": 0.2},
            "bbox": {"top": 0.1, "bottom": 0.9, "left": 0.1, "right": 0.9}}
    info.write_text(json.dumps({"clips": {"fine_0": clip, "../escape_0": clip, "/etc/passwd": clip,
                                          "nul\u0000id": clip, "ctrl\u0007id": clip,
                                          "missing_fields_0": {"ytb_id": "fine"},
                                          "abs_ytb_0": dict(clip, ytb_id="/abs/path")}}))
    ann = base / "vfhq"
    ann.mkdir()
    (ann / "Clip+fine+P0+C0+F0-5.txt").write_text("H 64\nW 96\nFPS 25\n0 0 1 2 3\n")
    root = base / "root"
    proc = run_efhq("build", "--videos", str(videos), "--celebv-info", str(info), "--vfhq-annotations", str(ann),
                    data_root=root, check=False)
    return root, proc


def test_bad_files_fail_with_one_clear_error_row_each(hostile_build):
    root, proc = hostile_build
    assert proc.returncode == 1 and "Traceback" not in proc.stderr + proc.stdout
    failed = json.loads(proc.stdout.splitlines()[-1])["failed"]
    assert set(failed) == {"zero", "truncated", "text", "audio_only"}
    errors = sql_rows(root, "select video_id, stage, message from errors where stage = 'source_videos' order by 1")
    assert [e[0] for e in errors] == ["audio_only", "text", "truncated", "zero"]
    assert all("Traceback" not in e[2] and len(e[2]) < 400 for e in errors)


def test_hostile_annotation_ids_are_rejected_and_nothing_escapes(hostile_build):
    root, _ = hostile_build
    messages = " ".join(m for (m,) in sql_rows(root, "select message from errors where stage = 'sources'"))
    for needle in ("separator", "absolute", "NUL", "control", "missing or malformed", "16 values"):
        assert needle in messages, needle
    assert len(sql_rows(root, "select * from errors where stage = 'sources'")) == 7
    # The only trace of "../escape_0" is its error row, under a safe slug inside the data root.
    traces = list(root.parent.glob("**/*escape*"))
    assert traces and all(p.parent == root / "tables" / "errors" for p in traces)
    assert sql_rows(root, "select clip_id from clips where clip_id like 'fine%' order by 1") == [["fine_0"]]


def test_awkward_files_succeed(hostile_build):
    root, _ = hostile_build
    ok = dict(sql_rows(root, "select source_name, status from videos"))
    for name in ("single.mp4", "vfr.mp4", "rotated.mp4", "uhd.mp4", "gray.mp4", "name with spaces é ü.mp4", "fine.mp4"):
        assert ok[name] == "ok", name
    assert ok["fine copy.mp4"] == "duplicate"
    sizes = dict((v, (int(w), int(h))) for v, w, h in sql_rows(root, "select video_id, width, height from videos where status = 'ok'"))
    assert sizes["rotated"] == (64, 96) and sizes["uhd"] == (3840, 2160)
    frames = dict((v, int(n)) for v, n in sql_rows(root, "select video_id, count(*) from frames group by 1"))
    assert frames["single"] == 1 and frames["vfr"] == 10 and frames["gray"] == 8
    dup = sql_rows(root, "select duplicate_of from videos where source_name = 'fine copy.mp4'")
    assert dup == [["fine"]]
