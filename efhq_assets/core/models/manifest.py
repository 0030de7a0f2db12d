"""The weights manifest: every model file the project knows, read from the package data file
``manifest.json`` beside this module (name, kind, files with their sha256, public source URL, licence,
input size, the package that ships the files, the backend that uses them).

Weights either ship inside an installed package (``package`` set: found offline, nothing to fetch) or are
user-supplied and live in the model directory (see :mod:`.weights`). ``MANIFEST`` is built once from the
file and never changed by this package.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

__all__ = ["KINDS", "WeightFile", "ModelSpec", "MANIFEST", "UnknownModelError", "get_spec", "load_manifest"]

KINDS = ("detector", "landmarker", "embedder", "quality", "pose")
MANIFEST_FILE = "manifest.json"


class UnknownModelError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else "unknown model"


@dataclass(frozen=True)
class WeightFile:
    file: str
    sha256: str | None = None


@dataclass(frozen=True)
class ModelSpec:
    """One model's weights.

    files:      weight files; the first is the main one (``file`` / ``sha256``).
    package:    importable package that ships the files (offline model), with
                ``package_subdir`` the folder inside it; None = user-supplied,
                looked for in the model directory.
    url:        public source.  ``url_is_direct`` False means the URL is an
                archive or a web page (Google Drive, a .zip release) from which
                the file has to be taken by hand; ``fetch`` then needs ``url=``.
    sha256:     None when unknown: ``verify`` then only checks presence.
    backend:    the registered backend name that uses these weights, if any.
    """

    name: str
    kind: str
    files: tuple[WeightFile, ...]
    url: str | None
    licence: str
    input_size: tuple[int, int] | None = None
    package: str | None = None
    package_subdir: str = ""
    url_is_direct: bool = False
    archive_member: str | None = None
    notes: str = ""
    backend: str | None = None

    @property
    def file(self) -> str:
        return self.files[0].file

    @property
    def sha256(self) -> str | None:
        return self.files[0].sha256

    @property
    def offline(self) -> bool:
        return self.package is not None

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "file": self.file,
            "files": [f.file for f in self.files],
            "sha256": self.sha256,
            "url": self.url,
            "licence": self.licence,
            "input_size": list(self.input_size) if self.input_size else None,
            "package": self.package,
            "notes": self.notes,
        }


def spec_from_json(entry: dict) -> ModelSpec:
    entry = dict(entry)
    files = tuple(WeightFile(f["file"], f.get("sha256")) for f in entry.pop("files"))
    if entry.get("input_size") is not None:
        entry["input_size"] = tuple(entry["input_size"])
    if entry["kind"] not in KINDS:
        raise ValueError(f"{MANIFEST_FILE}: model {entry['name']!r} has unknown kind {entry['kind']!r}")
    return ModelSpec(files=files, **entry)


def load_manifest() -> dict[str, ModelSpec]:
    """The manifest as shipped (package data), name -> spec, in file order."""
    text = resources.files(__package__).joinpath(MANIFEST_FILE).read_text(encoding="utf-8")
    return {spec.name: spec for spec in map(spec_from_json, json.loads(text))}


MANIFEST: dict[str, ModelSpec] = load_manifest()


def get_spec(name: str) -> ModelSpec:
    try:
        return MANIFEST[name]
    except KeyError:
        raise UnknownModelError(f"unknown model {name!r}; known models: {', '.join(sorted(MANIFEST))}") from None
