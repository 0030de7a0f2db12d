"""The single Definitions object: every asset, job, sensor and resource of efhq-assets.

The assets are listed by the stage registry (core/stages.py): a stage missing its asset fails at import.
"""

import dagster as dg

from efhq_assets.core import stages
from efhq_assets.defs.bins import pose_bins
from efhq_assets.defs.card import dataset_card
from efhq_assets.defs.faces import face_detections
from efhq_assets.defs.frames import decoded_frames
from efhq_assets.defs.identities import face_identities, track_embeddings
from efhq_assets.defs.manifest import manifest
from efhq_assets.defs.pose import pose_annotations
from efhq_assets.defs.quality import quality_scores
from efhq_assets.defs.resources import EfhqStorage, FaceAnalysis
from efhq_assets.defs.review import review_overrides
from efhq_assets.defs.settings_assets import SETTING_SPECS
from efhq_assets.defs.sensors import per_video_job, review_job, unpartitioned_job, video_files_sensor
from efhq_assets.defs.sources import source_videos
from efhq_assets.defs.tasks import (split_eg3d, split_gan, split_reenactment, split_t2i, verification_pairs,
                                    verification_report)

ASSETS = {a.key.to_user_string(): a for a in (
    source_videos, decoded_frames, face_detections, pose_annotations, quality_scores, review_overrides, pose_bins,
    track_embeddings, face_identities, dataset_card, split_gan, split_eg3d, split_t2i, split_reenactment,
    verification_pairs, verification_report, manifest)}
if set(ASSETS) != set(stages.BY_NAME):
    raise RuntimeError(f"stage registry and assets differ: {sorted(set(ASSETS) ^ set(stages.BY_NAME))}")

manifest_job = dg.define_asset_job("manifest_job", selection=dg.AssetSelection.assets(manifest),
                                   description="Rebuild the DuckDB manifest from every per-video table.")

defs = dg.Definitions(
    assets=[*SETTING_SPECS, *(ASSETS[s.name] for s in stages.STAGES)],
    jobs=[per_video_job, unpartitioned_job, review_job, manifest_job],
    sensors=[video_files_sensor],
    resources={"storage": EfhqStorage(), "face_analysis": FaceAnalysis()},
    # One process per run (the UI's and the daemon's, as `efhq build`'s dg.materialize): the multiprocess
    # default starts a process per step, and each re-imports torch and reloads the models (the per-video
    # steps are a chain anyway). Scale-out variants set their own executor (scaleout.py).
    executor=dg.in_process_executor,
)
