"""The UI's staleness, read through GraphQL as the asset pages read it, equals `efhq build --dry-run`'s plan
(issue 19): after a setting change (settings are observed external assets the stages depend on) and after a
code-version bump. Dagster marks the stage whose own inputs changed; the plan adds what runs after it, so
the comparison is plan == UI-stale stages plus their downstream."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from efhq_assets.core import stages
from efhq_assets_tests.conftest import REPO, run_efhq
from efhq_assets_tests.e2e.test_ui import BIN, free_port, graphql, stop_ui, wait_for_location

STALE = """query Stale($path: [String!]!, $partitions: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) { __typename
    ... on AssetNode { staleStatusByPartition(partitions: $partitions) } } }"""


def start_webserver(root, port, log_path, pythonpath=None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in {"EFHQ_DATA_ROOT", "DAGSTER_HOME", "PYTHONPATH"}}
    env.update(DAGSTER_HOME=str(root / "dagster_home"), EFHQ_DATA_ROOT=str(root))
    if pythonpath:
        env["PYTHONPATH"] = str(pythonpath)
    cmd = [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-m", "efhq_assets.definitions"]
    with open(log_path, "wb") as log:
        return subprocess.Popen(cmd, cwd=root.parent, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


def ui_plan(port: int, keys: list[str]) -> dict[str, list[str]]:
    """Per video: the per-video stages the UI shows as stale, plus their downstream, in registry order."""
    stale: dict[str, set[str]] = {k: set() for k in keys}
    for name in stages.PER_VIDEO:
        node = graphql(port, STALE, {"path": [name], "partitions": keys})["assetNodeOrError"]
        assert node["__typename"] == "AssetNode", node
        for key, status in zip(keys, node["staleStatusByPartition"]):
            if status == "STALE":
                stale[key].add(name)
                stale[key].update(d for d in stages.downstream_of()[name] if d in stages.PER_VIDEO)
    return {k: [s for s in stages.PER_VIDEO if s in v] for k, v in stale.items() if v}


def dry_run(root, pythonpath=None) -> dict[str, list[str]]:
    # `python -m` puts its working directory first on sys.path: run the bumped copy from its own folder
    env, cwd = ({"PYTHONPATH": str(pythonpath)}, pythonpath) if pythonpath else (None, None)
    return json.loads(run_efhq("build", "--dry-run", "--format", "json", data_root=root, env=env,
                               cwd=cwd).stdout)["stale"]


@pytest.mark.timeout(900)
def test_ui_staleness_equals_the_plan_after_a_setting_change_and_a_code_bump(tmp_path, make_video):
    videos = tmp_path / "videos"
    make_video(videos / "a.mp4", n=6)
    make_video(videos / "b.mp4", n=5, seed=1)
    root = tmp_path / "root"
    run_efhq("build", "--videos", str(videos), data_root=root)
    keys = ["a", "b"]

    port, log_path = free_port(), tmp_path / "webserver.log"
    proc = start_webserver(root, port, log_path)
    try:
        wait_for_location(proc, port, log_path)
        assert ui_plan(port, keys) == {} == dry_run(root)
        run_efhq("settings", "set", "pose_camera", "weak", data_root=root)
        expected = {k: ["pose_annotations", "pose_bins"] for k in keys}
        assert ui_plan(port, keys) == expected == dry_run(root)
    finally:
        stop_ui(proc)

    # A code-version bump: the same package with quality_scores' version changed, for the UI and the plan.
    code = tmp_path / "code"
    shutil.copytree(REPO / "efhq_assets", code / "efhq_assets", ignore=shutil.ignore_patterns("__pycache__"))
    registry = code / "efhq_assets" / "core" / "stages.py"
    version = stages.stage("quality_scores").code_version
    registry.write_text(registry.read_text().replace(f'"{version}"', f'"{version}-bumped"'))
    port, log_path = free_port(), tmp_path / "webserver2.log"
    proc = start_webserver(root, port, log_path, pythonpath=code)
    try:
        wait_for_location(proc, port, log_path)
        expected = {k: ["pose_annotations", "quality_scores", "pose_bins"] for k in keys}
        assert ui_plan(port, keys) == expected == dry_run(root, pythonpath=code)
    finally:
        stop_ui(proc)
