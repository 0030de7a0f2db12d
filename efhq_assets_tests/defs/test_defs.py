"""The Dagster layer: loadable definitions, assets through dg.materialize, the sensor via build_sensor_context."""

import json

import dagster as dg
import pytest

from efhq_assets.core.catalog import refresh_catalog, save_source_config
from efhq_assets.core.sources import SourceConfig
from efhq_assets.core.storage import DataRoot, query, read_table
from efhq_assets.definitions import defs
from efhq_assets.defs.partitions import video_files
from efhq_assets.core import stages
from efhq_assets.defs import sensors
from efhq_assets.defs.resources import EfhqStorage, FaceAnalysis
from efhq_assets.defs.sensors import video_files_sensor


def test_definitions_load():
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"source_videos", "decoded_frames", "manifest"} <= keys


@pytest.fixture
def sources(tmp_path, make_video):
    videos = tmp_path / "videos"
    make_video(videos / "good_a.mp4", n=12)
    make_video(videos / "good_b.mp4", n=7, seed=2)
    (videos / "empty.mp4").write_bytes(b"")
    (videos / "notes.mp4").write_text("this is a text file, not a video\n" * 20)
    good = (videos / "good_a.mp4").read_bytes()
    (videos / "truncated.mp4").write_bytes(good[: len(good) // 2])
    return SourceConfig(videos=[str(videos)])


def materialize_partition(instance, root, key):
    assets = [defs.get_assets_def("source_videos"), defs.get_assets_def("decoded_frames")]
    return dg.materialize(assets, partition_key=key, instance=instance,
                          resources={"storage": EfhqStorage(data_root=str(root.path))}, raise_on_error=False)


def test_assets_materialize_per_partition_and_bad_files_fail_alone(tmp_path, sources):
    root = DataRoot(tmp_path / "root").ensure()
    save_source_config(root, sources)
    catalog = refresh_catalog(root)
    keys = catalog.partition_keys()
    assert keys == ["empty", "good_a", "good_b", "notes", "truncated"]
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(video_files.name, keys)
        outcome = {k: materialize_partition(instance, root, k).success for k in keys}
        assert outcome == {"empty": False, "good_a": True, "good_b": True, "notes": False, "truncated": False}
        mats = instance.fetch_materializations(dg.AssetKey("decoded_frames"), limit=10).records
        assert {m.partition_key for m in mats} == {"good_a", "good_b"}
        meta = mats[0].asset_materialization.metadata
        assert meta["frames"].value in (12, 7) and "preview" in meta
        result = dg.materialize([defs.get_assets_def("manifest")], instance=instance,
                                resources={"storage": EfhqStorage(data_root=str(root.path))})
        assert result.success
    assert query(root, "select video_id, count(*) from frames group by 1 order by 1")[1] == [("good_a", 12), ("good_b", 7)]
    errors = dict(query(root, "select video_id, message from errors order by 1")[1])
    assert set(errors) == {"empty", "notes", "truncated"}  # one clear row each
    assert "empty" in errors["empty"].lower() or "zero" in errors["empty"].lower()
    assert all("Traceback" not in m for m in errors.values())
    status = dict(query(root, "select video_id, status from videos")[1])
    assert status["empty"] == "failed" and status["good_a"] == "ok"
    assert read_table(root, "lineage", "good_a@decoded_frames")["rows"][0] == 12


def _tick(instance, storage, cursor=None):
    with dg.build_sensor_context(instance=instance, cursor=cursor,
                                 resources={"storage": storage, "face_analysis": FaceAnalysis()}) as context:
        return video_files_sensor(context)


def test_sensor_adds_partitions_and_requests_one_batched_run(tmp_path, sources):
    root = DataRoot(tmp_path / "root").ensure()
    save_source_config(root, sources)
    storage = EfhqStorage(data_root=str(root.path))
    with dg.instance_for_test() as instance:
        result = _tick(instance, storage)
        keys = ["empty", "good_a", "good_b", "notes", "truncated"]
        assert list(result.dynamic_partitions_requests[0].partition_keys) == keys
        # One run for the five new videos (a partition range, as efhq build batches), every per-video stage.
        [request] = result.run_requests
        assert request.job_name == "per_video_job" and request.partition_key is None
        assert (request.tags[sensors.RANGE_START], request.tags[sensors.RANGE_END]) == ("empty", "truncated")
        assert [k.to_user_string() for k in request.asset_selection] == list(stages.PER_VIDEO)
        instance.add_dynamic_partitions(video_files.name, keys)
        # The same plan gets the same run key: the daemon never launches it twice.
        again = sensors.plan_tick(root, keys, None, None, FaceAnalysis())
        assert [run_key for _, _, run_key in again.runs] == [request.run_key]
        # While the run is in flight, nothing more is requested for its videos.
        busy = sensors.plan_tick(root, keys, result.cursor, set(keys), FaceAnalysis())
        assert not busy.runs and busy.unpartitioned_run_key is None and "in flight" in busy.skip
        # A vanished file is reported, never deleted.
        (tmp_path / "videos" / "good_b.mp4").unlink()
        tick = sensors.plan_tick(root, keys, busy.cursor, set(keys), FaceAnalysis())
        assert tick.vanished == ["good_b"] and "vanished" in tick.skip and not tick.runs
        assert "good_b" in instance.get_dynamic_partitions(video_files.name)


def test_sensor_plans_only_what_changed_since_its_last_tick(tmp_path, sources, make_video):
    """Once a tick has planned everything, later ticks plan new files, replaced files and the videos of runs
    that ended; a setting change plans every video again."""
    from efhq_assets.core.settings import update_settings

    root = DataRoot(tmp_path / "root").ensure()
    save_source_config(root, sources)
    first = sensors.plan_tick(root, [], None, None, FaceAnalysis())
    keys = first.new_keys
    # every video was requested; while they are in flight nothing else is
    flying = sensors.plan_tick(root, keys, first.cursor, set(keys), FaceAnalysis())
    assert not flying.runs
    # a run ended without doing its work (nothing materialized here): its videos are planned again
    ended = sensors.plan_tick(root, keys, flying.cursor, {"good_a"}, FaceAnalysis())
    assert sorted(k for _, run_keys, _ in ended.runs for k in run_keys) == ["empty", "good_b", "notes", "truncated"]
    # a replaced file alone
    quiet = sensors.plan_tick(root, keys, ended.cursor, set(keys) - {"good_a"}, FaceAnalysis())
    make_video(tmp_path / "videos" / "good_b.mp4", n=9, seed=7)
    replaced = sensors.plan_tick(root, keys, quiet.cursor, set(keys) - {"good_a", "good_b"}, FaceAnalysis())
    assert [run_keys for _, run_keys, _ in replaced.runs] == [["good_b"]]
    # a setting: every video not in flight
    update_settings(root, pose_camera="weak")
    resettled = sensors.plan_tick(root, keys, replaced.cursor, {"good_b"}, FaceAnalysis())
    assert sorted(k for _, run_keys, _ in resettled.runs for k in run_keys) == ["empty", "good_a", "notes", "truncated"]


def test_a_full_plan_is_spread_over_ticks(tmp_path, sources, monkeypatch):
    """A large root's full plan (first tick, or after a setting change) plans a slice of videos per tick, and
    the unpartitioned stages wait until it has seen every video."""
    root = DataRoot(tmp_path / "root").ensure()
    save_source_config(root, sources)
    keys = sensors.plan_tick(root, [], None, None, FaceAnalysis()).new_keys
    monkeypatch.setattr(sensors, "FULL_PLAN_PER_TICK", 2)
    cursor, planned = None, []
    for _ in range(3):
        tick = sensors.plan_tick(root, keys, cursor, None, FaceAnalysis(), attempted=lambda run_key: True)
        planned.append(json.loads(tick.cursor)["scan"])
        assert tick.unpartitioned_run_key is None or planned[-1] is None
        cursor = tick.cursor
    assert planned == [2, 4, None]


def test_a_rescan_that_changes_every_video_is_planned_a_slice_a_tick(tmp_path, sources, monkeypatch):
    """A rebuilt catalog makes every row "changed": those videos are planned like a full plan, a slice per tick
    (once planned all at once: 580 s for one tick at 50,000 videos, against Dagster's 60 s)."""
    root = DataRoot(tmp_path / "root").ensure()
    save_source_config(root, sources)
    keys = sensors.plan_tick(root, [], None, None, FaceAnalysis()).new_keys
    settled = sensors.plan_tick(root, keys, None, None, FaceAnalysis(), attempted=lambda run_key: True)
    monkeypatch.setattr(sensors, "FULL_PLAN_PER_TICK", 2)
    for name in ("videos.parquet", "clips.parquet"):
        (root.catalog / name).unlink(missing_ok=True)
    cursor = json.dumps({**json.loads(settled.cursor), "listing": "another listing", "scan": None})
    tick = sensors.plan_tick(root, keys, cursor, None, FaceAnalysis())
    assert sorted(k for _, run_keys, _ in tick.runs for k in run_keys) == sorted(keys)[:2]
    assert json.loads(tick.cursor)["scan"] == 2


def test_sensor_cap_leaves_a_backlog_for_the_next_tick(tmp_path, sources):
    root = DataRoot(tmp_path / "root").ensure()
    save_source_config(root, sources)
    first = sensors.plan_tick(root, [], None, None, FaceAnalysis(), cap=2)
    assert first.new_keys == ["empty", "good_a"] and json.loads(first.cursor)["backlog"] == 3
    second = sensors.plan_tick(root, first.new_keys, first.cursor, None, FaceAnalysis(), cap=2)
    assert second.new_keys == ["good_b", "notes"]


def test_face_chain_on_a_real_face_passes_its_blocking_checks(tmp_path):
    import numpy as np

    from efhq_assets.core.models.sample_images import astronaut_bgr
    from efhq_assets.core.video import write_test_video

    videos = tmp_path / "videos"
    videos.mkdir()
    img = astronaut_bgr()
    write_test_video(videos / "astro.mp4", [np.ascontiguousarray(np.roll(img, 3 * i, axis=1)) for i in range(4)])
    root = DataRoot(tmp_path / "root").ensure()
    save_source_config(root, SourceConfig(videos=[str(videos)]))
    refresh_catalog(root)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(video_files.name, ["astro"])
        result = dg.materialize([defs.get_assets_def(k) for k in stages.PER_VIDEO], partition_key="astro",
                                instance=instance,
                                resources=dict(defs.resources, storage=EfhqStorage(data_root=str(root.path))))
        assert result.success
        checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
        assert checks == {"faces_well_formed": True, "angles_valid": True, "bins_match_angles": True,
                          "scores_valid": True}
    faces = read_table(root, "faces", "astro")
    assert faces.height == 4 and faces["track_id"].n_unique() == 1
    poses = read_table(root, "poses", "astro")
    assert set(poses["estimator"]) == {"facemesh", "dlib68", "combined"} and poses.height == 12
    assert read_table(root, "bins", "astro")["softbin"].to_list() == ["frontal"] * 4
    assert read_table(root, "track_embeddings", "astro").height == 1
