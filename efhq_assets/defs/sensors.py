"""The daemon's way in: one sensor that does what `efhq build` does, tick by tick, with the same plan.

Each tick (every 15 s while the daemon runs):

1. rescans the registered sources when their listing changed (names, sizes, mtimes): new files become
   partitions, replaced files (same name, new content) change their source fingerprint, vanished files are
   reported (never deleted);
2. plans exactly what `efhq build` would (core/plan.py: per-video stage fingerprints against the recorded
   ones, with the data root's settings), skipping the videos of runs still in flight, and requests runs of
   up to 50 contiguous videos each (a partition range, as `efhq build` batches). It plans new files,
   changed catalog rows and the videos of runs that ended; after a change of settings, code versions or
   reviewed labels (and on its first tick) it plans every video, FULL_PLAN_PER_TICK a tick;
3. once no per-video run is queued or running, requests one run of the unpartitioned stages (identities,
   splits, card, verification, manifest) if any data file, code version or setting changed since the
   manifest was last built: SQL sees new videos a tick after their runs end, not on a cron.

A run key is the fingerprint of what the run will produce (its stages and the videos' expected
fingerprints): a replaced file or a new setting gets a new run, an unchanged failing video is not retried
in a loop (fix the file or `efhq build --force` it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import dagster as dg

from efhq_assets.core import plan, stages
from efhq_assets.core.catalog import load_catalog, load_source_config, refresh_catalog
from efhq_assets.core.fingerprints import fingerprint
from efhq_assets.core.settings import SettingsError, load_settings
from efhq_assets.core.sources import source_listing_fingerprint
from efhq_assets.core.storage import DataRoot

from .partitions import video_files
from .resources import EfhqStorage, FaceAnalysis
from .settings_assets import changed_observations

MAX_NEW_PER_TICK = 500
# A full plan reads each video's lineage files (about 12 ms a video on a loaded 2-core machine: 580 s at
# 50,000 videos, against Dagster's 60 s limit per tick), so it is spread over ticks, this many videos each.
FULL_PLAN_PER_TICK = 1000
SENSOR_INTERVAL_S = 15
IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
             dg.DagsterRunStatus.STARTED]
RUN_KEY_TAG = "dagster/run_key"
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"

per_video_job = dg.define_asset_job(
    "per_video_job", selection=dg.AssetSelection.assets(*stages.PER_VIDEO),
    description="Everything computed per video file, for one partition or a range of them.")
unpartitioned_job = dg.define_asset_job(
    "unpartitioned_job", selection=dg.AssetSelection.assets(*stages.UNPARTITIONED),
    description="Identities, splits, card, verification benchmark and the DuckDB manifest, from every video's tables.")
review_job = dg.define_asset_job("review_job", selection=dg.AssetSelection.assets("review_overrides"),
                                 description="Reviewed labels from the imported review sheets.")


@dataclass
class Tick:
    """What one sensor tick decided (pure data: tests and `efhq refresh` read it)."""

    new_keys: list[str] = field(default_factory=list)
    vanished: list[str] = field(default_factory=list)
    runs: list[tuple[tuple[str, ...], list[str], str]] = field(default_factory=list)  # (stages, keys, run key)
    unpartitioned_run_key: str | None = None
    review_run_key: str | None = None
    cursor: str = ""
    skip: str | None = None


def _dir_stamp(path) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except FileNotFoundError:
        return 0


def plan_tick(root: DataRoot, existing: list[str], cursor: str | None, in_flight: set[str] | None,
              face_analysis: FaceAnalysis, unpartitioned_in_flight: bool = False,
              attempted: Callable[[str], bool] = lambda run_key: False, cap: int = MAX_NEW_PER_TICK) -> Tick:
    """The sensor's whole decision for one tick. `existing`: the instance's partition keys in order;
    `in_flight`: keys of per-video runs queued or running (None: no run of any kind is in flight);
    `attempted(run_key)`: whether a run with that key was launched before (it is not planned again: an
    unchanged video that failed waits for its file, a setting or the code to change)."""
    state = json.loads(cursor) if cursor else {}
    tick = Tick()
    try:
        settings = load_settings(root)
    except SettingsError as exc:
        tick.skip, tick.cursor = f"settings refused: {exc}", cursor or ""
        return tick
    config = load_source_config(root)
    listing = source_listing_fingerprint(config)
    changed: set[str] = set()
    if state.get("listing") != listing or state.get("backlog"):
        before = load_catalog(root)
        catalog = refresh_catalog(root, config)
        changed = {v["video_id"] for v in catalog.videos
                   if before.video(v["video_id"]) != v or before.clips_of(v["video_id"]) != catalog.clips_of(v["video_id"])}
    else:
        catalog = load_catalog(root)
    wanted = catalog.partition_keys()
    known = {v["video_id"] for v in catalog.videos}
    known_set = set(existing)
    new = [k for k in wanted if k not in known_set]
    tick.new_keys = new[:cap]
    tick.vanished = sorted(k for k in existing if k not in known)
    order = {k: i for i, k in enumerate(list(existing) + tick.new_keys)}

    if plan.reviews_stale(root):
        tick.review_run_key = f"review:{plan.review_files_state(root)}"
    # What can make every video stale: the settings, the code, the reviewed labels. Otherwise only some can
    # be: new files, changed catalog rows (replaced files, new annotations), and the videos of runs that
    # ended since the last tick (a failed batch leaves its other videos' later stages to do). Planning only
    # those keeps a tick cheap on a large root (a plan reads each video's lineage files).
    basis = fingerprint(settings.model_dump(), [s.code_version for s in stages.STAGES],
                               _dir_stamp(root.tables / "review_overrides"))
    busy = in_flight or set()
    # A rescan that changed more catalog rows than a slice (a first tick on a rebuilt catalog: every video) is
    # planned as a full plan, a slice a tick from the start, not all in this tick (580 s at 50,000 videos).
    many_changed = len(changed) > FULL_PLAN_PER_TICK
    candidates = set(tick.new_keys) | (set() if many_changed else changed) | (set(state.get("in_flight", ())) - busy)
    scan = 0 if cursor is None or basis != state.get("basis") or many_changed else state.get("scan")
    if scan is not None:  # a full plan in progress: the next slice of the videos, in partition-key order
        candidates |= set(wanted[scan: scan + FULL_PLAN_PER_TICK])
        scan = scan + FULL_PLAN_PER_TICK if scan + FULL_PLAN_PER_TICK < len(wanted) else None
    idle = in_flight is None and not unpartitioned_in_flight and tick.review_run_key is None
    unpartitioned_key = None
    if idle and scan is None and plan.unpartitioned_stale(root, settings):
        unpartitioned_key = "unpartitioned:" + plan.unpartitioned_state(root, settings)
        if attempted(unpartitioned_key):
            unpartitioned_key = None  # it ran on this very state (and failed): wait for a change
    if tick.review_run_key is None and candidates:
        keys = [k for k in wanted if k in order and k not in busy and k in candidates]
        resolved = face_analysis.resolved(settings)
        build = plan.plan_build(root, catalog, keys, order, resolved.identity, settings=settings)
        for selection, run_keys in build.runs:
            produced = [(k, [build.expected[k][s] for s in selection]) for k in run_keys]
            run_key = "videos:" + fingerprint(selection, produced)
            if not attempted(run_key):
                tick.runs.append((selection, run_keys, run_key))
    if unpartitioned_key and not tick.runs and not tick.new_keys:
        tick.unpartitioned_run_key = unpartitioned_key
    if tick.review_run_key is not None:  # not planned this tick: plan everything once the review has run
        basis, scan = state.get("basis"), state.get("scan")
    tick.cursor = json.dumps({"listing": listing, "basis": basis, "scan": scan, "in_flight": sorted(busy),
                              "backlog": len(new) - len(tick.new_keys)})
    if not (tick.runs or tick.new_keys or tick.unpartitioned_run_key or tick.review_run_key):
        tick.skip = "everything is up to date" + (f"; {len(busy)} video(s) in flight" if busy else "") + \
            (f"; {len(tick.vanished)} vanished" if tick.vanished else "")
    return tick


def runs_in_flight(instance: dg.DagsterInstance, order: dict[str, int]) -> tuple[set[str] | None, bool]:
    """(per-video keys of runs queued or running, or None when no run is; whether an unpartitioned run is)."""
    runs = instance.get_runs(filters=dg.RunsFilter(statuses=IN_FLIGHT))
    if not runs:
        return None, False
    keys: set[str] = set()
    unpartitioned = False
    ordered = sorted(order, key=order.__getitem__)
    for run in runs:
        tags = run.tags
        if run.job_name == unpartitioned_job.name:
            unpartitioned = True
        if "dagster/partition" in tags:
            keys.add(tags["dagster/partition"])
        elif RANGE_START in tags and tags[RANGE_START] in order and tags.get(RANGE_END) in order:
            keys.update(ordered[order[tags[RANGE_START]]: order[tags[RANGE_END]] + 1])
    return keys, unpartitioned


def attempted_run_key(instance: dg.DagsterInstance) -> Callable[[str], bool]:
    return lambda run_key: bool(instance.get_run_ids(filters=dg.RunsFilter(tags={RUN_KEY_TAG: run_key}), limit=1))


def run_requests(tick: Tick) -> list[dg.RunRequest]:
    out = []
    if tick.review_run_key:
        out.append(dg.RunRequest(run_key=tick.review_run_key, job_name=review_job.name,
                                 tags={"efhq/command": "sensor"}))
    for selection, keys, run_key in tick.runs:
        tags = {"efhq/command": "sensor"}
        if len(keys) > 1:
            tags.update({RANGE_START: keys[0], RANGE_END: keys[-1]})
        out.append(dg.RunRequest(run_key=run_key, job_name=per_video_job.name, tags=tags,
                                 partition_key=keys[0] if len(keys) == 1 else None,
                                 asset_selection=[dg.AssetKey(s) for s in selection]))
    if tick.unpartitioned_run_key:
        out.append(dg.RunRequest(run_key=tick.unpartitioned_run_key, job_name=unpartitioned_job.name,
                                 tags={"efhq/command": "sensor"}))
    return out


@dg.sensor(jobs=[per_video_job, unpartitioned_job, review_job], minimum_interval_seconds=SENSOR_INTERVAL_S,
           default_status=dg.DefaultSensorStatus.RUNNING,
           description="Does what `efhq build` does: rescans the sources, adds a partition per new file, runs every "
                       "stale stage (new, replaced or changed files; code, model or setting changes) in runs of up "
                       "to 50 videos, then refreshes identities, splits and the manifest once those runs end. "
                       "Vanished files are reported, never deleted.")
def video_files_sensor(context: dg.SensorEvaluationContext, storage: EfhqStorage, face_analysis: FaceAnalysis):
    root = storage.root()
    existing = list(context.instance.get_dynamic_partitions(video_files.name))
    in_flight, unpartitioned_busy = runs_in_flight(context.instance, {k: i for i, k in enumerate(existing)})
    tick = plan_tick(root, existing, context.cursor, in_flight, face_analysis, unpartitioned_busy,
                     attempted_run_key(context.instance))
    try:  # a setting edited by hand: observed here, so the UI's stale badges follow (defs/settings_assets.py)
        observations = changed_observations(context.instance, load_settings(root))
    except SettingsError:
        observations = []
    if tick.vanished:
        context.log.warning(f"{len(tick.vanished)} known videos vanished from the source folders (kept, not "
                            f"deleted): {', '.join(tick.vanished[:10])}")
    if tick.skip and not observations:
        context.update_cursor(tick.cursor)
        return dg.SkipReason(tick.skip)
    return dg.SensorResult(
        asset_events=observations,
        run_requests=run_requests(tick),
        dynamic_partitions_requests=[video_files.build_add_request(tick.new_keys)] if tick.new_keys else [],
        cursor=tick.cursor,
    )
