"""Orchestration overhead: `efhq build` (Dagster, several partitions per run) vs a plain Python loop, same work.

Run: .venv/bin/python benchmarks/overhead.py [--clips 20] [--frames 14] [--work-dir DIR] [--keep]
Progress goes to stderr; the figures are ONE JSON object on the last stdout line.

Input: `--clips` short clips (512x512, 25 fps, H.264, `--frames` frames each) of real faces, made with
the demo corpus' renderer (`demo.corpus.face_stills` + `demo.segments.steady_segment`: a gentle drift with
a known roll sweep), one face per clip, so every stage has work.

Measured in the same run, each in its own fresh data root and its own process (so both pay the
interpreter start, imports and model loading):

- build: `python -m efhq_assets.cli build --videos <folder> --data-root A` (what a user runs); each
  stderr line is timestamped as it arrives, giving the start-up time (until "N videos to check", i.e.
  after imports, instance, catalog and model loading), the per-video runs (up to 50 videos per
  `dg.materialize`, runner.build) and the unpartitioned run (identities, dataset card, splits,
  verification, manifest). After it, A's Dagster event log gives each step's duration, so Dagster's
  share = the per-video runs' wall - the sum of their steps.
- loop: this file with `--loop-only`: the same work as the build, without Dagster, with the models
  loaded once. Per video: probe + hash (probe_source_video) -> decode frames
  (decode_frames) -> analyse_video -> pose_rows -> score_video -> bin_rows -> track_embedding_rows,
  writing the same tables (and lineage rows) with write_table. Then what the build's unpartitioned run
  materializes (runner.UNPARTITIONED_ASSETS), each with the functions its asset body calls, on the same
  inputs: face_identities (core.identity_tables.update_identities), dataset_card (core.card.render_card),
  split_gan / split_eg3d / split_t2i / split_reenactment (core.tasks.exports.candidates, then core.tasks' select_*
  and reenactment_rows, write_split_table), verification_pairs (core.tasks.exports.write_verification_pairs),
  verification_report (core.tasks.metrics.pair_scores over embed_aligned, verification_report_rows), and
  the manifest (compact_manifest). Each step is timed (loop.unpartitioned_step_s). The plain helpers it
  takes from core/ (track_embedding_rows, score_video, update_identities, candidates,
  write_verification_pairs, embed_aligned, ...) are functions, not assets: nothing of Dagster runs in the loop. Left out: the
  asset checks' one-line filters and the UI metadata (microseconds), and the training exports, which
  builds do not render (exports_in_build is false in a fresh data root).
- a second `efhq build` on A with nothing changed (the up-to-date check).
- daemon: `efhq ui` (webserver, daemon, code server) on a fresh data root D; once its sensor daemon is
  healthy the videos folder is registered and nothing else is typed. The sensor plans the same stale
  stages as `efhq build`, launches the per-video runs (up to 50 videos per run) and, once they end, the
  unpartitioned run. daemon_wall_s = registration -> every video in the manifest and the unpartitioned
  stages up to date; overhead_ratio_daemon = daemon_wall_s / loop wall (target <= 1.5), with the same
  row and content checks against the loop (rows_match_daemon, tables_identical_daemon).

overhead_ratio = build wall / loop wall (target <= 1.5): both do the same work, so the ratio is what
Dagster and the runner add (runs, events, resources, the up-to-date bookkeeping). rows_match compares
the row counts of every table the loop writes, including the splits and the verification tables;
tables_identical / files_identical compare their contents and the card / benchmark files.
overhead_ratio_same_work = the same ratio with the card, split and verification steps left out of BOTH
sides (build wall - those steps' durations in its event log) / (loop wall - the loop's time in them):
the per-video part plus identities and manifest, comparable with the figure of the same name from
before the loop did those steps (when only the build's side was reduced).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FPS = 25.0
from efhq_assets.core.stages import PER_VIDEO as PER_VIDEO_STEPS  # noqa: E402  (the stage registry)
from efhq_assets.core.stages import UNPARTITIONED as UNPARTITIONED_STEPS  # noqa: E402
TASK_STEPS = ("dataset_card", "split_gan", "split_eg3d", "split_t2i", "split_reenactment", "verification_pairs",
              "verification_report")  # left out of both sides in overhead_ratio_same_work
COMPARED = ("videos", "clips", "frames", "faces", "landmarks", "poses", "quality", "bins", "track_embeddings",
            "identities", "identity_merges", "split_gan", "split_eg3d", "split_t2i", "split_reenactment",
            "verification_pairs", "verification_report")
COMPARED_FOLDERS = ("card", "tasks/verification")  # the card's files; the verification benchmark's PNGs and TSVs


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- clips

def make_clips(folder: Path, n_clips: int, n_frames: int, seed: int = 0, prefix: str = "clip") -> float:
    import numpy as np

    from efhq_assets.demo import corpus, segments
    from efhq_assets.core.video import write_test_video

    t0 = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    stills = corpus.face_stills()
    rng = np.random.default_rng(seed)
    tints = [(150, 110, 90), (90, 140, 100), (100, 100, 150), (120, 90, 90)]
    for k in range(n_clips):
        still = stills[k % len(stills)]
        frames, _, _, _ = segments.steady_segment(still, rng, n_frames, tints[k % len(tints)], bool(k % 2), 8.0)
        write_test_video(folder / f"{prefix}_{k:02d}_{still.identity}.mp4", frames, fps=FPS)
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- the plain loop

def loop_only(videos: Path, data_root: Path) -> dict:
    """The per-video chain without Dagster (runs in its own process: `--loop-only`)."""
    t_imports = time.perf_counter()
    import polars as pl

    from efhq_assets.core import card
    from efhq_assets.core import identities as ident
    from efhq_assets.core.catalog import refresh_catalog, save_source_config
    from efhq_assets.core.frames import decode_frames, parse_sampling
    from efhq_assets.core.lineage import record_lineage
    from efhq_assets.core.source_videos import probe_source_video, write_source_video
    from efhq_assets.core.bins import bin_rows
    from efhq_assets.core.embedding_cache import cache_path
    from efhq_assets.core.faces import analyse_video
    from efhq_assets.core.pose_annotations import pose_rows, video_camera
    from efhq_assets.core.settings import load_settings
    from efhq_assets.core.sources import Sha256Cache, SourceConfig
    from efhq_assets.core.storage import DataRoot, compact_manifest, empty_frame, read_rows, write_table
    from efhq_assets.core.tasks.eg3d import SPLIT_EG3D_COLUMNS, select_eg3d
    from efhq_assets.core.tasks.gan import SPLIT_GAN_COLUMNS, select_gan
    from efhq_assets.core.tasks.metrics import VERIFICATION_REPORT_COLUMNS, pair_scores, verification_report_rows
    from efhq_assets.core.tasks.reenactment import SPLIT_REENACTMENT_COLUMNS, reenactment_rows
    from efhq_assets.core.tasks.t2i import SPLIT_T2I_COLUMNS, select_t2i
    from efhq_assets.core.identity_tables import track_embedder, track_embedding_rows, update_identities
    from efhq_assets.core.quality_scores import score_video
    from efhq_assets.core.tasks.exports import (candidates, embed_aligned, exports_in_build, verification_embedder,
                                                write_split_table, write_verification_pairs)
    # plain functions and constants (their modules import dagster; nothing of it runs here)
    from efhq_assets.defs.card import THUMBS_PER_BIN
    from efhq_assets.defs.pose import ESTIMATORS
    from efhq_assets.defs.resources import FaceAnalysis

    out: dict = {"import_s": round(time.perf_counter() - t_imports, 2)}
    t0 = time.perf_counter()
    root = DataRoot.at(data_root).ensure()
    save_source_config(root, SourceConfig(videos=[str(videos.resolve())]))
    catalog = refresh_catalog(root)
    settings = load_settings(root)
    policy = parse_sampling(settings.sampling)
    out["catalog_s"] = round(time.perf_counter() - t0, 3)

    t0 = time.perf_counter()
    fa = FaceAnalysis().resolved(settings)
    models = fa.models()
    embedder = track_embedder()
    verification_embedder()  # verification_report's (dlib's, the one above, unless ArcFace weights are present)
    out["model_load_s"] = round(time.perf_counter() - t0, 2)

    def frame(rows, table):
        return pl.DataFrame(rows, infer_schema_length=None) if rows else empty_frame(table)

    def lineage(asset, key, rows, extra=None):
        record_lineage(root, asset, key, "loop", "loop", "", rows, extra)

    stage_s: dict[str, float] = defaultdict(float)
    per_video: list[float] = []
    t_videos = time.perf_counter()
    for key in catalog.partition_keys():
        tv = time.perf_counter()
        marks_t = [time.perf_counter()]

        def mark(stage):
            now = time.perf_counter()
            stage_s[stage] += now - marks_t[0]
            marks_t[0] = now

        video, clips = catalog.video(key), catalog.clips_of(key)
        result = probe_source_video(video, clips, Sha256Cache(root.catalog / "sha256_cache.json"))
        write_source_video(root, result)
        lineage("source_videos", key, len(result.clips))
        mark("probe")
        v, clips = read_rows(root, "videos", key)[0], read_rows(root, "clips", key)
        df, _ = decode_frames(v, clips, policy)
        write_table(root, "frames", key, df if df is not None else empty_frame("frames"))
        lineage("decoded_frames", key, df.height if df is not None else 0)
        mark("decode")
        faces, marks = analyse_video(v, clips, policy, models, fa.efhq_min_score, fa.efhq_min_side,
                                     batch=fa.batch, detect_stride=fa.detect_stride)
        faces_df = frame(faces, "faces")
        if faces:
            faces_df = faces_df.with_columns(detector_sha256=pl.lit(models.detector.weights_sha256))
        write_table(root, "faces", key, faces_df)
        write_table(root, "landmarks", key, frame(marks, "landmarks"))
        lineage("face_detections", key, len(faces))
        mark("analyse")
        poses = pose_rows(marks, ESTIMATORS, camera=video_camera(v))  # as defs/pose.py with the default setting
        write_table(root, "poses", key, frame(poses, "poses"))
        lineage("pose_annotations", key, len(poses))
        mark("pose")
        quality = score_video(v, faces)
        write_table(root, "quality", key, frame(quality, "quality"))
        lineage("quality_scores", key, len(quality))
        mark("quality")
        bins = bin_rows(poses, {})
        write_table(root, "bins", key, frame(bins, "bins"))
        lineage("pose_bins", key, len(bins))
        mark("bins")
        emb = track_embedding_rows(v, faces, clips, embedder)
        write_table(root, "track_embeddings", key, frame(emb, "track_embeddings"))
        lineage("track_embeddings", key, len(emb))
        mark("embeddings")
        per_video.append(time.perf_counter() - tv)
    out["videos"] = len(per_video)
    out["per_video_compute_s"] = round(statistics.mean(per_video), 3) if per_video else 0.0
    out["videos_total_s"] = round(time.perf_counter() - t_videos, 2)
    out["stage_s"] = {k: round(v, 2) for k, v in stage_s.items()}

    # what the build's unpartitioned run materializes, in its order, each as its asset body does it
    step_s: dict[str, float] = {}
    t_unpart = time.perf_counter()

    def done(step, t_start):
        step_s[step] = round(time.perf_counter() - t_start, 3)

    t0 = time.perf_counter()  # face_identities
    df, _ = update_identities(root)
    lineage("face_identities", "all", df.height, {"method": ident.method_name()})
    done("face_identities", t0)

    t0 = time.perf_counter()
    rendered = card.render_card(root, root.path / "card", THUMBS_PER_BIN)
    lineage("dataset_card", "all", len(rendered["bins"]))
    done("dataset_card", t0)

    if exports_in_build(root):  # never in the benchmark's fresh data roots
        raise RuntimeError("render_exports is set: the loop does not render the training exports")
    for table, select, columns in (("split_gan", select_gan, SPLIT_GAN_COLUMNS),
                                   ("split_eg3d", select_eg3d, SPLIT_EG3D_COLUMNS),
                                   ("split_t2i", select_t2i, SPLIT_T2I_COLUMNS),
                                   ("split_reenactment", lambda c: reenactment_rows(c)[0], SPLIT_REENACTMENT_COLUMNS)):
        t0 = time.perf_counter()
        df = write_split_table(root, table, select(candidates(root)), columns)
        lineage(table, "all", df.height)
        done(table, t0)

    t0 = time.perf_counter()  # verification_pairs
    df, _ = write_verification_pairs(root)
    lineage("verification_pairs", "all", df.height)
    done("verification_pairs", t0)

    t0 = time.perf_counter()  # verification_report
    pairs = read_rows(root, "verification_pairs", "all")
    images = root.tasks / "verification"
    model, scores = pair_scores(pairs, lambda paths: embed_aligned([images / p for p in paths],
                                                                  cache_path(root, "verification_embeddings")))
    report = verification_report_rows(pairs, scores, model) if pairs else []
    df = write_split_table(root, "verification_report", report, VERIFICATION_REPORT_COLUMNS)
    lineage("verification_report", "all", df.height, {"embedder": model})
    done("verification_report", t0)

    t0 = time.perf_counter()
    stats = compact_manifest(root)
    lineage("manifest", "all", sum(stats["tables"].values()))
    done("manifest", t0)
    out["unpartitioned_step_s"] = step_s
    out["unpartitioned_s"] = round(time.perf_counter() - t_unpart, 2)
    out["identities_s"], out["manifest_s"] = step_s["face_identities"], step_s["manifest"]
    out["rows"] = {k: v for k, v in stats["tables"].items() if v}
    return out


# --------------------------------------------------------------------------- prototype: one resolved job

def job_only(videos: Path, data_root: Path) -> dict:
    """Prototype of a cheaper build loop (`--job-only`): the same Dagster runs, one per partition, but through
    `per_video_job` resolved once from `defs` and `execute_in_process`, instead of a `dg.materialize` per
    partition (which builds a new Definitions + asset job each call). Everything else as runner.build."""
    t_imports = time.perf_counter()
    from efhq_assets import runner
    from efhq_assets.core.catalog import refresh_catalog, save_source_config
    from efhq_assets.core.sources import SourceConfig
    from efhq_assets.core.storage import DataRoot
    from efhq_assets.definitions import defs

    out: dict = {"import_s": round(time.perf_counter() - t_imports, 2)}
    root = DataRoot.at(data_root)
    instance = runner.prepare_instance(root)
    save_source_config(root, SourceConfig(videos=[str(videos.resolve())]))
    keys = refresh_catalog(root).partition_keys()
    instance.add_dynamic_partitions("video_files", keys)
    resources = dict(defs.resources, storage=defs.resources["storage"].model_copy(update={"data_root": str(root.path)}))
    resources["face_analysis"].models()
    t0 = time.perf_counter()
    job = defs.get_job_def("per_video_job")
    out["resolve_job_s"] = round(time.perf_counter() - t0, 3)
    per = []
    for key in keys:
        t0 = time.perf_counter()
        result = job.execute_in_process(partition_key=key, instance=instance, run_config=runner.QUIET_RUN_CONFIG,
                                        raise_on_error=False, tags={"efhq/command": "build"})
        per.append(time.perf_counter() - t0)
        if not result.success:
            raise RuntimeError(f"{key} failed")
    out["per_partition_s"] = round(statistics.mean(per), 3)
    t0 = time.perf_counter()
    runner.refresh_unpartitioned(root, instance, resources)
    out["unpartitioned_s"] = round(time.perf_counter() - t0, 2)
    return out


# --------------------------------------------------------------------------- the build, watched

def run_watched(cmd: list[str], env: dict | None = None) -> tuple[float, list[tuple[float, str]], str, int]:
    """Run a command; return (wall s, [(s since start, stderr line)], stdout, rc)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines: list[tuple[float, str]] = []
    stdout_chunks: list[str] = []
    reader = threading.Thread(target=lambda: stdout_chunks.append(proc.stdout.read()), daemon=True)
    reader.start()
    for line in proc.stderr:
        lines.append((time.perf_counter() - t0, line.rstrip("\n")))
    rc = proc.wait()
    reader.join()
    return time.perf_counter() - t0, lines, "".join(stdout_chunks), rc


def _run_records(data_root: Path):
    from efhq_assets import runner
    from efhq_assets.core.storage import DataRoot

    return runner.prepare_instance(DataRoot(data_root)).get_run_records()


def event_log_breakdown(data_root: Path, exclude_runs: set[str] = frozenset()) -> dict:
    """Per-run wall vs the sum of its steps' durations, from the data root's Dagster event log."""
    from efhq_assets import runner
    from efhq_assets.core.storage import DataRoot

    instance = runner.prepare_instance(DataRoot(data_root))
    import dagster as dg

    partition_runs, other_runs = [], []
    step_totals: dict[str, float] = defaultdict(float)
    for record in instance.get_run_records():
        run = record.dagster_run
        if run.run_id in exclude_runs:
            continue
        starts, steps = {}, {}
        first = last = None
        for entry in instance.all_logs(run.run_id):
            first = entry.timestamp if first is None else min(first, entry.timestamp)
            last = entry.timestamp if last is None else max(last, entry.timestamp)
            ev = entry.dagster_event
            if ev is None:
                continue
            if ev.event_type == dg.DagsterEventType.STEP_START:
                starts[ev.step_key] = entry.timestamp
            elif ev.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
                steps[ev.step_key] = entry.timestamp - starts.get(ev.step_key, entry.timestamp)
        for k, v in steps.items():
            step_totals[k] += v
        item = {"run_wall_s": (record.end_time or last) - (record.start_time or first),
                "log_span_s": last - first, "steps_s": sum(steps.values()), "steps": steps}
        ranged = run.tags.get("dagster/asset_partition_range_start")
        (partition_runs if run.tags.get("dagster/partition") or ranged else other_runs).append(item)
    return {"partition_runs": partition_runs, "other_runs": other_runs,
            "step_totals_s": {k: round(v, 2) for k, v in sorted(step_totals.items())}}


# --------------------------------------------------------------------------- main

def _graphql(port: int, query: str) -> dict:
    import urllib.request

    req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", json.dumps({"query": query}).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)["data"]


DAEMON_HEALTH = "{ instance { daemonHealth { allDaemonStatuses { daemonType healthy } } } }"


def daemon_run(videos: Path, data_root: Path, env: dict, n_videos: int, timeout_s: float = 3600) -> dict:
    """The daemon path, same work as the loop: `efhq ui` (dagster dev: webserver, daemon, code server) on a fresh
    data root. Once its sensor daemon is healthy, the videos folder is registered (sources.json, what
    `efhq build --videos` saves) and nothing else is typed: the sensor plans, launches the per-video runs (up
    to 50 videos each) and then the unpartitioned run. Wall = registration -> the manifest holds every video
    and the unpartitioned stages are up to date (core/plan.py). Each run pays its own process start and model
    loading, as the loop pays its own."""
    import socket
    import urllib.error

    from efhq_assets.core import plan
    from efhq_assets.core.catalog import save_source_config
    from efhq_assets.core.sources import SourceConfig
    from efhq_assets.core.storage import DataRoot, NoManifestError, query

    root = DataRoot(data_root).ensure()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log_path = data_root.parent / "daemon.log"
    cmd = [sys.executable, "-m", "efhq_assets.cli", "ui", "--port", str(port), "--data-root", str(data_root)]
    started = time.perf_counter()
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                start_new_session=True)
    out: dict = {}
    try:
        while True:  # the webserver answers, and the sensor daemon reports healthy
            if proc.poll() is not None or time.perf_counter() - started > 600:
                raise RuntimeError(f"efhq ui did not come up:\n{log_path.read_text()[-3000:]}")
            try:
                statuses = _graphql(port, DAEMON_HEALTH)["instance"]["daemonHealth"]["allDaemonStatuses"]
                if any(d["daemonType"] == "SENSOR" and d["healthy"] for d in statuses):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError, KeyError, TypeError, ValueError):
                pass
            time.sleep(1)
        out["daemon_startup_s"] = round(time.perf_counter() - started, 2)
        save_source_config(root, SourceConfig(videos=[str(videos.resolve())]))
        t0 = time.perf_counter()
        while True:
            try:
                ok = query(root, "select count(*) from videos where status = 'ok'")[1][0][0]
            except NoManifestError:
                ok = 0
            if ok == n_videos and not plan.unpartitioned_stale(root):
                break
            if proc.poll() is not None or time.perf_counter() - t0 > timeout_s:
                raise RuntimeError(f"the daemon did not catch up ({ok} videos)\n{log_path.read_text()[-3000:]}")
            time.sleep(1)
        out["daemon_wall_s"] = round(time.perf_counter() - t0, 2)
    finally:
        try:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=60)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, 9)
    records = _run_records(data_root)
    out["daemon_runs"] = {job: sum(1 for r in records if r.dagster_run.job_name == job)
                          for job in sorted({r.dagster_run.job_name for r in records})}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--frames", type=int, default=14)
    parser.add_argument("--work-dir", default=None)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--loop-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--job-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-prototype", action="store_true", help="skip the resolved-job prototype run")
    parser.add_argument("--no-daemon", action="store_true", help="skip the daemon (efhq ui) measurement")
    parser.add_argument("--add-clips", type=int, default=2,
                        help="clips added before a third build (0: skip it)")
    parser.add_argument("--videos-dir", help=argparse.SUPPRESS)
    parser.add_argument("--data-root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loop_only:
        print(json.dumps(loop_only(Path(args.videos_dir), Path(args.data_root))))
        return 0
    if args.job_only:
        print(json.dumps(job_only(Path(args.videos_dir), Path(args.data_root))))
        return 0

    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="efhq-overhead-"))
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    videos, root_build, root_loop, root_job = (work / "videos", work / "build_root", work / "loop_root",
                                               work / "job_root")
    out: dict = {"clips": args.clips, "frames_per_clip": args.frames, "frame_size": 512, "cpus": os.cpu_count()}
    env = dict(os.environ)
    env.pop("EFHQ_DATA_ROOT", None)
    env.pop("DAGSTER_HOME", None)
    try:
        log(f"overhead: {args.clips} clips x {args.frames} frames under {work}")
        out["make_clips_s"] = round(make_clips(videos, args.clips, args.frames), 1)
        log(f"  clips written in {out['make_clips_s']} s")

        # the loop first, then the build (each pays its own process start, imports and model loading)
        wall, lines, stdout, rc = run_watched([sys.executable, str(Path(__file__).resolve()), "--loop-only",
                                               "--videos-dir", str(videos), "--data-root", str(root_loop)], env)
        if rc != 0:
            raise RuntimeError("loop failed:\n" + "\n".join(line for _, line in lines[-20:]))
        loop = json.loads(stdout.strip().splitlines()[-1])
        out["loop_wall_s"] = round(wall, 2)
        out["loop"] = loop
        out["loop_startup_s"] = round(wall - loop["videos_total_s"] - loop["unpartitioned_s"], 2)
        out["loop_unpartitioned_s"] = loop["unpartitioned_s"]
        log(f"  loop: {wall:.2f} s (models {loop['model_load_s']} s, {loop['per_video_compute_s']} s per video, "
            f"unpartitioned {loop['unpartitioned_s']} s: {loop['unpartitioned_step_s']})")

        cmd = [sys.executable, "-m", "efhq_assets.cli", "build", "--videos", str(videos), "--data-root", str(root_build)]
        wall, lines, stdout, rc = run_watched(cmd, env)
        if rc != 0:
            raise RuntimeError("build failed:\n" + "\n".join(line for _, line in lines[-20:]))
        out["build_wall_s"] = round(wall, 2)
        out["build_summary"] = json.loads(stdout.strip().splitlines()[-1])
        started = next(t for t, line in lines if "videos to check" in line)
        part = [(t, line) for t, line in lines if "] " in line and ": ok (" in line]
        part_s = [float(line.rsplit("(", 1)[1].split(" s)")[0]) for _, line in part]
        done_parts = part[-1][0] if part else started
        out["build_startup_s"] = round(started, 2)  # process start, imports, instance, catalog, model loading
        out["build_partitions_s"] = round(done_parts - started, 2)
        out["build_per_partition_s"] = round((done_parts - started) / max(len(part), 1), 3)
        out["build_unpartitioned_s"] = round(wall - done_parts, 2)  # identities + card + manifest run, exit
        log(f"  build: {wall:.2f} s (start-up {started:.2f} s, {out['build_per_partition_s']} s per partition, "
            f"unpartitioned {out['build_unpartitioned_s']} s)")

        breakdown = event_log_breakdown(root_build)
        runs = breakdown["partition_runs"]
        n_videos = max(len(part), 1)
        out["build_partition_runs"] = len(runs)  # Dagster runs for the per-video assets
        out["build_per_partition_steps_s"] = round(sum(r["steps_s"] for r in runs) / n_videos, 3)
        out["build_per_partition_run_wall_s"] = round(sum(r["run_wall_s"] for r in runs) / n_videos, 3)
        # each "ok (x s)" line: its run's wall time / the videos in that run
        out["build_per_partition_materialize_s"] = round(statistics.mean(part_s), 3) if part_s else None
        out["build_step_totals_s"] = breakdown["step_totals_s"]
        steps = breakdown["step_totals_s"]
        out["build_unpartitioned_steps_s"] = round(sum(steps.get(k, 0.0) for k in UNPARTITIONED_STEPS), 2)
        # each unpartitioned step: its duration in the build's event log and in the loop
        out["unpartitioned_steps_s"] = {k: {"build": steps.get(k), "loop": loop["unpartitioned_step_s"].get(k)}
                                        for k in UNPARTITIONED_STEPS}
        card_s = round(sum(steps.get(k, 0.0) for k in TASK_STEPS), 2)
        loop_card_s = round(sum(loop["unpartitioned_step_s"].get(k, 0.0) for k in TASK_STEPS), 2)
        out["build_extra_assets_s"] = card_s  # dataset card, splits, verification (the loop now does them too)
        out["loop_extra_assets_s"] = loop_card_s

        built = _manifest_rows(root_build)
        out["rows_build"] = {k: built.get(k, 0) for k in COMPARED}
        out["rows_match"] = out["rows_build"] == {k: loop["rows"].get(k, 0) for k in COMPARED}
        if not out["rows_match"]:
            out["rows_loop"] = {k: loop["rows"].get(k, 0) for k in COMPARED}
        build_digests, loop_digests = _table_digests(root_build), _table_digests(root_loop)
        out["tables_identical"] = all(build_digests[k] == loop_digests[k] for k in COMPARED)
        out["tables_differing"] = [k for k in COMPARED if build_digests[k] != loop_digests[k]]
        build_files, loop_files = _folder_digests(root_build), _folder_digests(root_loop)
        out["files_identical"] = build_files == loop_files
        out["files_compared"] = sum(len(v) for v in build_files.values())

        # a second build: nothing changed
        wall, lines, stdout, rc = run_watched(cmd, env)
        out["build_noop_s"] = round(wall, 2)
        log(f"  build again (nothing changed): {wall:.2f} s")

        # a third build after adding a few clips: only their partitions run; the unpartitioned assets rerun,
        # verification_report embedding only the images it has not embedded before (cache/)
        if args.add_clips:
            extra = work / "videos_added"
            make_clips(extra, args.add_clips, args.frames, seed=1, prefix="added")
            runs_before = {r.dagster_run.run_id for r in _run_records(root_build)}
            wall, lines, stdout, rc = run_watched(cmd[:4] + ["--videos", str(extra), "--data-root", str(root_build)],
                                                  env)
            if rc != 0:
                raise RuntimeError("incremental build failed:\n" + "\n".join(line for _, line in lines[-20:]))
            later = event_log_breakdown(root_build, exclude_runs=runs_before)
            out["build_added_clips"] = args.add_clips
            out["build_added_s"] = round(wall, 2)
            out["build_added_step_totals_s"] = later["step_totals_s"]
            log(f"  build after adding {args.add_clips} clips: {wall:.2f} s (verification_report "
                f"{later['step_totals_s'].get('verification_report')} s, first build "
                f"{out['build_step_totals_s'].get('verification_report')} s)")

        if not args.no_prototype:
            wall, lines, stdout, rc = run_watched([sys.executable, str(Path(__file__).resolve()), "--job-only",
                                                   "--videos-dir", str(videos), "--data-root", str(root_job)], env)
            if rc != 0:
                raise RuntimeError("job prototype failed:\n" + "\n".join(line for _, line in lines[-20:]))
            proto = json.loads(stdout.strip().splitlines()[-1])
            out["prototype_resolved_job_wall_s"] = round(wall, 2)
            out["prototype_resolved_job"] = proto
            out["prototype_resolved_job_ratio"] = round(wall / out["loop_wall_s"], 3)
            log(f"  prototype (per_video_job resolved once, execute_in_process per partition): {wall:.2f} s, "
                f"{proto['per_partition_s']} s per partition")

        if not args.no_daemon:
            root_daemon = work / "daemon_root"
            log("  daemon: efhq ui on a fresh data root, then the videos folder registered ...")
            out.update(daemon_run(videos, root_daemon, env, args.clips))
            daemon_rows = _manifest_rows(root_daemon)
            out["rows_match_daemon"] = {k: daemon_rows.get(k, 0) for k in COMPARED} == out["rows_build"]
            daemon_digests = _table_digests(root_daemon)
            out["tables_identical_daemon"] = all(daemon_digests[k] == loop_digests[k] for k in COMPARED)
            out["overhead_ratio_daemon"] = round(out["daemon_wall_s"] / out["loop_wall_s"], 3)
            log(f"  daemon: {out['daemon_wall_s']} s from registration to SQL (start-up {out['daemon_startup_s']} s; "
                f"runs {out['daemon_runs']})")

        loop_video = loop["per_video_compute_s"]
        out["overhead_ratio"] = round(out["build_wall_s"] / out["loop_wall_s"], 3)
        out["overhead_ratio_same_work"] = round((out["build_wall_s"] - card_s) / (out["loop_wall_s"] - loop_card_s), 3)
        out["unpartitioned_overhead_ratio"] = round(out["build_unpartitioned_s"] / loop["unpartitioned_s"], 3)
        out["per_partition_overhead_s"] = round(out["build_per_partition_s"] - loop_video, 3)
        out["per_partition_dagster_s"] = round(out["build_per_partition_s"] - out["build_per_partition_steps_s"], 3)
        out["model_load_s"] = loop["model_load_s"]
        out["target_overhead_ratio"] = 1.5
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out))
    return 0


def _table_digests(root: Path) -> dict[str, str]:
    """sha256 of each compared table's rows in the manifest (each row's repr, sorted: order-independent)."""
    import hashlib

    from efhq_assets.core.storage import DataRoot, query

    tables = {r[0] for r in query(DataRoot(root), "SELECT table_name FROM duckdb_tables()")[1]}
    out = {}
    for table in COMPARED:
        rows = query(DataRoot(root), f'SELECT * FROM "{table}"')[1] if table in tables else []
        out[table] = hashlib.sha256("\n".join(sorted(repr(tuple(r)) for r in rows)).encode()).hexdigest()
    return out


def _folder_digests(root: Path) -> dict[str, dict[str, str]]:
    """{folder: {relative path: sha256 of its bytes}} for the compared output folders."""
    import hashlib

    out = {}
    for folder in COMPARED_FOLDERS:
        base = root / folder
        out[folder] = {str(p.relative_to(base)): hashlib.sha256(p.read_bytes()).hexdigest()
                       for p in sorted(base.rglob("*")) if p.is_file()}
    return out


def _manifest_rows(root: Path) -> dict:
    from efhq_assets.core.storage import DataRoot, query

    names, rows = query(DataRoot(root), "SELECT table_name, estimated_size FROM duckdb_tables()")
    out = {}
    for (table, _) in rows:
        n = query(DataRoot(root), f'SELECT count(*) FROM "{table}"')[1][0][0]
        if n:
            out[table] = n
    return out


if __name__ == "__main__":
    sys.exit(main())
