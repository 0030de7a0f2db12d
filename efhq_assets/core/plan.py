"""The build plan: which stages of which videos are stale, grouped into runs. One function for all callers.

`efhq build` (runner.py), `efhq build --dry-run` and the daemon's sensor (defs/sensors.py) call `plan_build`,
so the three agree on what is stale and with which settings. Pure: no Dagster.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import stages
from .fingerprints import fingerprint
from .settings import Settings, load_settings
from .sources import Catalog
from .storage import DataRoot, atomic_write_bytes, table_files

MAX_PARTITIONS_PER_RUN = 50
MANIFEST_STATE_FILE = ".manifest.state"


def videos_with_errors(root: DataRoot) -> set[str]:
    """The videos that have an `errors` row (one listing of the table)."""
    return {p.name.rsplit(".", 1)[0].rsplit("@", 1)[0] for p in table_files(root, "errors")}


@dataclass
class BuildPlan:
    stale: dict[str, tuple[str, ...]] = field(default_factory=dict)   # video -> its stale stages, in order
    expected: dict[str, dict[str, str]] = field(default_factory=dict)  # video -> stage -> fingerprint now
    up_to_date: list[str] = field(default_factory=list)
    runs: list[tuple[tuple[str, ...], list[str]]] = field(default_factory=list)
    unpartitioned_stale: bool = False
    settings: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"stale_videos": len(self.stale), "up_to_date": len(self.up_to_date),
                "stale": {k: list(v) for k, v in self.stale.items()},
                "runs": [{"stages": list(sel), "videos": keys} for sel, keys in self.runs],
                "unpartitioned_stale": self.unpartitioned_stale, "settings": self.settings}


def plan_build(root: DataRoot, catalog: Catalog, keys: list[str], order: dict[str, int],
               face_models_identity: Callable[[], Any], force: bool = False,
               settings: Settings | None = None, max_per_run: int = MAX_PARTITIONS_PER_RUN) -> BuildPlan:
    """Stale stages per video (its recorded fingerprints against what they would be now), then the runs.

    `order`: each key's position in the instance's partition order (a run targets a contiguous range)."""
    settings = settings or load_settings(root)
    with_errors = videos_with_errors(root)
    plan = BuildPlan(settings=settings.model_dump())
    for key in keys:
        ctx = stages.VideoContext(root, catalog.video(key), catalog.clips_of(key), settings, face_models_identity)
        plan.expected[key] = stages.expected_fingerprints(ctx)
        if force or key in with_errors:  # a video with an error row is redone whole
            stale = list(stages.PER_VIDEO)
        else:
            stale = [n for n, fp in plan.expected[key].items()
                     if stages.recorded_fingerprint(root, n, key) != fp]
        if stale:
            plan.stale[key] = tuple(stale)
        else:
            plan.up_to_date.append(key)
    plan.runs = plan_runs(plan.stale, order, max_per_run)
    plan.unpartitioned_stale = bool(plan.stale) or unpartitioned_stale(root, settings)
    return plan


def plan_runs(stale: dict[str, tuple[str, ...]], order: dict[str, int],
              max_per_run: int = MAX_PARTITIONS_PER_RUN) -> list[tuple[tuple[str, ...], list[str]]]:
    """Group stale videos into runs: same stale stages, and contiguous in the instance's partition order (a
    Dagster run targets a range of dynamic partitions, i.e. every key registered between its two ends), at
    most `max_per_run` videos each. Returns [(stages, keys)] in partition order."""
    by_selection: dict[tuple[str, ...], list[str]] = {}
    for key, selection in stale.items():
        by_selection.setdefault(selection, []).append(key)
    runs = []
    for selection, keys in by_selection.items():
        keys.sort(key=order.__getitem__)
        chunk: list[str] = []
        for key in keys:
            if chunk and (order[key] != order[chunk[-1]] + 1 or len(chunk) >= max_per_run):
                runs.append((selection, chunk))
                chunk = []
            chunk.append(key)
        if chunk:
            runs.append((selection, chunk))
    return sorted(runs, key=lambda run: order[run[1][0]])


# --------------------------------------------------------------------------- the unpartitioned stages

def tables_state(root: DataRoot) -> str:
    """Names, sizes and mtimes of every data file (lineage excluded: it records each run). One stat per file."""
    entries = []
    for folder in (root.tables, root.catalog):
        for dirpath, dirnames, filenames in os.walk(folder):
            if Path(dirpath).name == "lineage":
                dirnames[:] = []
                continue
            for name in filenames:
                if name.endswith(".parquet"):
                    path = os.path.join(dirpath, name)
                    try:
                        st = os.stat(path)
                    except FileNotFoundError:
                        continue
                    entries.append((path, st.st_size, st.st_mtime_ns))
    return fingerprint(sorted(entries))


def unpartitioned_state(root: DataRoot, settings: Settings | None = None) -> str:
    return stages.unpartitioned_fingerprint(tables_state(root), settings or load_settings(root))


def unpartitioned_stale(root: DataRoot, settings: Settings | None = None) -> bool:
    """Identities, splits, card and manifest are stale unless the manifest asset last ran on exactly the data
    files, code and settings of now (it records that state when it finishes)."""
    marker = root.path / MANIFEST_STATE_FILE
    if not root.manifest_path.exists() or not marker.exists():
        return True
    return marker.read_text() != unpartitioned_state(root, settings)


def record_unpartitioned_state(root: DataRoot) -> None:
    atomic_write_bytes(root.path / MANIFEST_STATE_FILE, unpartitioned_state(root).encode())


# --------------------------------------------------------------------------- review sheets

REVIEW_STATE_FILE = ".reviews.state"


def review_files(root: DataRoot) -> list[Path]:
    folder = root.catalog / "review"
    return sorted(folder.glob("*.csv")) if folder.is_dir() else []


def review_files_state(root: DataRoot) -> str:
    return fingerprint([(p.name, p.stat().st_size) for p in review_files(root)])


def reviews_stale(root: DataRoot) -> bool:
    """review_overrides is stale when the imported sheets differ from those it last merged (it records them)."""
    marker = root.catalog / REVIEW_STATE_FILE
    return (marker.read_text() if marker.exists() else fingerprint([])) != review_files_state(root)


def record_review_state(root: DataRoot) -> None:
    atomic_write_bytes(root.catalog / REVIEW_STATE_FILE, review_files_state(root).encode())
