"""Review as data: export a contact sheet, edit a label, import, and only that label changes."""

import csv
import io

import numpy as np
import pytest

from efhq_assets_tests.conftest import run_efhq


@pytest.fixture(scope="module")
def built_root(tmp_path_factory):
    from efhq_assets.core.models.sample_images import astronaut_bgr
    from efhq_assets.core.video import write_test_video

    base = tmp_path_factory.mktemp("review")
    videos = base / "videos"
    videos.mkdir()
    img = astronaut_bgr()
    write_test_video(videos / "astro.mp4", [np.ascontiguousarray(np.roll(img, 2 * i, axis=1)) for i in range(5)])
    root = base / "root"
    run_efhq("build", "--videos", str(videos), data_root=root)
    return root


def bins(root):
    out = run_efhq("sql", "select frame_index, face_index, softbin, reviewed_label, label from bins order by 1, 2",
                   "--format", "csv", data_root=root).stdout
    return list(csv.DictReader(io.StringIO(out)))


def test_review_round_trip(built_root, tmp_path):
    before = bins(built_root)
    assert len(before) == 5 and all(r["reviewed_label"] == "" for r in before)
    sheet = tmp_path / "sheet.html"
    run_efhq("review", "export", "--bin", "all", "--out", str(sheet), data_root=built_root)
    assert sheet.read_text().count("<figure>") == 5 and "data:image/jpeg;base64," in sheet.read_text()
    rows = list(csv.DictReader(sheet.with_suffix(".csv").open()))
    assert [r["current_label"] for r in rows] == [r["label"] for r in before]

    bad = tmp_path / "bad.csv"
    edited = [dict(r) for r in rows]
    edited[1]["new_label"] = "profile_left"
    edited[3]["new_label"] = "sideways"
    with bad.open("w") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(edited)
    proc = run_efhq("review", "import", str(bad), data_root=built_root, check=False)
    assert proc.returncode == 2 and "line 5" in proc.stderr and "sideways" in proc.stderr
    assert bins(built_root) == before  # nothing half-applied

    good = tmp_path / "good.csv"
    edited[3]["new_label"] = ""
    with good.open("w") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(edited)
    proc = run_efhq("review", "import", str(good), data_root=built_root)
    after = bins(built_root)
    changed = [(b, a) for b, a in zip(before, after) if b != a]
    assert len(changed) == 1
    assert changed[0][1]["reviewed_label"] == "profile_left" and changed[0][1]["label"] == "profile_left"
    assert changed[0][1]["frame_index"] == rows[1]["frame_index"]
