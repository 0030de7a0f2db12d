"""The dataset card: counts per bin, source and identity, pose histograms and a contact sheet per bin."""

from __future__ import annotations

import io
from collections import Counter, defaultdict

import numpy as np

from .face_crops import iter_faces_by_frame
from .quality import SCORERS, face_crop
from .settings import load_settings
from .storage import atomic_write_bytes, read_table_files

BIN_ORDER = ("frontal", "profile_left", "profile_right", "profile_up", "profile_down", "profile_extreme",
             "profile_horizontal", "profile_vertical", "confused", "remove")


def pose_figure_png(yaw: np.ndarray, pitch: np.ndarray) -> bytes:
    """Yaw and pitch histograms and a yaw-pitch scatter with EFHQ's frontal box (|yaw| < 45, |pitch| < 30)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), dpi=80)
    bins = np.arange(-180, 181, 10)
    axes[0].hist(yaw, bins=bins, color="#4477aa")
    axes[0].set_title("yaw (deg, + = subject's left)")
    axes[1].hist(pitch, bins=np.arange(-90, 91, 10), color="#ee6677")
    axes[1].set_title("pitch (deg, + = up)")
    axes[2].scatter(yaw, pitch, s=4, alpha=0.5)
    axes[2].add_patch(plt.Rectangle((-45, -30), 90, 60, fill=False, ls="--", color="k"))
    axes[2].set_xlim(-100, 100)
    axes[2].set_ylim(-60, 60)
    axes[2].set_xlabel("yaw")
    axes[2].set_ylabel("pitch")
    axes[2].set_title("pose (dashed: EFHQ frontal)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})  # no version/time stamp: same data, same bytes
    plt.close(fig)
    return buf.getvalue()


def contact_sheet_png(thumbs: list[np.ndarray], columns: int = 8, side: int = 96) -> bytes | None:
    import cv2

    if not thumbs:
        return None
    tiles = [cv2.resize(t, (side, side), interpolation=cv2.INTER_AREA) for t in thumbs]
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.hstack(tiles[i: i + columns]) for i in range(0, len(tiles), columns)]
    ok, buf = cv2.imencode(".png", np.vstack(rows))
    return buf.tobytes() if ok else None


def card_markdown(bins: list[dict], sources: dict[str, str], identities: dict[tuple, str], faces_total: int,
                  images: dict[str, str], all_softbins: Counter | None = None,
                  quality: dict[str, tuple[int, str]] | None = None) -> str:
    """Markdown for the card. `images` maps a caption to a relative image path; `all_softbins` counts
    every face of the `bins` table (what `select softbin, count(*) from bins group by 1` returns);
    `quality` maps a scorer to (faces it scored, the cut the splits apply)."""
    labels = Counter(b["label"] for b in bins)
    by_source = Counter(sources.get(b["video_id"], "?") for b in bins)
    ids = Counter(identities.get((b["video_id"], b.get("track_id"))) for b in bins)
    ids.pop(None, None)
    lines = ["# EFHQ dataset card", "",
             f"{len(bins)} EFHQ-filtered faces (of {faces_total} detected) from "
             f"{len({b['video_id'] for b in bins})} videos, {len(ids)} identities.", "",
             "## Faces per pose bin (label = reviewed label, else EFHQ's released softbin, else softbin)", "",
             "| bin | faces |", "|---|---|"]
    lines += [f"| {k} | {labels[k]} |" for k in BIN_ORDER if labels.get(k)]
    if all_softbins is not None:
        lines += ["", "## Every detected face by softbin (`select softbin, count(*) from bins group by 1`)", "",
                  "| softbin | faces |", "|---|---|"]
        lines += [f"| {k} | {all_softbins[k]} |" for k in BIN_ORDER if all_softbins.get(k)]
    if quality:
        lines += ["", "## Quality scorer (the splits keep faces with score >= the cut of their scorer)", "",
                  "| scorer | faces | cut |", "|---|---|---|"]
        lines += [f"| {k} | {n} | {cut} |" for k, (n, cut) in sorted(quality.items())]
    lines += ["", "## Faces per source dataset", "", "| source | faces |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(by_source.items())]
    lines += ["", "## Faces per identity", "", "| identity | faces |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(ids.items(), key=lambda kv: (-kv[1], kv[0]))[:50]]
    for caption, path in images.items():
        lines += ["", f"## {caption}", "", f"![{caption}]({path})"]
    return "\n".join(lines) + "\n"


def _quality_summary(root, quality: list[dict], keep: set) -> dict[str, tuple[int, str]]:
    """scorer -> (EFHQ-filtered faces it scored, the cut the splits apply to it)."""
    counts = Counter(q["scorer"] for q in quality
                     if (q["video_id"], q["clip_id"], q["frame_index"], q["face_index"]) in keep)
    out = {}
    for scorer, n in counts.items():
        rule = SCORERS[scorer].default_threshold if scorer in SCORERS else None
        if isinstance(rule, str):  # a percentile rule, frozen in the settings on the first build
            frozen = getattr(load_settings(root), f"quality_threshold_{scorer}", None)
            cut = f"{frozen:.2f} ({rule}, frozen)" if frozen is not None else f"{rule} (not frozen yet)"
        else:
            cut = "none" if rule is None else f"{rule:g}"
        out[scorer] = (n, cut)
    return out


def render_card(root, out, thumbs_per_bin: int = 16) -> dict:
    """Render the card from the per-video tables of data root `root` into the folder `out`: pose.png, one
    contact sheet per bin (evenly spaced faces, cut by re-decoding only their frames) and dataset_card.md.

    Returns {"bins": the EFHQ-filtered, not-removed faces' bin rows (with track_id), "identities":
    {(video_id, track_id): identity_id}, "pose_png": bytes, "sheets": {label: png bytes}}."""
    def read_all(table: str) -> list[dict]:
        df = read_table_files(root, table)
        return df.to_dicts() if df is not None else []

    faces = {(f["video_id"], f["clip_id"], f["frame_index"], f["face_index"]): f for f in read_all("faces")}
    keep = {k for k, f in faces.items() if f["passes_efhq_filter"]}
    all_bins = read_all("bins")
    all_softbins = Counter(b["softbin"] for b in all_bins)
    bins = [dict(b, track_id=faces[k]["track_id"]) for b in all_bins
            if (k := (b["video_id"], b["clip_id"], b["frame_index"], b["face_index"])) in keep and b["label"] != "remove"]
    poses = [p for p in read_all("poses") if p["estimator"] == "combined"
             and (p["video_id"], p["clip_id"], p["frame_index"], p["face_index"]) in keep]
    videos = {v["video_id"]: v for v in read_all("videos")}
    identities = {(i["video_id"], i["track_id"]): i["identity_id"] for i in read_all("identities")}
    images = {}
    yaw = np.array([p["yaw"] for p in poses if p["yaw"] is not None], float)
    pitch = np.array([p["pitch"] for p in poses if p["pitch"] is not None], float)
    pose_png = pose_figure_png(yaw, pitch)
    atomic_write_bytes(out / "pose.png", pose_png)
    images["Pose distribution (combined estimator)"] = "pose.png"
    by_bin = defaultdict(list)
    for b in sorted(bins, key=lambda b: (b["video_id"], b["frame_index"], b["face_index"])):
        by_bin[b["label"]].append(b)
    sheets = {}
    for label, members in sorted(by_bin.items()):
        step = max(len(members) // thumbs_per_bin, 1)
        chosen = [faces[(m["video_id"], m["clip_id"], m["frame_index"], m["face_index"])] for m in members[::step]]
        thumbs = []
        for video_id in sorted({c["video_id"] for c in chosen}):
            for image, rows in iter_faces_by_frame(videos[video_id]["path"], [c for c in chosen if c["video_id"] == video_id]):
                thumbs += [face_crop(image, [r["x1"], r["y1"], r["x2"], r["y2"]], out=96) for r in rows]
        png = contact_sheet_png(thumbs[:thumbs_per_bin])
        if png:
            atomic_write_bytes(out / f"sheet_{label}.png", png)
            images[f"Contact sheet: {label}"] = f"sheet_{label}.png"
            sheets[label] = png
    markdown = card_markdown(bins, {v: r["source"] for v, r in videos.items()}, identities, len(faces), images,
                             all_softbins, _quality_summary(root, read_all("quality"), keep))
    atomic_write_bytes(out / "dataset_card.md", markdown.encode())
    return {"bins": bins, "identities": identities, "pose_png": pose_png, "sheets": sheets}
