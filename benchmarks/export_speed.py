"""Training exports (`efhq export TASK`): time and bytes, shipped encoder settings against the previous ones.

Run: .venv/bin/python benchmarks/export_speed.py [--data-root efhq_data] [--tasks gan,eg3d,t2i] [--repeats 2]
Progress goes to stderr; the figures are ONE JSON object on the last stdout line.

Input: a built data root (default ./efhq_data, which `make demo` builds).  Each task is exported with
``core.tasks.exports.export_task`` (what `efhq export` runs) into a temporary folder, alternately with

- ``baseline``: the settings before this benchmark existed, zlib's default strategy at level 6
  (``tasks.common.PNG_STRATEGY = "default"``), FFHQ's padding blur at full size
  (``align.PAD_BLUR_MIN_SIGMA_PX = inf``) and one thread (``tasks.common.EXPORT_THREADS = 1``);
- ``shipped``: the product's settings (Z_RLE at level 6, the blur on a shrunk copy, ``EXPORT_THREADS`` threads:
  the CPU count, at most 8).

Figures per task: the best wall time of ``--repeats`` runs of each, their ratio (baseline / shipped), the bytes
written by each, and how far the pixels moved: every PNG decoded from both, the largest per-pixel difference
and the lowest PSNR (the encoder is lossless; only the blur may move a pixel).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def pngs(folder: Path) -> dict[str, bytes]:
    """Every PNG under ``folder``, zip members included, by relative name."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.suffix == ".png":
            out[str(p.relative_to(folder))] = p.read_bytes()
        elif p.suffix == ".zip":
            with zipfile.ZipFile(p) as z:
                out.update({f"{p.name}/{n}": z.read(n) for n in z.namelist() if n.endswith(".png")})
    return out


def pixel_change(a: dict[str, bytes], b: dict[str, bytes]) -> dict:
    import cv2

    if set(a) != set(b):
        raise AssertionError(f"the two exports hold different images: {sorted(set(a) ^ set(b))[:5]}")
    worst, psnrs = 0, []
    for name in a:
        x, y = (cv2.imdecode(np.frombuffer(v[name], np.uint8), cv2.IMREAD_UNCHANGED).astype(np.int16) for v in (a, b))
        d = np.abs(x - y)
        worst = max(worst, int(d.max()))
        mse = float(np.mean(d.astype(np.float64) ** 2))
        psnrs.append(math.inf if mse == 0 else 10 * math.log10(255 ** 2 / mse))
    finite = [p for p in psnrs if math.isfinite(p)]
    return {"images": len(a), "identical_images": len(psnrs) - len(finite), "max_abs_pixel_diff": worst,
            "min_psnr_db": round(min(finite), 1) if finite else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-root", type=Path, default=REPO / "efhq_data")
    ap.add_argument("--tasks", default="gan,eg3d,t2i")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    if not (args.data_root / "manifest.duckdb").exists():
        raise SystemExit(f"{args.data_root} holds no built data root: run `make demo` first (or pass --data-root)")

    from efhq_assets.core import align
    from efhq_assets.core.storage import DataRoot
    from efhq_assets.core.tasks import common
    from efhq_assets.core.tasks.exports import export_task

    settings = {"baseline": ("default", math.inf, 1),
                "shipped": (common.PNG_STRATEGY, align.PAD_BLUR_MIN_SIGMA_PX, common.EXPORT_THREADS)}
    root = DataRoot(args.data_root)
    result: dict = {"benchmark": "export_speed", "data_root": str(args.data_root), "repeats": args.repeats,
                    "cpu_count": os.cpu_count(), "threads_shipped": common.EXPORT_THREADS, "tasks": {}}
    with tempfile.TemporaryDirectory(prefix="efhq-export-bench-") as tmp:
        for task in args.tasks.split(","):
            seconds: dict[str, list[float]] = {k: [] for k in settings}
            written: dict[str, dict[str, bytes]] = {}
            size: dict[str, int] = {}
            for rep in range(args.repeats):
                for name in (settings if rep % 2 == 0 else reversed(list(settings))):
                    common.PNG_STRATEGY, align.PAD_BLUR_MIN_SIGMA_PX, common.EXPORT_THREADS = settings[name]
                    out = Path(tmp) / f"{task}_{name}"
                    shutil.rmtree(out, ignore_errors=True)
                    t0 = time.perf_counter()
                    export_task(root, task, out)
                    seconds[name].append(time.perf_counter() - t0)
                    size[name] = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
                    written[name] = pngs(out)
                    log(f"{task} {name}: {seconds[name][-1]:.1f} s, {size[name] / 1e6:.1f} MB")
            common.PNG_STRATEGY, align.PAD_BLUR_MIN_SIGMA_PX, common.EXPORT_THREADS = settings["shipped"]
            best = {k: min(v) for k, v in seconds.items()}
            result["tasks"][task] = {
                "seconds_best": {k: round(v, 2) for k, v in best.items()},
                "speedup_baseline_over_shipped": round(best["baseline"] / best["shipped"], 2),
                "bytes": size,
                "bytes_ratio_shipped_over_baseline": round(size["shipped"] / size["baseline"], 4),
                **pixel_change(written["baseline"], written["shipped"]),
            }
    t = result["tasks"]
    result["total_seconds_best"] = {k: round(sum(v["seconds_best"][k] for v in t.values()), 2) for k in settings}
    result["speedup_total"] = round(result["total_seconds_best"]["baseline"] / result["total_seconds_best"]["shipped"], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
