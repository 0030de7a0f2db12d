"""`quality_scores` over a video: each face crop scored (re-decoding only the frames that hold faces), EFHQ's
released HyperIQA score kept for faces rebuilt from its metadata, and which scorers made the scores (lineage).
The measures themselves are `quality.py`."""

from __future__ import annotations

import functools

import numpy as np

from .efhq_import import RELEASED_SCORER, released_labels
from .face_crops import iter_faces_by_frame
from .quality import DEFAULT_SCORER, face_crop, quality_rows, resolve_scorer


@functools.lru_cache(maxsize=2)
def scorer_for(choice: str):
    """(scorer name, model or None) of the `quality_scorer` setting, loaded once per process."""
    return resolve_scorer(choice)


def score_video(video: dict, faces: list[dict], scorer: str = DEFAULT_SCORER, model=None) -> list[dict]:
    """Re-decode only the frames holding faces; score each face crop (with `model` when given, e.g. HyperIQA)."""
    keys = ("video_id", "clip_id", "frame_index", "face_index")
    rows = []
    for image, frame_faces in iter_faces_by_frame(video["path"], faces):
        boxes = [[f["x1"], f["y1"], f["x2"], f["y2"]] for f in frame_faces]
        crops = [face_crop(image, b) for b in boxes]
        for f, q in zip(frame_faces, quality_rows(crops, np.asarray(boxes), model, scorer)):
            rows.append({**{k: f[k] for k in keys}, **q})
    return sorted(rows, key=lambda r: (r["clip_id"], r["frame_index"], r["face_index"]))


def scorer_versions(rows: list[dict], model=None) -> dict:
    """Which scorer made the scores (lineage): the offline BRISQUE or HyperIQA (its weights), and EFHQ's released
    HyperIQA `iqa`."""
    versions = {DEFAULT_SCORER: "brisque==0.2.0"} if model is None else \
        {"hyperiqa": f"hyperiqa_koniq {getattr(model, 'weights_sha256', '')}".strip()}
    if any(r["scorer"] == RELEASED_SCORER for r in rows):
        versions[RELEASED_SCORER] = "EFHQ released iqa (HyperIQA, KonIQ weights)"
    return versions


def keep_released_scores(rows: list[dict], video: dict, clips: list[dict]) -> None:
    """Faces rebuilt from EFHQ's metadata keep its released score (HyperIQA, KonIQ scale) as the score; the
    measures computed here stay beside it. Changes `rows` in place."""
    released = released_labels(video, clips)
    for r in rows:
        iqa = (released.get((r["video_id"], r["clip_id"], r["frame_index"], r["face_index"])) or {}).get("iqa")
        if iqa is not None and np.isfinite(iqa):
            r.update(scorer=RELEASED_SCORER, score=float(iqa))
