"""verification_pairs renders only new faces on a rebuild (same bytes), and the task assets read candidates once."""

import numpy as np
import polars as pl
import pytest

cv2 = pytest.importorskip("cv2")


@pytest.fixture
def samples(tmp_path):
    from efhq_assets.core.models.sample_images import astronaut_bgr
    from efhq_assets.core.storage import DataRoot, write_table
    from efhq_assets.core.video import write_test_video

    img = astronaut_bgr()
    video = tmp_path / "astro.mp4"
    write_test_video(video, [np.ascontiguousarray(np.roll(img, 4 * i, axis=1)) for i in range(4)])
    root = DataRoot(tmp_path / "root").ensure()
    write_table(root, "videos", "astro", pl.DataFrame({"video_id": ["astro"], "sha256": ["a" * 64]}))
    lmk5 = [190.0, 120.0, 250.0, 118.0, 222.0, 150.0, 196.0, 178.0, 246.0, 176.0]
    rows = [{"video_id": "astro", "video_path": str(video), "frame_index": i, "face_index": 0,
             "lmk5": [v + i for v in lmk5], "degrade_seed": 1000 + i, "path": f"images/id/frontal/astro_{i}.png"}
            for i in range(4)]
    return root, rows


def _files(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


def test_rebuild_links_unchanged_images_and_renders_only_changed_ones(samples, tmp_path, monkeypatch):
    from efhq_assets.core.tasks import candidates as cand
    from efhq_assets.core.tasks.exports import render_verification_images, save_render_index

    root, rows = samples
    first = tmp_path / "export1"
    renders = render_verification_images(root, rows, tmp_path / "nothing", first)
    save_render_index(root, renders)
    assert len(renders) == 4

    decoded = []
    real = cand.FrameCache.frame
    monkeypatch.setattr(cand.FrameCache, "frame", lambda self, row: decoded.append(row["frame_index"]) or
                        real(self, row))
    second = tmp_path / "export2"
    changed = [dict(r) for r in rows]
    changed[2]["degrade_seed"] = 77  # one face's image changes
    changed[3]["path"] = "images/other_id/frontal/astro_3.png"  # a renamed identity: same image, new path
    renders2 = render_verification_images(root, changed, first, second)
    assert decoded == [2]
    fresh = tmp_path / "export3"
    render_verification_images(root, changed, tmp_path / "nothing", fresh)  # no index: every image rendered
    assert _files(second) == _files(fresh)
    assert _files(second)["images/id/frontal/astro_0.png"] == _files(first)["images/id/frontal/astro_0.png"]
    # an image whose file no longer matches its recorded hash is rendered again, never trusted
    save_render_index(root, renders2)
    (second / rows[0]["path"]).write_bytes(b"corrupt")
    decoded.clear()
    third = tmp_path / "export4"
    render_verification_images(root, changed, second, third)
    assert decoded == [0] and _files(third) == _files(fresh)


def test_candidates_are_read_once_while_no_input_file_changes(samples, monkeypatch):
    from efhq_assets.core.storage import write_table
    from efhq_assets.core.tasks import exports as tasks

    root, _ = samples
    calls = []
    monkeypatch.setattr(tasks, "candidate_rows", lambda r, t, drop_labels=None: calls.append(1) or ([{"video_id": "astro"}], None))
    tasks._candidates_memo.clear()
    first = tasks.candidates(root)
    first[0]["mutated"] = True  # a caller changing its rows does not change the next caller's
    assert tasks.candidates(root) == [{"video_id": "astro"}] and len(calls) == 1
    write_table(root, "faces", "astro", pl.DataFrame({"video_id": ["astro"]}))
    tasks.candidates(root)
    assert len(calls) == 2
