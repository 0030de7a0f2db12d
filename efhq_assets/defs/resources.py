"""Typed resources: where the data root is, and which face models analyse it."""


import functools

import dagster as dg

from efhq_assets.core.faces import FaceModels
from efhq_assets.core.models import registry
from efhq_assets.core.settings import Settings
from efhq_assets.core.storage import DataRoot


class EfhqStorage(dg.ConfigurableResource):
    """The data root every asset reads and writes (default: EFHQ_DATA_ROOT, else ./efhq_data)."""

    data_root: str | None = None

    def root(self) -> DataRoot:
        return DataRoot.at(self.data_root).ensure()


@functools.lru_cache(maxsize=4)
def _face_models(detector: str, min_face: int, landmarkers: tuple[str, ...]) -> FaceModels:
    """Loaded once per process and configuration: `efhq build` keeps models across videos."""
    detector_config = {"min_face": min_face} if detector == "mtcnn" else {}
    return FaceModels(
        detector=registry.create("detector", detector, **detector_config),
        facemesh=registry.create("landmarker", "facemesh") if "facemesh" in landmarkers else None,
        dlib68=registry.create("landmarker", "dlib68") if "dlib68" in landmarkers else None,
    )


class FaceAnalysis(dg.ConfigurableResource):
    """Which detector and landmarkers analyse faces, and EFHQ's filter thresholds."""

    # None: the data root's `detector` setting (efhq settings), so the CLI, the UI and the daemon agree.
    detector: str | None = None
    min_face: int = 40
    landmarkers: list[str] = ["facemesh", "dlib68"]
    efhq_min_score: float = 0.9
    efhq_min_side: int = 256
    batch: int = 8
    # None: the data root's `detect_stride` setting (detect every k-th frame, carry faces between; docs/pose_accuracy.md)
    detect_stride: int | None = None

    def resolved(self, settings: Settings) -> "FaceAnalysis":
        """This resource with the data root's settings filled in where it leaves them open."""
        update = {name: getattr(settings, name) for name in ("detector", "detect_stride") if getattr(self, name) is None}
        return self.model_copy(update=update) if update else self

    def models(self) -> FaceModels:
        if self.detector is None:
            raise ValueError("FaceAnalysis.detector is unresolved: call resolved(settings) first")
        return _face_models(self.detector, self.min_face, tuple(self.landmarkers))

    def identity(self) -> list:
        """What face_detections' fingerprint takes from the models: this configuration and the loaded models'
        versions, weights and settings (a detector threshold or landmarker crop change redoes old videos)."""
        return [self.model_dump(), self.models().identity()]
