"""`dataset_card`: counts, pose plots and per-bin contact sheets, as markdown + images and UI metadata."""

import base64

import dagster as dg
import polars as pl

from efhq_assets.core import card, stages
from efhq_assets.core.lineage import record_lineage

from .lineage import stage_asset_kwargs
from .resources import EfhqStorage

THUMBS_PER_BIN = 16


def _md_image(png: bytes) -> str:
    """The image as a JPEG (quality 85) in markdown: Dagster stores the metadata of a materialization three times
    (run event log, asset index, latest-materialization cache), so PNG contact sheets made the run history grow
    by megabytes per card; the full-quality PNGs stay under <data_root>/card/."""
    import cv2
    import numpy as np

    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85]) if image is not None else (False, None)
    if not ok:
        return f"![img](data:image/png;base64,{base64.b64encode(png).decode()})"
    return f"![img](data:image/jpeg;base64,{base64.b64encode(buf.tobytes()).decode()})"


@dg.asset(
    **stage_asset_kwargs("dataset_card"),
    kinds={"python"},
    description="Counts per bin, source and identity; yaw/pitch histograms and a pose scatter; a contact sheet per "
                "bin. Written to <data_root>/card/ and shown here.",
)
def dataset_card(context: dg.AssetExecutionContext, storage: EfhqStorage) -> dg.MaterializeResult:
    root = storage.root()
    out = root.path / "card"
    rendered = card.render_card(root, out, THUMBS_PER_BIN)
    bins, identities, pose_png, sheets = (rendered["bins"], rendered["identities"], rendered["pose_png"],
                                          rendered["sheets"])
    record_lineage(root, "dataset_card", "all", stages.stage("dataset_card").code_version, context.run.run_id, "", len(bins))
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
