"""Data-root layout, atomic Parquet writes and the DuckDB manifest.

Per-video stages write one Parquet file per (table, video) under `tables/` (parallel-safe: no two
runs write the same file). The manifest is a DuckDB file of native tables compacted from those files
under an `fcntl` lock, so readers never see a half-built database (docs/architecture.md "Invariants").

One module per concern:

- `layout`: the data root and where each file lives (`DataRoot`, `table_files`);
- `atomic`: the one atomic writer (temp file, fsync, `os.replace`) and the sweep of a killed writer's temp files;
- `tables`: per-video Parquet tables (schema conformance, landmarks as int16 fixed point);
- `compaction`: the manifest (`compact_manifest`, the writer lock);
- `sql`: read-only SQL on the manifest (`query`, `connect_read_only`).

The names below are the public interface; private helpers are imported from their module. Importing this
package needs neither polars nor duckdb (they are imported where used).
"""

from .atomic import atomic_path, atomic_write_bytes, atomic_write_parquet, sweep_stale_temp_files
from .compaction import INTERNAL_TABLES, compact_manifest, manifest_lock
from .layout import DEFAULT_DATA_ROOT, KEY_SEPARATOR, TABLE_NAME, DataRoot, keyed, resolve_data_root, table_files
from .sql import NoManifestError, ReadOnlyQueryError, check_read_only, connect_read_only, query
from .tables import (
    conform, decode_landmarks, empty_frame, encode_landmarks, read_rows, read_table, read_table_files,
    remove_table_file, write_table,
)

__all__ = [
    "DEFAULT_DATA_ROOT", "INTERNAL_TABLES", "KEY_SEPARATOR", "TABLE_NAME", "DataRoot", "NoManifestError",
    "ReadOnlyQueryError", "atomic_path", "atomic_write_bytes", "atomic_write_parquet", "check_read_only",
    "compact_manifest", "connect_read_only", "conform", "decode_landmarks", "empty_frame", "encode_landmarks",
    "keyed", "manifest_lock", "query", "read_rows", "read_table", "read_table_files", "remove_table_file",
    "resolve_data_root", "sweep_stale_temp_files", "table_files", "write_table",
]
