"""The data root's layout: where every file of a data root lives (docs/architecture.md "Data root")."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..ids import is_safe_id

DEFAULT_DATA_ROOT = "efhq_data"
TABLE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
KEY_SEPARATOR = "@"  # never valid in a video id, so "<video_id>@<stage>" file names are unambiguous


def resolve_data_root(explicit: str | os.PathLike | None = None) -> Path:
    """--data-root, else EFHQ_DATA_ROOT, else ./efhq_data; always absolute."""
    chosen = explicit or os.environ.get("EFHQ_DATA_ROOT") or DEFAULT_DATA_ROOT
    return Path(chosen).expanduser().resolve()


@dataclass(frozen=True)
class DataRoot:
    path: Path

    @classmethod
    def at(cls, explicit: str | os.PathLike | None = None) -> "DataRoot":
        return cls(resolve_data_root(explicit))

    @property
    def tables(self) -> Path:
        return self.path / "tables"

    @property
    def catalog(self) -> Path:
        return self.path / "catalog"

    @property
    def media(self) -> Path:
        return self.path / "media"

    @property
    def tasks(self) -> Path:
        return self.path / "tasks"

    @property
    def dagster_home(self) -> Path:
        return self.path / "dagster_home"

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.duckdb"

    @property
    def lock_path(self) -> Path:
        return self.path / "manifest.lock"

    def ensure(self) -> "DataRoot":
        for folder in (self.tables, self.catalog):
            folder.mkdir(parents=True, exist_ok=True)
        return self

    def table_file(self, table: str, key: str) -> Path:
        """tables/<table>/<key>.parquet, refusing anything that could leave the data root."""
        if not TABLE_NAME.match(table):
            raise ValueError(f"invalid table name {table!r}")
        parts = key.split(KEY_SEPARATOR)
        if not parts or not all(is_safe_id(p) for p in parts):
            raise ValueError(f"refusing unsafe table key {key!r}")
        return self.tables / table / f"{key}.parquet"


def keyed(video_id: str, stage: str) -> str:
    return f"{video_id}{KEY_SEPARATOR}{stage}"


def table_files(root: DataRoot, table: str) -> list[Path]:
    folder = root.tables / table
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.parquet") if not p.name.startswith("."))
