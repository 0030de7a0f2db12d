"""Adding a video never changes what exists: identities, split rows and benchmark pairs stay (issues 11-13)."""

import csv
import io

import numpy as np
import pytest

from efhq_assets_tests.conftest import run_efhq

TABLES = {
    "identities": "select video_id, track_id, identity_id from identities",
    "split_gan": "select video_id, frame_index, face_index, split, label, path from split_gan",
    "split_eg3d": "select video_id, frame_index, face_index, split, label, path from split_eg3d",
    "split_t2i": "select video_id, frame_index, face_index, split, label, path, prompt from split_t2i",
    "split_reenactment": "select video_id, frame_index, face_index, split, label, path from split_reenactment",
    "verification_pairs": "select protocol, path1, path2, issame from verification_pairs",
}


def rows(root, query):
    out = run_efhq("sql", query, "--format", "csv", data_root=root).stdout
    return {tuple(r) for r in list(csv.reader(io.StringIO(out)))[1:]}


def write_clip(path, still, seed, mirrored=False, n=12):
    from efhq_assets.demo.segments import steady_segment
    from efhq_assets.core.video import write_test_video

    frames, *_ = steady_segment(still, np.random.default_rng(seed), n, (120, 110, 100), mirrored, 8.0)
    write_test_video(path, frames)


@pytest.fixture(scope="module")
def stills():
    from efhq_assets.demo.corpus import face_stills

    return {s.identity: s for s in face_stills()}


def test_adding_a_video_keeps_every_existing_row(tmp_path, stills):
    videos = tmp_path / "videos"
    videos.mkdir()
    write_clip(videos / "srcA_0.mp4", stills["astronaut"], 1)
    write_clip(videos / "srcB_0.mp4", stills["t1_person2"], 2)
    write_clip(videos / "srcC_0.mp4", stills["t1_person4"], 3, mirrored=True)
    root = tmp_path / "root"
    run_efhq("build", "--videos", str(videos), data_root=root)
    before = {name: rows(root, q) for name, q in TABLES.items()}
    assert before["identities"] and before["split_gan"] and before["verification_pairs"]

    write_clip(videos / "srcD_0.mp4", stills["t1_person5"], 4)  # a new video, a new person
    run_efhq("refresh", data_root=root)
    after = {name: rows(root, q) for name, q in TABLES.items()}
    for name in TABLES:
        missing = before[name] - after[name]
        assert not missing, f"{name}: {len(missing)} existing rows changed or vanished, e.g. {sorted(missing)[:2]}"
    assert len(after["identities"]) > len(before["identities"])
