"""Head turns through the product's video path: yaw, pitch and EFHQ's bins along 0 -> 90 -> 0 degree turns.

Run: .venv/bin/python benchmarks/turn_accuracy.py [--quick] [--frames N]
Progress goes to stderr; the figures are ONE JSON object on the last stdout line.

Where benchmarks/pose_accuracy.py scores single frames, this scores videos as the pipeline reads them:
``analyse_video`` at the shipped detect stride (detection, tracking through the turn, FaceMesh, dlib68), then
``pose_rows`` with the faces' five points and tracks (the large-yaw rules, the side-flip and spike rejection
along a track, the pitch gain).  Every frame of every clip is scored against its true angles.

People and split: the six faces of insightface's t1.jpg, ``tune`` = persons 0, 2, 4 and ``held_out`` = 1, 3, 5, as
in benchmarks/pose_accuracy.py (nothing was tuned on the held-out people).  Each person turns both ways: the photo
turns toward the side it saw, and the mirrored photo toward the other side.

Conditions (a textured mesh of the photo, demo/face_render.py, pinhole camera f = the 512 px frame side):
- ``upright``: face 300 px wide, pitch 0, roll 0;
- ``small``: face 120 px wide, pitch 0, roll 0;
- ``nod_down_rolled``: face 300 px, pitch -20, roll 15 (the single-frame benchmark's hardest views);
- ``nod_up``: face 300 px, pitch +20, roll 0.
(``--quick``: ``upright`` and ``small`` only, 48 frames a clip.)

Figures per condition and split: frames answered; yaw MAE per |true yaw| bucket (0-30, 30-60, 60-75, 75-90); yaw
gain over 0-90 (least-squares slope of the sign-adjusted reading on the true |yaw|); EFHQ yaw-bin accuracy, profile
recall (true |yaw| >= 50 in the profile bin of the right side; a frame without an answer counts wrong); pitch bias
and MAE; the full EFHQ bin (yaw and pitch rules).  Baseline in the same run: the same figures for FaceMesh's fit
alone (its ``facemesh`` rows: its yaw stretch and pitch gain, but no five points and nothing along a track), and the
combined / FaceMesh ratios.  Full run (4 conditions, 96 frames a clip): about 8 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from analysis import turn_clips  # noqa: E402  (the head-turn clips benchmarks/analysis.py scores too)

SPLITS = {"tune": (0, 2, 4), "held_out": (1, 3, 5)}
BUCKETS = ((0, 30), (30, 60), (60, 75), (75, 90))
CONDITIONS = {"upright": (300, 0.0, 0.0), "small": (120, 0.0, 0.0), "nod_down_rolled": (300, -20.0, 15.0),
              "nod_up": (300, 20.0, 0.0)}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def score(pairs: list[tuple[tuple[float, float], tuple | None]]) -> dict:
    """(true (yaw, pitch), estimate (yaw, pitch) or None) per frame -> the figures above."""
    from efhq_assets.core.bins import bin_pose

    def r(v, k=2):
        return None if v is None or not np.isfinite(v) else round(float(v), k)

    answered = [(t, e) for t, e in pairs if e is not None and e[0] is not None]
    out: dict = {"frames": len(pairs), "answered": r(len(answered) / max(len(pairs), 1), 4)}
    for lo, hi in BUCKETS:
        err = [abs(e[0] - t[0]) for t, e in answered if lo <= abs(t[0]) <= hi and (lo == 0 or abs(t[0]) > lo)]
        out[f"yaw_mae_{lo}_{hi}"] = r(np.mean(err)) if err else None
    if answered:
        t = np.array([a[0] for a in answered], np.float64)
        e = np.array([a[1] for a in answered], np.float64)
        out["yaw_gain_0_90"] = r(np.sum(np.abs(t[:, 0]) * np.sign(t[:, 0]) * e[:, 0]) / max(np.sum(t[:, 0] ** 2), 1e-9), 3)
        ok_p = np.isfinite(e[:, 1])
        out["pitch_bias"] = r(np.mean(e[ok_p, 1] - t[ok_p, 1])) if ok_p.any() else None
        out["pitch_mae"] = r(np.mean(np.abs(e[ok_p, 1] - t[ok_p, 1]))) if ok_p.any() else None
    yaw_ok, profile, full_ok = [], [], []
    for t, e in pairs:
        got = None if e is None or e[0] is None else bin_pose(e[0], 0.0)
        yaw_ok.append(got == bin_pose(t[0], 0.0))
        if abs(t[0]) >= 50:
            profile.append(got == bin_pose(t[0], 0.0))
        full = None if e is None or e[0] is None or e[1] is None else bin_pose(e[0], e[1])
        full_ok.append(full == bin_pose(t[0], t[1]))
    out["yaw_bin_accuracy"] = r(np.mean(yaw_ok), 4)
    out["profile_recall"] = r(np.mean(profile), 4) if profile else None
    out["full_bin_accuracy"] = r(np.mean(full_ok), 4)
    return out


def run_clip(clip: dict, models, stride: int, camera) -> dict[str, list]:
    """Per estimator (combined, facemesh), (truth, estimate) per frame of the clip."""
    from efhq_assets.core.faces import analyse_video
    from efhq_assets.core.pose_annotations import attach_faces, pose_rows
    from efhq_assets.core.video import SamplingPolicy

    faces, marks = analyse_video(clip["video"], clip["clips"], SamplingPolicy(), models, detect_stride=stride)
    rows = pose_rows(attach_faces(marks, faces), device="cpu", camera=camera)
    by: dict[str, dict] = {"combined": {}, "facemesh": {}}
    for row in rows:
        if row["estimator"] in by:
            by[row["estimator"]].setdefault(row["frame_index"], (row["yaw"], row["pitch"]))  # one face a frame
    truth = [(y, clip["pitch"]) for y in clip["true_yaw"]]
    return {k: [(t, v.get(i)) for i, t in enumerate(truth)] for k, v in by.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="conditions upright and small, 48 frames a clip")
    ap.add_argument("--frames", type=int, default=None, help="frames per turn clip (default 96; --quick 48)")
    ap.add_argument("--conditions", default=None, help=f"comma-separated, from {', '.join(CONDITIONS)}")
    args = ap.parse_args()

    from efhq_assets.core.faces import FaceModels
    from efhq_assets.core.models import registry
    from efhq_assets.core.pose_annotations import pinhole_camera
    from efhq_assets.core.settings import Settings
    from efhq_assets.demo import segments

    t_start = time.perf_counter()
    n = args.frames or (48 if args.quick else 96)
    conditions = (args.conditions.split(",") if args.conditions else
                  (["upright", "small"] if args.quick else list(CONDITIONS)))
    stride = Settings().detect_stride
    camera = pinhole_camera(segments.FRAME_SIZE, segments.FRAME_SIZE)
    models = FaceModels(registry.create("detector", "mtcnn", min_face=40), registry.create("landmarker", "facemesh"),
                        registry.create("landmarker", "dlib68"))
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for cond in conditions:
            face_px, pitch, roll = CONDITIONS[cond]
            results[cond] = {}
            for split, people in SPLITS.items():
                pairs: dict[str, list] = {"combined": [], "facemesh": []}
                for i in people:
                    for clip in turn_clips(Path(tmp), n, f"t1_person{i}", face_px, pitch, roll, seed=7):
                        for k, v in run_clip(clip, models, stride, camera).items():
                            pairs[k] += v
                comb, fm = score(pairs["combined"]), score(pairs["facemesh"])
                ratios = {k: round(comb[k] / fm[k], 3) for k in ("yaw_mae_60_75", "yaw_mae_75_90", "answered")
                          if comb.get(k) and fm.get(k)}
                results[cond][split] = {"combined": comb, "facemesh_alone": fm, "combined_over_facemesh": ratios}
                log(f"{cond} {split}: {json.dumps(comb)}")
    print(json.dumps({"benchmark": "turn_accuracy", "mode": "quick" if args.quick else "full", "frames_per_clip": n,
                      "detect_stride": stride, "conditions": {c: dict(zip(("face_px", "pitch", "roll"), CONDITIONS[c]))
                                                              for c in conditions},
                      "results": results, "seconds": round(time.perf_counter() - t_start, 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
