"""Source and video identifiers: validated slugs, never paths.

A video id names a partition and a file under the data root (`tables/<table>/<video_id>.parquet`),
so it must never be able to escape that folder. Ids that come from annotation files are rejected
when hostile (docs/architecture.md, "Invariants": stable ids); ids derived from file names are
made safe by a deterministic slug, so any file a user has can still be processed.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass

SAFE_ID = re.compile(r"^[A-Za-z0-9_+.\-]{1,160}$")
# VFHQ clip names: Clip+<ytid>+P<person>+C<clip>+F<start>-<end>
VFHQ_CLIP = re.compile(r"^Clip\+(?P<ytid>[A-Za-z0-9_\-]+)\+P(?P<person>\d+)\+C(?P<clip>\d+)\+F(?P<start>\d+)-(?P<end>\d+)$")


class InvalidIdError(ValueError):
    """An identifier from an annotation file that could escape the data root or is malformed."""


def is_safe_id(value: str) -> bool:
    return bool(SAFE_ID.match(value)) and ".." not in value and not value.startswith(".")


def video_id_from_stem(stem: str) -> str:
    """The partition key for a video file: its NFC stem when safe, else a slug plus a short hash.

    The hash keeps two different unsafe names from colliding on the same slug.
    """
    stem = unicodedata.normalize("NFC", stem)
    if is_safe_id(stem):
        return stem
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^A-Za-z0-9_+\-]+", "_", ascii_stem).strip("_.")[:100] or "video"
    digest = hashlib.sha1(stem.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{slug}-{digest}"


def validate_annotation_id(value: str, what: str = "id") -> str:
    """Return `value` if it is a safe id from an annotation file; raise InvalidIdError otherwise."""
    if not isinstance(value, str) or not value:
        raise InvalidIdError(f"empty {what}")
    if "\x00" in value:
        raise InvalidIdError(f"{what} {value!r} contains a NUL character")
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise InvalidIdError(f"{what} {value!r} contains control characters")
    if value.startswith("/") or value.startswith("\\") or re.match(r"^[A-Za-z]:[\\/]", value):
        raise InvalidIdError(f"{what} {value!r} is an absolute path")
    if "/" in value or "\\" in value:
        raise InvalidIdError(f"{what} {value!r} contains a path separator")
    if ".." in value:
        raise InvalidIdError(f"{what} {value!r} contains '..'")
    if not is_safe_id(value):
        raise InvalidIdError(f"{what} {value!r} has characters outside [A-Za-z0-9_+.-]")
    return value


@dataclass(frozen=True)
class VfhqClipName:
    youtube_id: str
    person: int
    clip: int
    start_frame: int
    end_frame: int

    @property
    def name(self) -> str:
        return f"Clip+{self.youtube_id}+P{self.person}+C{self.clip}+F{self.start_frame}-{self.end_frame}"


def parse_vfhq_clip_name(name: str) -> VfhqClipName:
    validate_annotation_id(name, "VFHQ clip name")
    m = VFHQ_CLIP.match(name)
    if not m:
        raise InvalidIdError(f"VFHQ clip name {name!r} does not match Clip+<ytid>+P<n>+C<m>+F<start>-<end>")
    start, end = int(m["start"]), int(m["end"])
    if end < start:
        raise InvalidIdError(f"VFHQ clip name {name!r} ends before it starts")
    return VfhqClipName(m["ytid"], int(m["person"]), int(m["clip"]), start, end)
