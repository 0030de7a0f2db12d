"""Runs the assets through Dagster for the CLI: one long-lived process, several partitions per run.

Each data root has its own instance (<data_root>/dagster_home), so runs of two roots never mix.
A failing video fails alone; the manifest is refreshed after every build, failures included.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from efhq_assets.core import plan, stages
from efhq_assets.core.catalog import load_source_config, refresh_catalog, save_source_config
from efhq_assets.core.lineage import record_error
from efhq_assets.core.settings import Settings, load_settings, update_settings
from efhq_assets.core.sources import SourceConfig
from efhq_assets.core.storage import DataRoot, atomic_write_bytes, sweep_stale_temp_files, table_files

REPO_ROOT = Path(__file__).resolve().parents[1]
# Package data (the top-level dagster.yaml links to it): a non-editable install seeds the same instance.
INSTANCE_TEMPLATE = Path(__file__).resolve().parent / "dagster.yaml"
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def prepare_instance(root: DataRoot):
    """Point Dagster at this data root's instance (seeded from the package's dagster.yaml template)."""
    root.ensure()
    home = root.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if not target.exists():
        target.write_text(INSTANCE_TEMPLATE.read_text())
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ["EFHQ_DATA_ROOT"] = str(root.path)
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
                    record_error(root, key, event.step_key, f"unexpected error in {event.step_key}: {message}")
                failed.add(key)
    materialized = {asset: {m.partition for m in result.asset_materializations_for_node(asset)} for asset in selection}
    left = {k: tuple(a for a in selection if k not in materialized[a]) for k in keys if k not in failed}
    return [k for k in keys if k in left and not left[k]], [k for k in keys if k in failed], \
        {k: v for k, v in left.items() if v}


def refresh_reviews(root: DataRoot, instance, resources) -> None:
    """Rebuild `review_overrides` when the imported review sheets changed (the asset records which it merged)."""
    import dagster as dg

    from efhq_assets.definitions import defs

    if not plan.reviews_stale(root):
        return
    dg.materialize([defs.get_assets_def("review_overrides")], instance=instance, resources=resources,
                   run_config=QUIET_RUN_CONFIG, tags={"efhq/command": "build"})
    log(f"  review_overrides: rebuilt from {len(plan.review_files(root))} sheet(s)")


def save_build_settings(root: DataRoot, **values) -> Settings:
    """The settings given to `efhq build` (None: keep the saved value), validated together before anything is
    saved: a typo is refused with a message and nothing changes."""
    changes = {k: v for k, v in values.items() if v is not None}
    return update_settings(root, **changes) if changes else load_settings(root)


def observe_settings(instance, settings: Settings) -> None:
    from efhq_assets.defs.settings_assets import observe_settings as observe

    observe(instance, settings)


def _resources(root: DataRoot) -> dict:
    from efhq_assets.definitions import defs

    return dict(defs.resources, storage=defs.resources["storage"].model_copy(update={"data_root": str(root.path)}))


def make_plan(root: DataRoot, instance, force: bool = False) -> tuple[plan.BuildPlan, "object", list[str]]:
    """Rescan the sources, register new partitions, and plan (core/plan.py: the sensor's plan too).
    Returns (the plan, the catalog, the new partition keys)."""
    from efhq_assets.defs.partitions import video_files

    settings = load_settings(root)
    catalog = refresh_catalog(root)
    keys = catalog.partition_keys()
    known = set(instance.get_dynamic_partitions(video_files.name))
    new = [k for k in keys if k not in known]
    if new:
        instance.add_dynamic_partitions(video_files.name, new)  # one batched call
    order = {k: i for i, k in enumerate(instance.get_dynamic_partitions(video_files.name))}
    face_analysis = _resources(root)["face_analysis"].resolved(settings)
    # Load the configured models once, before any video: a missing weight file fails here with its fetch hint.
    face_analysis.models()
    build_plan = plan.plan_build(root, catalog, keys, order, face_analysis.identity, force=force, settings=settings)
    return build_plan, catalog, new


def dry_run(root: DataRoot) -> plan.BuildPlan:
    """What `efhq build` (and the daemon) would run now, without running it."""
    instance = prepare_instance(root)
    build_plan, _, _ = make_plan(root, instance)
    build_plan.unpartitioned_stale = build_plan.unpartitioned_stale or plan.reviews_stale(root)
    return build_plan


def build(root: DataRoot, config: SourceConfig | None = None, sampling: str | None = None,
          force: bool = False, detector: str | None = None, pose_camera: str | None = None,
          render_exports: bool | None = None) -> BuildReport:
    """Scan sources, register partitions, materialize what is stale, refresh the manifest."""
    from efhq_assets.definitions import defs

    started = time.perf_counter()
    settings = save_build_settings(root, sampling=sampling, detector=detector, pose_camera=pose_camera,
                                   render_exports=render_exports)
    instance = prepare_instance(root)
    observe_settings(instance, settings)  # Dagster's staleness sees a changed setting (defs/settings_assets.py)
    if swept := sweep_stale_temp_files(root):
        log(f"  removed {swept} temp file(s) left by an interrupted run")
    if config is not None:
        save_source_config(root, load_source_config(root).merged(config))
    resources = _resources(root)
    refresh_reviews(root, instance, resources)
    build_plan, catalog, new = make_plan(root, instance, force=force)
    keys = catalog.partition_keys()
    report = BuildReport(source_errors=len(catalog.errors))
    report.missing = [v["video_id"] for v in catalog.videos if v["status"] == "missing"]
    report.duplicates = [v["video_id"] for v in catalog.videos if v["status"] == "duplicate"]
    for err in catalog.errors:
        log(f"  source error: {err['message']}")
    assets = [defs.get_assets_def(k) for k in stages.PER_VIDEO]
    log(f"efhq: {len(keys)} videos to check in {root.path} ({len(report.missing)} missing, "
        f"{len(report.duplicates)} duplicates)")
    order = {k: i for i, k in enumerate(instance.get_dynamic_partitions("video_files"))}
    position = {k: n for n, k in enumerate(keys, start=1)}
    for key in build_plan.up_to_date:
        report.skipped.append(key)
        log(f"  [{position[key]}/{len(keys)}] {key}: up to date")
    pending = dict(build_plan.stale)
    # Several videos per run (batch.py): the stale videos that share their stale assets and are contiguous in
    # the partition order go in one run. A video that fails fails alone; the others of its run get their
    # remaining assets in the next round.
    while pending:
        for selection, run_keys in plan.plan_runs(pending, order):
            if len(run_keys) > 1:
                log(f"  running {len(run_keys)} videos in one run: {run_keys[0]} .. {run_keys[-1]} "
                    f"({len(selection)} assets)")
            t0 = time.perf_counter()
            landed, failed, left = _run_videos(root, instance, resources, assets, selection, run_keys)
            seconds = (time.perf_counter() - t0) / len(run_keys)
            # one run did them all: its time shared out, said so (a column of equal times reads as a fault)
            took = f"{seconds:.1f} s" if len(run_keys) == 1 else f"{seconds:.1f} s a video, run of {len(run_keys)}"
            for key in landed:
                report.ran.append(key)
                log(f"  [{position[key]}/{len(keys)}] {key}: ok ({took})")
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
    report.manifest = refresh_unpartitioned(root, instance, resources, force=bool(report.ran or report.failed or new))
    report.seconds = round(time.perf_counter() - started, 2)
    return report


def refresh_unpartitioned(root: DataRoot, instance, resources, force: bool = True) -> dict | None:
    """Materialize identities, splits, card and `manifest` unless they already reflect every data file, code
    version and setting of now (the manifest asset records that state; core/plan.py)."""
    import dagster as dg

    from efhq_assets.definitions import defs

    if not force and not plan.unpartitioned_stale(root):
        log("  manifest: up to date")
        return None
    result = dg.materialize([defs.get_assets_def(k) for k in stages.UNPARTITIONED], instance=instance,
                            resources=resources, run_config=QUIET_RUN_CONFIG, tags={"efhq/command": "build"})
    mat = result.asset_materializations_for_node("manifest")[0]
    log(f"  manifest: rebuilt ({mat.metadata['compaction_s'].value} s)")
    return {k: v.value for k, v in mat.metadata.items() if k in ("videos", "frames", "errors")}


def sensor_tick(root: DataRoot) -> dict:
    """One evaluation of `video_files_sensor`'s plan, in process, with the cursor kept in the data root (what the
    daemon decides; nothing is launched)."""
    from efhq_assets.defs.sensors import attempted_run_key, plan_tick, runs_in_flight

    instance = prepare_instance(root)
    cursor_file = root.catalog / "sensor_cursor.json"
    existing = list(instance.get_dynamic_partitions("video_files"))
    in_flight, unpartitioned_busy = runs_in_flight(instance, {k: i for i, k in enumerate(existing)})
    tick = plan_tick(root, existing, cursor_file.read_text() if cursor_file.exists() else None, in_flight,
                     _resources(root)["face_analysis"], unpartitioned_busy, attempted_run_key(instance))
    if tick.new_keys:
        instance.add_dynamic_partitions("video_files", tick.new_keys)
    atomic_write_bytes(cursor_file, tick.cursor.encode())
    return {"new_partitions": len(tick.new_keys), "runs": len(tick.runs),
            "unpartitioned": tick.unpartitioned_run_key is not None, **({"skip": tick.skip} if tick.skip else {})}


def refresh(root: DataRoot) -> BuildReport:
    """What the daemon does, once, in process: every stale stage (only those)."""
    return build(root)


def summary_json(report: BuildReport) -> str:
    return json.dumps({"ran": len(report.ran), "skipped": len(report.skipped), "failed": report.failed,
                       "missing": len(report.missing), "duplicates": len(report.duplicates),
                       "source_errors": report.source_errors, "seconds": report.seconds})
