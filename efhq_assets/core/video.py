"""Probe and streaming decode of one video file: clip windows, crop regions, sampling.

Why streaming: the original EFHQ pipeline dumped every frame of every clip as PNG (>10 TB).
Here a video is decoded once, frame by frame, covering all its clip windows, and only the
frames a sampling policy keeps are converted to pixels. Nothing is buffered, so memory does
not grow with video length.

Conventions (shared with the `frames` table):
- `frame_index` is the 0-based index of a frame in the file, in presentation order.
- `pts_s` is the presentation time in seconds from the stream's start time (frame 0 is 0.0).
- `rotation` is the display-matrix rotation, counter-clockwise degrees in {0, 90, 180, 270}
  (the value ffprobe and PyAV's `VideoFrame.rotation` report, normalised to [0, 360)). Images
  are rotated upright before cropping, so crops and sizes are in display pixels.
- A crop (x0, y0, x1, y1) is half-open like a slice: columns x0..x1-1, rows y0..y1-1.

Index recovery after a seek: decoding from frame 0 counts frames exactly, even for variable
frame rate (VFR). When the first window starts late, the decoder seeks to the keyframe at or
before it and recovers that keyframe's index as round((pts - start_time) * time_base * avg_fps);
later frames are counted one by one. That is exact for constant frame rate, so the seek is only
used when the stream's average rate equals its base (r_frame_rate) rate; a stream that looks
VFR is decoded from the start. If the recovered index lands after the first needed frame the
file is reopened and decoded from the start.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import av
import cv2
import numpy as np

if TYPE_CHECKING:
    import polars

SAMPLING_MODES = ("all", "fps", "max_n")
MALLOC_THRESHOLD_BYTES = 64 << 20  # above a 4K BGR frame (24.9 MB): frame buffers come from the heap, not mmap
_malloc_tuned: bool | None = None
_HASH_THUMB = 16  # side of the gray thumbnail the frame hash is taken from


class VideoError(Exception):
    """A clear, user-facing message about a broken or unsupported video file."""


@dataclass(frozen=True)
class VideoProbe:
    """What the pipeline needs to know about a video before decoding it."""

    codec: str
    fps: float
    frame_count: int
    width: int  # display width (after rotation)
    height: int  # display height (after rotation)
    duration_s: float
    rotation: int  # counter-clockwise degrees, 0/90/180/270


@dataclass(frozen=True)
class ClipWindow:
    """An annotated clip inside a video file: an inclusive frame range and an optional crop."""

    clip_id: str
    start_frame: int
    end_frame: int
    crop: tuple[int, int, int, int] | None = None

    def __post_init__(self) -> None:
        if self.start_frame < 0 or self.end_frame < self.start_frame:
            raise ValueError(
                f"clip {self.clip_id!r}: need 0 <= start_frame <= end_frame, "
                f"got {self.start_frame}..{self.end_frame}"
            )


def clip_windows(clips: list[dict]) -> list[ClipWindow]:
    """The decode windows of `clips` rows (start and end frame, crop region)."""
    return [ClipWindow(c["clip_id"], int(c["start_frame"]), int(c["end_frame"]),
                       tuple(int(v) for v in c["crop"]) if c.get("crop") is not None else None) for c in clips]


@dataclass(frozen=True)
class SamplingPolicy:
    """Which frames of a window to keep; deterministic so re-runs give the same rows."""

    mode: str = "all"
    value: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in SAMPLING_MODES:
            raise ValueError(f"sampling mode must be one of {SAMPLING_MODES}, got {self.mode!r}")
        if self.mode != "all" and not self.value > 0:
            raise ValueError(f"sampling mode {self.mode!r} needs a positive value, got {self.value}")

    def indices(self, start: int, end: int, native_fps: float) -> list[int]:
        """Kept frame indices in [start, end], sorted."""
        return list(self._kept(start, end, native_fps))

    def _kept(self, start: int, end: int, native_fps: float) -> range | list[int]:
        """Kept indices as a range when possible (constant memory for long windows)."""
        if end < start:
            return range(0)
        if self.mode == "fps" and native_fps > 0 and self.value < native_fps:
            step = native_fps / self.value
            count = int(math.floor((end - start) / step)) + 1
            return _unique_sorted(start + int(round(k * step)) for k in range(count))
        if self.mode == "max_n" and int(self.value) < end - start + 1:
            n = max(1, int(self.value))
            if n == 1:
                return [start + (end - start) // 2]
            return _unique_sorted(int(round(x)) for x in np.linspace(start, end, n))
        return range(start, end + 1)


def _unique_sorted(values: Iterable[int]) -> list[int]:
    return sorted(set(values))


@dataclass
class DecodedFrame:
    """One kept frame of one clip window."""

    clip_id: str
    frame_index: int
    pts_s: float
    image: np.ndarray | None  # BGR uint8 crop; may share memory with other windows' crops
    origin: tuple[int, int]  # (x0, y0) of the crop in full display-frame pixels
    width: int
    height: int
    frame_hash: str  # "" when decoded with want_pixels=False


# ---------------------------------------------------------------------------------------
# probe


def probe_video(path: str | os.PathLike) -> VideoProbe:
    """Read stream facts and decode the first frame, so a broken file fails here, clearly."""
    path = _check_file(path)
    with _open(path) as container:
        stream = _video_stream(container, path)
        first = _first_frame(container, stream, path)
        fps = _stream_fps(stream, path)
        duration_s = _duration_s(container, stream)
        frame_count = stream.frames or max(1, int(round(duration_s * fps)))
        rotation = _rotation(first)
        width, height = first.width, first.height
        if rotation in (90, 270):
            width, height = height, width
        return VideoProbe(
            codec=stream.codec_context.name,
            fps=fps,
            frame_count=int(frame_count),
            width=int(width),
            height=int(height),
            duration_s=duration_s,
            rotation=rotation,
        )


def _check_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise VideoError(f"video file not found: {path}")
    if not path.is_file():
        raise VideoError(f"not a regular file: {path}")
    if path.stat().st_size == 0:
        raise VideoError(f"video file is empty (0 bytes): {path}")
    return path


def _open(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), mode="r")
    except av.FFmpegError as err:
        raise VideoError(
            f"cannot read {path.name} as a media file ({_reason(err)}); "
            "it is not a video, or it is truncated (e.g. an interrupted download)"
        ) from None


def _reason(err: Exception) -> str:
    return getattr(err, "strerror", None) or str(err)


def _video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise VideoError(
            f"{path.name} has no video stream (streams: {', '.join(kinds)}); "
            "an audio-only or data file cannot be used"
        )
    return container.streams.video[0]


def _first_frame(container, stream, path: Path) -> av.VideoFrame:
    try:
        for frame in container.decode(stream):
            return frame
    except av.FFmpegError as err:
        raise VideoError(f"{path.name}: cannot decode the video stream ({_reason(err)})") from None
    raise VideoError(f"{path.name}: no decodable video frame (the file may be truncated)")


def _stream_fps(stream, path: Path) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate or float(rate) <= 0:
        raise VideoError(f"{path.name}: the video stream has no frame rate")
    return float(rate)


def _duration_s(container, stream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return 0.0


def _rotation(frame: av.VideoFrame) -> int:
    """Display rotation in counter-clockwise degrees, snapped to a multiple of 90."""
    try:
        degrees = float(frame.rotation or 0)
    except (AttributeError, ValueError):
        return 0
    return int(round(degrees / 90.0)) % 4 * 90


# ---------------------------------------------------------------------------------------
# streaming decode


@dataclass(frozen=True)
class _Plan:
    """A window resolved against the file: clipped range, kept indices, clamped crop."""

    clip_id: str
    kept: range | frozenset[int]
    first: int
    last: int
    crop: tuple[int, int, int, int]


def iter_clip_frames(
    path: str | os.PathLike,
    windows: list[ClipWindow],
    policy: SamplingPolicy = SamplingPolicy(),
    want_pixels: bool = True,
) -> Iterator[DecodedFrame]:
    """Yield the kept frames of every window in ONE streaming pass (see the module docstring).

    Frames are yielded in file order; a frame in several windows is decoded once and yielded
    once per window, in the order the windows were given.
    """
    path = _check_file(path)
    tune_malloc_for_frames()
    probe = probe_video(path)
    plans = [p for p in (_plan(w, policy, probe) for w in windows) if p is not None]
    if not plans:
        return
    first = min(p.first for p in plans)
    last = max(p.last for p in plans)
    for index, frame, pts_s in _indexed_frames(path, first, probe.fps):
        if index < first:
            continue
        users = [p for p in plans if index in p.kept]
        if users:
            full = _to_upright_bgr(frame, probe.rotation) if want_pixels else None
            hashes: dict[tuple[int, int, int, int], str] = {}
            for plan in users:
                yield _decoded(plan, index, pts_s, full, hashes)
        if index >= last:
            return


def tune_malloc_for_frames() -> bool:
    """Keep decoded frames' buffers on glibc's heap: the setting `MALLOC_MMAP_THRESHOLD_` gives, applied at
    run time (mallopt), so every process that decodes (the CLI, run workers, the daemon's runs) has it.

    With glibc's defaults, a consumer that holds a frame while the next one is converted makes each new
    1080p buffer (6 MB) a fresh mmap, and freeing it munmaps it again: page faults on every frame, about
    1 ms at 1080p, which a loop that drops each frame at once never pays (benchmarks/decode.py,
    `stage_over_raw`). A fixed mmap threshold and trim threshold of 64 MiB make those buffers reuse heap
    memory instead. Once per process; a no-op off glibc, or when the environment already sets the
    threshold or `EFHQ_MALLOC_TUNING=0`. Returns whether the setting is in effect.
    """
    global _malloc_tuned
    if _malloc_tuned is not None:
        return _malloc_tuned
    _malloc_tuned = False
    if os.environ.get("EFHQ_MALLOC_TUNING", "1") == "0":
        return False
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:  # the operator chose; glibc applied it at start-up
        _malloc_tuned = True
        return True
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc <malloc.h>
    _malloc_tuned = bool(mallopt(m_mmap_threshold, MALLOC_THRESHOLD_BYTES)) and bool(
        mallopt(m_trim_threshold, MALLOC_THRESHOLD_BYTES))
    return _malloc_tuned


def _plan(window: ClipWindow, policy: SamplingPolicy, probe: VideoProbe) -> _Plan | None:
    end = min(window.end_frame, probe.frame_count - 1)
    if window.start_frame > end:
        return None
    kept = policy._kept(window.start_frame, end, probe.fps)
    if not kept:
        return None
    kept = kept if isinstance(kept, range) else frozenset(kept)
    return _Plan(window.clip_id, kept, min(kept), max(kept), _clamp_crop(window, probe))


def _clamp_crop(window: ClipWindow, probe: VideoProbe) -> tuple[int, int, int, int]:
    if window.crop is None:
        return (0, 0, probe.width, probe.height)
    x0, y0, x1, y1 = (int(round(v)) for v in window.crop)
    x0, x1 = sorted((min(max(x0, 0), probe.width), min(max(x1, 0), probe.width)))
    y0, y1 = sorted((min(max(y0, 0), probe.height), min(max(y1, 0), probe.height)))
    if x1 <= x0 or y1 <= y0:
        raise VideoError(
            f"clip {window.clip_id!r}: crop {window.crop} lies outside the "
            f"{probe.width}x{probe.height} frame"
        )
    return (x0, y0, x1, y1)


def _decoded(
    plan: _Plan,
    index: int,
    pts_s: float,
    full: np.ndarray | None,
    hashes: dict[tuple[int, int, int, int], str],
) -> DecodedFrame:
    x0, y0, x1, y1 = plan.crop
    image = None if full is None else full[y0:y1, x0:x1]
    digest = ""
    if image is not None:
        if plan.crop not in hashes:
            hashes[plan.crop] = frame_hash(image)
        digest = hashes[plan.crop]
    return DecodedFrame(
        clip_id=plan.clip_id,
        frame_index=index,
        pts_s=pts_s,
        image=image,
        origin=(x0, y0),
        width=x1 - x0,
        height=y1 - y0,
        frame_hash=digest,
    )


def _indexed_frames(path: Path, first: int, fps: float) -> Iterator[tuple[int, av.VideoFrame, float]]:
    """(index, frame, pts_s) in presentation order, starting at or before `first`."""
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_type = "AUTO"
        start_pts = stream.start_time or 0
        tb = stream.time_base
        index = 0
        if first > 0 and _is_cfr(stream):
            container.seek(_pts_of(first, start_pts, tb, stream.average_rate), stream=stream)
            index = None
        try:
            for frame in container.decode(stream):
                if index is None:
                    index = _index_from_pts(frame.pts, start_pts, tb, stream.average_rate)
                    if index is None or index > first:
                        break  # the seek did not land before `first`: decode from the start
                yield index, frame, _pts_seconds(frame.pts, start_pts, tb, index, fps)
                index += 1
            else:
                return
        except av.FFmpegError as err:
            raise VideoError(f"{path.name}: decoding failed near frame {index} ({_reason(err)})") from None
    yield from _indexed_frames(path, 0, fps)


def _is_cfr(stream) -> bool:
    """Seek only when index recovery from pts is exact: average rate == base rate."""
    avg, base = stream.average_rate, stream.base_rate
    if not avg or not base or stream.time_base is None:
        return False
    return abs(float(avg) - float(base)) <= 1e-3 * float(base)


def _pts_of(index: int, start_pts: int, tb: Fraction, rate: Fraction) -> int:
    """The (CFR) pts of frame `index`, rounded down so a backward seek lands at or before it."""
    return start_pts + math.floor(Fraction(index) / Fraction(rate) / Fraction(tb))


def _index_from_pts(pts: int | None, start_pts: int, tb: Fraction, rate: Fraction) -> int | None:
    if pts is None:
        return None
    return max(0, int(round(float((pts - start_pts) * Fraction(tb) * Fraction(rate)))))


def _pts_seconds(pts: int | None, start_pts: int, tb: Fraction, index: int, fps: float) -> float:
    if pts is None or tb is None:
        return index / fps
    return float((pts - start_pts) * tb)


def _to_upright_bgr(frame: av.VideoFrame, rotation: int) -> np.ndarray:
    image = frame.to_ndarray(format="bgr24")
    if rotation == 90:
        return cv2.rotate(image, cv2.ROTATE_90_COUNTERCLOCKWISE)
    if rotation == 180:
        return cv2.rotate(image, cv2.ROTATE_180)
    if rotation == 270:
        return cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE)
    return image


# ---------------------------------------------------------------------------------------
# hashing and the frames table


def frame_hash(image_bgr: np.ndarray) -> str:
    """16-hex blake2b of a 16x16 gray INTER_AREA thumbnail: cheap, stable, content-based.

    A strided subsample first keeps the cost far below decode time at 1080p.
    """
    height, width = image_bgr.shape[:2]
    step = max(1, min(height, width) // (8 * _HASH_THUMB))
    small = np.ascontiguousarray(image_bgr[::step, ::step])
    thumb = cv2.resize(small, (_HASH_THUMB, _HASH_THUMB), interpolation=cv2.INTER_AREA)
    if thumb.ndim == 3 and thumb.shape[2] == 3:
        thumb = cv2.cvtColor(thumb, cv2.COLOR_BGR2GRAY)
    digest = hashlib.blake2b(digest_size=8)
    digest.update(f"{height}x{width}:".encode())
    digest.update(np.ascontiguousarray(thumb, dtype=np.uint8).tobytes())
    return digest.hexdigest()


def frames_rows(
    video_id: str,
    path: str | os.PathLike,
    windows: list[ClipWindow],
    policy: SamplingPolicy = SamplingPolicy(),
) -> "polars.DataFrame":
    """The `frames` table for one video; pixels are decoded only to hash them, then dropped."""
    import polars as pl

    columns: dict[str, list] = {name: [] for name in _FRAMES_SCHEMA}
    for item in iter_clip_frames(path, windows, policy, want_pixels=True):
        columns["video_id"].append(video_id)
        columns["clip_id"].append(item.clip_id)
        columns["frame_index"].append(item.frame_index)
        columns["pts_s"].append(item.pts_s)
        columns["width"].append(item.width)
        columns["height"].append(item.height)
        columns["crop_x0"].append(item.origin[0])
        columns["crop_y0"].append(item.origin[1])
        columns["frame_hash"].append(item.frame_hash)
    schema = {name: getattr(pl, dtype) for name, dtype in _FRAMES_SCHEMA.items()}
    return pl.DataFrame(columns, schema=schema).sort(["clip_id", "frame_index"])


_FRAMES_SCHEMA = {
    "video_id": "String",
    "clip_id": "String",
    "frame_index": "Int64",
    "pts_s": "Float64",
    "width": "Int32",
    "height": "Int32",
    "crop_x0": "Int32",
    "crop_y0": "Int32",
    "frame_hash": "String",
}


# ---------------------------------------------------------------------------------------
# writing test videos


def write_test_video(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray],
    fps: float = 25.0,
    crf: int = 23,
    *,
    preset: str = "medium",
    rotation: int = 0,
    keyint: int | None = None,
) -> None:
    """Write H.264 (libx264, yuv420p) mp4 with PyAV; cv2.VideoWriter cannot write H.264.

    Frames are BGR uint8 (H, W, 3) or gray (H, W); all the size of the first, even sides.
    `rotation` (counter-clockwise degrees) sets the display matrix; `keyint` caps the GOP
    length (x264 default 250), which tests use to exercise seeking. Written atomically.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix or ".mp4", dir=path.parent)
    os.close(fd)
    try:
        _encode(Path(tmp), frames, fps, crf, preset, rotation, keyint)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _encode(
    path: Path, frames: Iterable[np.ndarray], fps: float, crf: int, preset: str, rotation: int, keyint: int | None
) -> None:
    rate = Fraction(fps).limit_denominator(100_000)
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = None
        for image in frames:
            image = _as_bgr(image)
            if stream is None:
                stream = _new_h264_stream(container, image, rate, crf, preset, rotation, keyint)
            elif image.shape[:2] != (stream.height, stream.width):
                raise ValueError(f"frame size {image.shape[:2]} differs from the first frame's")
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                container.mux(packet)
        if stream is None:
            raise ValueError("write_test_video needs at least one frame")
        for packet in stream.encode():
            container.mux(packet)


def _as_bgr(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return np.ascontiguousarray(image)
    raise ValueError(f"frames must be (H, W) or (H, W, 3), got {image.shape}")


def _new_h264_stream(
    container, image: np.ndarray, rate: Fraction, crf: int, preset: str, rotation: int, keyint: int | None
):
    height, width = image.shape[:2]
    if width % 2 or height % 2:
        raise ValueError(f"yuv420p needs even width and height, got {width}x{height}")
    stream = container.add_stream("libx264", rate=rate)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.options = {"crf": str(crf), "preset": preset}
    if keyint:
        stream.options = {**stream.options, "x264-params": f"keyint={int(keyint)}"}
    if rotation % 360:
        stream.set_display_rotation(rotation % 360)
    return stream
