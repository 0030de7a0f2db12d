"""Runs the assets through Dagster for the CLI: one long-lived process, one partition at a time.

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


def _record_unexpected_failure(root: DataRoot, video_id: str, result) -> None:
    """A step that raised something other than a clear dg.Failure still leaves one `errors` row."""
    if any(p.stem.startswith(video_id + "@") for p in table_files(root, "errors")):
        return
    for event in result.get_step_failure_events():
        error = event.step_failure_data.error
        message = (error.cause.message if error and error.cause else error.message if error else "unknown error").strip()
        ingest.record_error(root, video_id, event.step_key, f"unexpected error in {event.step_key}: {message}")
        return


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


def expected_fingerprints(root: DataRoot, video: dict, clips: list[dict], sampling: str, face_analysis) -> dict[str, str]:
    """The lineage fingerprint each per-video asset would record now (a chain: each includes its upstream's)."""
    from efhq_assets.defs import bins, faces, frames, identities, pose, quality, sources

    source_fp = ingest.source_fingerprint(video, clips, sources.CODE_VERSION)
    frames_fp = ingest.frames_fingerprint(source_fp, sampling, frames.CODE_VERSION)
    faces_fp = faces.face_fingerprint(frames_fp, face_analysis)
    poses_fp = pose.pose_fingerprint(faces_fp)
    return {"source_videos": source_fp, "decoded_frames": frames_fp, "face_detections": faces_fp,
            "pose_annotations": poses_fp, "quality_scores": quality.quality_fingerprint(faces_fp),
            "pose_bins": bins.bins_fingerprint(poses_fp, bins.read_overrides(root, video["video_id"])),
            "track_embeddings": identities.embeddings_fingerprint(faces_fp)}


def stale_assets(root: DataRoot, video: dict, clips: list[dict], sampling: str, face_analysis) -> list[str]:
    """Per-video assets whose recorded fingerprint differs from what they would record now.

    The fingerprints chain (each includes its upstream's), so a change anywhere marks exactly its
    downstream stale; a video with an error row is redone whole.
    """
    if any(p.stem.startswith(video["video_id"] + "@") for p in table_files(root, "errors")):
        return list(PER_VIDEO_ASSETS)
    expected = expected_fingerprints(root, video, clips, sampling, face_analysis)
    return [a for a, fp in expected.items() if ingest.lineage_fingerprint(root, a, video["video_id"]) != fp]


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
          force: bool = False, detector: str | None = None) -> BuildReport:
    """Scan sources, register partitions, materialize what changed, refresh the manifest."""
    import dagster as dg

    from efhq_assets.definitions import defs
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
    for n, key in enumerate(keys, start=1):
        video = catalog.video(key)
        clips = catalog.clips_of(key)
        stale = list(PER_VIDEO_ASSETS) if force else stale_assets(root, video, clips, settings["sampling"],
                                                                    resources["face_analysis"])
        if not stale:
            report.skipped.append(key)
            log(f"  [{n}/{len(keys)}] {key}: up to date")
            continue
        t0 = time.perf_counter()
        result = dg.materialize(assets, selection=stale, partition_key=key, instance=instance, resources=resources,
                                raise_on_error=False, run_config=QUIET_RUN_CONFIG,
                                tags={"efhq/command": "build"})
        if result.success:
            report.ran.append(key)
            log(f"  [{n}/{len(keys)}] {key}: ok ({time.perf_counter() - t0:.1f} s)")
        else:
            _record_unexpected_failure(root, key, result)
            report.failed[key] = _failure_message(root, key)
            log(f"  [{n}/{len(keys)}] {key}: FAILED: {report.failed[key]}")
    report.manifest = refresh_unpartitioned(root, instance, resources,
                                            changed=bool(report.ran or report.failed or new))
    report.seconds = round(time.perf_counter() - started, 2)
    return report


def _tables_state(root: DataRoot) -> str:
    """Names, sizes and mtimes of every data file (lineage excluded: it records each run)."""
    return ingest.fingerprint(sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns)
                                     for folder in (root.tables, root.catalog) for p in folder.rglob("*.parquet")
                                     if p.parent.name != "lineage"))


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
