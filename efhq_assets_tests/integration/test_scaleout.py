"""Scale-out against real servers: a Dagster instance on PostgreSQL, steps on Celery workers (Redis broker,
a separate `gpu` queue), and the dagster-k8s executor config checked against its schema.

The test process starts PostgreSQL and Redis itself (Debian's `postgresql` and `redis-server` packages, on
127.0.0.1, free ports, temporary folders) and stops them at the end. Without the binaries the tests skip,
except under CI=true, where a missing server fails the run.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
VENV_BIN = Path(sys.executable).parent
PG_USER, PG_PASSWORD, PG_DB = "efhq", "efhq-test-password", "efhq"


def require(condition: bool, why: str) -> None:
    """Skip when a server is missing; under CI=true a missing server is a failure, not a skip."""
    if condition:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why} (CI=true: a missing server fails the run)")
    pytest.skip(why)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise TimeoutError(f"{what} not ready after {timeout} s")


# ---------------------------------------------------------------------------------------------- servers

@pytest.fixture(scope="session")
def postgres_server():
    initdbs = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    require(bool(initdbs), "PostgreSQL server binaries not installed (apt-get install postgresql)")
    bindir = Path(initdbs[-1]).parent
    base = Path(tempfile.mkdtemp(prefix="efhq-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root: run the server as the package's `postgres` user
        try:
            pg = pwd.getpwnam("postgres")
        except KeyError:
            require(False, "no `postgres` user to run PostgreSQL as (running as root)")
        os.chown(base, pg.pw_uid, pg.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data, pwfile, logfile = base / "data", base / "pw", base / "server.log"
    pwfile.write_text(PG_PASSWORD + "\n")
    if prefix:
        os.chown(pwfile, pg.pw_uid, pg.pw_gid)
    subprocess.run(prefix + [str(bindir / "initdb"), "-D", str(data), "-U", PG_USER, f"--pwfile={pwfile}",
                             "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync"],
                   check=True, capture_output=True, text=True, timeout=120)
    port = free_port()
    options = f"-k {base} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off"
    subprocess.run(prefix + [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(logfile), "-w", "-t", "60",
                             "-o", options, "start"], check=True, capture_output=True, text=True, timeout=90)
    try:
        import psycopg2

        # Over TCP with the password, as Dagster connects. CREATE DATABASE needs autocommit (no `with conn`).
        conn = psycopg2.connect(host="127.0.0.1", port=port, user=PG_USER, password=PG_PASSWORD, dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {PG_DB}")
        conn.close()
        yield {"EFHQ_PG_HOST": "127.0.0.1", "EFHQ_PG_PORT": str(port), "EFHQ_PG_USER": PG_USER,
               "EFHQ_PG_PASSWORD": PG_PASSWORD, "EFHQ_PG_DB": PG_DB}
    finally:
        subprocess.run(prefix + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server():
    exe = shutil.which("redis-server")
    require(exe is not None, "redis-server not installed (apt-get install redis-server)")
    import redis

    base = Path(tempfile.mkdtemp(prefix="efhq-redis-"))
    port = free_port()
    log = open(base / "redis.log", "w")
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--daemonize", "no", "--dir", str(base)], stdout=log, stderr=subprocess.STDOUT)
    try:
        client = redis.Redis(host="127.0.0.1", port=port)

        def up() -> bool:
            assert proc.poll() is None, (base / "redis.log").read_text()
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        wait_for(up, 30, "redis-server")
        yield f"redis://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(base, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- a data root on Postgres

def write_face_clip(path: Path, n: int = 6) -> Path:
    """A short clip of one real face (the astronaut still), moving a little."""
    from efhq_assets.demo.corpus import face_stills
    from efhq_assets.demo.segments import FRAME_SIZE, render_frame
    from efhq_assets.core.video import write_test_video

    still = face_stills()[0]
    background = np.full((FRAME_SIZE, FRAME_SIZE, 3), 90, np.uint8)
    frames = [render_frame(still, background, 300.0, (FRAME_SIZE / 2 + 4 * t, FRAME_SIZE / 2), 2.0 * t, False)[0]
              for t in range(n)]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_test_video(path, frames, fps=25.0)
    return path


@pytest.fixture(scope="module")
def pg_root(postgres_server, tmp_path_factory):
    """A data root whose instance is deploy/dagster_postgres.yaml, built once through the real CLI."""
    base = tmp_path_factory.mktemp("scaleout")
    videos, root = base / "videos", base / "root"
    write_face_clip(videos / "astroFace01.mp4")
    home = root / "dagster_home"
    home.mkdir(parents=True)
    # `efhq` seeds dagster.yaml only when absent, so the Postgres config must be in place before the first build.
    shutil.copy(DEPLOY / "dagster_postgres.yaml", home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if k not in {"EFHQ_DATA_ROOT", "DAGSTER_HOME"}}
    env.update(postgres_server)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "efhq_assets.cli", "build", "--videos", str(videos),
                           "--data-root", str(root), "--sample", "max:4"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"efhq build failed:\n{proc.stdout}\n{proc.stderr}"
    return {"root": root, "home": home, "env": postgres_server, "video_id": "astroFace01",
            "build_s": time.perf_counter() - t0}


@pytest.fixture
def pg_instance(pg_root, monkeypatch):
    import dagster as dg

    for k, v in pg_root["env"].items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("DAGSTER_HOME", str(pg_root["home"]))
    monkeypatch.setenv("EFHQ_DATA_ROOT", str(pg_root["root"]))
    with dg.DagsterInstance.from_config(str(pg_root["home"])) as instance:
        yield instance


def test_efhq_build_records_runs_and_materializations_in_postgres(pg_root, pg_instance):
    import dagster as dg
    import psycopg2
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    instance = pg_instance
    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
    # Nothing went to the SQLite storages a default instance would create under DAGSTER_HOME.
    assert not (pg_root["home"] / "history").exists()
    assert not (pg_root["home"] / "schedules").exists()

    video_id = pg_root["video_id"]
    assert instance.get_dynamic_partitions("video_files") == [video_id]
    records = instance.get_run_records(dg.RunsFilter(tags={"efhq/command": "build"}))
    assert records and all(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in records)
    partition_runs = [r for r in records if r.dagster_run.tags.get("dagster/partition") == video_id]
    assert len(partition_runs) == 1
    for key in ("source_videos", "decoded_frames", "face_detections", "pose_annotations", "manifest"):
        event = instance.get_latest_materialization_event(dg.AssetKey(key))
        assert event is not None, key
    pose = instance.get_latest_materialization_event(dg.AssetKey("pose_annotations"))
    assert pose.run_id == partition_runs[0].dagster_run.run_id
    assert pose.asset_materialization.partition == video_id
    assert pose.asset_materialization.metadata["faces"].value >= 1  # the astronaut's face was found and posed

    # The rows really are in PostgreSQL.
    env = pg_root["env"]
    with psycopg2.connect(host=env["EFHQ_PG_HOST"], port=int(env["EFHQ_PG_PORT"]), user=env["EFHQ_PG_USER"],
                          password=env["EFHQ_PG_PASSWORD"], dbname=env["EFHQ_PG_DB"]) as conn:
        with conn.cursor() as cur:
            cur.execute("select count(*) from runs where status = 'SUCCESS'")
            assert cur.fetchone()[0] == len(records)
            cur.execute("select count(*) from event_logs where dagster_event_type = 'ASSET_MATERIALIZATION' "
                        "and asset_key like %s and partition = %s", ('%pose_annotations%', video_id))
            assert cur.fetchone()[0] == 1
    conn.close()

    # And the manifest (data root side) agrees: lineage points at the Postgres-recorded run.
    proc = subprocess.run([sys.executable, "-m", "efhq_assets.cli", "sql", "--format", "csv", "--data-root",
                           str(pg_root["root"]), "select run_id from lineage where asset = 'pose_annotations'"],
                          cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[1:] == [pose.run_id]


# ---------------------------------------------------------------------------------------------- Celery

def start_worker(name: str, queue: str, env: dict, logdir: Path) -> tuple[subprocess.Popen, Path]:
    """`dagster-celery worker start` (the documented command) for one queue, in its own process group."""
    log = logdir / f"{name}.log"
    env = {**env, "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"}  # it execs `celery` from PATH
    cmd = [str(VENV_BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
           "-y", str(DEPLOY / "celery.yaml"), "-q", queue, "-n", name, "-l", "INFO", "--", "--concurrency=1"]
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, log


def stop_worker(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # the group this test created: dagster-celery and its celery worker
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# dagster-celery registers its task once per executor app in the submitting process (harmless, celery warns).
@pytest.mark.filterwarnings("ignore:Task name 'execute_plan' is already registered")
def test_celery_executor_runs_the_gpu_step_on_the_gpu_queue(redis_server, pg_root, pg_instance, tmp_path,
                                                            monkeypatch):
    import dagster as dg

    from efhq_assets import scaleout

    monkeypatch.setenv(scaleout.BROKER_ENV, f"{redis_server}/0")
    monkeypatch.setenv(scaleout.BACKEND_ENV, f"{redis_server}/1")
    env = dict(os.environ)  # DAGSTER_HOME, EFHQ_DATA_ROOT, EFHQ_PG_*, EFHQ_CELERY_* (set by the fixtures above)
    workers = {}
    try:
        for name, queue in (("efhq-cpu", scaleout.DEFAULT_QUEUE), ("efhq-gpu", scaleout.GPU_QUEUE)):
            workers[name] = start_worker(name, queue, env, tmp_path)

        def ready() -> bool:
            for proc, log in workers.values():
                assert proc.poll() is None, log.read_text()[-4000:]
            return all(re.search(r"\bready\.", log.read_text()) for _, log in workers.values())

        wait_for(ready, 90, "celery workers")

        job = dg.reconstructable(scaleout.celery_per_video_job)
        video_id = pg_root["video_id"]
        t0 = time.perf_counter()
        result = dg.execute_job(job, instance=pg_instance, tags={"dagster/partition": video_id, "efhq/command": "celery"},
                                raise_on_error=False)
        seconds = time.perf_counter() - t0
        logs = {n: log.read_text() for n, (_, log) in workers.items()}
        assert result.success, "\n".join(f"--- {n}\n{t[-6000:]}" for n, t in logs.items())
    finally:
        for proc, _ in workers.values():
            stop_worker(proc)

    # Which worker executed each step (recorded by dagster-celery in the run's event log).
    ran_on = {}
    for entry in pg_instance.all_logs(result.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        md = entry.dagster_event.engine_event_data.metadata if entry.dagster_event else {}
        if "Celery worker" in md:
            ran_on[entry.step_key] = md["Celery worker"].value.split("@")[0]
    gpu_steps = {"pose_annotations"}
    all_steps = {"source_videos", "decoded_frames", "face_detections", "pose_annotations", "quality_scores",
                 "pose_bins", "track_embeddings"}
    assert set(ran_on) == all_steps
    assert {k for k, w in ran_on.items() if w == "efhq-gpu"} == gpu_steps, ran_on
    assert "Submitting celery task for step \"pose_annotations\" to queue \"gpu\"" in "\n".join(
        e.message for e in pg_instance.all_logs(result.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT))
    assert "execute_plan" in logs["efhq-gpu"] and "succeeded" in logs["efhq-gpu"]

    # The steps wrote the shared data root: a second pose materialization for the partition, from this run.
    pose = pg_instance.get_latest_materialization_event(dg.AssetKey("pose_annotations"))
    assert pose.run_id == result.run_id and pose.asset_materialization.partition == video_id
    assert pose.asset_materialization.metadata["faces"].value >= 1
    print(f"celery run: {seconds:.1f} s")


# ---------------------------------------------------------------------------------------------- Kubernetes (no cluster)

def test_k8s_job_executor_config_and_gpu_op_tags_validate_against_dagster_k8s():
    import dagster as dg
    from dagster._config import process_config
    from dagster._core.execution.api import create_execution_plan
    from dagster_k8s import k8s_job_executor
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import (DagsterK8sJobConfig, UserDefinedDagsterK8sConfig, construct_dagster_k8s_job,
                                 get_user_defined_k8s_config)

    from efhq_assets import scaleout

    cfg = yaml.safe_load((DEPLOY / "k8s_executor.yaml").read_text())["execution"]["config"]
    checked = process_config(k8s_job_executor.config_schema.config_type, cfg)
    assert checked.success, [e.message for e in checked.errors]
    bad = process_config(k8s_job_executor.config_schema.config_type, {**cfg, "gpu_count": 1})
    assert not bad.success  # the schema really is strict: an unknown key is refused
    exc_cfg = checked.value

    # The k8s variant of the project's Definitions resolves, and its GPU step carries the GPU op tag.
    defs = scaleout.k8s_defs(cfg)
    job = defs.resolve_job_def("per_video_job")
    assert job.executor_def.name == "efhq_k8s"
    dg.Definitions.validate_loadable(defs)
    plan = create_execution_plan(job, run_config={})
    tags = {s.key: dict(s.tags) for s in plan.steps}
    gpu_steps = {k for k, t in tags.items() if scaleout.K8S_CONFIG_TAG in t}
    assert gpu_steps == {"pose_annotations"}

    # The tag parses through dagster-k8s's own validation (USER_DEFINED_K8S_JOB_CONFIG_SCHEMA), and the Job
    # dagster-k8s would create for the step asks for the GPU and lands on GPU nodes (same merge order as
    # K8sStepHandler: executor config < op tags < per_step_k8s_config).
    with pytest.raises(dg.DagsterInvalidConfigError):  # the tag's schema
        get_user_defined_k8s_config({scaleout.K8S_CONFIG_TAG: '{"container_confg": {}}'})
    with pytest.raises(Exception, match="resourcez"):  # the Kubernetes V1Container model
        get_user_defined_k8s_config({scaleout.K8S_CONFIG_TAG: '{"container_config": {"resourcez": {}}}'})
    context = K8sContainerContext(
        env_vars=exc_cfg["env_vars"], env_secrets=exc_cfg["env_secrets"], volume_mounts=exc_cfg["volume_mounts"],
        volumes=exc_cfg["volumes"], namespace=exc_cfg["job_namespace"],
        run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(exc_cfg["step_k8s_config"]))
    specs = {}
    for step_key in ("pose_annotations", "decoded_frames"):
        step_context = context.merge(K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(tags[step_key])))
        step_context = step_context.merge(K8sContainerContext(run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(
            exc_cfg["per_step_k8s_config"].get(step_key, {}))))
        k8s_job = construct_dagster_k8s_job(DagsterK8sJobConfig(job_image=exc_cfg["job_image"]), args=["dagster"],
                                            job_name=f"dagster-step-{step_key.replace('_', '-')}",
                                            user_defined_k8s_config=step_context.run_k8s_config)
        specs[step_key] = k8s_job.spec.template.spec
    gpu_pod, cpu_pod = specs["pose_annotations"], specs["decoded_frames"]
    assert gpu_pod.containers[0].resources.limits["nvidia.com/gpu"] == "1"
    assert gpu_pod.containers[0].resources.requests["nvidia.com/gpu"] == "1"
    assert gpu_pod.containers[0].resources.limits["memory"] == "8Gi"  # executor-wide limits kept
    assert gpu_pod.node_selector == {"nvidia.com/gpu.present": "true"}
    assert "nvidia.com/gpu" not in (cpu_pod.containers[0].resources.limits or {})
    assert not cpu_pod.node_selector
    assert [m.mount_path for m in gpu_pod.containers[0].volume_mounts] == ["/data/efhq_root"]
