"""Several partition runs at once, SQL answering throughout; SIGKILL mid-run then a clean re-run (issue 14)."""

import hashlib
import os
import signal
import subprocess
import sys
import time

from efhq_assets_tests.conftest import REPO, run_efhq

MATERIALIZE = """
import sys, dagster as dg
from efhq_assets import runner
from efhq_assets.core import stages
from efhq_assets.core.storage import DataRoot
from efhq_assets.definitions import defs
root = DataRoot.at(sys.argv[1]); instance = runner.prepare_instance(root)
assets = [defs.get_assets_def(k) for k in stages.PER_VIDEO]
resources = dict(defs.resources, storage=defs.resources["storage"].model_copy(update={"data_root": str(root.path)}))
result = dg.materialize(assets, partition_key=sys.argv[2], instance=instance, resources=resources,
                        run_config=runner.QUIET_RUN_CONFIG)
print("ok" if result.success else "failed")
"""


def data_hashes(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((root / "tables").rglob("*")) if p.is_file() and "lineage" not in p.parts}


def test_four_concurrent_partition_runs_while_sql_answers(tmp_path, make_video):
    videos = tmp_path / "videos"
    keys = [f"v{i}" for i in range(4)]
    for i, k in enumerate(keys):
        make_video(videos / f"{k}.mp4", n=30 + i, seed=i)
    root = tmp_path / "root"
    run_efhq("build", "--videos", str(videos), data_root=root)  # registers partitions, builds the manifest
    for k in keys:  # start from nothing for these partitions
        for table in ("frames", "faces", "poses"):
            (root / "tables" / table / f"{k}.parquet").unlink()
    env = {k: v for k, v in os.environ.items() if k not in {"EFHQ_DATA_ROOT", "DAGSTER_HOME"}}
    procs = [subprocess.Popen([sys.executable, "-c", MATERIALIZE, str(root), k], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in keys]
    answered = 0
    while any(p.poll() is None for p in procs):
        out = run_efhq("sql", "select count(*) from videos", "--format", "csv", data_root=root).stdout
        assert out.splitlines()[1] == "4"
        answered += 1
    outputs = [p.communicate() for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert all(o[0].strip().endswith("ok") for o in outputs)
    assert not any("locked" in o[1].lower() for o in outputs), [o[1][-500:] for o in outputs]
    assert answered >= 1
    run_efhq("build", data_root=root)
    out = run_efhq("sql", "select video_id, count(*) from frames group by 1 order by 1", "--format", "csv",
                   data_root=root).stdout
    assert out.splitlines()[1:] == [f"v{i},{30 + i}" for i in range(4)]


def test_sigkill_mid_run_then_rerun_gives_identical_files(tmp_path, make_video):
    from efhq_assets.core.models.sample_images import astronaut_bgr
    from efhq_assets.core.video import write_test_video

    import numpy as np

    videos = tmp_path / "videos"
    videos.mkdir()
    img = astronaut_bgr()
    write_test_video(videos / "astro.mp4", [np.ascontiguousarray(np.roll(img, i, axis=1)) for i in range(24)])
    make_video(videos / "plain.mp4", n=20)
    reference = tmp_path / "reference"
    run_efhq("build", "--videos", str(videos), data_root=reference)
    expected = data_hashes(reference)

    root = tmp_path / "root"
    env = {k: v for k, v in os.environ.items() if k not in {"EFHQ_DATA_ROOT", "DAGSTER_HOME"}}
    proc = subprocess.Popen([sys.executable, "-m", "efhq_assets.cli", "build", "--videos", str(videos),
                             "--data-root", str(root)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (root / "tables" / "faces").exists():
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # mid-run: some tables written, others not
    proc.wait()
    # No half-written file where a reader looks: every visible parquet file is complete.
    import polars as pl

    for path in (root / "tables").rglob("*.parquet"):
        if not path.name.startswith(".tmp-"):
            pl.read_parquet(path)
    run_efhq("build", "--videos", str(videos), data_root=root)
    assert data_hashes(root) == {k.replace(str(reference), str(root)): v for k, v in expected.items()}
    assert not [p for p in root.rglob(".tmp-*")], "stray temp files after the re-run"
