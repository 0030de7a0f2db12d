import pytest

from efhq_assets.core.ids import InvalidIdError, parse_vfhq_clip_name, validate_annotation_id, video_id_from_stem


@pytest.mark.parametrize("stem", ["M2Ohb0FAaJU_1", "-PFdr0SiAEw_0", "Clip+Cxsg9YD3CGM+P0+C0+F12714-12860", "a.b-c"])
def test_safe_stems_are_kept(stem):
    assert video_id_from_stem(stem) == stem


@pytest.mark.parametrize("stem", ["group pan (copie é)", "../x", "..", ".hidden", "a/b", "x\x00y", "日本語の動画", "a" * 300])
def test_unsafe_stems_get_a_deterministic_safe_slug(stem):
    vid = video_id_from_stem(stem)
    assert vid == video_id_from_stem(stem)
    validate_annotation_id(vid)  # the slug itself is a safe id
    assert vid != stem


def test_distinct_unsafe_stems_do_not_collide():
    assert video_id_from_stem("a b") != video_id_from_stem("a  b")


@pytest.mark.parametrize("bad, reason", [
    ("../x", "separator"), ("..", "'..'"), ("/etc/passwd", "absolute"), ("C:\\x", "absolute"),
    ("a\x00b", "NUL"), ("a\nb", "control"), ("a\x1bb", "control"), ("x/../../y", "separator"), ("", "empty"),
    ("a b", "characters"),
])
def test_hostile_annotation_ids_are_rejected(bad, reason):
    with pytest.raises(InvalidIdError, match=reason):
        validate_annotation_id(bad)


def test_vfhq_clip_name_parsing():
    clip = parse_vfhq_clip_name("Clip+Cxsg9YD3CGM+P10+C0+F12714-12860")
    assert (clip.youtube_id, clip.person, clip.clip, clip.start_frame, clip.end_frame) == ("Cxsg9YD3CGM", 10, 0, 12714, 12860)
    assert clip.name == "Clip+Cxsg9YD3CGM+P10+C0+F12714-12860"  # P10 stays 10 (the original kept only its last digit)
    with pytest.raises(InvalidIdError):
        parse_vfhq_clip_name("Clip+abc+P0+C0+F10-5")
    with pytest.raises(InvalidIdError):
        parse_vfhq_clip_name("NotAClip")
