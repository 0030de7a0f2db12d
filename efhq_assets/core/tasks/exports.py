"""The per-task splits over a data root: the candidate faces (read once per process while no input file
changed), each task's selection and export renderer, the atomic swap of an export folder, and the
verification benchmark's images (rendered again only for new faces) and embeddings.

`defs/tasks.py`'s assets and `efhq export` call these; nothing here knows Dagster.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import polars as pl

from ..align import ARCFACE_TEMPLATE_112, align_arcface, align_ffhq_fast, eg3d_crop
from ..embedding_cache import EmbeddingCache, cache_path
from ..fingerprints import fingerprint
from ..identity_tables import track_embedder
from ..models import registry
from ..quality import DEFAULT_SCORER
from ..settings import load_settings, update_settings
from ..storage import DataRoot, atomic_write_bytes, atomic_write_parquet, read_rows, write_table
from .candidates import FrameCache, candidate_rows
from .common import ProgressTicker, encode_png, lmk5_of, table_rows, write_json_atomic
from .eg3d import export_eg3d, select_eg3d
from .gan import EFHQ_GAN_GROUP, PROJECT_GAN_GROUP, export_stylegan_zip, select_gan
from .reenactment import reenactment_rows, render_reenactment, write_train_test_lists
from .t2i import export_t2i, select_t2i
from .verification import (PROTOCOLS, VERIFICATION_PAIRS_COLUMNS, degrade, make_pairs, sample_verification_faces,
                           write_pairs_tsv)

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
    df = pl.DataFrame(table_rows(rows, columns), infer_schema_length=None) if rows else pl.DataFrame(
        {c: [] for c in columns})
    write_table(root, table, "all", df)
    return df

def exports_in_build(root: DataRoot) -> bool:
    """Training exports are rendered on request (`efhq export TASK --out DIR`), not on every build: they are
    the bulk of the bytes and of a build's time (benchmarks/overhead.py). `efhq build --render-exports`
    (kept in the data root's settings) renders them into <data_root>/tasks/ as part of the build."""
    return load_settings(root).render_exports


def _frame_renderer(rows: list[dict], crop, progress=None):
    """``render(row)``: the row's frame (decoded once per video) cropped; ``progress(done, total)`` now and then."""
    cache = FrameCache(rows)
    ticker = ProgressTicker(len(rows), progress)

    def render(row):  # called from the export's worker threads (tasks/common.ordered_parallel_map)
        frame = cache.frame(row)
        out = None if frame is None else crop(frame, lmk5_of(row))
        ticker.tick()
        return out

    return render


def _by_video(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: (r["video_id"], r["frame_index"]))


def render_gan(root: DataRoot, rows: list[dict], out: Path, progress=None) -> dict:
    render = _frame_renderer(rows, lambda frame, lmk5: align_ffhq_fast(frame, lmk5, output_size=GAN_RESOLUTION),
                             progress)
    return export_stylegan_zip(_by_video(rows), render, out / f"efhq_gan_{GAN_RESOLUTION}.zip",
                               resolution=GAN_RESOLUTION)


def render_eg3d(root: DataRoot, rows: list[dict], out: Path, progress=None) -> dict:
    size = load_settings(root).eg3d_resolution  # 512 (EG3D's FFHQ) or 1024; _mirror copies as EFHQ's preprocessing
    return export_eg3d(_by_video(rows), _frame_renderer(rows, lambda frame, lmk5: eg3d_crop(frame, lmk5, size=size)[0],
                                                        progress), out, size=size)


def render_t2i(root: DataRoot, rows: list[dict], out: Path, progress=None) -> dict:
    return export_t2i(_by_video(rows), _frame_renderer(rows, eg3d_crop, progress), out)


def render_reenactment_export(root: DataRoot, selection: tuple[list[dict], list[dict]], out: Path,
                              progress=None) -> dict:
    frames, pairs = selection
    by_instance: dict[str, list[dict]] = {}
    for r in frames:
        by_instance.setdefault(r["instance_id"], []).append(r)
    written: list[str] = []
    ticker = ProgressTicker(len(frames), progress)
    for instance_rows in by_instance.values():
        cache = FrameCache(instance_rows)  # one instance = one clip of one video
        first = instance_rows[0]
        width, height = frame_size(root, first["video_id"])
        written += render_reenactment(instance_rows, lambda i, r=first: cache.frame({**r, "frame_index": i}),
                                      width, height, out)
        ticker.tick(len(instance_rows))
    write_json_atomic(out / "pairs.json", pairs, indent=1)
    lists = write_train_test_lists(frames, written, out)  # EFHQ's TPS / LIA lists (train_0.25.txt, test_0.25.txt)
    return {"count": len(written), "pairs": len(pairs), "list_lines": lists}


def selectors():
    return {"gan": (select_gan, render_gan), "eg3d": (select_eg3d, render_eg3d), "t2i": (select_t2i, render_t2i),
            "reenactment": (reenactment_rows, render_reenactment_export)}


def select_options(root: DataRoot, task: str) -> dict:
    """The selection setting's cap groups: EFHQ's (clip, bin) or the project's (identity, bin)."""
    if task not in ("gan", "eg3d", "t2i"):
        return {}
    return {"group_by": EFHQ_GAN_GROUP if load_settings(root).selection == "efhq" else PROJECT_GAN_GROUP}


def export_task(root: DataRoot, task: str, out: Path, progress=None) -> dict:
    """Render one task's training export into `out` (swapped in when complete). Same selection as its asset.
    ``progress(done, total)``: called now and then with the rows rendered so far (not for `verification`, a copy)."""
    if task == "verification":  # rendered by verification_pairs (the report embeds those very images)
        source = root.tasks / "verification"
        if not source.exists():
            raise FileNotFoundError(f"no verification benchmark in {root.path} yet: run `efhq build` first")
        with swapped_dir(out) as tmp:
            shutil.copytree(source, tmp, dirs_exist_ok=True)
        return {"count": sum(1 for p in out.rglob("*.png"))}
    select, render = selectors()[task]
    selection = select(candidates(root), **select_options(root, task))
    with swapped_dir(out) as tmp:
        return render(root, selection, tmp, progress=progress)

def frame_size(root: DataRoot, video_id: str) -> tuple[int, int]:
    v = read_rows(root, "videos", video_id)[0]
    return int(v["width"]), int(v["height"])


def write_verification_pairs(root: DataRoot) -> tuple[pl.DataFrame, int]:
    """Render the benchmark images into tasks/verification (swapped in whole), write the f2f/f2p/p2p pair
    lists and the `verification_pairs` table; returns (its rows, the number of images)."""
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

@functools.lru_cache(maxsize=1)
def verification_embedder():
    """insightface ArcFace when its weights are present, else dlib ResNet; loaded once per process (dlib's is
    the one track_embeddings already loaded)."""
    try:
        registry.find_weights("arcface_w600k_r50")
        return registry.create("embedder", "arcface_w600k_r50")
    except Exception:  # weights absent: the offline embedder
        return track_embedder()


VERIFICATION_RENDER_VERSION = "verification-render-2"  # align_arcface + degrade + PNG: bump when any changes (2: EFHQ preset)


def _render_index_path(root: DataRoot) -> Path:
    return cache_path(root, "verification_renders")


def _load_render_index(root: DataRoot) -> dict[str, tuple[str, str]]:
    path = _render_index_path(root)
    try:
        df = pl.read_parquet(path, columns=["key", "path", "sha256"])
    except Exception:  # none yet, or unreadable: every image is rendered
        return {}
    return {k: (p, h) for k, p, h in df.iter_rows()}


def save_render_index(root: DataRoot, renders: list[tuple[str, str, str]]) -> None:
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


    model = verification_embedder()
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
