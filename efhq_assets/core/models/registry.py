"""Model backends by kind and name, and the one place callers import the model machinery from.

``register(kind, name, factory)``, ``create(kind, name, **config)``, ``available(kind)``. The built-in
backends are listed in ``BUILTIN_BACKENDS`` and registered by ``register_builtin_backends()``: the registry
calls it once, the first time it is used (importing this module registers nothing and changes nothing).
Each built-in is a lazy factory: its module (and torch, onnxruntime, insightface, mediapipe or dlib) is
imported only on ``create``.

The weights manifest (``MANIFEST``, ``get_spec``: :mod:`.manifest`, read from the package data file
``manifest.json``) and the weight files (``find_weights``, ``verify``, ``fetch``: :mod:`.weights`) are
re-exported here, so ``from efhq_assets.core.models import registry`` gives a caller all of it.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from .base import file_sha256
from .manifest import KINDS, MANIFEST, ModelSpec, UnknownModelError, WeightFile, get_spec
from .weights import (MODEL_DIR_ENV, ChecksumError, FetchError, MissingWeightsError, fetch, find_weight_files,
                      find_weights, model_dir, package_dir, search_dir, verify)

__all__ = [
    "KINDS",
    "ModelSpec",
    "WeightFile",
    "MANIFEST",
    "MODEL_DIR_ENV",
    "MissingWeightsError",
    "ChecksumError",
    "FetchError",
    "UnknownModelError",
    "BUILTIN_BACKENDS",
    "register",
    "register_builtin_backends",
    "create",
    "available",
    "model_dir",
    "get_spec",
    "file_sha256",
    "find_weights",
    "find_weight_files",
    "verify",
    "fetch",
    "list_models",
    "package_dir",
]

Factory = Callable[..., Any]

# (kind, name, module of this package, class, fixed config): the offline backends (weights in installed
# packages) first, then the published networks (user-supplied weights, each named as its manifest entry).
BUILTIN_BACKENDS: tuple[tuple[str, str, str, str, dict], ...] = (
    ("detector", "mtcnn", "mtcnn", "MtcnnDetector", {}),
    ("landmarker", "facemesh", "facemesh", "FaceMeshLandmarker", {}),
    ("landmarker", "dlib68", "dlib68", "Dlib68Landmarker", {}),
    ("embedder", "dlib_resnet", "dlib68", "DlibResNetEmbedder", {}),
    ("detector", "scrfd_10g_bnkps", "insightface_backends", "ScrfdDetector", {}),
    ("landmarker", "insightface_1k3d68", "insightface_backends", "Insightface3D68", {}),
    ("pose", "insightface_1k3d68", "insightface_backends", "Insightface3D68", {}),
    ("embedder", "arcface_w600k_r50", "insightface_backends", "ArcFaceEmbedder", {}),
    ("pose", "6drepnet", "sixdrepnet", "SixDRepNetEstimator", {"variant": "6drepnet"}),
    ("pose", "6drepnet360", "sixdrepnet", "SixDRepNetEstimator", {"variant": "6drepnet360"}),
    ("pose", "synergynet", "synergynet", "SynergyNetEstimator", {}),
    ("quality", "hyperiqa_koniq", "hyperiqa", "HyperIQAScorer", {}),
)

_REGISTRY: dict[str, dict[str, Factory]] = {k: {} for k in KINDS}
_builtins_registered = False


def lazy_factory(module: str, cls: str, **fixed: Any) -> Factory:
    """``factory(**config)`` that imports ``<this package>.<module>`` and builds ``cls(**fixed, **config)``."""

    def factory(**config: Any) -> Any:
        mod = importlib.import_module(f"{__package__}.{module}")
        return getattr(mod, cls)(**{**fixed, **config})

    factory.__qualname__ = f"lazy[{module}.{cls}]"
    return factory


def register_builtin_backends() -> None:
    """Register every entry of ``BUILTIN_BACKENDS`` (replacing a backend of the same kind and name)."""
    global _builtins_registered
    _builtins_registered = True
    for kind, name, module, cls, fixed in BUILTIN_BACKENDS:
        _REGISTRY[kind][name] = lazy_factory(module, cls, **fixed)


def _backends(kind: str) -> dict[str, Factory]:
    if not _builtins_registered:
        register_builtin_backends()
    if kind not in _REGISTRY:
        raise ValueError(f"unknown model kind {kind!r}; kinds: {', '.join(KINDS)}")
    return _REGISTRY[kind]


def register(kind: str, name: str, factory: Factory, *, replace: bool = False) -> None:
    """Register ``factory(**config) -> backend`` under (kind, name)."""
    backends = _backends(kind)
    if name in backends and not replace:
        raise ValueError(f"a {kind} named {name!r} is already registered (pass replace=True to override)")
    backends[name] = factory


def available(kind: str) -> list[str]:
    """Registered backend names of a kind, sorted."""
    return sorted(_backends(kind))


def create(kind: str, name: str, **config: Any) -> Any:
    """Build the backend registered as (kind, name) with its config."""
    try:
        factory = _backends(kind)[name]
    except KeyError:
        raise UnknownModelError(
            f"no {kind} backend named {name!r}; available: {', '.join(available(kind)) or 'none'}"
        ) from None
    return factory(**config)


def list_models() -> list[dict]:
    """One row per manifest model, for ``efhq models list``.

    Keys: name, kind, source ('package' or 'model_dir'), offline, backend
    (registered backend name or None), path (where the main file is looked
    for), present, missing (files not found), licence, url, sha256.
    """
    rows = []
    for spec in MANIFEST.values():
        folder = search_dir(spec)
        missing = [wf.file for wf in spec.files if not (folder / wf.file).is_file()]
        backend = spec.backend if spec.backend and spec.backend in _backends(spec.kind) else None
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
