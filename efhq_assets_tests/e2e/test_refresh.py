"""Incremental refresh: only new or changed videos are recomputed (asserted from Dagster run records)."""

import os

import dagster as dg

from efhq_assets_tests.conftest import run_efhq


def partition_runs(root):
    """Each video once per run that covered it (a run covers one partition, or a range of them)."""
    os.environ["DAGSTER_HOME"] = str(root / "dagster_home")
    with dg.DagsterInstance.get() as instance:
        order = instance.get_dynamic_partitions("video_files")
        covered = []
        for record in instance.get_run_records():
            tags = record.dagster_run.tags
            if "dagster/asset_partition_range_start" in tags:
                start = order.index(tags["dagster/asset_partition_range_start"])
                covered += order[start: order.index(tags["dagster/asset_partition_range_end"]) + 1]
            else:
                covered.append(tags.get("dagster/partition", "-"))
        return sorted(covered)


def test_refresh_recomputes_only_the_new_and_the_replaced_video(tmp_path, make_video):
    videos = tmp_path / "videos"
    make_video(videos / "a.mp4", n=6)
    make_video(videos / "b.mp4", n=6, seed=1)
    root = tmp_path / "root"
    run_efhq("build", "--videos", str(videos), data_root=root)
    before = partition_runs(root)
    assert before.count("a") == 1 and before.count("b") == 1

    make_video(videos / "c.mp4", n=6, seed=2)
    run_efhq("refresh", data_root=root)
    after_add = partition_runs(root)
    assert after_add.count("c") == 1 and after_add.count("a") == 1 and after_add.count("b") == 1
    out = run_efhq("sql", "select count(*) from frames", "--format", "csv", data_root=root).stdout
    assert out.splitlines()[1] == "18"

    make_video(videos / "b.mp4", n=9, seed=5)  # same name, new content
    run_efhq("refresh", data_root=root)
    after_replace = partition_runs(root)
    assert after_replace.count("b") == 2 and after_replace.count("a") == 1 and after_replace.count("c") == 1
    out = run_efhq("sql", "select video_id, count(*) from frames group by 1 order by 1", "--format", "csv",
                   data_root=root).stdout
    assert out.splitlines()[1:] == ["a,6", "b,9", "c,6"]

    run_efhq("refresh", data_root=root)  # nothing changed: no run at all
    assert partition_runs(root) == after_replace
