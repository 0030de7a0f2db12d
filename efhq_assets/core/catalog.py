"""The source catalog of a data root: the configured sources (`catalog/sources.json`) and the scanned catalog
(`catalog/videos.parquet`, `catalog/clips.parquet`) that every per-video stage reads.
"""

from __future__ import annotations

import functools

import polars as pl

from .lineage import record_error
from .sources import Catalog, SourceConfig, Sha256Cache, build_catalog
from .storage import DataRoot, atomic_write_bytes, atomic_write_parquet, keyed, remove_table_file

SOURCES_FILE = "sources.json"
CATALOG_TABLES = ("videos", "clips", "errors")


def load_source_config(root: DataRoot) -> SourceConfig:
    path = root.catalog / SOURCES_FILE
    return SourceConfig.from_json(path.read_text()) if path.exists() else SourceConfig()


def save_source_config(root: DataRoot, config: SourceConfig) -> None:
    root.ensure()
    atomic_write_bytes(root.catalog / SOURCES_FILE, config.to_json().encode())


def refresh_catalog(root: DataRoot, config: SourceConfig | None = None) -> Catalog:
    """Scan the configured sources and persist the catalog (atomic, deterministic content)."""
    root.ensure()
    config = config or load_source_config(root)
    catalog = build_catalog(config, Sha256Cache(root.catalog / "sha256_cache.json"))
    frames = {
        "videos": pl.DataFrame(catalog.videos, infer_schema_length=None) if catalog.videos else None,
        "clips": pl.DataFrame(catalog.clips, infer_schema_length=None) if catalog.clips else None,
    }
    for name, df in frames.items():
        path = root.catalog / f"{name}.parquet"
        if df is None:
            path.unlink(missing_ok=True)
        else:
            atomic_write_parquet(df, path)
    # One error row per unreadable annotation file / clip; cleared when it becomes readable.
    stale = {p.stem for p in (root.tables / "errors").glob(f"*@sources.parquet")}
    for err in catalog.errors:
        key = keyed(err["video_id"], "sources")
        stale.discard(key)
        record_error(root, err["video_id"], "sources", err["message"], at="")
    for key in stale:
        remove_table_file(root, "errors", key)
    return catalog


def load_catalog(root: DataRoot) -> Catalog:
    """The persisted catalog, cached per process until its files change (every per-video step reads it)."""
    def stamp(name: str):
        path = root.catalog / f"{name}.parquet"
        try:
            st = path.stat()
            return str(path), st.st_size, st.st_mtime_ns
        except FileNotFoundError:
            return str(path), None, None

    return _load_catalog_cached(stamp("videos"), stamp("clips"))


@functools.lru_cache(maxsize=4)
def _load_catalog_cached(videos_stamp, clips_stamp) -> Catalog:
    def rows(stamp) -> list[dict]:
        return pl.read_parquet(stamp[0]).to_dicts() if stamp[1] is not None else []

    return Catalog(rows(videos_stamp), rows(clips_stamp), [])
