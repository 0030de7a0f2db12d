"""The per-task splits: what users train on. Unpartitioned assets named as their manifest tables.

Each reads the EFHQ-filtered candidate faces, selects deterministically (identity-hash splits, seeded
caps), writes its table and its export under <data_root>/tasks/<task>/, swapped in atomically. The logic
is core/tasks/exports.py; these assets record lineage and report metadata.
"""

import dagster as dg
import polars as pl

from efhq_assets.core import stages
from efhq_assets.core.embedding_cache import cache_path
from efhq_assets.core.lineage import record_lineage
from efhq_assets.core.storage import DataRoot, read_rows
from efhq_assets.core.tasks.eg3d import SPLIT_EG3D_COLUMNS
from efhq_assets.core.tasks.exports import (candidates, embed_aligned, exports_in_build, select_options, selectors,
                                            swapped_dir, write_split_table, write_verification_pairs)
from efhq_assets.core.tasks.gan import SPLIT_GAN_COLUMNS
from efhq_assets.core.tasks.metrics import VERIFICATION_REPORT_COLUMNS, pair_scores, verification_report_rows
from efhq_assets.core.tasks.reenactment import SPLIT_REENACTMENT_COLUMNS
from efhq_assets.core.tasks.t2i import SPLIT_T2I_COLUMNS

from .lineage import stage_asset_kwargs
from .resources import EfhqStorage


def _counts_md(df: pl.DataFrame, *cols: str) -> dg.MetadataValue:
    if not df.height:
        return dg.MetadataValue.md("(empty)")
    grouped = df.group_by(list(cols)).len().sort(list(cols)).to_dicts()
    return dg.MetadataValue.md(f"| {' | '.join(cols)} | rows |\n|{'---|' * (len(cols) + 1)}\n" + "\n".join(
        "| " + " | ".join(str(g[c]) for c in cols) + f" | {g['len']} |" for g in grouped))


def _asset(name: str, description: str, **kw):
    return dg.asset(**stage_asset_kwargs(name), kinds={"python"}, description=description, **kw)


def _export_progress(context, task: str):
    """The export's progress in the run's log (an export of thousands of faces takes minutes)."""
    return lambda done, total: context.log.info(f"{task} export: {done}/{total} rows rendered")


def build_split(context, storage: EfhqStorage, task: str, table: str, columns):
    """Select rows, write the table, render the export into <data_root>/tasks/<task> when enabled."""
    root = storage.root()
    select, render = selectors()[task]
    rows = select(candidates(root), **select_options(root, task))
    df = write_split_table(root, table, rows, columns)
    result = None
    if exports_in_build(root):
        with swapped_dir(root.tasks / task) as tmp:
            result = render(root, rows, tmp, progress=_export_progress(context, task))
    record_lineage(root, table, "all", stages.stage(table).code_version, context.run.run_id, "", df.height)
    return df, result


def _export_metadata(root: DataRoot, task: str, result: dict | None) -> dict:
    if result is None:
        return {"export": f"not rendered in builds: efhq export {task} --out DIR"}
    return {"export": dg.MetadataValue.path(str(root.tasks / task)), "images": result["count"]}


@_asset("split_gan", "StyleGAN2-ADA split: FFHQ-aligned faces (single-warp alignment matching the reference recipe), "
        "<= 10 per (identity, bin), most extreme and best first, labels frontal/extreme; exported (efhq export gan) "
        "as a zip that StyleGAN2-ADA reads (dataset.json labels) + metadata.json lineage. Train with --cond=1.")
def split_gan(context: dg.AssetExecutionContext, storage: EfhqStorage) -> dg.MaterializeResult:
    df, result = build_split(context, storage, "gan", "split_gan", SPLIT_GAN_COLUMNS)
    return dg.MaterializeResult(metadata={"rows": df.height, **_export_metadata(storage.root(), "gan", result),
                                          "labels": _counts_md(df, "label"), "dagster/row_count": df.height})


@_asset("split_eg3d", "EG3D split: 512 crops from 5 landmarks and 25-value camera labels (cam2world at radius 2.7, "
        "fx=fy=4.2647, cx=cy=0.5) from our poses; dataset.json in EG3D's format (efhq export eg3d).")
def split_eg3d(context: dg.AssetExecutionContext, storage: EfhqStorage) -> dg.MaterializeResult:
    df, result = build_split(context, storage, "eg3d", "split_eg3d", SPLIT_EG3D_COLUMNS)
    return dg.MaterializeResult(metadata={"rows": df.height, **_export_metadata(storage.root(), "eg3d", result),
                                          "labels": _counts_md(df, "label"), "dagster/row_count": df.height})


@_asset("split_t2i", "Text-to-image (ControlNet) split: FaceMesh 478-point condition images on black, EG3D-style "
        "target crops, captions from pose words plus CelebV-HQ's human-annotated attributes where present; "
        "prompts.json as ControlNet's training reads it (efhq export t2i).")
def split_t2i(context: dg.AssetExecutionContext, storage: EfhqStorage) -> dg.MaterializeResult:
    df, result = build_split(context, storage, "t2i", "split_t2i", SPLIT_T2I_COLUMNS)
    return dg.MaterializeResult(metadata={
        "rows": df.height, **_export_metadata(storage.root(), "t2i", result), "labels": _counts_md(df, "label"),
        "example_prompts": dg.MetadataValue.md("\n".join(
            f"- {p}" for p in df["prompt"].unique().sort().to_list()[:8])) if df.height else "",
        "dagster/row_count": df.height})


@_asset("split_reenactment", "Face reenactment split: 256x256 tube crops per clip, frames labelled frontal/extreme, "
        "train pairs (frontal source, extreme driving), a 25% identity-disjoint test set chosen by identity hash "
        "with self- and cross-identity pairs (efhq export reenactment).",
        check_specs=[dg.AssetCheckSpec("train_test_identity_disjoint", asset="split_reenactment", blocking=True)])
def split_reenactment(context: dg.AssetExecutionContext, storage: EfhqStorage) -> dg.MaterializeResult:
    root = storage.root()
    select, render = selectors()["reenactment"]
    frames, pairs = select(candidates(root))
    df = write_split_table(root, "split_reenactment", frames, SPLIT_REENACTMENT_COLUMNS)
    result = None
    if exports_in_build(root):
        with swapped_dir(root.tasks / "reenactment") as tmp:
            result = render(root, (frames, pairs), tmp, progress=_export_progress(context, "reenactment"))
    train_ids = set(df.filter(pl.col("split") == "train")["identity_id"]) if df.height else set()
    test_ids = set(df.filter(pl.col("split") == "test")["identity_id"]) if df.height else set()
    overlap = sorted(train_ids & test_ids)
    record_lineage(root, "split_reenactment", "all", stages.stage("split_reenactment").code_version, context.run.run_id, "", df.height)
    return dg.MaterializeResult(
        metadata={"rows": df.height, "pairs": len(pairs), **_export_metadata(root, "reenactment", result),
                  "splits": _counts_md(df, "split", "label"), "dagster/row_count": df.height},
        check_results=[dg.AssetCheckResult(check_name="train_test_identity_disjoint", passed=not overlap,
                                           metadata={"overlapping_identities": len(overlap)})])


@_asset("verification_pairs", "Cross-view verification benchmark: ArcFace 112x112 alignment, up to 50 frontal and 100 "
        "per non-frontal bin per identity, seeded degradations, f2f/f2p/p2p lists (half genuine, half impostor, no "
        "duplicates; identities from face_identities). Exported as path1<TAB>path2<TAB>issame TSVs plus the images.",
        check_specs=[dg.AssetCheckSpec("impostors_never_one_identity", asset="verification_pairs", blocking=True)])
def verification_pairs(context: dg.AssetExecutionContext, storage: EfhqStorage) -> dg.MaterializeResult:
    root = storage.root()
    df, n_images = write_verification_pairs(root)
    bad = df.filter(~pl.col("issame") & (pl.col("identity1") == pl.col("identity2"))).height if df.height else 0
    record_lineage(root, "verification_pairs", "all", stages.stage("verification_pairs").code_version, context.run.run_id, "", df.height)
    return dg.MaterializeResult(
        metadata={"pairs": df.height, "images": n_images,
                  "export": dg.MetadataValue.path(str(root.tasks / "verification")),
                  "by_protocol": _counts_md(df, "protocol", "issame"), "dagster/row_count": df.height},
        check_results=[dg.AssetCheckResult(check_name="impostors_never_one_identity", passed=bad == 0,
                                           metadata={"impostor_pairs_sharing_identity": bad})])


@_asset("verification_report", "TAR at FAR 1e-1..1e-5 (10-fold: threshold on 9 folds, applied to the held-out one), "
        "CFP-style accuracy and the drop from f2f to f2p/p2p, for the configured face-recognition model. A FAR below "
        "1/(impostors per fold) is null.")
def verification_report(context: dg.AssetExecutionContext, storage: EfhqStorage) -> dg.MaterializeResult:
    root = storage.root()
    pairs = read_rows(root, "verification_pairs", "all")
    folder = root.tasks / "verification"
    model, scores = pair_scores(pairs, lambda paths: embed_aligned([folder / p for p in paths],
                                                                  cache_path(root, "verification_embeddings")))
    rows = verification_report_rows(pairs, scores, model) if pairs else []
    df = write_split_table(root, "verification_report", rows, VERIFICATION_REPORT_COLUMNS)
    record_lineage(root, "verification_report", "all", stages.stage("verification_report").code_version, context.run.run_id, "", df.height,
                          {"embedder": model})
    table = "| protocol | FAR | TAR | n_genuine | n_impostor |\n|---|---|---|---|---|\n" + "\n".join(
        f"| {r['protocol']} | {r['far']:g} | {_fmt(r['tar'])} "
        f"| {r['n_genuine']} | {r['n_impostor']} |" for r in rows)
    return dg.MaterializeResult(metadata={"model": model, "report": dg.MetadataValue.md(table),
                                          "dagster/row_count": df.height})


def _fmt(value) -> str:
    return "null" if value is None else f"{value:.3f}"
