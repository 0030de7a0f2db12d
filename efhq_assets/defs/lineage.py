"""What a per-video asset consumed, recorded once: its `lineage` row and its Dagster data version.

Both carry the stage's fingerprint from the registry (core/stages.py), the same value `efhq build --dry-run`
and the sensor compute for "up to date", so the three ways in agree on what is stale.
"""

from __future__ import annotations

import dagster as dg

from efhq_assets.core import stages
from efhq_assets.core.catalog import load_catalog
from efhq_assets.core.lineage import record_lineage
from efhq_assets.core.settings import load_settings
from efhq_assets.core.storage import DataRoot

from .resources import FaceAnalysis


def video_context(root: DataRoot, video_id: str, face_analysis: FaceAnalysis | None = None) -> stages.VideoContext:
    settings = load_settings(root)
    catalog = load_catalog(root)
    video = catalog.video(video_id) or {"video_id": video_id}
    resolved = face_analysis.resolved(settings) if face_analysis is not None else None
    return stages.VideoContext(root, video, catalog.clips_of(video_id), settings,
                               resolved.identity if resolved is not None else (lambda: None))


def record_stage(context: dg.AssetExecutionContext, root: DataRoot, name: str, video_id: str, rows: int,
                 model_versions: dict | None = None, face_analysis: FaceAnalysis | None = None) -> dg.DataVersion:
    """Write the stage's lineage row; returns its fingerprint as the materialization's data version
    (batch.each_partition also puts it in each video's metadata: a multi-video step has one data version)."""
    fp = stages.consumed_fingerprint(name, video_context(root, video_id, face_analysis))
    record_lineage(root, name, video_id, stages.stage(name).code_version, context.run.run_id, fp, rows,
                          model_versions)
    return dg.DataVersion(fp)


def stage_asset_kwargs(name: str) -> dict:
    """The registry's facts about a stage, as `dg.asset` arguments (name, code version, group, deps)."""
    s = stages.stage(name)
    deps = list(s.upstream) + [f"setting_{n}" for n in s.settings]  # settings: defs/settings_assets.py
    return {"name": s.name, "code_version": s.code_version, "group_name": s.group, **({"deps": deps} if deps else {})}
