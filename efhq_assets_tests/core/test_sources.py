import json
import shutil

import pytest

from efhq_assets.core.sources import (
    AnnotationError, SourceConfig, build_catalog, celebv_crop, read_celebv_info, read_vfhq_annotation,
    seconds_to_frames,
)

VFHQ_TEXT = """Video Clip+abcDEF123_x+P0+C1+F100-102
H 720
W 1280
FPS 25

FRAME INDEX X0 Y0 W H [Landmarks (5 Points)]

100 0 10.5 20 100 120 30 50 70 50 50 70 35 90 65 90
101 0 11.5 21 100 120 31 51 71 51 51 71 36 91 66 91
102 0 12.5 22 100 120 32 52 72 52 52 72 37 92 67 92
CROP 0 0 640 720
"""


def write_vfhq(folder, name="Clip+abcDEF123_x+P0+C1+F100-102", text=VFHQ_TEXT):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.txt"
    path.write_text(text)
    return path


def celebv_info(clips):
    return {"meta_info": {}, "clips": clips}


def celebv_clip(ytid, start=1.0, end=2.0):
    return {"ytb_id": ytid, "duration": {"start_sec": start, "end_sec": end},
            "bbox": {"top": 0.1, "bottom": 0.6, "left": 0.3, "right": 0.7},
            "attributes": {"appearance": [0, 1], "action": [1], "emotion": {"sep_flag": False, "labels": "happy"}}}


def test_vfhq_reader(tmp_path):
    ann = read_vfhq_annotation(write_vfhq(tmp_path))
    assert (ann.youtube_id, ann.person, ann.height, ann.width, ann.fps) == ("abcDEF123_x", 0, 720, 1280, 25.0)
    assert [f["frame_id"] for f in ann.frames] == [100, 101, 102]
    first = ann.frames[0]
    assert (first["x1"], first["y1"], first["x2"], first["y2"]) == (10.5, 20.0, 110.5, 140.0)  # x y w h -> x1 y1 x2 y2
    assert first["lmk5"] == [30, 50, 70, 50, 50, 70, 35, 90, 65, 90]
    assert ann.crop == (0, 0, 640, 720)
    assert (ann.start_frame, ann.end_frame) == (100, 102)


@pytest.mark.parametrize("mutate, message", [
    (lambda t: t.replace("H 720\n", ""), "missing the 'H' header"),
    (lambda t: t.replace("101 0 11.5 21 100 120", "101 0 11.5 21 100"), ":9: a frame line needs 16 values"),
    (lambda t: t.replace("CROP 0 0 640 720", "CROP 0 0 640"), "CROP needs 4 values"),
    (lambda t: t.replace("FPS 25", "FPS fast"), "not a number"),
])
def test_vfhq_reader_rejects_wrong_format_with_line_numbers(tmp_path, mutate, message):
    with pytest.raises(AnnotationError, match=message):
        read_vfhq_annotation(write_vfhq(tmp_path, text=mutate(VFHQ_TEXT)))


def test_celebv_reader_keeps_attributes_and_rejects_hostile_ids(tmp_path):
    info = tmp_path / "celebvhq_info.json"
    info.write_text(json.dumps(celebv_info({
        "abc_0": celebv_clip("abc"), "../evil_0": celebv_clip("abc"), "abs_0": celebv_clip("/etc/passwd"),
        "nul_0": celebv_clip("a\x00b"), "broken_0": {"ytb_id": "abc"},
    })))
    clips, errors = read_celebv_info(info)
    assert [c.clip_id for c in clips] == ["abc_0"]
    assert clips[0].attributes["emotion"]["labels"] == "happy"
    assert clips[0].bbox == (0.1, 0.6, 0.3, 0.7)
    messages = dict(errors)
    assert set(messages) == {"../evil_0", "abs_0", "nul_0", "broken_0"}
    assert "separator" in messages["../evil_0"] and "absolute" in messages["abs_0"] and "NUL" in messages["nul_0"]


def test_celebv_reader_rejects_wrong_top_level(tmp_path):
    bad = tmp_path / "info.json"
    bad.write_text(json.dumps([1, 2]))
    with pytest.raises(AnnotationError, match="'clips' mapping"):
        read_celebv_info(bad)


def test_celebv_crop_and_time_window_follow_the_original():
    x0, y0, x1, y1 = celebv_crop((0.1, 0.6, 0.3, 0.7), 1000, 500)
    assert x1 - x0 == y1 - y0 == 2 * (int(min(0.44 * 1000, 0.54 * 500)) // 2)  # expanded 0.02 per side, square
    assert seconds_to_frames(1.0, 2.0, 25.0, 1000) == (25, 49)  # ffmpeg -ss 1 -to 2 keeps pts in [1, 2)
    assert seconds_to_frames(0.0, 100.0, 25.0, 60) == (0, 59)


def test_catalog_joins_files_annotations_missing_and_duplicates(tmp_path, make_video):
    videos = tmp_path / "videos"
    make_video(videos / "abcDEF123_x.mp4", n=110)
    make_video(videos / "abc_0.mp4", n=10, seed=3)
    shutil.copyfile(videos / "abc_0.mp4", videos / "copy of abc é.mp4")
    make_video(videos / "plain.mp4", n=5, seed=4)
    write_vfhq(tmp_path / "vfhq")
    write_vfhq(tmp_path / "vfhq", name="Clip+abcDEF123_x+P1+C0+F1-2", text="not an annotation")
    info = tmp_path / "celebvhq_info.json"
    info.write_text(json.dumps(celebv_info({"abc_0": celebv_clip("abc"), "gone_1": celebv_clip("gone")})))
    cat = build_catalog(SourceConfig([str(videos)], [str(tmp_path / "vfhq")], [str(info)]))
    status = {v["video_id"]: v["status"] for v in cat.videos}
    dup = next(v for v in cat.videos if v["status"] == "duplicate")
    assert dup["duplicate_of"] == "abc_0" and dup["source_name"] == "copy of abc é.mp4"
    assert status["gone"] == "missing"
    assert cat.partition_keys() == ["abcDEF123_x", "abc_0", "plain"]
    clip_video = {c["clip_id"]: (c["video_id"], c["whole_file"]) for c in cat.clips}
    assert clip_video["Clip+abcDEF123_x+P0+C1+F100-102"] == ("abcDEF123_x", False)
    assert clip_video["abc_0"] == ("abc_0", True)  # a pre-cut clip file: the whole file
    assert clip_video["gone_1"] == ("gone", False)
    assert len(cat.errors) == 1 and "Clip+abcDEF123_x+P1+C0+F1-2.txt" in cat.errors[0]["message"]
