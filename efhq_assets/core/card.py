"""The dataset card: counts per bin, source and identity, pose histograms and a contact sheet per bin."""

from __future__ import annotations

import io
from collections import Counter

import numpy as np

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
                  images: dict[str, str], all_softbins: Counter | None = None) -> str:
    """Markdown for the card. `images` maps a caption to a relative image path; `all_softbins` counts
    every face of the `bins` table (what `select softbin, count(*) from bins group by 1` returns)."""
    labels = Counter(b["label"] for b in bins)
    by_source = Counter(sources.get(b["video_id"], "?") for b in bins)
    ids = Counter(identities.get((b["video_id"], b.get("track_id"))) for b in bins)
    ids.pop(None, None)
    lines = ["# EFHQ dataset card", "",
             f"{len(bins)} EFHQ-filtered faces (of {faces_total} detected) from "
             f"{len({b['video_id'] for b in bins})} videos, {len(ids)} identities.", "",
             "## Faces per pose bin (label = reviewed label, else softbin)", "", "| bin | faces |", "|---|---|"]
    lines += [f"| {k} | {labels[k]} |" for k in BIN_ORDER if labels.get(k)]
    if all_softbins is not None:
        lines += ["", "## Every detected face by softbin (`select softbin, count(*) from bins group by 1`)", "",
                  "| softbin | faces |", "|---|---|"]
        lines += [f"| {k} | {all_softbins[k]} |" for k in BIN_ORDER if all_softbins.get(k)]
    lines += ["", "## Faces per source dataset", "", "| source | faces |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(by_source.items())]
    lines += ["", "## Faces per identity", "", "| identity | faces |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(ids.items(), key=lambda kv: (-kv[1], kv[0]))[:50]]
    for caption, path in images.items():
        lines += ["", f"## {caption}", "", f"![{caption}]({path})"]
    return "\n".join(lines) + "\n"
