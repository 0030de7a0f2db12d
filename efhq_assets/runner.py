"""Runs the assets through Dagster for the CLI: one long-lived process, several partitions per run.

Each data root has its own instance (<data_root>/dagster_home), so runs of two roots never mix.
A failing video fails alone; the manifest is refreshed after every build, failures included.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from efhq_assets.core import ingest
from efhq_assets.core.sources import SourceConfig
from efhq_assets.core.storage import DataRoot, sweep_stale_temp_files, table_files

REPO_ROOT = Path(__file__).resolve().parents[1]
FALLBACK_INSTANCE_YAML = "telemetry:\n  enabled: false\n"
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def prepare_instance(root: DataRoot):
    """Point Dagster at this data root's instance (seeded from the top-level dagster.yaml)."""
    root.ensure()
    home = root.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if not target.exists():
        template = REPO_ROOT / "dagster.yaml"
        target.write_text(template.read_text() if template.exists() else FALLBACK_INSTANCE_YAML)
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ["EFHQ_DATA_ROOT"] = str(root.path)
    warnings.filterwarnings("ignore", module="dagster")
    import dagster as dg

    return dg.DagsterInstance.get()


@dataclass
class BuildReport:
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    source_errors: int = 0
    manifest: dict | None = None
    seconds: float = 0.0


def _error_files(root: DataRoot) -> dict[str, int]:
    """`errors` files by name, with their mtimes: one listing, to see which videos a run gave an error row."""
    out = {}
    for p in table_files(root, "errors"):
        try:
            out[p.name] = p.stat().st_mtime_ns
        except FileNotFoundError:
            pass
    return out


def _videos_with_errors(files) -> set[str]:
    return {name.rsplit(".", 1)[0].rsplit("@", 1)[0] for name in files}


def _failure_message(root: DataRoot, video_id: str) -> str:
    import polars as pl

    for path in table_files(root, "errors"):
        if path.stem.startswith(video_id + "@"):
            return pl.read_parquet(path)["message"][0]
    return "failed (see the Dagster run log)"


PER_VIDEO_ASSETS = ("source_videos", "decoded_frames", "face_detections", "pose_annotations", "quality_scores",
                    "pose_bins", "track_embeddings")
UNPARTITIONED_ASSETS = ("face_identities", "dataset_card", "split_gan", "split_eg3d", "split_t2i", "split_reenactment",
                        "verification_pairs", "verification_report", "manifest")


def expected_fingerprints(root: DataRoot, video: dict, clips: list[dict], sampling: str, face_analysis,
                          pose_camera: str = "frame") -> dict[str, str]:
    """The lineage fingerprint each per-video asset would record now (a chain: each includes its upstream's)."""
    from efhq_assets.defs import bins, faces, frames, identities, pose, quality, sources

    source_fp = ingest.source_fingerprint(video, clips, sources.CODE_VERSION)
    frames_fp = ingest.frames_fingerprint(source_fp, sampling, frames.CODE_VERSION)
    faces_fp = faces.face_fingerprint(frames_fp, face_analysis)
    poses_fp = pose.pose_fingerprint(faces_fp, pose_camera)
    return {"source_videos": source_fp, "decoded_frames": frames_fp, "face_detections": faces_fp,
            "pose_annotations": poses_fp, "quality_scores": quality.quality_fingerprint(faces_fp),
            "pose_bins": bins.bins_fingerprint(poses_fp, bins.read_overrides(root, video["video_id"])),
            "track_embeddings": identities.embeddings_fingerprint(faces_fp)}


def stale_assets(root: DataRoot, video: dict, clips: list[dict], sampling: str, face_analysis,
                 with_errors: set[str] | None = None, pose_camera: str = "frame") -> list[str]:
    """Per-video assets whose recorded fingerprint differs from what they would record now.

    The fingerprints chain (each includes its upstream's), so a change anywhere marks exactly its
    downstream stale; a video with an error row is redone whole. `with_errors`: the videos that have an
    error row (one listing of `errors` per build instead of one per video).
    """
    if with_errors is None:
        with_errors = _videos_with_errors(_error_files(root))
    if video["video_id"] in with_errors:
        return list(PER_VIDEO_ASSETS)
    expected = expected_fingerprints(root, video, clips, sampling, face_analysis, pose_camera)
    return [a for a, fp in expected.items() if ingest.lineage_fingerprint(root, a, video["video_id"]) != fp]


def plan_runs(stale: dict[str, tuple[str, ...]], order: dict[str, int],
              max_per_run: int) -> list[tuple[tuple[str, ...], list[str]]]:
    """Group stale videos into runs: same stale assets, and contiguous in the instance's partition order (a
    Dagster run targets a range of dynamic partitions, i.e. every key registered between its two ends), at
    most `max_per_run` videos each. Returns [(assets, keys)] in partition order."""
    by_selection: dict[tuple[str, ...], list[str]] = {}
    for key, selection in stale.items():
        by_selection.setdefault(selection, []).append(key)
    runs = []
    for selection, keys in by_selection.items():
        keys.sort(key=order.__getitem__)
        chunk: list[str] = []
        for key in keys:
            if chunk and (order[key] != order[chunk[-1]] + 1 or len(chunk) >= max_per_run):
                runs.append((selection, chunk))
                chunk = []
            chunk.append(key)
        if chunk:
            runs.append((selection, chunk))
    return sorted(runs, key=lambda run: order[run[1][0]])


def _run_videos(root: DataRoot, instance, resources, assets, selection: tuple[str, ...], keys: list[str]):
    """One Dagster run of `selection` for `keys` (one partition, or the range from the first to the last).

    Returns (landed, failed, left): the videos whose every selected asset materialized; the videos that failed
    (each with its `errors` row); and, for the other videos of a failed run, the selected assets they still
    lack (the failing step and its downstream did not run for them).
    """
    import dagster as dg

    tags = {"efhq/command": "build"}
    if len(keys) > 1:
        tags.update({"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]})
    errors_before = _error_files(root)
    result = dg.materialize(assets, selection=list(selection), partition_key=keys[0] if len(keys) == 1 else None,
                            instance=instance, resources=resources, raise_on_error=False, run_config=QUIET_RUN_CONFIG,
                            tags=tags)
    if result.success:
        return list(keys), [], {}
    errors_after = _error_files(root)
    failed = _videos_with_errors(n for n, t in errors_after.items() if errors_before.get(n) != t) & set(keys)
    # A step that failed outside the assets' own handling (batch.each_partition) fails the videos it did not
    # materialize, one errors row each.
    for event in result.get_step_failure_events():
        done = {m.partition for m in result.asset_materializations_for_node(event.step_key)}
        error = event.step_failure_data.error
        message = (error.cause.message if error and error.cause else error.message if error else "unknown error").strip()
        for key in keys:
            if key not in done and key not in failed:
                if key not in _videos_with_errors(errors_after):
                    ingest.record_error(root, key, event.step_key, f"unexpected error in {event.step_key}: {message}")
                failed.add(key)
    materialized = {asset: {m.partition for m in result.asset_materializations_for_node(asset)} for asset in selection}
    left = {k: tuple(a for a in selection if k not in materialized[a]) for k in keys if k not in failed}
    return [k for k in keys if k in left and not left[k]], [k for k in keys if k in failed], \
        {k: v for k, v in left.items() if v}


def refresh_reviews(root: DataRoot, instance, resources) -> None:
    """Rebuild `review_overrides` when the imported review sheets changed."""
    import dagster as dg

    from efhq_assets.definitions import defs
    from efhq_assets.defs.review import review_files

    files = review_files(root)
    state = ingest.fingerprint([(p.name, p.stat().st_size) for p in files])
    marker = root.catalog / ".reviews.state"
    if (marker.read_text() if marker.exists() else ingest.fingerprint([])) == state:
        return
    dg.materialize([defs.get_assets_def("review_overrides")], instance=instance, resources=resources,
                   run_config=QUIET_RUN_CONFIG, tags={"efhq/command": "build"})
    ingest.atomic_write_bytes(marker, state.encode())
    log(f"  review_overrides: rebuilt from {len(files)} sheet(s)")


def build(root: DataRoot, config: SourceConfig | None = None, sampling: str | None = None,
          force: bool = False, detector: str | None = None, pose_camera: str | None = None) -> BuildReport:
    """Scan sources, register partitions, materialize what changed, refresh the manifest."""
    from efhq_assets.definitions import defs
    from efhq_assets.defs.batch import MAX_PARTITIONS_PER_RUN
    from efhq_assets.defs.partitions import video_files

    started = time.perf_counter()
    instance = prepare_instance(root)
    if swept := sweep_stale_temp_files(root):
        log(f"  removed {swept} temp file(s) left by an interrupted run")
    if config is not None:
        ingest.save_source_config(root, ingest.load_source_config(root).merged(config))
    if sampling is not None:
        ingest.parse_sampling(sampling)  # validate before saving
        ingest.save_settings(root, {**ingest.load_settings(root), "sampling": sampling})
    if detector is not None:
        ingest.save_settings(root, {**ingest.load_settings(root), "detector": detector})
    if pose_camera is not None:
        from efhq_assets.core.pose_annotations import parse_pose_camera

        parse_pose_camera(pose_camera)  # validate before saving
        ingest.save_settings(root, {**ingest.load_settings(root), "pose_camera": pose_camera})
    settings = ingest.load_settings(root)
    catalog = ingest.refresh_catalog(root)
    report = BuildReport(source_errors=len(catalog.errors))
    report.missing = [v["video_id"] for v in catalog.videos if v["status"] == "missing"]
    report.duplicates = [v["video_id"] for v in catalog.videos if v["status"] == "duplicate"]
    for err in catalog.errors:
        log(f"  source error: {err['message']}")

    keys = catalog.partition_keys()
    resources = dict(defs.resources, storage=defs.resources["storage"].model_copy(update={"data_root": str(root.path)}))
    if settings.get("detector"):  # chosen with `efhq build --detector NAME`, kept in the data root
        resources["face_analysis"] = resources["face_analysis"].model_copy(update={"detector": settings["detector"]})
    refresh_reviews(root, instance, resources)
    known = set(instance.get_dynamic_partitions(video_files.name))
    new = [k for k in keys if k not in known]
    if new:
        instance.add_dynamic_partitions(video_files.name, new)  # one batched call
    assets = [defs.get_assets_def(k) for k in PER_VIDEO_ASSETS]
    # Load the configured models once, before any video: a missing weight file fails here with its fetch hint.
    resources["face_analysis"].models()
    log(f"efhq: {len(keys)} videos to check in {root.path} ({len(report.missing)} missing, "
        f"{len(report.duplicates)} duplicates)")
    with_errors = _videos_with_errors(_error_files(root))
    order = {k: i for i, k in enumerate(instance.get_dynamic_partitions(video_files.name))}
    position = {k: n for n, k in enumerate(keys, start=1)}

    def stale_of(key: str) -> tuple[str, ...]:
        if force:
            return PER_VIDEO_ASSETS
        return tuple(stale_assets(root, catalog.video(key), catalog.clips_of(key), settings["sampling"],
                                  resources["face_analysis"], with_errors, settings["pose_camera"]))

    pending: dict[str, tuple[str, ...]] = {}
    for key in keys:
        stale = stale_of(key)
        if stale:
            pending[key] = stale
        else:
            report.skipped.append(key)
            log(f"  [{position[key]}/{len(keys)}] {key}: up to date")
    # Several videos per run (batch.py): the stale videos that share their stale assets and are contiguous in
    # the partition order go in one run. A video that fails fails alone; the others of its run get their
    # remaining assets in the next round.
    while pending:
        for selection, run_keys in plan_runs(pending, order, MAX_PARTITIONS_PER_RUN):
            if len(run_keys) > 1:
                log(f"  running {len(run_keys)} videos in one run: {run_keys[0]} .. {run_keys[-1]} "
                    f"({len(selection)} assets)")
            t0 = time.perf_counter()
            landed, failed, left = _run_videos(root, instance, resources, assets, selection, run_keys)
            seconds = (time.perf_counter() - t0) / len(run_keys)
            for key in landed:
                report.ran.append(key)
                log(f"  [{position[key]}/{len(keys)}] {key}: ok ({seconds:.1f} s)")
            for key in run_keys:
                if key in left and len(left[key]) < len(selection):
                    pending[key] = left[key]  # a video of a failed run: its remaining assets, in the next round
                    continue
                if key not in landed and key not in failed:  # no progress (never loop): a failure
                    failed.append(key)
                if key in failed:
                    report.failed[key] = _failure_message(root, key)
                    log(f"  [{position[key]}/{len(keys)}] {key}: FAILED: {report.failed[key]}")
                del pending[key]
    report.manifest = refresh_unpartitioned(root, instance, resources,
                                            changed=bool(report.ran or report.failed or new))
    report.seconds = round(time.perf_counter() - started, 2)
    return report


def _tables_state(root: DataRoot) -> str:
    """Names, sizes and mtimes of every data file (lineage excluded: it records each run). One stat per file."""
    entries = []
    for folder in (root.tables, root.catalog):
        for dirpath, dirnames, filenames in os.walk(folder):
            if Path(dirpath).name == "lineage":
                dirnames[:] = []
                continue
            for name in filenames:
                if name.endswith(".parquet"):
                    path = os.path.join(dirpath, name)
                    try:
                        st = os.stat(path)
                    except FileNotFoundError:
                        continue
                    entries.append((path, st.st_size, st.st_mtime_ns))
    return ingest.fingerprint(sorted(entries))


def refresh_unpartitioned(root: DataRoot, instance, resources, changed: bool = True) -> dict | None:
    """Materialize identities + `manifest` unless nothing under tables/ or catalog/ changed since the last time."""
    import dagster as dg

    from efhq_assets.definitions import defs

    state = _tables_state(root)
    marker = root.path / ".manifest.state"
    if not changed and root.manifest_path.exists() and marker.exists() and marker.read_text() == state:
        log("  manifest: up to date")
        return None
    result = dg.materialize([defs.get_assets_def(k) for k in UNPARTITIONED_ASSETS], instance=instance, resources=resources,
                            run_config=QUIET_RUN_CONFIG, tags={"efhq/command": "build"})
    mat = result.asset_materializations_for_node("manifest")[0]
    ingest.atomic_write_bytes(marker, _tables_state(root).encode())
    log(f"  manifest: rebuilt ({mat.metadata['compaction_s'].value} s)")
    return {k: v.value for k, v in mat.metadata.items() if k in ("videos", "frames", "errors")}


def sensor_tick(root: DataRoot) -> dict:
    """One tick of `video_files_sensor`, in process, with the cursor kept in the data root."""
    import dagster as dg

    from efhq_assets.definitions import defs
    from efhq_assets.defs.sensors import video_files_sensor

    instance = prepare_instance(root)
    cursor_file = root.catalog / "sensor_cursor.json"
    storage = defs.resources["storage"].model_copy(update={"data_root": str(root.path)})
    context = dg.build_sensor_context(instance=instance, resources={"storage": storage},
                                      cursor=cursor_file.read_text() if cursor_file.exists() else None)
    result = video_files_sensor(context)
    if isinstance(result, dg.SkipReason):
        return {"new_partitions": 0, "skip": result.skip_message}
    keys = list(result.dynamic_partitions_requests[0].partition_keys) if result.dynamic_partitions_requests else []
    if keys:
        instance.add_dynamic_partitions("video_files", keys)
    if result.cursor:
        ingest.atomic_write_bytes(cursor_file, result.cursor.encode())
    return {"new_partitions": len(keys)}


def refresh(root: DataRoot) -> BuildReport:
    """What the daemon does, once, in process: a sensor tick, then every stale asset (only those)."""
    tick = sensor_tick(root)
    log(f"efhq refresh: sensor tick: {tick}")
    return build(root)


def summary_json(report: BuildReport) -> str:
    return json.dumps({"ran": len(report.ran), "skipped": len(report.skipped), "failed": report.failed,
                       "missing": len(report.missing), "duplicates": len(report.duplicates),
                       "source_errors": report.source_errors, "seconds": report.seconds})
