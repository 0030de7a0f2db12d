"""The one registry of pipeline stages: what runs, in which order, what it reads and writes, and when it is stale.

Everything that lists stages derives from `STAGES`: the Dagster assets (their code versions and deps), the
per-video job the sensor launches, the manifest's deps, `efhq build`'s plan and `benchmarks/overhead.py`'s
plain loop. Adding a stage is one entry here, a pure core function, a thin asset in `defs/` and tests.

Staleness is one fingerprint per (stage, video): a hash of the stage's code version, the settings it reads,
what else it depends on (the file itself, the loaded models, the reviewed labels) and the fingerprints of
its upstream stages. An asset records the fingerprint of what it consumed (its lineage row, and its Dagster
data version); the plan recomputes it from the catalog and settings now. Different means stale, so a change
anywhere redoes exactly its downstream, for `efhq build`, the sensor and the UI alike.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .efhq_import import metadata_stamp
from .fingerprints import fingerprint
from .lineage import lineage_fingerprint
from .settings import Settings
from .storage import DataRoot, read_rows


@dataclass(frozen=True)
class Stage:
    name: str
    partitioned: bool                 # one partition per video (dynamic partitions `video_files`)
    upstream: tuple[str, ...]         # stages whose outputs this one reads
    tables: tuple[str, ...]           # tables it writes
    code_version: str                 # bump when its output changes for the same inputs
    group: str
    settings: tuple[str, ...] = ()    # fields of `Settings` that change its output


@dataclass
class VideoContext:
    """What a per-video fingerprint depends on besides its upstream: the catalog row, the settings, and the
    identity of the loaded face models (a callable: models load only when a fingerprint needs them)."""

    root: DataRoot
    video: dict
    clips: list[dict]
    settings: Settings
    face_models_identity: Callable[[], Any] = field(default=lambda: None)

    @property
    def video_id(self) -> str:
        return self.video["video_id"]


SPLITS_VERSION = "splits-2"  # 2: EFHQ selection defaults (reviewed labels only, cap per clip and bin)
STAGES: tuple[Stage, ...] = (
    Stage("source_videos", True, (), ("videos", "clips"), "source_videos-1", "ingest"),
    Stage("decoded_frames", True, ("source_videos",), ("frames",), "decoded_frames-1", "ingest", ("sampling",)),
    # 3: EFHQ metadata rows rescaled, FaceMesh on imported faces; 4: faces followed through turns, found_by (issue 21);
    # 5: carried faces re-verified by O-net and given its five points; 6: turned faces' five points side-checked
    Stage("face_detections", True, ("decoded_frames",), ("faces", "landmarks", "efhq_poses"), "face_detections-6",
          "faces", ("sampling", "detector", "detect_stride")),
    # 3: perspective fit with the frame's pinhole camera; dlib68 dropped when turned; 4: large-yaw reading, five-point
    # fallback, track outlier rejection, pitch zero, dlib68 silent beyond 45 degrees (issue 21)
    # 6: dlib68's yaw out of the combined yaw; a turned face FaceMesh cannot fit reads >= 80 from five points >= 45;
    # five points >= 45 take over where FaceMesh reads 15 less
    # 7: a FaceMesh fit whose nose lies over 0.5 eye-to-mouth distances from the detector's gives no answer
    # and short runs of profiles read on the wrong side of a track are flipped back
    # 8: FaceMesh's pitch gets its gain back (core/pose/pitch_gain.py); dlib68's pitch out of the combined pitch
    # 9: near-frontal yaw from a fit that weights the face oval 6x (below 25); 10: its share fades from 20 to 30
    Stage("pose_annotations", True, ("face_detections",), ("poses",), "pose_annotations-10", "faces", ("pose_camera",)),
    # 2: faces rebuilt from EFHQ metadata keep its released HyperIQA `iqa`
    Stage("quality_scores", True, ("face_detections",), ("quality",), "quality_scores-2", "quality",
          ("quality_scorer",)),
    Stage("review_overrides", False, (), ("review_overrides",), "review_overrides-1", "bins"),
    # 3: EFHQ's released (reviewed) labels are the labels of rebuilt faces
    Stage("pose_bins", True, ("pose_annotations", "review_overrides"), ("bins",), "pose_bins-3", "bins"),
    Stage("track_embeddings", True, ("face_detections",), ("track_embeddings",), "track_embeddings-1", "identities"),
    Stage("face_identities", False, ("track_embeddings",), ("identities",), "face_identities-1", "identities"),
    Stage("dataset_card", False, ("pose_bins", "face_identities", "quality_scores"), (), "dataset_card-2", "card"),
    Stage("split_gan", False, ("pose_bins", "face_identities", "quality_scores"), ("split_gan",), SPLITS_VERSION, "splits",
          ("render_exports", "quality_threshold_brisque_live_inv", "selection")),
    Stage("split_eg3d", False, ("pose_bins", "face_identities", "quality_scores"), ("split_eg3d",), SPLITS_VERSION,
          "splits", ("render_exports", "quality_threshold_brisque_live_inv", "selection", "eg3d_resolution")),
    Stage("split_t2i", False, ("pose_bins", "face_identities", "quality_scores"), ("split_t2i",), SPLITS_VERSION, "splits",
          ("render_exports", "quality_threshold_brisque_live_inv", "selection")),
    Stage("split_reenactment", False, ("pose_bins", "face_identities", "quality_scores"), ("split_reenactment",),
          SPLITS_VERSION, "splits", ("render_exports", "quality_threshold_brisque_live_inv", "selection")),
    Stage("verification_pairs", False, ("pose_bins", "face_identities", "quality_scores"), ("verification_pairs",),
          SPLITS_VERSION, "splits", ("render_exports", "verification_pairs_per_protocol",
                                 "quality_threshold_brisque_live_inv", "selection", "verification_degradation")),
    Stage("verification_report", False, ("verification_pairs",), ("verification_report",), SPLITS_VERSION, "splits"),
    Stage("manifest", False, ("source_videos", "decoded_frames", "face_detections", "pose_annotations",
                              "quality_scores", "pose_bins", "face_identities", "dataset_card", "split_gan",
                              "split_eg3d", "split_t2i", "split_reenactment", "verification_pairs",
                              "verification_report"), (), "manifest-1", "manifest"),
)
BY_NAME: dict[str, Stage] = {s.name: s for s in STAGES}
# Every setting some stage reads, in first-use order (each is a `setting_<name>` asset in Dagster).
SETTINGS_READ: tuple[str, ...] = tuple(dict.fromkeys(n for s in STAGES for n in s.settings))
PER_VIDEO: tuple[str, ...] = tuple(s.name for s in STAGES if s.partitioned)
# What runs after the per-video stages, in order (review_overrides runs before them: pose_bins reads it).
UNPARTITIONED: tuple[str, ...] = tuple(s.name for s in STAGES if not s.partitioned and s.name != "review_overrides")


def stage(name: str) -> Stage:
    return BY_NAME[name]


# --------------------------------------------------------------------------- what a per-video stage depends on

def _source_identity(ctx: VideoContext):
    """The file (path, size, mtime) and its clip rows: a file replaced under the same name changes it."""
    clip_keys = [{**{k: c.get(k) for k in ("clip_id", "start_frame", "end_frame", "start_sec", "end_sec", "crop", "bbox",
                                           "whole_file", "attributes")},
                  "efhq_metadata": metadata_stamp(c.get("efhq_metadata"))} for c in ctx.clips]
    return [ctx.video.get("path"), ctx.video.get("size_bytes"), ctx.video.get("mtime_ns"), clip_keys]


def _reviewed_labels(ctx: VideoContext):
    rows = read_rows(ctx.root, "review_overrides", ctx.video_id)
    return sorted([r["frame_index"], r["face_index"], r["label"]] for r in rows)


EXTRA_INPUTS: dict[str, Callable[[VideoContext], Any]] = {
    "source_videos": _source_identity,
    "face_detections": lambda ctx: ctx.face_models_identity(),
    "pose_bins": _reviewed_labels,
}


def stage_fingerprint(name: str, ctx: VideoContext, upstream_fps: dict[str, str | None]) -> str:
    """The fingerprint of stage `name` for one video, given its upstream stages' fingerprints."""
    s = BY_NAME[name]
    extra = EXTRA_INPUTS.get(name, lambda _ctx: None)(ctx)
    ups = [upstream_fps.get(u) for u in s.upstream if BY_NAME[u].partitioned]
    return fingerprint(s.name, s.code_version, ctx.settings.for_stage(s.settings), extra, ups)


def expected_fingerprints(ctx: VideoContext) -> dict[str, str]:
    """What every per-video stage would record if it ran now (the chain computed from the catalog)."""
    out: dict[str, str] = {}
    for name in PER_VIDEO:
        out[name] = stage_fingerprint(name, ctx, out)
    return out


def recorded_fingerprint(root: DataRoot, name: str, video_id: str) -> str | None:
    return lineage_fingerprint(root, name, video_id)


def consumed_fingerprint(name: str, ctx: VideoContext) -> str:
    """The fingerprint a stage records when it runs: its own inputs now, its upstream as they were recorded."""
    s = BY_NAME[name]
    ups = {u: recorded_fingerprint(ctx.root, u, ctx.video_id) for u in s.upstream if BY_NAME[u].partitioned}
    return stage_fingerprint(name, ctx, ups)


def stale_stages(ctx: VideoContext, has_error: bool = False) -> list[str]:
    """Per-video stages whose recorded fingerprint differs from the expected one (all of them after an error)."""
    if has_error:
        return list(PER_VIDEO)
    expected = expected_fingerprints(ctx)
    return [n for n, fp in expected.items() if recorded_fingerprint(ctx.root, n, ctx.video_id) != fp]


@functools.lru_cache(maxsize=1)
def downstream_of() -> dict[str, tuple[str, ...]]:
    """Every stage's transitive downstream, in registry order."""
    out: dict[str, list[str]] = {s.name: [] for s in STAGES}
    for s in STAGES:
        for u in s.upstream:
            out[u].append(s.name)
    closure: dict[str, tuple[str, ...]] = {}
    for s in reversed(STAGES):
        seen = set(out[s.name])
        for d in out[s.name]:
            seen.update(closure[d])
        closure[s.name] = tuple(n for n in BY_NAME if n in seen)
    return closure


def unpartitioned_fingerprint(tables_state: str, settings: Settings) -> str:
    """The unpartitioned stages are stale when any data file changed, or their code or settings did."""
    parts = [(s.name, s.code_version, settings.for_stage(s.settings)) for s in STAGES if not s.partitioned]
    return fingerprint(tables_state, parts)
