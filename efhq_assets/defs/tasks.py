"""The per-task splits: what users train on. Unpartitioned assets named as their manifest tables.

Each reads the EFHQ-filtered candidate faces, selects deterministically (identity-hash splits, seeded
caps), writes its table and its export under <data_root>/tasks/<task>/, swapped in atomically.
"""

import contextlib
import functools
import hashlib
import json
import os
import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl

from efhq_assets.core import stages

from efhq_assets.core.fingerprints import fingerprint

from efhq_assets.core.lineage import record_lineage
from efhq_assets.core.settings import load_settings, update_settings
from efhq_assets.core.storage import DataRoot, write_table
from efhq_assets.core.tasks.candidates import FrameCache, candidate_rows

from .lineage import stage_asset_kwargs
from .resources import EfhqStorage

GAN_RESOLUTION = 512


CANDIDATE_TABLES = ("faces", "bins", "poses", "quality", "landmarks", "identities", "clips", "videos")
_candidates_memo: dict = {}


def _tables_stamp(root: DataRoot) -> tuple:
    """Names, sizes and mtimes of the files candidate_rows reads (a listing, no file opened)."""
    stamp = []
    for table in CANDIDATE_TABLES:
        try:
            with os.scandir(root.tables / table) as entries:
                stamp.append((table, tuple(sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns)
                                                  for e in entries if e.name.endswith(".parquet")))))
        except FileNotFoundError:
            stamp.append((table, ()))
    return tuple(stamp)


def candidates(root: DataRoot) -> list[dict]:
    """Candidate faces with the quality threshold frozen in the data root's settings on first use.

    The five task assets of one build read the same rows: they are read once per process while no input
    file changed (a listing decides), and each caller gets its own copies."""
    from efhq_assets.core.quality import DEFAULT_SCORER

    key = f"quality_threshold_{DEFAULT_SCORER}"
    settings = load_settings(root)
    frozen = getattr(settings, key)
    # selection "efhq": the labels EFHQ's review dropped enter no split (candidate_rows' default)
    drop_labels = None if settings.selection == "efhq" else ()
    memo_key = (str(root.path), frozen, settings.selection, _tables_stamp(root))
    if _candidates_memo.get("key") == memo_key:
        return [dict(r) for r in _candidates_memo["rows"]]
    rows, threshold = candidate_rows(root, frozen, drop_labels=drop_labels)
    if rows and frozen is None and threshold is not None:
        update_settings(root, **{key: threshold})
        memo_key = (str(root.path), threshold, settings.selection, memo_key[3])
    _candidates_memo.clear()
    _candidates_memo.update(key=memo_key, rows=rows)
    return [dict(r) for r in rows]


@contextlib.contextmanager
def swapped_dir(target: Path):
    """Build an export in a sibling temp folder, then swap it in: readers never see a half export."""
    tmp = target.with_name(f".tmp-{os.getpid()}-{target.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        old = target.with_name(f".tmp-{os.getpid()}-old-{target.name}")
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_split_table(root: DataRoot, table: str, rows: list[dict], columns) -> pl.DataFrame:
    from efhq_assets.core.tasks.common import table_rows

    df = pl.DataFrame(table_rows(rows, columns), infer_schema_length=None) if rows else pl.DataFrame(
        {c: [] for c in columns})
    write_table(root, table, "all", df)
    return df


def _counts_md(df: pl.DataFrame, *cols: str) -> dg.MetadataValue:
    if not df.height:
        return dg.MetadataValue.md("(empty)")
    grouped = df.group_by(list(cols)).len().sort(list(cols)).to_dicts()
    return dg.MetadataValue.md(f"| {' | '.join(cols)} | rows |\n|{'---|' * (len(cols) + 1)}\n" + "\n".join(
        "| " + " | ".join(str(g[c]) for c in cols) + f" | {g['len']} |" for g in grouped))


def _asset(name: str, description: str, **kw):
    return dg.asset(**stage_asset_kwargs(name), kinds={"python"}, description=description, **kw)


def exports_in_build(root: DataRoot) -> bool:
    """Training exports are rendered on request (`efhq export TASK --out DIR`), not on every build: they are
    the bulk of the bytes and of a build's time (benchmarks/overhead.py). `efhq build --render-exports`
    (kept in the data root's settings) renders them into <data_root>/tasks/ as part of the build."""
    return load_settings(root).render_exports


def _frame_renderer(rows: list[dict], crop):
    from efhq_assets.core.tasks.common import lmk5_of

    cache = FrameCache(rows)

    def render(row):
        frame = cache.frame(row)
        return None if frame is None else crop(frame, lmk5_of(row))

    return render


def _by_video(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: (r["video_id"], r["frame_index"]))


def render_gan(root: DataRoot, rows: list[dict], out: Path) -> dict:
    from efhq_assets.core.align import align_ffhq_fast
    from efhq_assets.core.tasks.gan import export_stylegan_zip

    render = _frame_renderer(rows, lambda frame, lmk5: align_ffhq_fast(frame, lmk5, output_size=GAN_RESOLUTION))
    return export_stylegan_zip(_by_video(rows), render, out / f"efhq_gan_{GAN_RESOLUTION}.zip",
                               resolution=GAN_RESOLUTION)


def render_eg3d(root: DataRoot, rows: list[dict], out: Path) -> dict:
    from efhq_assets.core.align import eg3d_crop
    from efhq_assets.core.tasks.eg3d import export_eg3d

    size = load_settings(root).eg3d_resolution  # 512 (EG3D's FFHQ) or 1024; _mirror copies as EFHQ's preprocessing
    return export_eg3d(_by_video(rows), _frame_renderer(rows, lambda frame, lmk5: eg3d_crop(frame, lmk5, size=size)[0]),
                       out, size=size)


def render_t2i(root: DataRoot, rows: list[dict], out: Path) -> dict:
    from efhq_assets.core.align import eg3d_crop
    from efhq_assets.core.tasks.t2i import export_t2i

    return export_t2i(_by_video(rows), _frame_renderer(rows, eg3d_crop), out)


def render_reenactment_export(root: DataRoot, selection: tuple[list[dict], list[dict]], out: Path) -> dict:
    from efhq_assets.core.tasks.common import write_json_atomic
    from efhq_assets.core.tasks.reenactment import render_reenactment, write_train_test_lists

    frames, pairs = selection
    by_instance: dict[str, list[dict]] = {}
    for r in frames:
        by_instance.setdefault(r["instance_id"], []).append(r)
    written: list[str] = []
    for instance_rows in by_instance.values():
        cache = FrameCache(instance_rows)  # one instance = one clip of one video
        first = instance_rows[0]
        width, height = _frame_size(root, first["video_id"])
        written += render_reenactment(instance_rows, lambda i, r=first: cache.frame({**r, "frame_index": i}),
                                      width, height, out)
    write_json_atomic(out / "pairs.json", pairs, indent=1)
    lists = write_train_test_lists(frames, written, out)  # EFHQ's TPS / LIA lists (train_0.25.txt, test_0.25.txt)
    return {"count": len(written), "pairs": len(pairs), "list_lines": lists}


def _selectors():
    from efhq_assets.core.tasks.eg3d import select_eg3d
    from efhq_assets.core.tasks.gan import select_gan
    from efhq_assets.core.tasks.reenactment import reenactment_rows
    from efhq_assets.core.tasks.t2i import select_t2i

    return {"gan": (select_gan, render_gan), "eg3d": (select_eg3d, render_eg3d), "t2i": (select_t2i, render_t2i),
            "reenactment": (reenactment_rows, render_reenactment_export)}


def _select_options(root: DataRoot, task: str) -> dict:
    """The selection setting's cap groups: EFHQ's (clip, bin) or the project's (identity, bin)."""
    from efhq_assets.core.tasks.gan import EFHQ_GAN_GROUP, PROJECT_GAN_GROUP

    if task not in ("gan", "eg3d", "t2i"):
        return {}
    return {"group_by": EFHQ_GAN_GROUP if load_settings(root).selection == "efhq" else PROJECT_GAN_GROUP}


def export_task(root: DataRoot, task: str, out: Path) -> dict:
    """Render one task's training export into `out` (swapped in when complete). Same selection as its asset."""
    if task == "verification":  # rendered by verification_pairs (the report embeds those very images)
        source = root.tasks / "verification"
        if not source.exists():
            raise FileNotFoundError(f"no verification benchmark in {root.path} yet: run `efhq build` first")
        with swapped_dir(out) as tmp:
            shutil.copytree(source, tmp, dirs_exist_ok=True)
        return {"count": sum(1 for p in out.rglob("*.png"))}
    select, render = _selectors()[task]
    selection = select(candidates(root), **_select_options(root, task))
    with swapped_dir(out) as tmp:
        return render(root, selection, tmp)


def build_split(context, storage: EfhqStorage, task: str, table: str, columns):
    """Select rows, write the table, render the export into <data_root>/tasks/<task> when enabled."""
    root = storage.root()
    select, render = _selectors()[task]
    rows = select(candidates(root), **_select_options(root, task))
    df = write_split_table(root, table, rows, columns)
    result = None
    if exports_in_build(root):
        with swapped_dir(root.tasks / task) as tmp:
            result = render(root, rows, tmp)
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
    from efhq_assets.core.tasks.gan import SPLIT_GAN_COLUMNS

    df, result = build_split(context, storage, "gan", "split_gan", SPLIT_GAN_COLUMNS)
    return dg.MaterializeResult(metadata={"rows": df.height, **_export_metadata(storage.root(), "gan", result),
                                          "labels": _counts_md(df, "label"), "dagster/row_count": df.height})


@_asset("split_eg3d", "EG3D split: 512 crops from 5 landmarks and 25-value camera labels (cam2world at radius 2.7, "
        "fx=fy=4.2647, cx=cy=0.5) from our poses; dataset.json in EG3D's format (efhq export eg3d).")
def split_eg3d(context: dg.AssetExecutionContext, storage: EfhqStorage) -> dg.MaterializeResult:
    from efhq_assets.core.tasks.eg3d import SPLIT_EG3D_COLUMNS

    df, result = build_split(context, storage, "eg3d", "split_eg3d", SPLIT_EG3D_COLUMNS)
    return dg.MaterializeResult(metadata={"rows": df.height, **_export_metadata(storage.root(), "eg3d", result),
                                          "labels": _counts_md(df, "label"), "dagster/row_count": df.height})


@_asset("split_t2i", "Text-to-image (ControlNet) split: FaceMesh 478-point condition images on black, EG3D-style "
        "target crops, captions from pose words plus CelebV-HQ's human-annotated attributes where present; "
        "prompts.json as ControlNet's training reads it (efhq export t2i).")
def split_t2i(context: dg.AssetExecutionContext, storage: EfhqStorage) -> dg.MaterializeResult:
    from efhq_assets.core.tasks.t2i import SPLIT_T2I_COLUMNS

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
    from efhq_assets.core.tasks.reenactment import SPLIT_REENACTMENT_COLUMNS

    root = storage.root()
    select, render = _selectors()["reenactment"]
    frames, pairs = select(candidates(root))
    df = write_split_table(root, "split_reenactment", frames, SPLIT_REENACTMENT_COLUMNS)
    result = None
    if exports_in_build(root):
        with swapped_dir(root.tasks / "reenactment") as tmp:
            result = render(root, (frames, pairs), tmp)
    train_ids = set(df.filter(pl.col("split") == "train")["identity_id"]) if df.height else set()
    test_ids = set(df.filter(pl.col("split") == "test")["identity_id"]) if df.height else set()
    overlap = sorted(train_ids & test_ids)
    record_lineage(root, "split_reenactment", "all", stages.stage("split_reenactment").code_version, context.run.run_id, "", df.height)
    return dg.MaterializeResult(
        metadata={"rows": df.height, "pairs": len(pairs), **_export_metadata(root, "reenactment", result),
                  "splits": _counts_md(df, "split", "label"), "dagster/row_count": df.height},
        check_results=[dg.AssetCheckResult(check_name="train_test_identity_disjoint", passed=not overlap,
                                           metadata={"overlapping_identities": len(overlap)})])


def _frame_size(root: DataRoot, video_id: str) -> tuple[int, int]:
    from efhq_assets.core.storage import read_rows

    v = read_rows(root, "videos", video_id)[0]
    return int(v["width"]), int(v["height"])


def write_verification_pairs(root: DataRoot) -> tuple[pl.DataFrame, int]:
    """Render the benchmark images into tasks/verification (swapped in whole), write the f2f/f2p/p2p pair
    lists and the `verification_pairs` table; returns (its rows, the number of images)."""
    from efhq_assets.core.tasks.verification import (PROTOCOLS, VERIFICATION_PAIRS_COLUMNS, make_pairs,
                                                     sample_verification_faces, write_pairs_tsv)

    n_pairs = load_settings(root).verification_pairs_per_protocol
    samples = sample_verification_faces(candidates(root))
    target = root.tasks / "verification"
    rows: list[dict] = []
    with swapped_dir(target) as tmp:
        renders = render_verification_images(root, samples, target, tmp)
        for protocol in PROTOCOLS:
            pairs = make_pairs(samples, protocol, n_pairs)
            write_pairs_tsv(pairs, tmp / f"{protocol}_pairs.txt")
            rows.extend(pairs)
    save_render_index(root, renders)
    return write_split_table(root, "verification_pairs", rows, VERIFICATION_PAIRS_COLUMNS), len(samples)


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


@functools.lru_cache(maxsize=1)
def _verification_embedder():
    """insightface ArcFace when its weights are present, else dlib ResNet; loaded once per process (dlib's is
    the one track_embeddings already loaded)."""
    from efhq_assets.core.models import registry

    from .identities import _embedder

    try:
        registry.find_weights("arcface_w600k_r50")
        return registry.create("embedder", "arcface_w600k_r50")
    except Exception:  # weights absent: the offline embedder
        return _embedder()


VERIFICATION_RENDER_VERSION = "verification-render-2"  # align_arcface + degrade + PNG: bump when any changes (2: EFHQ preset)


def _render_index_path(root: DataRoot) -> Path:
    from efhq_assets.core.embedding_cache import cache_path

    return cache_path(root, "verification_renders")


def _load_render_index(root: DataRoot) -> dict[str, tuple[str, str]]:
    path = _render_index_path(root)
    try:
        df = pl.read_parquet(path, columns=["key", "path", "sha256"])
    except Exception:  # none yet, or unreadable: every image is rendered
        return {}
    return {k: (p, h) for k, p, h in df.iter_rows()}


def save_render_index(root: DataRoot, renders: list[tuple[str, str, str]]) -> None:
    from efhq_assets.core.storage import atomic_write_parquet

    keys, paths, shas = zip(*renders) if renders else ((), (), ())
    atomic_write_parquet(pl.DataFrame({"key": list(keys), "path": list(paths), "sha256": list(shas)},
                                      schema={"key": pl.Utf8, "path": pl.Utf8, "sha256": pl.Utf8}),
                         _render_index_path(root))


def render_verification_images(root: DataRoot, samples: list[dict], previous: Path, out: Path) -> list[tuple]:
    """Write each sample's aligned, degraded 112x112 PNG under `out` (its `path`); returns [(key, path, sha256)].

    An image is a function of the video's bytes, the frame, the 5 landmarks and the degradation seed (plus this
    code): that is its key. An image whose key was rendered by the previous build, into `previous`, and whose
    file there still has the recorded sha256 is linked (or copied) instead of decoded and rendered again, so a
    rebuild renders only new faces. Same bytes either way."""
    from efhq_assets.core.align import align_arcface
    from efhq_assets.core.storage import read_rows
    from efhq_assets.core.tasks.common import atomic_write_bytes, encode_png, lmk5_of
    from efhq_assets.core.tasks.verification import degrade

    video_sha: dict[str, str] = {}
    preset = load_settings(root).verification_degradation

    def key_of(s: dict) -> str:
        vid = s["video_id"]
        if vid not in video_sha:
            video_sha[vid] = ((read_rows(root, "videos", vid) or [{}])[0].get("sha256") or "")
        lmk = lmk5_of(s)
        return fingerprint(VERIFICATION_RENDER_VERSION, vid, video_sha[vid], int(s["frame_index"]),
                                  None if lmk is None else lmk.tolist(), int(s["degrade_seed"]), preset)

    old = _load_render_index(root)
    done: list[tuple[str, str, str]] = []
    todo = []
    for s in samples:
        key = key_of(s)
        hit = old.get(key)
        if hit is not None:
            src, dst = previous / hit[0], out / s["path"]
            try:
                if hashlib.sha256(src.read_bytes()).hexdigest() == hit[1]:
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    try:
                        os.link(src, dst)
                    except OSError:
                        shutil.copyfile(src, dst)
                    done.append((key, s["path"], hit[1]))
                    continue
            except OSError:
                pass
        todo.append((key, s))
    cache = FrameCache([s for _, s in todo])
    for key, s in sorted(todo, key=lambda ks: (ks[1]["video_id"], ks[1]["frame_index"], ks[1]["face_index"])):
        frame = cache.frame(s)
        if frame is None:
            continue
        data = encode_png(np.ascontiguousarray(degrade(align_arcface(frame, lmk5_of(s)), s["degrade_seed"], preset)))
        atomic_write_bytes(out / s["path"], data)
        done.append((key, s["path"], hashlib.sha256(data).hexdigest()))
    return done


def embed_aligned(paths: list[Path], cache_file: Path | None = None) -> tuple[str, np.ndarray]:
    """L2-normalised embeddings of aligned 112x112 faces (one row per path).

    With `cache_file` (core.embedding_cache), an image whose bytes, crop and model weights were embedded
    before is not embedded again: the vector comes from the cache, bit for bit what the model returned."""
    import cv2

    from efhq_assets.core.align import ARCFACE_TEMPLATE_112
    from efhq_assets.core.embedding_cache import EmbeddingCache

    model = _verification_embedder()
    # dlib's aligner wants a larger chip: the 112 image is scaled to 224 and the face box given in it
    box = np.array([24, 16, 200, 216], np.float32) if model.name == "dlib_resnet" else np.array([0, 0, 224, 224],
                                                                                                 np.float32)
    params = f"aligned-png;resize=224,cubic;box={','.join(str(int(v)) for v in box)};{model.version};" \
             f"{json.dumps(getattr(model, 'config', dict)(), sort_keys=True)}"
    lmk5 = [ARCFACE_TEMPLATE_112 * 2.0]  # where the aligned face's 5 points are in the 224 chip (ArcFace needs them)
    cache = EmbeddingCache(cache_file, params, model.name, model.weights_sha256) if cache_file else None
    vectors = []
    for path in paths:
        data = Path(path).read_bytes()
        key = hashlib.sha256(data).hexdigest()
        vector = cache.get(key) if cache else None
        if vector is None:
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            big = cv2.resize(image, (224, 224), interpolation=cv2.INTER_CUBIC)
            vector = model.embed(big, [box], lmk5)[0]
            if cache:
                cache.put(key, vector)
        vectors.append(vector)
    if cache:
        cache.save()
    arr = np.asarray(vectors, np.float64)
    arr /= np.maximum(np.linalg.norm(arr, axis=1, keepdims=True), 1e-12)
    return model.name, arr


@_asset("verification_report", "TAR at FAR 1e-1..1e-5 (10-fold: threshold on 9 folds, applied to the held-out one), "
        "CFP-style accuracy and the drop from f2f to f2p/p2p, for the configured face-recognition model. A FAR below "
        "1/(impostors per fold) is null.")
def verification_report(context: dg.AssetExecutionContext, storage: EfhqStorage) -> dg.MaterializeResult:
    from efhq_assets.core.embedding_cache import cache_path
    from efhq_assets.core.storage import read_rows
    from efhq_assets.core.tasks.metrics import VERIFICATION_REPORT_COLUMNS, pair_scores, verification_report_rows

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
