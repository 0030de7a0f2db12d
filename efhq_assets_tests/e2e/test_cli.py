"""The `efhq` command end to end, through subprocesses, on the demo corpus and on bad input."""

import csv
import hashlib
import io
import json
import shutil

from efhq_assets_tests.conftest import run_efhq


def data_file_hashes(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((root / "tables").rglob("*.parquet")) if "lineage" not in p.parts}


def sql(root, query, fmt="csv"):
    out = run_efhq("sql", query, "--format", fmt, data_root=root).stdout
    return list(csv.reader(io.StringIO(out))) if fmt == "csv" else out


def test_demo_counts_match_the_corpus_truth(demo_root):
    truth = json.loads((demo_root / "demo_sources" / "demo_truth.json").read_text())
    files = {c["video_file"] for c in truth["clips"]}
    assert sql(demo_root, "select count(*) from videos where status = 'ok'") == [["count_star()"], [str(len(files))]]
    expected_frames = sum(c["end_frame"] - c["start_frame"] + 1 for c in truth["clips"])
    assert sql(demo_root, "select count(*) as n from frames") == [["n"], [str(expected_frames)]]
    assert len(truth["identities"]) >= 7
    statuses = dict(sql(demo_root, "select status, count(*) from videos group by 1")[1:])
    assert statuses["missing"] == "1" and statuses["duplicate"] == "1"
    missing = run_efhq("status", "--missing", data_root=demo_root).stdout
    assert "celebvDemoGone" in missing


def test_csv_output_is_exactly_header_and_rows(demo_root):
    out = run_efhq("sql", "select video_id, status from videos order by 1 limit 2", "--format", "csv",
                   data_root=demo_root).stdout
    lines = out.splitlines()
    assert lines[0] == "video_id,status" and len(lines) == 3


def test_sql_refusals_change_nothing(demo_root, tmp_path):
    before = data_file_hashes(demo_root)
    manifest = (demo_root / "manifest.duckdb").read_bytes()
    for q in ("delete from frames", "insert into videos (video_id) values ('x')",
              f"copy frames to '{tmp_path}/leak.csv'", f"attach '{tmp_path}/x.duckdb'",
              "select * from read_csv('/etc/passwd')"):
        proc = run_efhq("sql", q, data_root=demo_root, check=False)
        assert proc.returncode == 2 and proc.stderr.startswith("efhq sql:"), q
        assert "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []
    assert (demo_root / "manifest.duckdb").read_bytes() == manifest
    assert data_file_hashes(demo_root) == before


def test_rerun_changes_no_row_and_no_data_file(demo_root):
    before = data_file_hashes(demo_root)
    rows = sql(demo_root, "select * from frames order by video_id, clip_id, frame_index")
    proc = run_efhq("demo", data_root=demo_root)
    assert json.loads(proc.stdout.splitlines()[-1])["ran"] == 0
    assert data_file_hashes(demo_root) == before
    assert sql(demo_root, "select * from frames order by video_id, clip_id, frame_index") == rows


def test_build_from_an_empty_directory_leaves_it_empty_and_roots_are_isolated(tmp_path, make_video):
    videos = tmp_path / "videos"
    make_video(videos / "one.mp4", n=6)
    cwd = tmp_path / "empty_cwd"
    cwd.mkdir()
    root_a, root_b = tmp_path / "root_a", tmp_path / "root_b"
    run_efhq("build", "--videos", str(videos), data_root=root_a, cwd=cwd)
    assert list(cwd.iterdir()) == []
    make_video(videos / "two.mp4", n=4, seed=1)
    run_efhq("build", "--videos", str(videos), data_root=root_b, cwd=cwd)
    assert list(cwd.iterdir()) == []
    assert sql(root_a, "select count(*) from videos")[1] == ["1"]
    # Each root has its own Dagster instance: root_a's run history never mentions root_b's videos.
    runs_a = list((root_a / "dagster_home").rglob("runs.db"))
    assert runs_a and (root_b / "dagster_home" / "dagster.yaml").exists()
    assert sql(root_b, "select count(*) from frames")[1] == ["10"]


def test_bad_inputs_each_give_one_error_row_while_others_complete(tmp_path, make_video):
    videos, ann = tmp_path / "videos", tmp_path / "vfhq"
    make_video(videos / "fine.mp4", n=8)
    (videos / "zero.mp4").write_bytes(b"")
    (videos / "text.mp4").write_text("hello\n" * 100)
    data = (videos / "fine.mp4").read_bytes()
    (videos / "cut.mp4").write_bytes(data[: len(data) // 3])
    ann.mkdir()
    (ann / "Clip+fine+P0+C0+F0-3.txt").write_text("H 64\nW 96\nFPS 25\n1 2 3\n")
    root = tmp_path / "root"
    proc = run_efhq("build", "--videos", str(videos), "--vfhq-annotations", str(ann), data_root=root, check=False)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    summary = json.loads(proc.stdout.splitlines()[-1])
    assert set(summary["failed"]) == {"zero", "text", "cut"}
    errors = sql(root, "select video_id, stage from errors order by 1")[1:]
    assert [e[0] for e in errors] == sorted(["zero", "text", "cut", "Clip+fine+P0+C0+F0-3"])
    assert sql(root, "select count(*) from frames where video_id = 'fine'")[1] == ["8"]
    status = run_efhq("status", data_root=root).stdout
    assert "errors: 4" in status


def test_demo_faces_and_pose_convention_on_mirrored_clips(demo_root):
    truth = json.loads((demo_root / "demo_sources" / "demo_truth.json").read_text())
    rows = sql(demo_root, "select f.clip_id, avg(p.yaw), avg(p.pitch), avg(p.roll), count(*) from poses p "
                          "join faces f using (video_id, clip_id, frame_index, face_index) "
                          "where p.estimator = 'combined' and f.passes_efhq_filter group by 1 order by 1")[1:]
    by_clip = {r[0]: tuple(float(v) for v in r[1:4]) for r in rows}
    annotated = [c for c in truth["clips"] if c.get("identity")]
    assert set(by_clip) == {c["clip_id"] for c in annotated}  # every rendered face passes the EFHQ filter
    # Pairs of clips of one identity, one mirrored: yaw and roll negate, pitch stays.
    pairs = {}
    for c in annotated:
        if c["segment"] == "steady":
            pairs.setdefault((c["identity"], c["source_id"]), []).append(c)
    checked = 0
    for clips in pairs.values():
        plain = [c for c in clips if not c["mirrored"]]
        flipped = [c for c in clips if c["mirrored"]]
        for a in plain:
            for b in flipped:
                ya, pa, ra = by_clip[a["clip_id"]]
                yb, pb, rb = by_clip[b["clip_id"]]
                assert abs(ya + yb) < 6 and abs(ra + rb) < 6 and abs(pa - pb) < 6, (a["clip_id"], b["clip_id"])
                checked += 1
    assert checked >= 5
    # Head-turn clips have known absolute angles: the combined estimate follows them.
    turns = [c for c in annotated if c["segment"] == "turn" and not c.get("circular_for_facemesh")]
    assert len(turns) >= 3
    for c in turns:
        got = sql(demo_root, "select p.frame_index, p.yaw from poses p where p.estimator = 'combined' "
                             f"and p.clip_id = '{c['clip_id']}' and p.yaw is not null order by 1")[1:]
        truth_yaw = {c["start_frame"] + i: a["yaw"] for i, a in enumerate(c["angles"])}
        errors = [abs(float(y) - truth_yaw[int(f)]) for f, y in got if abs(truth_yaw[int(f)]) <= 45]
        assert len(errors) >= 0.9 * sum(abs(v) <= 45 for v in truth_yaw.values()), c["clip_id"]
        assert sum(errors) / len(errors) < 6.0, c["clip_id"]
    tracks = sql(demo_root, "select count(distinct track_id) from faces where video_id = 'celebvDemoT1person2_0'")
    assert tracks[1] == ["1"]


def test_demo_splits_exist_and_exports_read_back(demo_root, tmp_path):
    import zipfile

    labels = dict(sql(demo_root, "select label, count(*) from split_gan group by 1")[1:])
    assert set(labels) == {"frontal", "extreme"}
    exports = tmp_path / "exports"
    n_gan = int(sql(demo_root, "select count(*) from split_gan")[1][0])
    for task in ("gan", "eg3d", "t2i", "reenactment", "verification"):
        proc = run_efhq("export", task, "--out", str(exports / task), data_root=demo_root)
        assert json.loads(proc.stdout)["files"] > 0, task
        if task == "gan":  # progress on stderr, ending with every row
            assert f"efhq export: {n_gan}/{n_gan} rows rendered" in proc.stderr, proc.stderr
    zpath = exports / "gan" / "efhq_gan_512.zip"
    with zipfile.ZipFile(zpath) as z:  # read the way StyleGAN2-ADA's ImageFolderDataset does
        meta = json.loads(z.read("dataset.json"))["labels"]
        names = set(z.namelist())
        assert meta and all(name in names and cls in (0, 1) for name, cls in meta)
        assert {cls for _, cls in meta} == {0, 1} and len(meta) == n_gan  # every split_gan row is in the zip
    eg3d = json.loads((exports / "eg3d" / "dataset.json").read_text())["labels"]
    assert eg3d and all(len(cam) == 25 and (exports / "eg3d" / name).exists() for name, cam in eg3d)
    prompts = [json.loads(line) for line in (exports / "t2i" / "prompt.json").read_text().splitlines()]
    assert prompts and all((exports / "t2i" / p["source"]).exists() and
                           (exports / "t2i" / p["target"]).exists() and p["prompt"] for p in prompts)
    efhq_prompts = json.loads((exports / "t2i" / "prompts.json").read_text())  # EFHQ's {name: prompt} layout
    assert len(efhq_prompts) == len(prompts) and all(
        (exports / "t2i" / "target_images" / f"{name}.png").exists() for name in efhq_prompts)
    assert (exports / "reenactment" / "pairs.json").exists()
    assert {p.name for p in (exports / "verification").glob("*_pairs.txt")} == {"f2f_pairs.txt", "f2p_pairs.txt",
                                                                               "p2p_pairs.txt"}
    assert not (demo_root / "tasks" / "gan").exists()  # builds do not render exports unless asked
    splits = {r[0] for r in sql(demo_root, "select distinct split from split_reenactment")[1:]}
    assert splits == {"train", "test"}


def test_demo_verification_benchmark(demo_root):
    counts = sql(demo_root, "select protocol, issame, count(*) from verification_pairs group by all order by all")[1:]
    by = {(p, s.lower()): int(n) for p, s, n in counts}
    for protocol in ("f2f", "f2p", "p2p"):
        assert by.get((protocol, "true"), 0) >= 1 and by.get((protocol, "false"), 0) >= 1, (protocol, by)
    shared = sql(demo_root, "select count(*) from verification_pairs where not issame and identity1 = identity2")
    assert shared[1] == ["0"]
    tar = dict(sql(demo_root, "select protocol, tar from verification_report where far = 0.1")[1:])
    assert set(tar) == {"f2f", "f2p", "p2p"} and all(v != "" for v in tar.values()), tar


def test_split_gan_lineage_has_no_nulls(demo_root):
    query = ("select s.video_id, s.frame_index, s.face_index, f.detector, f.detector_sha256, p.weights_sha256, "
             "l.code_version from split_gan s "
             "join faces f using (video_id, frame_index, face_index) "
             "join poses p on p.video_id = s.video_id and p.frame_index = s.frame_index "
             "and p.face_index = s.face_index and p.estimator = 'combined' "
             "join lineage l on l.partition = s.video_id and l.asset = 'pose_annotations'")
    rows = sql(demo_root, query)[1:]
    n = sql(demo_root, "select count(*) from split_gan")[1][0]
    assert len(rows) == int(n) > 0
    assert all(all(v != "" for v in r) for r in rows)


def test_a_missing_backend_fails_with_the_fetch_hint_before_any_video(tmp_path, make_video):
    videos = tmp_path / "videos"
    make_video(videos / "one.mp4", n=4)
    root = tmp_path / "root"
    proc = run_efhq("build", "--videos", str(videos), "--detector", "scrfd_10g_bnkps", data_root=root, check=False,
                    env={"EFHQ_MODEL_DIR": str(tmp_path / "models")})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "efhq models fetch scrfd_10g_bnkps" in proc.stderr and "scrfd_10g_bnkps.onnx" in proc.stderr
    assert not (root / "tables" / "frames").exists()  # nothing was processed


def test_softbin_counts_match_the_dataset_card(demo_root):
    counts = dict(sql(demo_root, "select softbin, count(*) from bins group by 1")[1:])
    assert "frontal" in counts and any(k.startswith("profile_") for k in counts)
    card = (demo_root / "card" / "dataset_card.md").read_text()
    section = card.split("## Every detected face by softbin", 1)[1].split("\n## ", 1)[0]
    table = dict(line.strip("|").replace(" ", "").split("|") for line in section.splitlines()
                 if line.startswith("| ") and not line.startswith("| softbin"))
    assert table == counts
    assert (demo_root / "card" / "pose.png").stat().st_size > 1000
