"""The daemon alone (issue 19): `efhq ui` started as the README says, files dropped and replaced, a setting
changed, and no `efhq` command in between; SQL catches up, and `efhq build` then has nothing to do."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from efhq_assets_tests.conftest import run_efhq
from efhq_assets_tests.e2e.test_ui import BIN, free_port, log_tail, stop_ui, wait_for_location

CATCH_UP_TIMEOUT_S = 600


def start_ui_as_the_readme_says(root: Path, port: int, log_path: Path, cwd: Path):
    """`.venv/bin/efhq ui` from a shell with no activated venv: the venv's bin/ is not on PATH."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if k not in {"EFHQ_DATA_ROOT", "DAGSTER_HOME", "VIRTUAL_ENV"}}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "/usr/bin:/bin").split(os.pathsep)
                                  if Path(p).resolve() != BIN.resolve())
    cmd = [str(BIN / "efhq"), "ui", "--host", "127.0.0.1", "--port", str(port), "--data-root", str(root)]
    with open(log_path, "wb") as log:
        return subprocess.Popen(["env", "--default-signal=INT,TERM"] + cmd, cwd=cwd, env=env,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def sql_rows(root: Path, sql: str):
    from efhq_assets.core.storage import NoManifestError, query

    try:
        return query(root_of(root), sql)[1]
    except NoManifestError:
        return None


def root_of(path: Path):
    from efhq_assets.core.storage import DataRoot

    return DataRoot(path)


def sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.timeout(CATCH_UP_TIMEOUT_S + 300)
def test_the_daemon_alone_processes_new_replaced_and_resettled_videos(tmp_path, make_video):
    from efhq_assets.core.settings import update_settings

    videos = tmp_path / "videos"
    make_video(videos / "a.mp4", n=6)
    make_video(videos / "b.mp4", n=6, seed=1)
    root = tmp_path / "root"
    run_efhq("build", "--videos", str(videos), data_root=root)
    assert sql_rows(root, "select video_id, count(*) from frames group by 1 order by 1") == [("a", 6), ("b", 6)]

    port = free_port()
    log_path = tmp_path / "dagster_dev.log"
    proc = start_ui_as_the_readme_says(root, port, log_path, cwd=tmp_path)
    try:
        wait_for_location(proc, port, log_path)
        landed = time.time()
        make_video(videos / "c.mp4", n=6, seed=2)           # a new file
        make_video(videos / "b.mp4", n=9, seed=5)           # replaced under the same name
        update_settings(root_of(root), sampling="max:4")    # a setting (read by every process)
        expected_frames = [("a", 4), ("b", 4), ("c", 4)]
        expected_sha = {"a": sha256(videos / "a.mp4"), "b": sha256(videos / "b.mp4"), "c": sha256(videos / "c.mp4")}
        deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
        while True:
            frames = sql_rows(root, "select video_id, count(*) from frames group by 1 order by 1")
            shas = dict(sql_rows(root, "select video_id, sha256 from videos where status = 'ok'") or [])
            if frames == expected_frames and shas == expected_sha:
                visible = time.time()
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"SQL shows {frames} / {shas}, expected {expected_frames}\n{log_tail(log_path, 8000)}")
            time.sleep(2)
    finally:
        stop_ui(proc)

    from efhq_assets import runner

    instance = runner.prepare_instance(root_of(root))
    runs = sorted((r.dagster_run for r in instance.get_run_records() if r.create_timestamp.timestamp() >= landed),
                  key=lambda run: instance.get_run_record_by_id(run.run_id).create_timestamp)
    assert runs and all(run.tags.get("efhq/command") == "sensor" for run in runs)
    # The daemon batches like efhq build (videos that share their stale stages, as partition ranges) and
    # runs each video once: b and c (replaced, new) need every stage, a only what reads `sampling`.
    per_video = [run for run in runs if run.job_name == "per_video_job"]
    order = instance.get_dynamic_partitions("video_files")
    covered = []
    for run in per_video:
        tags = run.tags
        if "dagster/asset_partition_range_start" in tags:
            start = order.index(tags["dagster/asset_partition_range_start"])
            covered += order[start: order.index(tags["dagster/asset_partition_range_end"]) + 1]
        else:
            covered.append(tags["dagster/partition"])
    assert sorted(covered) == ["a", "b", "c"] and len(per_video) <= 2
    assert [r for r in runs if r.job_name == "unpartitioned_job"]
    first = instance.get_run_record_by_id(runs[0].run_id).create_timestamp.timestamp()
    timeline = {"run_created_s": round(first - landed, 1), "visible_in_sql_s": round(visible - landed, 1)}
    print("daemon timeline:", json.dumps(timeline))
    # Nothing is left for efhq build: the daemon did exactly its plan.
    plan = json.loads(run_efhq("build", "--dry-run", "--format", "json", data_root=root).stdout)
    assert plan["stale_videos"] == 0 and not plan["unpartitioned_stale"], plan
    report = json.loads(run_efhq("build", data_root=root).stdout)
    assert report["ran"] == 0 and report["skipped"] == 3
