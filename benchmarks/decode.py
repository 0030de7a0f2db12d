"""Decode-stage benchmark: throughput, PNG-vs-streaming storage, and memory vs video length.

Run: .venv/bin/python benchmarks/decode.py [--quick] [--skip-build]
Progress goes to stderr; the figures are ONE JSON object on the last stdout line.

Clips are synthesized (no real face video ships in any package): a moving, zooming view of
skimage.data.astronaut() upscaled, with mild noise, H.264 crf 23. They are cached in a temp dir.

Timing: the machine may be shared, so raw and stage runs are interleaved and the best of each
is reported; each stage/raw ratio is measured in --ratio-runs (3) fresh processes started without any
MALLOC_* variable, and the minimum ratio is reported (`stage_over_raw_*`, every run in `*_runs`). `stage`
hands frames to a consumer that holds each one until the next arrives (as a real consumer does); with
glibc's default malloc settings a held 1080p frame makes the next frame's buffer come from a fresh mmap
(page faults, ~1 ms at 1080p), which the raw loop (frame dropped at once) never pays. The product sets
fixed mmap and trim thresholds itself at its first decode (core.video.tune_malloc_for_frames, in every
process that decodes: the CLI, run workers, the daemon's runs), so the ratios are as shipped;
`*_glibc_defaults` repeats one run with that switched off (EFHQ_MALLOC_TUNING=0), for comparison.

Bytes: `efhq build` on the two clips, and everything it writes under the data root counted, by share
(`share_bytes`: tables per table, the manifest, the catalog, caches, dagster_home per part).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from efhq_assets.core.video import (  # noqa: E402
    ClipWindow,
    SamplingPolicy,
    frame_hash,
    iter_clip_frames,
    probe_video,
    write_test_video,
)

CACHE_VERSION = "v2"
FPS = 25.0
CRF = 23


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- synthetic clips


def synth_frames(width: int, height: int, count: int, seed: int = 0):
    """Yield realistic-ish frames: a slowly panning and zooming astronaut plus sensor noise."""
    from skimage import data

    scale = 1.4 * max(width, height) / 512
    base = cv2.resize(data.astronaut()[:, :, ::-1], None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    rng = np.random.default_rng(seed)
    noise = [rng.normal(0, 4.0, (height, width, 3)).astype(np.int16) for _ in range(8)]
    bh, bw = base.shape[:2]
    for i in range(count):
        zoom = 1.0 + 0.15 * np.sin(2 * np.pi * i / 200)
        cx = bw / 2 + 0.12 * bw * np.sin(2 * np.pi * i / 300)
        cy = bh / 2 + 0.08 * bh * np.cos(2 * np.pi * i / 250)
        matrix = np.float32([[zoom, 0, width / 2 - zoom * cx], [0, zoom, height / 2 - zoom * cy]])
        frame = cv2.warpAffine(base, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        yield np.clip(frame.astype(np.int16) + noise[i % 8], 0, 255).astype(np.uint8)


def cached_clip(cache: Path, width: int, height: int, count: int, preset: str) -> Path:
    path = cache / f"astronaut_{width}x{height}_{count}f_crf{CRF}_{preset}.mp4"
    if not path.exists():
        log(f"encoding {path.name} ...")
        start = time.perf_counter()
        write_test_video(path, synth_frames(width, height, count), fps=FPS, crf=CRF, preset=preset)
        log(f"  {count / (time.perf_counter() - start):.0f} fps encode, {path.stat().st_size / 1e6:.1f} MB")
    return path


def repeated_clip(src: Path, times: int) -> Path:
    """The same clip `times` times back to back, by remuxing packets (no re-encode)."""
    path = src.with_name(f"{src.stem}_x{times}.mp4")
    if path.exists():
        return path
    log(f"remuxing {path.name} ...")
    frames = probe_video(src).frame_count
    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w", format="mp4") as out:
        out_stream = None
        for rep in range(times):
            with av.open(str(src)) as inp:
                stream = inp.streams.video[0]
                if out_stream is None:
                    out_stream = out.add_stream_from_template(stream)
                ticks = round(frames / FPS / stream.time_base)
                for packet in inp.demux(stream):
                    if packet.dts is None:
                        continue
                    packet.pts += rep * ticks
                    packet.dts += rep * ticks
                    packet.stream = out_stream
                    out.mux(packet)
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------- measurements


def raw_decode_fps(path: Path) -> float:
    """Plain PyAV decode + to_ndarray(bgr24), same threading as the stage."""
    start = time.perf_counter()
    count = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_type = "AUTO"
        for frame in container.decode(stream):
            frame.to_ndarray(format="bgr24")
            count += 1
    return count / (time.perf_counter() - start)


def stage_windows(path: Path) -> list[ClipWindow]:
    """Two windows covering the clip: full frames, then a centred half-size face-like crop."""
    probe = probe_video(path)
    half = probe.frame_count // 2
    w, h = probe.width, probe.height
    crop = (w // 4, h // 4, w // 4 + w // 2, h // 4 + h // 2)
    return [ClipWindow("a", 0, half - 1), ClipWindow("b", half, probe.frame_count - 1, crop=crop)]


def stage_fps(path: Path) -> tuple[float, int]:
    """iter_clip_frames over both windows, sampling all, hashing every kept frame."""
    windows = stage_windows(path)
    start = time.perf_counter()
    count = 0
    for item in iter_clip_frames(path, windows, SamplingPolicy("all"), want_pixels=True):
        assert item.frame_hash
        count += 1
    return count / (time.perf_counter() - start), count


def raw_and_stage_fps(path: Path, reps: int) -> tuple[float, float]:
    """Best of `reps` interleaved runs each: the machine is shared, best-of filters out load."""
    raw, stage = [], []
    for _ in range(reps):
        raw.append(raw_decode_fps(path))
        stage.append(stage_fps(path)[0])
    return max(raw), max(stage)


def ratio_in_child(path: Path, reps: int, env_overrides: dict[str, str] | None = None) -> dict:
    """raw and stage fps (best of `reps` interleaved runs each) in a fresh process started with the environment a
    user's shell gives `efhq` (no MALLOC_* variable): the product's own setting (core.video.tune_malloc_for_frames,
    applied by the first decode) is what is measured. EFHQ_MALLOC_TUNING=0 in env_overrides: glibc's defaults."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.update(env_overrides or {})
    out = subprocess.run(
        [sys.executable, __file__, "--ratio-child", str(path), "--reps", str(reps)],
        check=True, capture_output=True, text=True, env=env,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["ratio"] = round(result["stage"] / result["raw"], 3)
    return result


def ratio_child(path: Path, reps: int) -> None:
    from efhq_assets.core.video import tune_malloc_for_frames

    tuned = tune_malloc_for_frames()  # what the first iter_clip_frames of any efhq process does: same for both
    raw, stage = raw_and_stage_fps(path, max(1, reps))
    print(json.dumps({"raw": round(raw, 1), "stage": round(stage, 1), "malloc_tuned": tuned}))


def hash_ms(width: int, height: int) -> float:
    image = next(synth_frames(width, height, 1))
    frame_hash(image)
    start = time.perf_counter()
    for _ in range(100):
        frame_hash(image)
    return (time.perf_counter() - start) * 10


def png_bytes(path: Path, samples: int = 20) -> float:
    """PNG bytes (cv2 defaults) of all frames, extrapolated from evenly spaced samples."""
    count = probe_video(path).frame_count
    picks = SamplingPolicy("max_n", samples).indices(0, count - 1, FPS)
    total = 0
    for item in iter_clip_frames(path, [ClipWindow("png", 0, count - 1)], SamplingPolicy("max_n", samples)):
        ok, buffer = cv2.imencode(".png", item.image)
        assert ok
        total += len(buffer)
    return total / len(picks) * count


def peak_rss_mib(path: Path) -> tuple[float, int]:
    """Decode in a fresh process (the stage path) and read its ru_maxrss."""
    out = subprocess.run(
        [sys.executable, __file__, "--rss-child", str(path)], check=True, capture_output=True, text=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result["maxrss_mib"], result["frames"]


def rss_child(path: Path) -> None:
    frames = sum(1 for _ in iter_clip_frames(path, stage_windows(path), SamplingPolicy("all")))
    print(json.dumps({"frames": frames, "maxrss_mib": round(peak_rss_kib() / 1024, 1)}))


def peak_rss_kib() -> int:
    """This process's peak RSS. Linux keeps ru_maxrss across fork+exec, so a child started by a
    big parent reports the parent's peak; /proc/self/status VmHWM belongs to this image alone."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def dir_bytes(root: Path, skip: tuple[str, ...] = ()) -> int:
    total = 0
    for path in root.rglob("*"):
        if path.is_file() and not any(part in skip for part in path.relative_to(root).parts):
            total += path.stat().st_size
    return total


def efhq_build_bytes(clips: list[Path], timeout_s: int, keep: Path | None = None) -> dict:
    """Run the real `efhq build` on the clips and measure what it writes; never faked."""
    efhq = REPO / ".venv" / "bin" / "efhq"
    if not efhq.exists():
        return {"bytes_over_source": None, "notes": "no .venv/bin/efhq console script"}
    check = subprocess.run([str(efhq), "build", "--help"], capture_output=True, text=True)
    if check.returncode != 0:
        reason = (check.stderr.strip().splitlines() or ["no output"])[-1]
        return {"bytes_over_source": None, "notes": f"`efhq build` is not available yet: {reason}"}
    with tempfile.TemporaryDirectory(prefix="efhq_bench_build_") as tmp:
        videos, data_root = Path(tmp) / "videos", Path(tmp) / "data"
        videos.mkdir()
        for clip in clips:
            shutil.copy(clip, videos / clip.name)
        cmd = [str(efhq), "build", "--videos", str(videos), "--data-root", str(data_root)]
        log("running " + " ".join(cmd[1:2]) + " on the clips ...")
        start = time.perf_counter()
        try:
            run = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return {"bytes_over_source": None, "notes": f"`efhq build` did not finish within {timeout_s} s"}
        seconds = time.perf_counter() - start
        if run.returncode != 0:
            reason = " | ".join(line.strip() for line in run.stderr.strip().splitlines()[-4:]) or "no output"
            return {"bytes_over_source": None, "notes": f"`efhq build` exited {run.returncode}: {reason}"}
        source = sum(clip.stat().st_size for clip in clips)
        shares = byte_shares(data_root)
        if keep is not None:
            shutil.copytree(data_root, keep, dirs_exist_ok=True)
        return {
            "bytes_over_source": round(dir_bytes(data_root, skip=("dagster_home",)) / source, 4),
            "bytes_over_source_incl_dagster_home": round(dir_bytes(data_root) / source, 4),
            "source_bytes": source,
            "data_root_bytes": dir_bytes(data_root),
            "share_over_source": {k: round(v / source, 4) for k, v in shares.items()},
            "share_bytes": shares,
            "efhq_build_s": round(seconds, 1),
            "notes": "bytes_over_source counts everything under the data root except dagster_home/ (run history); "
                     "share_* splits the whole data root (tables per table, manifest, catalog, cache, tasks, card, "
                     "dagster_home per part)",
        }


def byte_shares(data_root: Path) -> dict[str, int]:
    """Bytes of every file under the data root, by what wrote it: tables/<t>, manifest, dagster_home/<part>, ..."""
    shares: dict[str, int] = {}
    for path in data_root.rglob("*"):
        if not path.is_file():
            continue
        parts = path.relative_to(data_root).parts
        if parts[0] in ("tables", "dagster_home") and len(parts) > 2:
            name = f"{parts[0]}/{parts[1]}"
        elif parts[0] == "dagster_home" and len(parts) == 2:
            name = f"dagster_home/{parts[1]}" if parts[1].endswith(".db") else "dagster_home/other"
        else:
            name = parts[0] if len(parts) > 1 else path.name
        shares[name] = shares.get(name, 0) + path.stat().st_size
    return dict(sorted(shares.items(), key=lambda kv: -kv[1]))


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer frames; finishes in well under a minute")
    parser.add_argument("--skip-build", action="store_true", help="do not run `efhq build`")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / f"efhq_bench_decode_{CACHE_VERSION}")
    parser.add_argument("--keep-build", type=Path, default=None, help="copy the build's data root here")
    parser.add_argument("--build-only", action="store_true", help="only the `efhq build` bytes")
    parser.add_argument("--ratios-only", action="store_true", help="only the stage/raw ratios")
    parser.add_argument("--ratio-runs", type=int, default=3, help="fresh processes per stage/raw ratio (min reported)")
    parser.add_argument("--reps", type=int, default=0, help="interleaved runs per figure (default 2 quick, 3 full)")
    parser.add_argument("--rss-child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--ratio-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args.rss_child)
        return
    if args.ratio_child:
        ratio_child(args.ratio_child, args.reps)
        return
    args.cache.mkdir(parents=True, exist_ok=True)
    frames = 200 if args.quick else 1000
    preset = "veryfast" if args.quick else "medium"
    reps = args.reps or (2 if args.quick else 3)
    clip512 = cached_clip(args.cache, 512, 512, frames, preset)
    clip1080 = cached_clip(args.cache, 1920, 1080, frames, preset)
    if args.build_only:
        print(json.dumps(efhq_build_bytes([clip512, clip1080], timeout_s=3600, keep=args.keep_build)))
        return
    long1080 = repeated_clip(clip1080, 10)

    result: dict = {"mode": "quick" if args.quick else "full", "frames_per_clip": frames}
    result["x264_preset"] = preset
    result["cpu_cores"] = os.cpu_count()
    for name, clip in (("512", clip512), ("1080", clip1080)):
        probe = probe_video(clip)
        result[f"source_mbit_s_{name}"] = round(clip.stat().st_size * 8 / probe.duration_s / 1e6, 2)
        runs = []
        for k in range(args.ratio_runs):
            log(f"decoding {clip.name}: run {k + 1}/{args.ratio_runs} in a fresh process, as shipped ...")
            runs.append(ratio_in_child(clip, reps))
        worst = min(runs, key=lambda r: r["ratio"])
        result[f"raw_decode_fps_{name}"] = worst["raw"]
        result[f"stage_fps_{name}"] = worst["stage"]
        result[f"stage_over_raw_{name}"] = worst["ratio"]  # the minimum of the runs
        result[f"stage_over_raw_{name}_runs"] = [r["ratio"] for r in runs]
        result[f"malloc_tuned_{name}"] = all(r["malloc_tuned"] for r in runs)
        log(f"decoding {clip.name}: glibc's default malloc settings (EFHQ_MALLOC_TUNING=0), for comparison ...")
        untuned = ratio_in_child(clip, reps, {"EFHQ_MALLOC_TUNING": "0"})
        result[f"stage_over_raw_{name}_glibc_defaults"] = untuned["ratio"]
        result[f"stage_fps_{name}_glibc_defaults"] = untuned["stage"]
    if args.ratios_only:
        print(json.dumps(result))
        return
    result["frame_hash_ms_1080"] = round(hash_ms(1920, 1080), 3)
    result["frame_hash_ms_512"] = round(hash_ms(512, 512), 3)

    log("PNG sizes ...")
    png = {name: png_bytes(clip) for name, clip in (("512", clip512), ("1080", clip1080))}
    sizes = {"512": clip512.stat().st_size, "1080": clip1080.stat().st_size}
    result["png_bytes_over_source"] = round(sum(png.values()) / sum(sizes.values()), 1)
    for name in png:
        result[f"png_bytes_over_source_{name}"] = round(png[name] / sizes[name], 1)

    log(f"peak RSS: {clip1080.name} and {long1080.name} in fresh processes ...")
    short_mib, short_frames = peak_rss_mib(clip1080)
    long_mib, long_frames = peak_rss_mib(long1080)
    result.update(
        peak_rss_short_mib=short_mib,
        peak_rss_long_mib=long_mib,
        peak_rss_frames_short=short_frames,
        peak_rss_frames_long=long_frames,
        peak_rss_long_over_short=round(long_mib / short_mib, 3),
    )

    if args.skip_build:
        result.update(bytes_over_source=None, notes="skipped with --skip-build")
    else:
        result.update(efhq_build_bytes([clip512, clip1080], timeout_s=25 if args.quick else 3600, keep=args.keep_build))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
