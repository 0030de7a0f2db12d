"""A data root's settings: one typed, validated model, read by every process that builds it.

The CLI (`efhq build --sample ...`, `efhq settings set/unset`), the webserver, the daemon and run workers
(Celery, k8s) all read `<data_root>/catalog/settings.json` through `load_settings`, so a UI
materialization, a daemon refresh and `efhq build` compute the same thing. A value is validated before
anything is saved: a typo is refused with a message naming the setting and the values it takes.
"""

from __future__ import annotations

import json
from typing import Any

import pydantic

from .models import registry
from .pose_annotations import parse_pose_camera
from .quality import QUALITY_SCORER_CHOICES
from .storage import DataRoot, atomic_write_bytes
from .tasks.verification import DEGRADATION_PRESETS

SETTINGS_FILE = "settings.json"


class SettingsError(ValueError):
    """A setting name or value that is refused; the message says what is allowed."""


def _check_sampling(value: str) -> str:
    from .frames import parse_sampling  # lazy: frames imports av, cv2 and polars

    parse_sampling(value)
    return str(value).strip().lower()


def _check_pose_camera(value: str) -> str:
    parse_pose_camera(value)
    return str(value).strip().lower()


def _check_detector(value: str) -> str:
    names = registry.available("detector")
    if value not in names:
        raise ValueError(f"detector must be one of {', '.join(names)} (see `efhq models list`), got {value!r}")
    return value


class Settings(pydantic.BaseModel):
    """Every setting of a data root, with its default (what `efhq settings` shows)."""

    model_config = pydantic.ConfigDict(extra="forbid", validate_assignment=True)

    sampling: str = pydantic.Field(
        "all", description="frames kept per clip: all (every frame, as EFHQ), fps:N or max:N. Redoes decoded_frames "
                           "and everything after it.")
    detector: str = pydantic.Field(
        "mtcnn", description="face detector backend (efhq models list), e.g. scrfd_10g_bnkps with its weights. "
                             "Redoes face_detections and everything after it.")
    detect_stride: int = pydantic.Field(
        5, ge=1, le=100,
        description="run the detector on every k-th sampled frame and carry its faces between detections by their "
                    "landmarks, re-verified by the detector's last stage (1: every frame, as EFHQ). Redoes "
                    "face_detections and everything after it.")
    pose_camera: str = pydantic.Field(
        "frame", description="camera of the pose fit: frame (focal = the frame's longer side), weak (no perspective, "
                             "for videos that are already face crops) or f:K. Redoes pose_annotations and pose_bins.")
    render_exports: bool = pydantic.Field(
        False, description="render the training exports into <data_root>/tasks/ on every build (default: on request, "
                           "with efhq export).")
    verification_pairs_per_protocol: int = pydantic.Field(
        20_000, gt=0, description="genuine and impostor pairs drawn per protocol (f2f, f2p, p2p) of the "
                                  "verification benchmark.")
    quality_scorer: str = pydantic.Field(
        "auto", description="face quality score of the splits: auto (HyperIQA, EFHQ's scorer with its iqa >= 42, when "
                            "its weights are installed: efhq models fetch hyperiqa_koniq; else brisque_live_inv), "
                            "hyperiqa or brisque_live_inv (its 20th percentile, frozen). Redoes quality_scores.")
    eg3d_resolution: int = pydantic.Field(
        512, description="side of the EG3D export's crops: 512 (EG3D's FFHQ) or 1024 (EFHQ documents both). Every "
                         "image also gets a _mirror copy with the mirrored camera, as EFHQ's preprocessing wrote.")
    selection: str = pydantic.Field(
        "efhq", description="how the training sets pick faces: efhq (as EFHQ built them: faces labelled confused, "
                            "profile_horizontal or profile_vertical enter no split; GAN/EG3D/T2I keep at most 10 per "
                            "(clip, bin)) or project (keep those labels; at most 10 per (identity, bin)). Redoes the "
                            "splits.")
    verification_degradation: str = pydantic.Field(
        "efhq", description="degradations of the verification images: efhq (EFHQ's albumentations defaults: "
                            "brightness/contrast, downscale 0.25-0.35, near-lossless JPEG 99-100, each p=0.5) or hard "
                            "(JPEG 30-70). Redoes verification_pairs.")
    quality_threshold_brisque_live_inv: float | None = pydantic.Field(
        None, description="quality cut of the splits for the BRISQUE scorer; frozen on the first build (the 20th "
                          "percentile of that build's faces) so later videos do not move it. Unset to recompute.")

    @pydantic.field_validator("sampling")
    @classmethod
    def _sampling_valid(cls, value: str) -> str:
        return _check_sampling(value)

    @pydantic.field_validator("pose_camera")
    @classmethod
    def _pose_camera_valid(cls, value: str) -> str:
        return _check_pose_camera(value)

    @pydantic.field_validator("quality_scorer")
    @classmethod
    def _quality_scorer_valid(cls, value: str) -> str:
        if value not in QUALITY_SCORER_CHOICES:
            raise ValueError(f"quality_scorer must be one of {', '.join(QUALITY_SCORER_CHOICES)}, got {value!r}")
        return value

    @pydantic.field_validator("eg3d_resolution")
    @classmethod
    def _eg3d_resolution_valid(cls, value: int) -> int:
        if value not in (512, 1024):
            raise ValueError(f"eg3d_resolution must be 512 or 1024, got {value!r}")
        return value

    @pydantic.field_validator("selection")
    @classmethod
    def _selection_valid(cls, value: str) -> str:
        if value not in ("efhq", "project"):
            raise ValueError(f"selection must be efhq or project, got {value!r}")
        return value

    @pydantic.field_validator("verification_degradation")
    @classmethod
    def _degradation_valid(cls, value: str) -> str:
        if value not in DEGRADATION_PRESETS:
            raise ValueError(f"verification_degradation must be one of {', '.join(DEGRADATION_PRESETS)}, got {value!r}")
        return value

    @pydantic.field_validator("detector")
    @classmethod
    def _detector_valid(cls, value: str) -> str:
        return _check_detector(value)

    def for_stage(self, names: tuple[str, ...]) -> dict[str, Any]:
        """The values of `names`, for a stage's fingerprint."""
        return {n: getattr(self, n) for n in names}


def describe() -> list[dict]:
    """Every setting: name, type, default and what it does (for `efhq settings` and the docs)."""
    out = []
    for name, field in Settings.model_fields.items():
        out.append({"name": name, "type": getattr(field.annotation, "__name__", str(field.annotation)),
                    "default": field.default, "description": field.description})
    return out


def _error_message(exc: pydantic.ValidationError) -> str:
    parts = []
    for err in exc.errors():
        name = ".".join(str(p) for p in err["loc"]) or "settings"
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = f"unknown setting; settings are: {', '.join(Settings.model_fields)}"
        parts.append(f"{name}: {message}")
    return "; ".join(parts)


def validate(values: dict[str, Any]) -> Settings:
    try:
        return Settings(**values)
    except pydantic.ValidationError as exc:
        raise SettingsError(_error_message(exc)) from None


def _path(root: DataRoot):
    return root.catalog / SETTINGS_FILE


def stored(root: DataRoot) -> dict[str, Any]:
    """The values saved in the data root (only those set explicitly)."""
    path = _path(root)
    return json.loads(path.read_text()) if path.exists() else {}


def load_settings(root: DataRoot) -> Settings:
    """The data root's settings. A file edited by hand into an invalid state fails here with a clear message."""
    try:
        return validate(stored(root))
    except SettingsError as exc:
        raise SettingsError(f"{_path(root)}: {exc}") from None


def save_settings(root: DataRoot, values: dict[str, Any]) -> Settings:
    """Validate `values` (a full set: what is not given takes its default) and write them atomically; nothing
    is written when a value is refused. Only the values that differ from their default are kept on disk."""
    settings = validate(values)
    defaults = Settings()
    explicit = {k: v for k, v in settings.model_dump().items() if v != getattr(defaults, k)}
    root.ensure()
    atomic_write_bytes(_path(root), json.dumps(explicit, sort_keys=True, indent=1).encode())
    return settings


def update_settings(root: DataRoot, **changes: Any) -> Settings:
    """Set some values (None: back to the default), validated together with the others before saving."""
    values = stored(root)
    for name, value in changes.items():
        if value is None:
            values.pop(name, None)
        else:
            values[name] = value
    return save_settings(root, values)


def parse_value(name: str, text: str) -> Any:
    """A value typed on the command line, converted to the setting's type (validated by `validate`)."""
    if name not in Settings.model_fields:
        raise SettingsError(f"{name}: unknown setting; settings are: {', '.join(Settings.model_fields)}")
    annotation = Settings.model_fields[name].annotation
    lowered = text.strip().lower()
    if annotation is bool:
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise SettingsError(f"{name}: expected true or false, got {text!r}")
    return text
