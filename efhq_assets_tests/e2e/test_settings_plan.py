"""Settings and the plan through the real CLI: `efhq settings`, `efhq build --dry-run`, and a non-editable install."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from efhq_assets_tests.conftest import REPO, run_efhq


def plan(root) -> dict:
    return json.loads(run_efhq("build", "--dry-run", "--format", "json", data_root=root).stdout)


def test_a_wrong_setting_is_refused_with_a_message_and_nothing_is_saved(tmp_path):
    root = tmp_path / "root"
    run_efhq("settings", "set", "sampling", "max:4", data_root=root)
    before = (root / "catalog" / "settings.json").read_bytes()
    for args in (("settings", "set", "detector", "mtcnnx"), ("settings", "set", "colour", "red"),
                 ("build", "--detector", "mtcnnx"), ("build", "--pose-camera", "f:-1", "--sample", "fps:5")):
        proc = run_efhq(*args, data_root=root, check=False)
        assert proc.returncode == 2, args
        assert proc.stderr.startswith("efhq ") and "Traceback" not in proc.stderr, proc.stderr
        assert (root / "catalog" / "settings.json").read_bytes() == before, args
    shown = json.loads(run_efhq("settings", "--format", "json", data_root=root).stdout)
    assert shown["sampling"] == "max:4" and shown["detector"] == "mtcnn"


def test_settings_set_and_unset_and_the_plan_follows(tmp_path, make_video):
    videos = tmp_path / "videos"
    make_video(videos / "a.mp4", n=6)
    make_video(videos / "b.mp4", n=5, seed=1)
    root = tmp_path / "root"
    run_efhq("build", "--videos", str(videos), "--render-exports", data_root=root)
    assert json.loads(run_efhq("settings", "--format", "json", data_root=root).stdout)["render_exports"] is True
    nothing = plan(root)
    assert nothing["stale_videos"] == 0 and not nothing["unpartitioned_stale"]

    # A setting read by one stage makes exactly that stage and its downstream stale, for every video.
    run_efhq("settings", "set", "pose_camera", "weak", data_root=root)
    after = plan(root)
    assert after["stale"] == {"a": ["pose_annotations", "pose_bins"], "b": ["pose_annotations", "pose_bins"]}
    assert after["runs"] == [{"stages": ["pose_annotations", "pose_bins"], "videos": ["a", "b"]}]
    assert after["unpartitioned_stale"]
    # --no-render-exports turns the setting off again (it is saved, like every build option).
    report = json.loads(run_efhq("build", "--no-render-exports", data_root=root).stdout)
    assert report["ran"] == 2
    assert json.loads(run_efhq("settings", "--format", "json", data_root=root).stdout)["render_exports"] is False
    assert plan(root)["stale_videos"] == 0
    status = run_efhq("status", data_root=root).stdout
    assert "pose_camera = 'weak'" in status and "sampling = 'all'  (default)" in status

    run_efhq("settings", "unset", "pose_camera", data_root=root)
    assert plan(root)["stale"] == {"a": ["pose_annotations", "pose_bins"], "b": ["pose_annotations", "pose_bins"]}


def test_ui_finds_dagster_beside_the_interpreter_without_an_activated_venv(monkeypatch):
    from efhq_assets import cli

    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no venv on PATH, as in a fresh shell
    found = Path(cli.dagster_executable())
    assert found == Path(sys.executable).parent / "dagster" and os.access(found, os.X_OK)


def test_a_non_editable_install_seeds_the_instance_template(tmp_path):
    """`pip install .` (not editable), run from another folder: the dagster.yaml template is package data."""
    target, source = tmp_path / "site", tmp_path / "source"
    # built from a copy: setuptools writes build/ beside pyproject.toml, which must not be the checkout
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__"),
                    symlinks=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target",
                    str(target), str(source)], check=True, capture_output=True, timeout=300)
    assert (target / "efhq_assets" / "dagster.yaml").is_file()
    for data in ("core/models/manifest.json", "core/data/facemesh_reference.txt"):  # package data read at run time
        assert (target / "efhq_assets" / data).is_file(), data
    env = {k: v for k, v in os.environ.items() if k not in {"EFHQ_DATA_ROOT", "DAGSTER_HOME"}}
    env["PYTHONPATH"] = str(target)  # ahead of the editable checkout
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = ("import efhq_assets, sys; from efhq_assets.cli import main; "
            "assert 'site' in efhq_assets.__file__, efhq_assets.__file__; sys.exit(main(sys.argv[1:]))")
    proc = subprocess.run([sys.executable, "-c", code, "build", "--dry-run", "--data-root", str(tmp_path / "root")],
                          cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    loads = ("import efhq_assets.core.face_models_3d as f, efhq_assets.core.models.registry as r; "
             "assert 'site' in f.__file__ and f.facemesh_reference().shape == (478, 3) and 'mtcnn' in r.MANIFEST")
    proc = subprocess.run([sys.executable, "-c", loads], cwd=elsewhere, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    seeded = (tmp_path / "root" / "dagster_home" / "dagster.yaml").read_text()
    assert seeded == (REPO / "dagster.yaml").read_text() and "max_concurrent_runs" in seeded


def test_dagster_project_conventions_dg_check_and_list_defs():
    """`[tool.dg]` in pyproject.toml: `dg check defs` and `dg list defs` work from the checkout."""
    dg_cli = Path(sys.executable).parent / "dg"
    env = {k: v for k, v in os.environ.items() if k not in {"EFHQ_DATA_ROOT", "DAGSTER_HOME"}}
    env["COLUMNS"] = "250"
    check = subprocess.run([str(dg_cli), "check", "defs"], cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=300)
    assert check.returncode == 0 and "All definitions loaded successfully" in check.stdout + check.stderr
    listed = subprocess.run([str(dg_cli), "list", "defs"], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=300)
    assert listed.returncode == 0, listed.stderr
    for name in ("per_video_job", "unpartitioned_job", "video_files_sensor", "setting_pose_camera", "manifest"):
        assert name in listed.stdout, name
