"""Face-analysis benchmark on CPU: end-to-end frames/s, detect stride vs coverage, per-stage speed, pose batching.

Run: .venv/bin/python benchmarks/analysis.py [--quick] [--strides 1,2,3,4] [--repeats N]
Progress goes to stderr; the figures are ONE JSON object on the last stdout line.

Clips (512x512, 25 fps, H.264 crf 23) are synthesized from real face photos shipped in installed
packages (skimage's astronaut, insightface's t1.jpg; read at run time, never written to the repo):

- steady:  the demo corpus' gentle-motion segments (`demo.segments.steady_segment`): face 300-360 px,
           small drift, a roll sweep (the VFHQ / CelebV-HQ case: one tracked face per clip);
- fast:    one face crossing the frame at ~5 px/frame while zooming 200 -> 330 px and rolling +-20 deg;
- group:   a fast pan (10 px/frame) over the six-person group photo: small faces (~60-90 px), faces
           entering and leaving at the edges (what a detect stride can miss until its next detection).

Measured (times are the best of `--repeats` interleaved runs; the machine may be shared):

- end_to_end_cpu_fps: frames/s from the video file to the `combined` pose row, as the product ships: `analyse_video`
  (decode + detect + track + FaceMesh + dlib68, one pass) at the default detect stride (the `detect_stride`
  setting) + `pose_rows` with the faces' five points (`attach_faces`, as the pose stage reads them);
  `end_to_end_cpu_fps_stride_1` is the same with the detector on every frame.
  decode_fps is reported separately (decoding alone) so the analysis-only rate can be derived.
- turn_accuracy_by_stride: what the stride does to the faces EFHQ exists for: two head turns (0 -> 90 -> 0 deg,
  both sides) of a held-out person of benchmarks/pose_accuracy.py, scored against the true yaw at every stride:
  answered frames, yaw MAE per |yaw| bucket, EFHQ yaw-bin accuracy and profile recall (|yaw| >= 50).
- per detect stride k: the same end to end rate, its speed-up over k = 1, and `coverage`: the share of
  the faces found with k = 1 that the k run also finds on the same frame (IoU >= 0.5), also over the
  k = 1 faces with score >= 0.9 (EFHQ's threshold) and over those FaceMesh fitted; also the extra
  faces it reports, the share of propagated (not detected) rows and how far their combined pose is
  from the k = 1 pose of the same face.
- per stage faces/s on the stride-1 faces: detector (batch 8 frames), FaceMesh, dlib68, pose fit.
- pose fit faces/s at batch 1 vs batch 256 (FaceMesh 468-point fit, torch on CPU) and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from efhq_assets.demo import corpus, segments  # noqa: E402
from efhq_assets.core.bins import bin_pose  # noqa: E402
from efhq_assets.core.faces import DETECT_BATCH, FaceModels, analyse_video, iou  # noqa: E402
from efhq_assets.core.pose_annotations import LANDMARK_COLUMN, attach_faces, pinhole_camera, pose_rows  # noqa: E402
from efhq_assets.core.settings import Settings  # noqa: E402
from efhq_assets.core.video import ClipWindow, SamplingPolicy, iter_clip_frames, write_test_video  # noqa: E402

FPS = 25.0
COVERAGE_TARGET = 0.98
POSE_BATCH = 256


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- synthetic clips


def fast_clip(still, rng, n: int) -> list[np.ndarray]:
    background = segments.tinted_background(rng, (120, 100, 140))
    frames = []
    for t in range(n):
        u = t / max(n - 1, 1)
        center = (150 + 5.0 * t, 200 + 2.0 * t)
        face_px = 200 + 130 * u
        roll = 20.0 * np.sin(2 * np.pi * u)
        frames.append(segments.render_frame(still, background, face_px, center, roll, False)[0])
    return frames


def group_pan(n: int, step: int = 4) -> list[np.ndarray]:
    from efhq_assets.core.models.sample_images import insightface_t1_bgr

    group = insightface_t1_bgr()
    size = segments.FRAME_SIZE
    if group.shape[0] < size + 50 or group.shape[1] < size + step * n:  # upscale so the pan fits
        scale = max((size + 50) / group.shape[0], (size + step * n) / group.shape[1])
        import cv2

        group = cv2.resize(group, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    y0 = max(0, min(100, group.shape[0] - size))
    return [np.ascontiguousarray(group[y0:y0 + size, x:x + size]) for x in range(0, step * n, step)]


def make_clips(folder: Path, quick: bool) -> list[dict]:
    """Write the clips; returns [{"video": ..., "clips": ..., "kind": ...}] ready for analyse_video."""
    rng = np.random.default_rng(0)
    stills = {s.identity: s for s in corpus.face_stills()}
    n = 40 if quick else 80
    plan: list[tuple[str, str, list[np.ndarray]]] = []
    steady_ids = ["astronaut"] if quick else ["astronaut", "t1_person0", "t1_person2", "t1_person4"]
    for k, identity in enumerate(steady_ids):
        frames, *_ = segments.steady_segment(stills[identity], rng, n, (150, 110, 90), bool(k % 2), 12.0)
        plan.append((f"steady_{identity}", "steady", frames))
    plan.append(("fast_astronaut", "fast", fast_clip(stills["astronaut"], rng, n)))
    plan.append(("group_pan", "group", group_pan(min(n, 76), step=10)))
    out = []
    for name, kind, frames in plan:
        path = folder / f"{name}.mp4"
        write_test_video(path, frames, fps=FPS)
        out.append({"kind": kind, "video": {"video_id": name, "path": str(path), "fps": FPS},
                    "clips": [{"clip_id": name, "start_frame": 0, "end_frame": len(frames) - 1, "crop": None}],
                    "frames": len(frames)})
    return out


TURN_PERSON = "t1_person1"  # a held-out person of benchmarks/pose_accuracy.py (nothing was tuned on them)


def turn_clips(folder: Path, n: int, person: str = TURN_PERSON, face_px: float = 300.0, pitch: float = 0.0,
               roll: float = 0.0, seed: int = 1) -> list[dict]:
    """Two head turns of one person (default: a held-out one), 0 -> 90 -> 0 degrees of yaw (a cosine ease, ~4.5 deg
    a frame at the fastest) at a fixed ``pitch`` and ``roll``, toward the side the photo saw and, from the mirrored
    photo, toward the other side; pinhole camera f = the frame side (what the pose stage assumes for these videos).
    Returns clips like make_clips, each with its per-frame true yaw and its pitch (also used by
    benchmarks/turn_accuracy.py)."""
    from efhq_assets.demo.face_render import fit_textured_mesh, render

    still = {s.identity: s for s in corpus.face_stills()}[person]
    rng = np.random.default_rng(seed)
    out = []
    for mirrored in (False, True):
        image, box = still.image, np.asarray(still.box, np.float64)
        if mirrored:
            w = image.shape[1]
            image, box = np.ascontiguousarray(image[:, ::-1]), np.array([w - box[2], box[1], w - box[0], box[3]])
        face = fit_textured_mesh(image, box)
        side = -1.0 if face.still_pose[0] < 0 else 1.0
        background = segments.tinted_background(rng, (110, 130, 100))
        t = 0.5 - 0.5 * np.cos(2 * np.pi * np.linspace(0.0, 1.0, n))
        yaws = [round(float(side * 90.0 * u), 3) for u in t]
        frames = [render(face, y, pitch, roll, size=segments.FRAME_SIZE, face_px=face_px, background=background,
                         focal_px=float(segments.FRAME_SIZE))[0] for y in yaws]
        name = f"turn_{person}{'_mirrored' if mirrored else ''}"
        path = folder / f"{name}.mp4"
        write_test_video(path, frames, fps=FPS)
        out.append({"kind": "turn", "video": {"video_id": name, "path": str(path), "fps": FPS},
                    "clips": [{"clip_id": name, "start_frame": 0, "end_frame": n - 1, "crop": None}],
                    "frames": n, "true_yaw": yaws, "pitch": pitch})
    return out


def turn_accuracy(clips: list[dict], models, stride: int) -> dict:
    """The product's path (analyse_video at this detect stride, pose_rows with the faces' five points) on the turn
    clips, scored against the true yaw: frames with the face found, yaw MAE per |yaw| bucket, EFHQ's yaw bins."""
    found, err, bins_ok, profile = 0, {"0-60": [], "60-75": [], "75-90": []}, [], []
    n = 0
    for c in clips:
        f, m = analyse_video(c["video"], c["clips"], SamplingPolicy(), models, detect_stride=stride)
        pose = combined_pose(pose_rows(attach_faces(m, f), device="cpu", camera=CAMERA))
        by_frame = {}
        for (_, _, frame, _), p in pose.items():
            by_frame.setdefault(frame, p)  # one face per frame on these renders
        for i, truth in enumerate(c["true_yaw"]):
            n += 1
            est = by_frame.get(i, (None,))[0]
            found += est is not None
            a = abs(truth)
            bucket = "0-60" if a <= 60 else ("60-75" if a <= 75 else "75-90")
            if est is not None:
                err[bucket].append(abs(est - truth))
            want = bin_pose(truth, 0.0)  # EFHQ's bin rules on the yaw axis
            got = None if est is None else bin_pose(est, 0.0)
            bins_ok.append(got == want)
            if a >= 50:
                profile.append(got == want)
    return {"frames": n, "answered": round(found / max(n, 1), 4),
            "yaw_mae": {b: (round(float(np.mean(v)), 2) if v else None) for b, v in err.items()},
            "yaw_bin_accuracy": round(float(np.mean(bins_ok)), 4),
            "profile_recall": round(float(np.mean(profile)), 4) if profile else None}


# --------------------------------------------------------------------------- helpers


def match_faces(ref: list[dict], other: list[dict], threshold: float = 0.5) -> tuple[int, int, list[tuple[dict, dict]]]:
    """Greedy IoU matching per (clip, frame): (matched, extra in `other`, matched pairs)."""
    def by_frame(rows):
        out: dict = {}
        for r in rows:
            out.setdefault((r["video_id"], r["clip_id"], r["frame_index"]), []).append(r)
        return out

    a, b = by_frame(ref), by_frame(other)
    matched, extra, pairs = 0, 0, []
    for key in set(a) | set(b):
        ra, rb = a.get(key, []), b.get(key, [])
        if not ra or not rb:
            extra += len(rb)
            continue
        box = lambda rows: np.array([[r["x1"], r["y1"], r["x2"], r["y2"]] for r in rows])  # noqa: E731
        m = iou(box(ra), box(rb))
        used = 0
        while m.size and m.max() >= threshold:
            i, j = np.unravel_index(np.argmax(m), m.shape)
            pairs.append((ra[i], rb[j]))
            m[i, :] = -1
            m[:, j] = -1
            used += 1
        matched += used
        extra += len(rb) - used
    return matched, extra, pairs


def combined_pose(rows: list[dict]) -> dict:
    return {(r["video_id"], r["clip_id"], r["frame_index"], r["face_index"]): (r["yaw"], r["pitch"], r["roll"])
            for r in rows if r["estimator"] == "combined"}


def key(r: dict) -> tuple:
    return (r["video_id"], r["clip_id"], r["frame_index"], r["face_index"])


CAMERA = pinhole_camera(segments.FRAME_SIZE, segments.FRAME_SIZE)  # what pose_annotations gives these videos


def cpu_seconds() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def pose_rate(estimator, lm: np.ndarray, batch: int, min_seconds: float) -> float:
    """Faces/s of estimator.estimate_batch over `lm` in chunks of `batch` (repeated for >= min_seconds),
    with the pipeline's perspective camera for the benchmark's frames."""
    f, cx, cy = CAMERA
    cameras = (f, (cx, cy))
    estimator.estimate_batch(lm[:batch], device="cpu", cameras=cameras)  # warm-up
    done, start = 0, time.perf_counter()
    while True:
        for s in range(0, len(lm), batch):
            estimator.estimate_batch(lm[s:s + batch], device="cpu", cameras=cameras)
        done += len(lm)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return done / elapsed


# --------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer/shorter clips (< 90 s on 2 cores)")
    ap.add_argument("--strides", default=None, help="detect strides to compare (default 1,2,3,4; quick 1,2,3)")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per stride (best kept; default 3, quick 2)")
    args = ap.parse_args()
    strides = [int(s) for s in (args.strides or ("1,2,3" if args.quick else "1,2,3,4")).split(",")]
    shipped = Settings().detect_stride  # what the product runs by default (efhq settings: detect_stride)
    strides = sorted(set(strides) | {1, shipped})
    repeats = args.repeats or (2 if args.quick else 3)
    t_all = time.perf_counter()

    import torch

    from efhq_assets.core.models import registry
    from efhq_assets.core.pose.estimators import get_estimator

    load_start = os.getloadavg()[0]
    log(f"analysis benchmark: cpu_count={os.cpu_count()} torch_threads={torch.get_num_threads()} "
        f"strides={strides} repeats={repeats}")
    t = time.perf_counter()
    models = FaceModels(registry.create("detector", "mtcnn", min_face=40), registry.create("landmarker", "facemesh"),
                        registry.create("landmarker", "dlib68"))
    model_load_s = time.perf_counter() - t

    with tempfile.TemporaryDirectory(prefix="efhq_bench_analysis_") as tmp:
        log("synthesizing clips ...")
        t = time.perf_counter()
        clips = make_clips(Path(tmp), args.quick)
        n_frames = sum(c["frames"] for c in clips)
        log(f"  {len(clips)} clips, {n_frames} frames of 512x512 in {time.perf_counter() - t:.1f} s")

        # decode alone
        t = time.perf_counter()
        images = []
        for c in clips:
            windows = [ClipWindow(c["video"]["video_id"], 0, c["frames"] - 1)]
            images.append([f.image.copy() for f in iter_clip_frames(c["video"]["path"], windows, SamplingPolicy())])
        decode_fps = n_frames / (time.perf_counter() - t)

        # warm-up (first mediapipe / onnxruntime / torch calls)
        f, m = analyse_video(clips[0]["video"], [{**clips[0]["clips"][0], "end_frame": 7}], SamplingPolicy(), models)
        pose_rows(attach_faces(m, f), device="cpu", camera=CAMERA)

        # ---- end to end per stride: interleaved per clip (strides in rotating order), best wall time per
        # (stride, clip); process CPU time (all threads) is kept too, a cross-check when the machine is shared.
        best: dict[int, dict[str, float]] = {k: {} for k in strides}
        cpu: dict[int, dict[str, float]] = {k: {} for k in strides}
        runs: dict[int, dict[str, tuple]] = {k: {} for k in strides}
        turn = 0
        for rep in range(repeats):
            for c in clips:
                name = c["video"]["video_id"]
                order = strides[turn % len(strides):] + strides[:turn % len(strides)]
                turn += 1
                for k in order:
                    c0, t = cpu_seconds(), time.perf_counter()
                    f, m = analyse_video(c["video"], c["clips"], SamplingPolicy(), models, detect_stride=k)
                    p = pose_rows(attach_faces(m, f), device="cpu", camera=CAMERA)
                    dt, dc = time.perf_counter() - t, cpu_seconds() - c0
                    best[k][name] = min(best[k].get(name, np.inf), dt)
                    cpu[k][name] = min(cpu[k].get(name, np.inf), dc)
                    runs[k][name] = (f, m, p)
            log(f"  rep {rep}: " + ", ".join(f"stride {k} {n_frames / sum(best[k].values()):.1f} fps" for k in strides)
                + " (best so far)")
        results = {k: tuple(sum((list(runs[k][c["video"]["video_id"]][i]) for c in clips), []) for i in range(3))
                   for k in strides}
        base_faces, base_marks, base_poses = results[1]
        base_pose = combined_pose(base_poses)
        base_meshed = {key(r) for r in base_marks if r["lmk478"] is not None}
        kind_of = {c["video"]["video_id"]: c["kind"] for c in clips}
        stride_report = {}
        fps_by_stride = {k: n_frames / sum(best[k].values()) for k in strides}
        for k in strides:
            faces_k, _, poses_k = results[k]
            matched, extra, pairs = match_faces(base_faces, faces_k)
            pose_k = combined_pose(poses_k)
            deltas = []
            for a, b in pairs:
                if b.get("detected", True):
                    continue
                pa, pb = base_pose.get(key(a)), pose_k.get(key(b))
                if pa and pb and None not in pa and None not in pb:
                    deltas.append(max(abs(x - y) for x, y in zip(pa, pb)))
            by_kind = {}
            for kind in sorted(set(kind_of.values())):
                ra = [r for r in base_faces if kind_of[r["video_id"]] == kind]
                rb = [r for r in faces_k if kind_of[r["video_id"]] == kind]
                mk, _, _ = match_faces(ra, rb)
                by_kind[kind] = round(mk / max(len(ra), 1), 4)
            propagated = sum(not r.get("detected", True) for r in faces_k)
            got = {key(a) for a, _ in pairs}
            confident = [r for r in base_faces if r["score"] >= 0.9]  # EFHQ's detector-confidence threshold
            meshed = [r for r in base_faces if key(r) in base_meshed]
            stride_report[str(k)] = {
                "end_to_end_fps": round(fps_by_stride[k], 2),
                "speedup": round(fps_by_stride[k] / fps_by_stride[1], 3),
                "speedup_cpu_time": round(sum(cpu[1].values()) / sum(cpu[k].values()), 3),
                "coverage": round(matched / max(len(base_faces), 1), 4),
                "coverage_by_clip_kind": by_kind,
                "coverage_score_ge_0_9": round(sum(key(r) in got for r in confident) / max(len(confident), 1), 4),
                "coverage_with_facemesh": round(sum(key(r) in got for r in meshed) / max(len(meshed), 1), 4),
                "faces": len(faces_k),
                "extra_faces": extra,
                "propagated_share": round(propagated / max(len(faces_k), 1), 4),
                "propagated_pose_delta_deg_median": round(float(np.median(deltas)), 2) if deltas else None,
                "propagated_pose_delta_deg_p95": round(float(np.percentile(deltas, 95)), 2) if deltas else None,
            }
        ok = [k for k in strides if k > 1 and stride_report[str(k)]["coverage"] >= COVERAGE_TARGET
              and stride_report[str(k)]["speedup"] >= 1.1]
        chosen = max(ok) if ok else 1

        # ---- what the detect stride does to extreme poses: a held-out person's head turns, every stride
        log("head turns (accuracy per stride) ...")
        turns = turn_clips(Path(tmp), 48 if args.quick else 96)
        turn_report = {str(k): turn_accuracy(turns, models, k) for k in strides}
        log("  " + ", ".join(f"stride {k}: profile recall {v['profile_recall']}, yaw MAE {v['yaw_mae']}"
                             for k, v in turn_report.items()))

        # ---- per stage on the stride-1 faces (images already decoded)
        log("per-stage timings ...")
        boxes_per_frame = []
        for c, imgs in zip(clips, images):
            rows = [r for r in base_faces if r["video_id"] == c["video"]["video_id"]]
            per = {}
            for r in rows:
                per.setdefault(r["frame_index"], []).append(np.array([r["x1"], r["y1"], r["x2"], r["y2"]], np.float32))
            boxes_per_frame += [(img, per.get(i, [])) for i, img in enumerate(imgs)]
        all_imgs = [img for img, _ in boxes_per_frame]
        n_faces = sum(len(b) for _, b in boxes_per_frame)
        t = time.perf_counter()
        n_det = 0
        for s in range(0, len(all_imgs), DETECT_BATCH):
            n_det += sum(len(d) for d in models.detector.detect(all_imgs[s:s + DETECT_BATCH]))
        det_s = time.perf_counter() - t
        t = time.perf_counter()
        for img, b in boxes_per_frame:
            if b:
                models.facemesh.landmarks(img, b)
        mesh_s = time.perf_counter() - t
        t = time.perf_counter()
        for img, b in boxes_per_frame:
            if b:
                models.dlib68.landmarks(img, b)
        dlib_s = time.perf_counter() - t
        t = time.perf_counter()
        pose_rows(base_marks, device="cpu", camera=CAMERA)
        pose_s = time.perf_counter() - t

        # ---- pose fit batch 1 vs batch 256 (FaceMesh fit, 468 points)
        log("pose fit batching ...")
        est = get_estimator("facemesh")
        _, n478, d478 = LANDMARK_COLUMN["facemesh"]
        lm = np.stack([np.asarray(r["lmk478"], np.float32).reshape(n478, d478)[:, :2] for r in base_marks
                       if r["lmk478"] is not None])
        reps = int(np.ceil(1024 / len(lm)))
        lm = np.concatenate([lm] * reps)[:1024]
        b1 = pose_rate(est, lm[:128] if args.quick else lm[:256], 1, 1.0 if args.quick else 3.0)
        bN = pose_rate(est, lm, POSE_BATCH, 1.0 if args.quick else 3.0)
        est68 = get_estimator("dlib68")
        lm68 = np.stack([np.asarray(r["lmk68"], np.float32).reshape(68, 2) for r in base_marks if r["lmk68"] is not None])
        lm68 = np.concatenate([lm68] * int(np.ceil(1024 / len(lm68))))[:1024]
        b1_68 = pose_rate(est68, lm68[:128] if args.quick else lm68[:256], 1, 1.0 if args.quick else 3.0)
        bN_68 = pose_rate(est68, lm68, POSE_BATCH, 1.0 if args.quick else 3.0)

    result = {
        "end_to_end_cpu_fps": round(fps_by_stride[shipped], 2),
        "shipped_detect_stride": shipped,
        "end_to_end_cpu_fps_stride_1": round(fps_by_stride[1], 2),
        "coverage_at_shipped_stride": stride_report[str(shipped)]["coverage"],
        "turn_accuracy_by_stride": turn_report,
        "turn_person": TURN_PERSON,
        "detect_stride": chosen,
        "coverage": stride_report[str(chosen)]["coverage"],
        "end_to_end_cpu_fps_at_detect_stride": round(fps_by_stride[chosen], 2),
        "coverage_target": COVERAGE_TARGET,
        "strides": stride_report,
        "stages_faces_per_s": {
            "decode_frames_per_s": round(decode_fps, 1),
            "detector_frames_per_s": round(n_frames / det_s, 2),
            "detector": round(n_det / det_s, 2),
            "facemesh": round(n_faces / mesh_s, 2),
            "dlib68": round(n_faces / dlib_s, 2),
            "pose_fit": round(len(base_marks) / pose_s, 1),
        },
        "pose_fit_faces_per_s": {
            "facemesh_batch_1": round(b1, 1),
            f"facemesh_batch_{POSE_BATCH}": round(bN, 1),
            "facemesh_ratio": round(bN / b1, 2),
            "dlib68_batch_1": round(b1_68, 1),
            f"dlib68_batch_{POSE_BATCH}": round(bN_68, 1),
            "dlib68_ratio": round(bN_68 / b1_68, 2),
            "target_ratio": 3.0,
        },
        "frames": n_frames,
        "faces_stride_1": len(base_faces),
        "clips": {c["video"]["video_id"]: c["frames"] for c in clips},
        "frame_size": segments.FRAME_SIZE,
        "model_load_s": round(model_load_s, 2),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "loadavg_1min": [round(load_start, 2), round(os.getloadavg()[0], 2)],  # start, end: shared machine?
        "quick": bool(args.quick),
        "repeats": repeats,
        "seconds": round(time.perf_counter() - t_all, 1),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
