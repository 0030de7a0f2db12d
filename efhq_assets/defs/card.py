"""`dataset_card`: counts, pose plots and per-bin contact sheets, as markdown + images and UI metadata."""

import base64
from collections import Counter, defaultdict

import dagster as dg
import numpy as np
import polars as pl

from efhq_assets.core import card, ingest
from efhq_assets.core.face_crops import iter_faces_by_frame
from efhq_assets.core.quality import face_crop
from efhq_assets.core.storage import atomic_write_bytes

from .bins import pose_bins
from .identities import face_identities, read_all
from .quality import quality_scores
from .partitions import refresh_when_upstream_changed
from .resources import EfhqStorage

CODE_VERSION = "dataset_card-2"
THUMBS_PER_BIN = 16


def _md_image(png: bytes) -> str:
    return f"![img](data:image/png;base64,{base64.b64encode(png).decode()})"


@dg.asset(
    automation_condition=refresh_when_upstream_changed,
    deps=[pose_bins, face_identities, quality_scores],
    group_name="card",
    kinds={"python"},
    code_version=CODE_VERSION,
    description="Counts per bin, source and identity; yaw/pitch histograms and a pose scatter; a contact sheet per "
                "bin. Written to <data_root>/card/ and shown here.",
)
def dataset_card(context: dg.AssetExecutionContext, storage: EfhqStorage) -> dg.MaterializeResult:
    root = storage.root()
    faces = {(f["video_id"], f["clip_id"], f["frame_index"], f["face_index"]): f for f in read_all(root, "faces")}
    keep = {k for k, f in faces.items() if f["passes_efhq_filter"]}
    all_bins = read_all(root, "bins")
    all_softbins = Counter(b["softbin"] for b in all_bins)
    bins = [dict(b, track_id=faces[k]["track_id"]) for b in all_bins
            if (k := (b["video_id"], b["clip_id"], b["frame_index"], b["face_index"])) in keep and b["label"] != "remove"]
    poses = [p for p in read_all(root, "poses") if p["estimator"] == "combined"
             and (p["video_id"], p["clip_id"], p["frame_index"], p["face_index"]) in keep]
    videos = {v["video_id"]: v for v in read_all(root, "videos")}
    identities = {(i["video_id"], i["track_id"]): i["identity_id"] for i in read_all(root, "identities")}
    out = root.path / "card"
    images = {}
    yaw = np.array([p["yaw"] for p in poses if p["yaw"] is not None], float)
    pitch = np.array([p["pitch"] for p in poses if p["pitch"] is not None], float)
    pose_png = card.pose_figure_png(yaw, pitch)
    atomic_write_bytes(out / "pose.png", pose_png)
    images["Pose distribution (combined estimator)"] = "pose.png"
    # Contact sheets: evenly spaced faces per bin, cut by re-decoding only their frames.
    by_bin = defaultdict(list)
    for b in sorted(bins, key=lambda b: (b["video_id"], b["frame_index"], b["face_index"])):
        by_bin[b["label"]].append(b)
    sheets = {}
    for label, members in sorted(by_bin.items()):
        step = max(len(members) // THUMBS_PER_BIN, 1)
        chosen = [faces[(m["video_id"], m["clip_id"], m["frame_index"], m["face_index"])] for m in members[::step]]
        thumbs = []
        for video_id in sorted({c["video_id"] for c in chosen}):
            for image, rows in iter_faces_by_frame(videos[video_id]["path"], [c for c in chosen if c["video_id"] == video_id]):
                thumbs += [face_crop(image, [r["x1"], r["y1"], r["x2"], r["y2"]], out=96) for r in rows]
        png = card.contact_sheet_png(thumbs[:THUMBS_PER_BIN])
        if png:
            atomic_write_bytes(out / f"sheet_{label}.png", png)
            images[f"Contact sheet: {label}"] = f"sheet_{label}.png"
            sheets[label] = png
    markdown = card.card_markdown(bins, {v: r["source"] for v, r in videos.items()}, identities, len(faces), images,
                                  all_softbins)
    atomic_write_bytes(out / "dataset_card.md", markdown.encode())
    ingest.record_lineage(root, "dataset_card", "all", CODE_VERSION, context.run_id, "", len(bins))
    counts = pl.DataFrame({"label": [b["label"] for b in bins]}).group_by("label").len().sort("label") if bins else None
    metadata = {
        "card": dg.MetadataValue.path(str(out / "dataset_card.md")),
        "faces": len(bins),
        "identities": len(set(identities.values())),
        "bins": dg.MetadataValue.md("| bin | faces |\n|---|---|\n" + "\n".join(
            f"| {r['label']} | {r['len']} |" for r in (counts.to_dicts() if counts is not None else []))),
        "pose_plot": dg.MetadataValue.md(_md_image(pose_png)),
    }
    for label, png in sheets.items():
        metadata[f"sheet_{label}"] = dg.MetadataValue.md(_md_image(png))
    return dg.MaterializeResult(metadata=metadata)
