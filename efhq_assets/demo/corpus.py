"""The offline demo corpus: short H.264 clips synthesized from real face photos shipped in packages.

Sources of faces (read at run time, never committed): `skimage.data.astronaut()` (public domain)
and the six faces of insightface's bundled `t1.jpg`: 7 identities. Each identity gets at least two
clips under one source id; the corpus mixes the three source kinds the platform reads:

- VFHQ style: one full video `vfhqDemoA01.mp4` holding three annotated clips (two of the astronaut,
  one of a different person in the same source), with per-clip annotation .txt files (boxes,
  5 landmarks, CROP) written exactly in VFHQ's format;
- CelebV-HQ style: a full video with two time windows, and pre-cut clip files, listed in a
  `celebvhq_info.json` (plus one clip whose video is not on disk: status 'missing');
- a plain folder video with no annotations (a slow pan over the group photo: several faces),
  and the same content under a second, awkward name (a duplicate, processed once).

Faces are rendered 280-400 px wide (EFHQ's area filter keeps them), with known in-plane roll and
mirrored segments. `demo_truth.json` records identities and the known angles (roll offsets and
mirroring relative to each still). Head-turn clips with known yaw/pitch/roll come from
`segments.SEGMENT_RENDERERS["turn"]` (the face-profiling renderer, `demo/face_render.py`).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from efhq_assets.core.models.mtcnn import MtcnnDetector
from efhq_assets.core.models.sample_images import astronaut_bgr, insightface_t1_bgr
from efhq_assets.core.sources import SourceConfig
from efhq_assets.core.video import write_test_video

from .segments import FRAME_SIZE, SEGMENT_RENDERERS, FaceStill, steady_segment, tinted_background

CORPUS_VERSION = "demo-3"
# Head-turn clips (segments.turn_segment). The astronaut's turn is for the dataset only: her FaceMesh geometry
# is the facemesh estimator's 3D reference, so accuracy checks skip her (truth marks it `circular`).
TURN_IDENTITIES = ("astronaut", "t1_person0", "t1_person2", "t1_person3", "t1_person5")
TURN_FRAMES = 48
FPS = 25.0
CLIP_FRAMES = 40


@dataclass
class DemoCorpus:
    root: Path
    truth: dict

    @property
    def videos(self) -> Path:
        return self.root / "videos"

    def source_config(self):
        return SourceConfig(videos=[str(self.videos)], vfhq_annotations=[str(self.root / "vfhq_annotations")],
                            celebv_info=[str(self.root / "celebvhq_info.json")])


def face_stills(min_side: int = 140) -> list[FaceStill]:
    """Crop each real face (astronaut + t1.jpg's six, left to right) with context around it."""

    detector = MtcnnDetector()
    stills: list[FaceStill] = []
    for name, image in (("astronaut", astronaut_bgr()), ("t1", insightface_t1_bgr())):
        faces = sorted(detector.detect([image])[0], key=lambda d: float(d.box[0]))
        for i, det in enumerate(faces):
            identity = name if name == "astronaut" else f"{name}_person{i}"
            stills.append(_crop_still(identity, image, det.box, det.lmk5, min_side))
    return stills


def _crop_still(identity: str, image: np.ndarray, box: np.ndarray, lmk5: np.ndarray, min_side: int) -> FaceStill:
    x1, y1, x2, y2 = [float(v) for v in box]
    side = 2.0 * max(x2 - x1, y2 - y1)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    ox, oy = int(round(cx - side / 2)), int(round(cy - side / 2))
    s = int(round(side))
    pad = s
    padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
    crop = padded[oy + pad: oy + pad + s, ox + pad: ox + pad + s].copy()
    offset = np.array([ox, oy], np.float32)
    return FaceStill(identity, crop, np.array([x1 - ox, y1 - oy, x2 - ox, y2 - oy], np.float32),
                     (np.asarray(lmk5, np.float32) - offset))


def _write_vfhq_annotation(path: Path, clip_name: str, first_frame: int, boxes, lmks, crop) -> None:
    lines = [f"Video {clip_name}", f"H {FRAME_SIZE}", f"W {FRAME_SIZE}", f"FPS {FPS:g}", "",
             "FRAME INDEX X0 Y0 W H [Landmarks (5 Points)]", ""]
    for i, (box, lmk) in enumerate(zip(boxes, lmks)):
        x, y, w, h = box[0], box[1], box[2] - box[0], box[3] - box[1]
        values = " ".join(f"{v:.2f}" for v in lmk.reshape(-1))
        lines.append(f"{first_frame + i} 0 {x:.2f} {y:.2f} {w:.2f} {h:.2f} {values}")
    lines.append("CROP " + " ".join(str(int(v)) for v in crop))
    path.write_text("\n".join(lines) + "\n")


def _union_crop(boxes, margin: float = 0.08) -> list[int]:
    b = np.array(boxes)
    x1, y1, x2, y2 = b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    return [int(max(0, x1 - mx)), int(max(0, y1 - my)), int(min(FRAME_SIZE, x2 + mx)), int(min(FRAME_SIZE, y2 + my))]


def make_demo_corpus(root: str | Path, seed: int = 0) -> DemoCorpus:
    """Write the corpus under `root` (idempotent: an existing corpus of the same version and seed is reused)."""
    root = Path(root)
    truth_path = root / "demo_truth.json"
    if truth_path.exists():
        truth = json.loads(truth_path.read_text())
        if truth.get("version") == CORPUS_VERSION and truth.get("seed") == seed:
            return DemoCorpus(root, truth)
    if root.exists():
        shutil.rmtree(root)
    videos, vfhq_dir = root / "videos", root / "vfhq_annotations"
    videos.mkdir(parents=True)
    vfhq_dir.mkdir()
    rng = np.random.default_rng(seed)
    stills = {s.identity: s for s in face_stills()}
    identities = sorted(stills)
    truth: dict = {"version": CORPUS_VERSION, "seed": seed, "fps": FPS, "frame_size": FRAME_SIZE,
                   "identities": identities, "clips": [], "missing_videos": [], "duplicates": {},
                   "angles_note": "steady clips: roll_deg is the in-plane roll added to each still (project convention: "
                                  "positive tilts the top of the head toward the image's right); mirrored clips negate "
                                  "the still's yaw and roll; absolute still poses are unknown. turn clips: `angles` "
                                  "are absolute per-frame yaw/pitch/roll of the rendered 3D face."}

    def add_clip(clip_id, video_file, identity, source_id, start, frames_meta, mirrored, kind, angles=None):
        truth["clips"].append({"clip_id": clip_id, "video_file": video_file, "identity": identity,
                               "source_id": source_id, "start_frame": start, "end_frame": start + len(frames_meta) - 1,
                               "mirrored": mirrored, "segment": kind, "roll_deg": frames_meta,
                               **({"angles": angles} if angles else {})})

    # VFHQ style: astronaut twice (P0, C0/C1), a different person in the same source (P1).
    ytid = "vfhqDemoA01"
    plan = [("astronaut", 0, 0, False), ("astronaut", 0, 1, True), ("t1_person0", 1, 0, False)]
    all_frames: list[np.ndarray] = []
    gap_frames = 10
    for identity, person, clip_no, mirrored in plan:
        if all_frames:  # a short cut between clips, as in a real video
            all_frames.extend([tinted_background(rng, (40, 40, 40))] * gap_frames)
        start = len(all_frames)
        frames, boxes, lmks, rolls = steady_segment(stills[identity], rng, CLIP_FRAMES, (150, 110, 90), mirrored, 12.0)
        all_frames.extend(frames)
        name = f"Clip+{ytid}+P{person}+C{clip_no}+F{start}-{start + CLIP_FRAMES - 1}"
        _write_vfhq_annotation(vfhq_dir / f"{name}.txt", name, start, boxes, lmks, _union_crop(boxes))
        add_clip(name, f"{ytid}.mp4", identity, ytid, start, rolls, mirrored, "steady")
    write_test_video(videos / f"{ytid}.mp4", all_frames, fps=FPS)

    # CelebV-HQ style: one full video with two time windows, and pre-cut clip files per identity.
    info: dict = {"meta_info": {"note": "efhq-assets demo corpus (synthetic)"}, "clips": {}}

    # No human attributes: these clips are synthetic, and attributes are never invented.
    def celebv_entry(ytb_id, start_s, end_s, boxes):
        b = np.array(boxes)
        top, bottom = float(b[:, 1].min() / FRAME_SIZE), float(b[:, 3].max() / FRAME_SIZE)
        left, right = float(b[:, 0].min() / FRAME_SIZE), float(b[:, 2].max() / FRAME_SIZE)
        return {"ytb_id": ytb_id, "duration": {"start_sec": start_s, "end_sec": end_s},
                "bbox": {"top": round(max(0, top), 4), "bottom": round(min(1, bottom), 4),
                         "left": round(max(0, left), 4), "right": round(min(1, right), 4)}}

    ytid = "celebvDemoB01"
    frames_all, windows = [], []
    for k, mirrored in enumerate((False, True)):
        if frames_all:
            frames_all.extend([tinted_background(rng, (30, 50, 30))] * gap_frames)
        start = len(frames_all)
        frames, boxes, _, rolls = steady_segment(stills["t1_person1"], rng, CLIP_FRAMES, (90, 140, 100), mirrored, 8.0)
        frames_all.extend(frames)
        windows.append((start, boxes, rolls, mirrored))
    write_test_video(videos / f"{ytid}.mp4", frames_all, fps=FPS)
    for k, (start, boxes, rolls, mirrored) in enumerate(windows):
        clip_id = f"{ytid}_{k}"
        info["clips"][clip_id] = celebv_entry(ytid, start / FPS, (start + CLIP_FRAMES) / FPS, boxes)
        add_clip(clip_id, f"{ytid}.mp4", "t1_person1", ytid, start, rolls, mirrored, "steady")

    for identity in [i for i in identities if i not in {"astronaut", "t1_person0", "t1_person1"}]:
        ytid = f"celebvDemo{identity.replace('_', '').capitalize()}"
        for k, mirrored in enumerate((False, True)):
            frames, boxes, _, rolls = steady_segment(stills[identity], rng, CLIP_FRAMES, (100, 100, 150), mirrored, 10.0)
            clip_id = f"{ytid}_{k}"
            write_test_video(videos / f"{clip_id}.mp4", frames, fps=FPS)
            info["clips"][clip_id] = celebv_entry(ytid, 0.0, CLIP_FRAMES / FPS, boxes)
            add_clip(clip_id, f"{clip_id}.mp4", identity, ytid, 0, rolls, mirrored, "steady")
    for identity in TURN_IDENTITIES:  # head turns with known absolute angles, as pre-cut CelebV-style clips
        ytid = f"celebvDemo{identity.replace('_', '').capitalize()}"
        frames, boxes, _, angles = SEGMENT_RENDERERS["turn"](stills[identity], rng, TURN_FRAMES, (120, 90, 90),
                                                             False, 6.0)
        clip_id = f"{ytid}_2"
        write_test_video(videos / f"{clip_id}.mp4", frames, fps=FPS)
        info["clips"][clip_id] = celebv_entry(ytid, 0.0, TURN_FRAMES / FPS, boxes)
        angles = [{k: round(float(v), 3) for k, v in a.items()} for a in angles]
        add_clip(clip_id, f"{clip_id}.mp4", identity, ytid, 0, [a["roll"] for a in angles], False, "turn", angles)
        truth["clips"][-1]["circular_for_facemesh"] = identity == "astronaut"
    info["clips"]["celebvDemoGone_0"] = celebv_entry("celebvDemoGone", 1.0, 3.0, [[100, 100, 400, 400]])
    truth["missing_videos"].append("celebvDemoGone")
    (root / "celebvhq_info.json").write_text(json.dumps(info, indent=1, sort_keys=True))

    # A plain folder video: a slow pan over the group photo (several small faces, no annotation).
    group = insightface_t1_bgr()
    pan = [np.ascontiguousarray(group[100:100 + FRAME_SIZE, x: x + FRAME_SIZE]) for x in range(0, 2 * CLIP_FRAMES, 2)]
    write_test_video(videos / "group_pan.mp4", pan, fps=FPS)
    truth["clips"].append({"clip_id": "group_pan", "video_file": "group_pan.mp4", "identity": None,
                           "source_id": None, "start_frame": 0, "end_frame": len(pan) - 1, "segment": "pan"})
    # The same content under a second name with a space and non-ASCII characters: processed once.
    shutil.copyfile(videos / "group_pan.mp4", videos / "group pan (copie é).mp4")
    truth["duplicates"]["group pan (copie é).mp4"] = "group_pan.mp4"

    truth_path.write_text(json.dumps(truth, indent=1, sort_keys=True))
    return DemoCorpus(root, truth)
