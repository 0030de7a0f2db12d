"""Several videos per Dagster run (defs/batch.py, runner.build): one materialization per video, failures alone."""

import dagster as dg
import pytest

from efhq_assets import runner
from efhq_assets.core import plan, stages
from efhq_assets.core.catalog import refresh_catalog, save_source_config
from efhq_assets.core.faces import FOUND_BY
from efhq_assets.core.sources import SourceConfig
from efhq_assets.core.storage import DataRoot, query, read_rows
from efhq_assets.defs.partitions import video_files


def test_plan_runs_groups_by_selection_and_contiguous_partitions():
    order = {k: i for i, k in enumerate("abcdefg")}
    all7 = stages.PER_VIDEO
    tail = all7[2:]
    stale = {"a": all7, "b": all7, "c": tail, "d": all7, "f": all7, "g": all7}
    runs = plan.plan_runs(stale, order, max_per_run=50)
    # c (another selection) splits a-d; e (not stale) splits d-f: a range would include it
    assert runs == [(all7, ["a", "b"]), (tail, ["c"]), (all7, ["d"]), (all7, ["f", "g"])]
    assert plan.plan_runs({k: all7 for k in "abcde"}, order, max_per_run=2) == [
        (all7, ["a", "b"]), (all7, ["c", "d"]), (all7, ["e"])]


@pytest.fixture
def in_process_env(monkeypatch):
    # runner.prepare_instance points DAGSTER_HOME / EFHQ_DATA_ROOT at the data root: restore them afterwards
    monkeypatch.setenv("DAGSTER_HOME", "")
    monkeypatch.setenv("EFHQ_DATA_ROOT", "")


def _materializations(instance, asset, run_id=None):
    records = instance.fetch_materializations(dg.AssetKey(asset), limit=1000).records
    return {r.partition_key: r.asset_materialization.metadata for r in records if run_id in (None, r.run_id)}


def test_build_runs_several_videos_per_run_and_a_bad_one_fails_alone(tmp_path, make_video, in_process_env):
    videos = tmp_path / "videos"
    make_video(videos / "a.mp4", n=5)
    make_video(videos / "b.mp4", n=7, seed=1)
    (videos / "bad.mp4").write_text("not a video\n" * 10)
    make_video(videos / "c.mp4", n=9, seed=2)
    root = DataRoot(tmp_path / "root")
    report = runner.build(root, SourceConfig(videos=[str(videos)]))
    assert sorted(report.ran) == ["a", "b", "c"] and list(report.failed) == ["bad"]
    assert "not a video" in report.failed["bad"] or "cannot read" in report.failed["bad"]
    errors = dict(query(root, "select video_id, stage from errors")[1])
    assert errors == {"bad": "source_videos"}
    assert dict(query(root, "select video_id, count(*) from frames group by 1")[1]) == {"a": 5, "b": 7, "c": 9}

    instance = runner.prepare_instance(root)
    runs = instance.get_run_records()
    ranged = [r.dagster_run for r in runs if r.dagster_run.tags.get("dagster/asset_partition_range_start")]
    assert ranged, "the videos were not batched"
    first = min(ranged, key=lambda r: instance.get_run_record_by_id(r.run_id).create_timestamp)
    assert (first.tags["dagster/asset_partition_range_start"], first.tags["dagster/asset_partition_range_end"]) \
        == ("a", "c")  # all four in the first run
    # The batch's source_videos: one materialization per video that landed, none for the failed one
    assert set(_materializations(instance, "source_videos", first.run_id)) == {"a", "b", "c"}
    # Every asset of every good video has its own materialization with its own metadata
    for asset in stages.PER_VIDEO:
        assert set(_materializations(instance, asset)) == {"a", "b", "c"}, asset
    frames = _materializations(instance, "decoded_frames")
    assert {k: m["frames"].value for k, m in frames.items()} == {"a": 5, "b": 7, "c": 9}
    assert all("preview" in m for m in frames.values())
    faces = _materializations(instance, "face_detections")  # how every face was found, per video
    assert all(sum(m[f"found_by_{how}"].value for how in FOUND_BY) == m["faces"].value for m in faces.values())
    poses = _materializations(instance, "pose_annotations")  # what the large-yaw rules answered, per video
    assert all(m["facemesh_fits_dropped"].value <= m["faces"].value for m in poses.values())
    assert all(m["combined_yaw_not_facemesh"].value <= m["faces"].value for m in poses.values())
    # The failed partition is shown as failed, the others as materialized
    status = instance.get_status_by_partition(dg.AssetKey("source_videos"), ["a", "bad", "c"], video_files)
    assert status["a"].value == "MATERIALIZED" and status["bad"].value == "FAILED"

    again = runner.build(root)
    assert again.ran == [] and sorted(again.skipped) == ["a", "b", "c"] and list(again.failed) == ["bad"]


def test_a_ranged_run_keeps_per_video_checks_and_lineage(tmp_path, make_video, in_process_env):
    import numpy as np

    from efhq_assets.core.models.sample_images import astronaut_bgr
    from efhq_assets.core.video import write_test_video
    from efhq_assets.definitions import defs
    from efhq_assets.defs.resources import EfhqStorage

    videos = tmp_path / "videos"
    videos.mkdir()
    img = astronaut_bgr()
    for name, shift in (("astro1", 3), ("astro2", -4)):
        write_test_video(videos / f"{name}.mp4", [np.ascontiguousarray(np.roll(img, shift * i, axis=1))
                                                  for i in range(3)])
    root = DataRoot(tmp_path / "root").ensure()
    save_source_config(root, SourceConfig(videos=[str(videos)]))
    refresh_catalog(root)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(video_files.name, ["astro1", "astro2"])
        result = dg.materialize([defs.get_assets_def(k) for k in stages.PER_VIDEO], instance=instance,
                                resources=dict(defs.resources, storage=EfhqStorage(data_root=str(root.path))),
                                tags={"dagster/asset_partition_range_start": "astro1",
                                      "dagster/asset_partition_range_end": "astro2"})
        assert result.success
        checks = {e.check_name: (e.passed, e.metadata["partitions"].value)
                  for e in result.get_asset_check_evaluations()}
        assert checks == {"faces_well_formed": (True, 2), "angles_valid": (True, 2), "bins_match_angles": (True, 2),
                          "scores_valid": (True, 2)}
        faces = _materializations(instance, "face_detections")
        assert {k: m["faces"].value for k, m in faces.items()} == {"astro1": 3, "astro2": 3}
    for key in ("astro1", "astro2"):
        lineage = read_rows(root, "lineage", f"{key}@track_embeddings")
        assert lineage and lineage[0]["rows"] == 1


def test_an_unexpected_error_in_a_later_asset_fails_that_video_alone(tmp_path, make_video, in_process_env,
                                                                     monkeypatch):
    from efhq_assets.defs import quality

    videos = tmp_path / "videos"
    for i, name in enumerate("abc"):
        make_video(videos / f"{name}.mp4", n=4, seed=i)
    real = quality.score_video

    def flaky(video, *args, **kwargs):
        if video["video_id"] == "b":
            raise ZeroDivisionError("boom")
        return real(video, *args, **kwargs)

    monkeypatch.setattr(quality, "score_video", flaky)
    root = DataRoot(tmp_path / "root")
    report = runner.build(root, SourceConfig(videos=[str(videos)]))
    assert sorted(report.ran) == ["a", "c"] and list(report.failed) == ["b"]
    assert report.failed["b"] == "unexpected error in quality_scores: ZeroDivisionError: boom"
    instance = runner.prepare_instance(root)
    assert set(_materializations(instance, "quality_scores")) == {"a", "c"}
    assert set(_materializations(instance, "pose_bins")) == {"a", "b", "c"}  # its other branches still ran

    monkeypatch.setattr(quality, "score_video", real)
    fixed = runner.build(root)  # the failed video is redone whole; its stale error row goes
    assert fixed.ran == ["b"] and not fixed.failed
    assert query(root, "select count(*) from errors")[1] == [(0,)]


def test_a_failed_blocking_check_fails_that_video_and_the_others_finish_in_a_second_run(tmp_path, make_video,
                                                                                        in_process_env,
                                                                                        monkeypatch):
    from efhq_assets.defs import faces

    videos = tmp_path / "videos"
    for i, name in enumerate("abc"):
        make_video(videos / f"{name}.mp4", n=4, seed=i)
    real = faces.check_faces
    calls = []

    def check(rows):
        calls.append(1)
        passed, details = real(rows)
        return (len(calls) != 2, details)  # the second video of the run fails its check

    monkeypatch.setattr(faces, "check_faces", check)
    root = DataRoot(tmp_path / "root")
    report = runner.build(root, SourceConfig(videos=[str(videos)]))
    assert sorted(report.ran) == ["a", "c"] and list(report.failed) == ["b"]
    assert "faces_well_formed" in report.failed["b"]
    instance = runner.prepare_instance(root)
    for asset in stages.PER_VIDEO:
        assert {"a", "c"} <= set(_materializations(instance, asset)), asset
    assert "b" not in _materializations(instance, "pose_annotations")
    ranged = [r.dagster_run for r in instance.get_run_records()
              if r.dagster_run.tags.get("dagster/asset_partition_range_start")]
    assert len(ranged) == 1  # the first run; then a and c (not contiguous any more) one run each


def _context(root, **settings):
    from efhq_assets.core.settings import Settings
    from efhq_assets.defs.resources import FaceAnalysis

    video = {"video_id": "v", "path": "v.mp4", "sha256": "0" * 64, "size_bytes": 1, "mtime_ns": 5}
    resolved = FaceAnalysis().resolved(Settings(**settings))
    return stages.VideoContext(root, video, [], Settings(**settings), resolved.identity)


def test_face_fingerprint_follows_the_loaded_models(monkeypatch, tmp_path):
    """Changing a detector threshold or a landmarker's version makes every video's faces stale."""
    from efhq_assets.core.faces import FaceModels

    root = DataRoot(tmp_path / "root").ensure()
    before = stages.expected_fingerprints(_context(root))
    assert stages.expected_fingerprints(_context(root)) == before
    monkeypatch.setattr(FaceModels, "identity", lambda self: {"mtcnn": ["another version", "", {}]})
    after = stages.expected_fingerprints(_context(root))
    assert {k for k in before if before[k] != after[k]} == set(stages.PER_VIDEO) - {"source_videos", "decoded_frames"}


@pytest.mark.parametrize("setting, value, stale", [
    ("pose_camera", "weak", {"pose_annotations", "pose_bins"}),
    ("sampling", "fps:5", set(stages.PER_VIDEO) - {"source_videos"}),
    ("render_exports", True, set()),  # only the splits read it
    ("detect_stride", 1, set(stages.PER_VIDEO) - {"source_videos", "decoded_frames"}),
])
def test_a_setting_marks_exactly_its_stages_and_below_stale(tmp_path, setting, value, stale):
    root = DataRoot(tmp_path / "root").ensure()
    a = stages.expected_fingerprints(_context(root))
    b = stages.expected_fingerprints(_context(root, **{setting: value}))
    assert {k for k in a if a[k] != b[k]} == stale


def test_a_replaced_file_marks_every_stage_stale(tmp_path):
    root = DataRoot(tmp_path / "root").ensure()
    ctx = _context(root)
    a = stages.expected_fingerprints(ctx)
    ctx.video = dict(ctx.video, size_bytes=2, mtime_ns=6)
    b = stages.expected_fingerprints(ctx)
    assert all(a[k] != b[k] for k in a)


def test_registry_derives_deps_code_versions_and_jobs():
    """Assets, jobs and the manifest's deps come from the stage registry: nothing is listed twice."""
    from efhq_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    for stage in stages.STAGES:
        node = graph.get(dg.AssetKey(stage.name))
        assert node.code_version == stage.code_version, stage.name
        settings = {f"setting_{n}" for n in stage.settings}  # each setting it reads is an external asset
        assert {k.to_user_string() for k in node.parent_keys} == set(stage.upstream) | settings, stage.name
        assert node.is_partitioned == stage.partitioned, stage.name
    job = defs.resolve_job_def("per_video_job")
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} == set(stages.PER_VIDEO)
    job = defs.resolve_job_def("unpartitioned_job")
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} == set(stages.UNPARTITIONED)


def test_multi_video_steps_report_progress(capsys, monkeypatch):
    from efhq_assets.defs import batch

    monkeypatch.setattr(batch._Progress, "EVERY_S", 0.0)  # every video, so the test need not wait 10 s
    progress = batch._Progress("face_detections", 3)
    for _ in range(3):
        progress.step()
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" (")[0].strip() for line in lines] == [f"face_detections: {i}/3 videos" for i in (1, 2, 3)]
    monkeypatch.setattr(batch._Progress, "EVERY_S", 3600.0)  # quiet in between: only the last one
    progress = batch._Progress("pose_annotations", 2)
    progress.step()
    progress.step()
    assert capsys.readouterr().err.strip().startswith("pose_annotations: 2/2 videos")


def test_face_analysis_takes_the_detect_stride_setting_unless_it_sets_one():
    from efhq_assets.core.settings import Settings
    from efhq_assets.defs.resources import FaceAnalysis

    assert FaceAnalysis().resolved(Settings()).detect_stride == Settings().detect_stride == 5
    assert FaceAnalysis().resolved(Settings(detect_stride=1)).detect_stride == 1
    assert FaceAnalysis(detect_stride=2).resolved(Settings(detect_stride=1)).detect_stride == 2
