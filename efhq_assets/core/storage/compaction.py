"""The DuckDB manifest: compacted from tables/ (full or incremental) under the single-writer lock and swapped
in atomically (docs/scale.md "Incremental compaction")."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterator

from ..schemas import LANDMARK_COLUMNS, LANDMARK_SCALE, TABLE_SCHEMAS
from .atomic import _fsync_dir
from .layout import TABLE_NAME, DataRoot
from .tables import encode_landmarks


@contextlib.contextmanager
def manifest_lock(root: DataRoot, timeout_s: float = 600.0) -> Iterator[None]:
    """The single-writer guarantee for manifest.duckdb (works across processes, unlike Dagster pools in tests)."""
    root.path.mkdir(parents=True, exist_ok=True)
    with open(root.lock_path, "a+") as fh:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"another process holds {root.lock_path} for more than {timeout_s:.0f} s")
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


COMPACTION_CHUNK = 5000  # files per read: bounds memory for wide tables (landmarks)
COMPACTION_VERSION = "3"  # bump when the manifest's layout or the row-to-file mapping below changes
FULL_REBUILD_FRACTION = 0.3  # more changed files than this (of all files): rebuild instead of patching
FILES_TABLE = "_compaction_files"  # internal bookkeeping of compact_manifest, not part of the dataset
META_TABLE = "_compaction_meta"
INTERNAL_TABLES = (FILES_TABLE, META_TABLE)
_SOURCE_COL = "__efhq_source_file"  # the file each row was read from; checked, then dropped (never stored)

# Which rows came from which file. A file is tables/<table>/<key>.parquet and holds the rows whose key
# expression equals <key>: `video_id` for per-video files, `video_id@stage` for errors, `partition@asset`
# for lineage (record_lineage names an unpartitioned asset's file "all@<asset>"). This is not trusted:
# every row read (full or incremental) is checked against its file's name, and a table where any row
# does not match (a file holding several videos, such as the task exports' "all" files, or a table
# without these columns) is never patched, only rebuilt whole when one of its files changes. So
# deleting "the rows whose key is in the changed files' keys" removes exactly those files' rows, with no
# extra column in the user's tables.
ROW_KEYS = {
    "errors": '"video_id" || \'@\' || "stage"',
    "lineage": 'coalesce(nullif("partition", \'\'), \'all\') || \'@\' || "asset"',
}
DEFAULT_ROW_KEY = '"video_id"'
CATALOG_KEYS = {"videos": "video_id", "clips": "clip_id"}  # catalog rows merged into these tables
# Tables the manifest reads from their per-video Parquet files through a view instead of copying their rows
# (docs/architecture.md "Tables", docs/scale.md): the landmark lists were 0.55 of the source bytes as a second
# copy in the manifest, and 830 MB of a 50,000-video manifest that every compaction copied or patched.
VIEW_TABLES = ("landmarks",)


def _list_table_files(root: DataRoot) -> dict[str, dict[str, tuple[int, int, int]]]:
    """{table: {key: (size, mtime_ns, inode)}} for every tables/<table>/<key>.parquet (temp files skipped).

    Every write is a new file swapped in (atomic_path), so a rewrite always changes the inode while the
    old file still exists; with size and mtime that is the change signature. Files are stat-ed before they
    are read: a file replaced in between is read new and recorded old, so the next compaction reads it again.
    """
    listing: dict[str, dict[str, tuple[int, int, int]]] = {}
    try:
        tables = list(os.scandir(root.tables))
    except FileNotFoundError:
        return listing
    for entry in tables:
        if not entry.is_dir() or not TABLE_NAME.match(entry.name) or entry.name in VIEW_TABLES:
            continue
        files: dict[str, tuple[int, int, int]] = {}
        with os.scandir(entry.path) as it:
            for f in it:
                if f.name.startswith(".") or not f.name.endswith(".parquet"):
                    continue
                try:
                    if not f.is_file():
                        continue
                    st = f.stat()
                except FileNotFoundError:
                    continue
                files[f.name[: -len(".parquet")]] = (st.st_size, st.st_mtime_ns, st.st_ino)
        listing[entry.name] = files
    return listing


def _sorted_files(root: DataRoot, table: str, keys) -> list[Path]:
    folder = root.tables / table
    return [folder / name for name in sorted(f"{k}.parquet" for k in keys)]  # table_files' order


def _read_chunk(files: list[Path], table: str = ""):
    """(one Arrow table from many small Parquet files, whether they all had the same columns and types).

    Each row carries the file it came from in `_SOURCE_COL`. polars reads the files ~10x faster than
    DuckDB's read_parquet over a long file list (benchmarks/scale.py: 24.6 s vs 280 s for 150,000 files).
    One Arrow chunk, not one per file: DuckDB scans a 2,000-chunk table ~20x slower (0.7 s vs 0.03 s).
    """
    import polars as pl

    names = [str(p) for p in files]
    try:  # the common case: every file has exactly the same (conformed) columns
        frame = pl.scan_parquet(names, include_file_paths=_SOURCE_COL).collect()
        return _with_declared_columns(frame, table).rechunk().to_arrow(), True
    except Exception:
        pass
    try:  # files lacking some columns (in any order), each column of one type in every file
        union: dict = {}
        for name in names:
            for col, dtype in pl.read_parquet_schema(name).items():
                if union.setdefault(col, dtype) != dtype:
                    raise TypeError(f"{col}: {union[col]} and {dtype}")
        frame = pl.scan_parquet(names, schema=pl.Schema(union), missing_columns="insert",
                                include_file_paths=_SOURCE_COL).collect()
        # Files written before a column was declared lack only declared columns: with them added as nulls,
        # as a full build gives, the table stays patchable file by file. An undeclared column missing from
        # some files makes it "whole".
        return _with_declared_columns(frame, table).rechunk().to_arrow(), set(union) <= set(TABLE_SCHEMAS.get(table, {}))
    except Exception:  # files from different code versions, or one removed since the listing: one by one
        frames = []
        for p in files:
            try:
                # (files written before landmarks were int16 get the same encoding as new ones)
                frames.append(encode_landmarks(pl.read_parquet(p), table).with_columns(pl.lit(str(p)).alias(_SOURCE_COL)))
            except FileNotFoundError:
                # a run replaced or removed it after the listing: the next compaction sees its new state
                # (absent, or a different size/mtime/inode than the one recorded now) and fixes its rows
                continue
        if not frames:
            raise FileNotFoundError(f"every file of this chunk was removed during compaction: {names[0]}, ...")
        return _with_declared_columns(pl.concat(frames, how="diagonal_relaxed"), table).rechunk().to_arrow(), False


def _with_declared_columns(frame, table: str):
    """The table's declared columns first (a missing one as typed nulls), then the others in file order."""
    import polars as pl

    from .tables import _polars_type

    schema = TABLE_SCHEMAS.get(table)
    if not schema:
        return frame
    missing = [pl.lit(None).cast(_polars_type(t)).alias(c) for c, t in schema.items() if c not in frame.columns]
    if missing:
        frame = frame.with_columns(missing)
    order = list(schema) + [c for c in frame.columns if c not in schema]
    return frame if order == frame.columns else frame.select(order)


def _keys_match(con, table: str) -> bool:
    """Does every row of the registered `_chunk` belong to the file its key names (see ROW_KEYS)?"""
    import duckdb

    expr = ROW_KEYS.get(table, DEFAULT_ROW_KEY)
    try:
        bad = con.execute(f"SELECT count(*) FROM (SELECT DISTINCT {_SOURCE_COL} AS src, ({expr}) AS k FROM _chunk) "
                          f"WHERE k IS DISTINCT FROM regexp_extract(src, '([^/]+)\\.parquet$', 1)").fetchone()[0]
    except duckdb.Error:  # the table has no such columns
        return False
    return bad == 0


def _columns(con, relation: str) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in con.execute(f"DESCRIBE {relation}").fetchall()]


def _create_table(con, table: str, files: list[Path]) -> tuple[int, str]:
    """(Re)create `table` from all its files: (rows, mode). mode "keyed": every file had the same columns
    and every row matched its file's key, so later compactions may patch it file by file; "whole": rebuild
    it whenever one of its files changes; "none": no file and no declared schema, so no table."""
    schema = TABLE_SCHEMAS.get(table)
    con.execute(f"DROP TABLE IF EXISTS {_ident(table)}")
    mode = "keyed"
    if files:
        first_schema = None
        for start in range(0, len(files), COMPACTION_CHUNK):
            chunk, uniform = _read_chunk(files[start:start + COMPACTION_CHUNK], table)
            if not uniform or (first_schema is not None and not chunk.schema.equals(first_schema)):
                mode = "whole"
            first_schema = first_schema or chunk.schema
            con.register("_chunk", chunk)
            try:
                if mode == "keyed" and not _keys_match(con, table):
                    mode = "whole"
                if start == 0:
                    con.execute(f"CREATE TABLE {_ident(table)} AS SELECT * EXCLUDE ({_SOURCE_COL}) FROM _chunk")
                else:
                    con.execute(f"INSERT INTO {_ident(table)} BY NAME SELECT * EXCLUDE ({_SOURCE_COL}) FROM _chunk")
            finally:
                con.unregister("_chunk")
    elif schema:
        cols = ", ".join(f"{_ident(c)} {t}" for c, t in schema.items())
        con.execute(f"CREATE TABLE {_ident(table)} ({cols})")
    else:
        return 0, "none"
    return con.execute(f"SELECT count(*) FROM {_ident(table)}").fetchone()[0], mode


def _patch_table(con, root: DataRoot, table: str, changed: list[str], removed: list[str]) -> bool:
    """Delete the rows of changed and removed files, insert the changed files' rows. False: the new
    files do not fit the table (other columns or types, rows under another key), so the caller must
    rebuild it whole (it drops the table, so what was done here does not matter)."""
    import polars as pl

    expr = ROW_KEYS.get(table, DEFAULT_ROW_KEY)
    keys = pl.DataFrame({"key": sorted(set(changed) | set(removed))}, schema={"key": pl.Utf8})
    con.register("_keys", keys)
    try:
        con.execute(f"DELETE FROM {_ident(table)} WHERE ({expr}) IN (SELECT key FROM _keys)")
    finally:
        con.unregister("_keys")
    target = _columns(con, _ident(table))
    files = _sorted_files(root, table, changed)
    for start in range(0, len(files), COMPACTION_CHUNK):
        chunk, uniform = _read_chunk(files[start:start + COMPACTION_CHUNK], table)
        if not uniform:
            return False
        con.register("_chunk", chunk)
        try:
            if _columns(con, f"SELECT * EXCLUDE ({_SOURCE_COL}) FROM _chunk") != target or not _keys_match(con, table):
                return False
            con.execute(f"INSERT INTO {_ident(table)} BY NAME SELECT * EXCLUDE ({_SOURCE_COL}) FROM _chunk")
        finally:
            con.unregister("_chunk")
    return True


def _compaction_fingerprint(extra_tables) -> str:
    """Changes with the declared schemas, the row-to-file mapping, this code's version and the readers'
    versions: any of those changing makes the next compaction a full one."""
    import hashlib
    import json

    import duckdb
    import polars as pl

    if extra_tables:  # files outside tables/ are not tracked: the next compaction must be full
        return "extra-tables"
    payload = {"version": COMPACTION_VERSION, "schemas": TABLE_SCHEMAS, "row_keys": [ROW_KEYS, DEFAULT_ROW_KEY],
               "catalog_keys": CATALOG_KEYS, "duckdb": duckdb.__version__, "polars": pl.__version__}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def _previous_state(con, listing, fingerprint: str, full_rebuild_fraction: float, size: int):
    """(reason for a full rebuild or None, old {table: {key: stat}}, old modes, files changed) from a copy
    of the current manifest."""
    import duckdb

    try:
        meta = dict(con.execute(f"SELECT name, value FROM {META_TABLE}").fetchall())
        rows = con.execute(f"SELECT table_name, key, size_bytes, mtime_ns, inode FROM {FILES_TABLE} "
                           f"WHERE source = 'file'").fetchall()
    except duckdb.Error:
        return "no compaction bookkeeping in the manifest", {}, {}, None
    if meta.get("fingerprint") != fingerprint or fingerprint == "extra-tables":
        return "schemas, compaction code or reader versions changed", {}, {}, None
    if meta.get("catalog_null_keys") != "0":
        return "catalog rows without a key", {}, {}, None
    old: dict[str, dict[str, tuple[int, int, int]]] = {}
    for table, key, size_bytes, mtime_ns, inode in rows:
        old.setdefault(table, {})[key] = (size_bytes, mtime_ns, inode)
    changed = 0
    total = 0
    for table in set(old) | set(listing):
        new, before = listing.get(table, {}), old.get(table, {})
        changed += sum(1 for k, st in new.items() if before.get(k) != st) + sum(1 for k in before if k not in new)
        total += max(len(new), len(before))
    modes = {k[len("mode:"):]: v for k, v in meta.items() if k.startswith("mode:")}
    full_bytes = int(meta.get("full_bytes") or 0)
    if total and changed > full_rebuild_fraction * total:
        return f"{changed} of {total} files changed", old, modes, changed
    if full_bytes and size > max(2 * full_bytes, full_bytes + 64 * 2**20):  # DuckDB files do not shrink on DELETE
        return f"the manifest grew from {full_bytes} to {size} bytes since its last full build", old, modes, changed
    return None, old, modes, changed


def _write_bookkeeping(con, listing, catalog_keys: dict[str, list], modes: dict[str, str], fingerprint: str,
                       full_bytes: int, touched: dict[str, list[str]] | None = None) -> None:
    """Record the files and catalog rows the tables now hold. `touched` (a patch): only the rows of those
    (table, key) pairs are replaced, not the whole table (850,000 rows at 50,000 videos); None: rewritten."""
    import polars as pl

    rows = {"table_name": [], "source": [], "key": [], "size_bytes": [], "mtime_ns": [], "inode": []}
    for table in sorted(listing if touched is None else touched):
        files = listing.get(table, {})
        for key in (files if touched is None else (k for k in touched[table] if k in files)):
            size_bytes, mtime_ns, inode = files[key]
            for col, value in zip(rows, (table, "file", key, size_bytes, mtime_ns, inode)):
                rows[col].append(value)
    null_keys = False
    for table, keys in sorted(catalog_keys.items()):
        for key in keys:
            null_keys |= key is None
            for col, value in zip(rows, (table, "catalog", key, None, None, None)):
                rows[col].append(value)
    schema = {"table_name": pl.Utf8, "source": pl.Utf8, "key": pl.Utf8, "size_bytes": pl.Int64, "mtime_ns": pl.Int64,
              "inode": pl.Int64}
    files = pl.DataFrame(rows, schema=schema)
    meta = [("fingerprint", fingerprint), ("full_bytes", str(full_bytes)), ("catalog_null_keys", str(int(null_keys)))]
    meta += [(f"mode:{t}", m) for t, m in sorted(modes.items())]
    con.register("_files", files)
    try:
        if touched is None:
            con.execute(f"CREATE OR REPLACE TABLE {FILES_TABLE} AS SELECT * FROM _files")
        else:
            gone = pl.DataFrame({"table_name": [t for t, keys in touched.items() for _ in keys],
                                 "key": [k for keys in touched.values() for k in keys]},
                                schema={"table_name": pl.Utf8, "key": pl.Utf8})
            con.register("_gone", gone)
            try:
                con.execute(f"DELETE FROM {FILES_TABLE} WHERE source = 'catalog'")
                con.execute(f"DELETE FROM {FILES_TABLE} f USING _gone g WHERE f.source = 'file' "
                            f"AND f.table_name = g.table_name AND f.key = g.key")
            finally:
                con.unregister("_gone")
            con.execute(f"INSERT INTO {FILES_TABLE} BY NAME SELECT * FROM _files")
    finally:
        con.unregister("_files")
    con.execute(f"CREATE OR REPLACE TABLE {META_TABLE} (name VARCHAR, value VARCHAR)")
    con.execute(f"INSERT INTO {META_TABLE} VALUES " + ", ".join(f"({_sql_str(k)}, {_sql_str(v)})" for k, v in meta))
    for name, what in ((FILES_TABLE, "the files and catalog rows each table was built from"),
                       (META_TABLE, "schema fingerprint and table modes")):
        con.execute(f"COMMENT ON TABLE {name} IS "
                    f"{_sql_str(f'internal bookkeeping of compact_manifest ({what}); not part of the dataset')}")


def _view_glob(root: DataRoot, table: str) -> str:
    return str(root.tables / table / "*.parquet")  # temp files (".tmp-...parquet.<random>") never match


def _create_views(con, root: DataRoot) -> None:
    """VIEW_TABLES as views over their per-video files (absolute paths: the manifest is rebuilt where the root is;
    a moved root gets them again at its next compaction). Without any file yet: an empty view of the declared
    columns, replaced at the first compaction that finds one."""
    for table in VIEW_TABLES:
        schema = TABLE_SCHEMAS[table]
        cols = ", ".join(_ident(c) for c in schema)
        folder = root.tables / table
        has_files = folder.is_dir() and any(f.name.endswith(".parquet") and not f.name.startswith(".")
                                            for f in os.scandir(folder))
        if has_files:
            source = f"read_parquet({_sql_str(_view_glob(root, table))})"
        else:
            source = "(SELECT " + ", ".join(f"CAST(NULL AS {t}) AS {_ident(c)}" for c, t in schema.items()) + " WHERE false)"
        if table in _user_tables(con):  # a manifest from before the view
            con.execute(f"DROP TABLE {_ident(table)}")
        con.execute(f"CREATE OR REPLACE VIEW {_ident(table)} AS SELECT {cols} FROM {source}")


def _reencode_float_landmark_files(root: DataRoot) -> int:
    """A full build's migration: landmark files written before the int16 encoding (float lists in pixels) are
    rewritten encoded (the same values: storage.read_table gives the same frame), since a view reads the files
    as they are. Only when the file is still the one read (same inode just before the swap): a stage that
    rewrote it meanwhile wrote int16 already."""
    import polars as pl
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .atomic import atomic_path
    from .tables import LANDMARK_COMPRESSION_LEVEL, conform

    def is_float_list(t) -> bool:
        return (pa.types.is_list(t) or pa.types.is_large_list(t)) and pa.types.is_floating(t.value_type)

    rewritten = 0
    for table in VIEW_TABLES:
        cols = LANDMARK_COLUMNS.get(table, ())
        folder = root.tables / table
        if not cols or not folder.is_dir():
            continue
        for entry in os.scandir(folder):
            if entry.name.startswith(".") or not entry.name.endswith(".parquet"):
                continue
            target = Path(entry.path)
            try:
                schema = pq.read_schema(target)
                if not any(c in schema.names and is_float_list(schema.field(c).type) for c in cols):
                    continue
                inode = entry.inode()
                frame = pl.read_parquet(target)
                with atomic_path(target) as tmp:
                    conform(frame, table).write_parquet(tmp, compression="zstd", statistics=False,
                                                        compression_level=LANDMARK_COMPRESSION_LEVEL)
                    if target.stat().st_ino != inode:
                        raise _Replaced
            except (_Replaced, FileNotFoundError):
                continue
            rewritten += 1
    return rewritten


class _Replaced(Exception):
    """The file changed while it was being re-encoded: leave the new one."""


def view_directories(root: DataRoot) -> list[str]:
    """The folders a reader of the manifest must be allowed to read (the views' per-video files)."""
    return [str(root.tables / table) + os.sep for table in VIEW_TABLES]


def _user_tables(con) -> set[str]:
    return {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'").fetchall()
            } - set(INTERNAL_TABLES)


def compact_manifest(root: DataRoot, extra_tables: dict[str, list[Path]] | None = None, *, incremental: bool = True,
                     full_rebuild_fraction: float = FULL_REBUILD_FRACTION, in_place: bool = False) -> dict:
    """Bring manifest.duckdb up to date with tables/ (plus the source catalog) and swap it in atomically.

    `videos` and `clips` are the per-partition rows plus the catalog's rows for videos that have
    no partition output (missing files, duplicates), so `efhq sql` sees every known video.

    Incremental (docs/scale.md "Incremental compaction"): under the lock, the per-table file listing is
    compared with the one recorded in the manifest (`_compaction_files`). A copy of the current manifest
    then gets only the changed files' rows replaced; a full rebuild happens when there is no usable
    bookkeeping, the schemas or code changed, more than `full_rebuild_fraction` of the files changed, or
    the file grew past twice its last full size. Both give the same rows. The copy is made under the lock,
    so a second compaction always starts from the first one's result.

    `in_place=True` (the alternative measured by benchmarks/scale.py): an incremental patch is applied to
    manifest.duckdb itself, in one DuckDB transaction under the lock, instead of to a copy that is swapped in.
    No copy of the whole file, but readers in other processes cannot open the file while the patch runs (DuckDB
    locks it), and the patch cannot start while one has it open (then the copy is patched as usual).
    """
    import duckdb

    root.ensure()
    started = time.perf_counter()
    with manifest_lock(root):
        listing = _list_table_files(root)
        fingerprint = _compaction_fingerprint(extra_tables)
        fd, tmp_name = tempfile.mkstemp(prefix=f".tmp-{os.getpid()}-manifest.", suffix=".duckdb", dir=root.path)
        os.close(fd)
        os.unlink(tmp_name)  # duckdb must create the file itself (or we copy the manifest there)
        tmp = Path(tmp_name)
        counts: dict[str, int] = {}
        modes: dict[str, str] = {}
        touched: dict[str, list[str]] = {}
        old: dict = {}
        files_read = 0
        files_changed = None
        reason = ("full rebuild requested" if not incremental
                  else None if root.manifest_path.exists() else "no manifest")
        patched_in_place = False
        try:
            if reason is None and in_place:
                reason, old, modes, files_changed, files_read, counts, patched_in_place = _patch_in_place(
                    root, listing, fingerprint, full_rebuild_fraction)
            if reason is None and not patched_in_place:  # the copy, not the manifest, is opened: readers keep theirs
                shutil.copyfile(root.manifest_path, tmp)
                try:
                    con = duckdb.connect(str(tmp))
                except duckdb.Error:  # not a database this duckdb can open: rebuild it
                    reason = "the manifest could not be opened"
                else:
                    reason, old, modes, files_changed = _previous_state(
                        con, listing, fingerprint, full_rebuild_fraction, root.manifest_path.stat().st_size)
                    if reason is not None:
                        con.close()
                if reason is not None:
                    for leftover in (tmp, Path(str(tmp) + ".wal")):
                        leftover.unlink(missing_ok=True)
            if reason is not None:
                con = _new_manifest(tmp, sum(st[0] for files in listing.values() for st in files.values()))
                _reencode_float_landmark_files(root)
            try:
                if patched_in_place:
                    pass
                elif reason is None:
                    files_read = _apply_changes(con, root, listing, old, modes, counts, touched)
                    full_bytes = int(con.execute(f"SELECT value FROM {META_TABLE} WHERE name = 'full_bytes'").fetchone()[0])
                else:
                    modes = {}
                    full_bytes = 0
                    names = set(TABLE_SCHEMAS) | set(listing) | set(extra_tables or {})
                    for table in sorted(names):
                        if not TABLE_NAME.match(table) or table in VIEW_TABLES:
                            continue
                        files = _sorted_files(root, table, listing.get(table, {}))
                        files += list((extra_tables or {}).get(table, []))
                        files_read += len(files)
                        rows, mode = _create_table(con, table, files)
                        if mode != "none":
                            counts[table], modes[table] = rows, mode
                if not patched_in_place:
                    catalog_keys = _merge_catalog(con, root, counts)
                    _create_macros(con)
                    _create_views(con, root)
                    _write_bookkeeping(con, listing, catalog_keys, modes, fingerprint, full_bytes,
                                       None if reason is not None else touched)
                    con.execute("CHECKPOINT")
                if reason is not None:  # a full build's size, for the "grew too much" check of later patches
                    con.execute(f"UPDATE {META_TABLE} SET value = ? WHERE name = 'full_bytes'", [str(tmp.stat().st_size)])
                    con.execute("CHECKPOINT")
            finally:
                if not patched_in_place:
                    con.close()
            if not patched_in_place:
                os.replace(tmp, root.manifest_path)
                _fsync_dir(root.path)
        finally:
            for leftover in (tmp, Path(str(tmp) + ".wal")):
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()
    if files_changed is None:  # nothing to compare with: every file counts as changed
        files_changed = sum(len(f) for f in listing.values())
    return {"tables": counts, "mode": "full" if reason is not None else "incremental", "reason": reason,
            "in_place": patched_in_place, "files_read": files_read, "files_changed": files_changed,
            "seconds": round(time.perf_counter() - started, 3), "bytes": root.manifest_path.stat().st_size}


SMALL_BLOCK_SIZE = 16384  # DuckDB's smallest block: a small manifest is not 256 kB per table
SMALL_MANIFEST_BYTES = 64 << 20  # below this much Parquet, a full build uses SMALL_BLOCK_SIZE


def _new_manifest(path: Path, parquet_bytes: int):
    """A connection whose default database is a new DuckDB file at `path`. DuckDB gives every table (and the
    bookkeeping) at least one block of its own, 256 kB by default: 17 tables are 4.5 MB even when empty, more
    than a short clip's source bytes. Small data roots get 16 kB blocks; large ones keep the default (fewer
    blocks to track). Later incremental patches keep the file's block size; the next full build picks again."""
    import duckdb

    con = duckdb.connect()
    if parquet_bytes < SMALL_MANIFEST_BYTES:
        con.execute(f"ATTACH {_sql_str(str(path))} AS manifest (BLOCK_SIZE {SMALL_BLOCK_SIZE})")
    else:
        con.execute(f"ATTACH {_sql_str(str(path))} AS manifest")
    con.execute("USE manifest")
    return con


def _patch_in_place(root: DataRoot, listing, fingerprint: str, full_rebuild_fraction: float):
    """compact_manifest(in_place=True)'s patch: (reason, old, modes, files_changed, files_read, counts, done).
    done is False (nothing changed) when the manifest is open elsewhere or needs a full build (reason)."""
    import duckdb

    counts: dict[str, int] = {}
    try:
        con = duckdb.connect(str(root.manifest_path))
    except duckdb.Error:  # held open by a reader (DuckDB's file lock), or not openable: patch a copy instead
        return None, {}, {}, None, 0, counts, False
    try:
        reason, old, modes, files_changed = _previous_state(
            con, listing, fingerprint, full_rebuild_fraction, root.manifest_path.stat().st_size)
        if reason is not None:
            return reason, old, modes, files_changed, 0, counts, False
        con.execute("BEGIN TRANSACTION")
        try:
            touched: dict[str, list[str]] = {}
            files_read = _apply_changes(con, root, listing, old, modes, counts, touched)
            full_bytes = int(con.execute(f"SELECT value FROM {META_TABLE} WHERE name = 'full_bytes'").fetchone()[0])
            catalog_keys = _merge_catalog(con, root, counts)
            _create_macros(con)
            _create_views(con, root)
            _write_bookkeeping(con, listing, catalog_keys, modes, fingerprint, full_bytes, touched)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return None, old, modes, files_changed, files_read, counts, True


def _create_macros(con) -> None:
    """`landmark_px(lmk478)`: a stored int16 fixed-point landmark list in pixels (schemas.LANDMARK_SCALE)."""
    con.execute(f"CREATE OR REPLACE MACRO landmark_px(v) AS "
                f"CAST(list_transform(v, x -> x / {LANDMARK_SCALE}) AS FLOAT[])")


def _apply_changes(con, root: DataRoot, listing, old, modes: dict[str, str], counts: dict[str, int],
                   touched: dict[str, list[str]]) -> int:
    """Patch the manifest to match `listing`; fills counts, modes and touched ({table: the keys of its changed
    and removed files}), returns the files read."""
    files_read = 0
    # The catalog rows go first: a video that now has output must not keep its catalog row, and they are
    # merged again at the end from the current catalog. The recorded keys are exactly the rows the last
    # merge inserted (none of them had a file row then, and this manifest is that merge's result).
    for table, key in CATALOG_KEYS.items():
        con.execute(f"DELETE FROM {_ident(table)} WHERE {_ident(key)} IN (SELECT key FROM {FILES_TABLE} "
                    f"WHERE source = 'catalog' AND table_name = {_sql_str(table)})")
    existing = _user_tables(con)
    for table in sorted(set(TABLE_SCHEMAS) | set(listing) | existing):
        if not TABLE_NAME.match(table) or table in VIEW_TABLES:
            continue
        new, before = listing.get(table, {}), old.get(table, {})
        changed = sorted(k for k, st in new.items() if before.get(k) != st)
        removed = sorted(k for k in before if k not in new)
        if changed or removed:
            touched[table] = changed + removed
        if table in existing and not changed and not removed:
            modes.setdefault(table, "whole")
        elif table in existing and new and modes.get(table) == "keyed" and _patch_table(con, root, table, changed, removed):
            files_read += len(changed)
        else:  # a new table, one emptied, one not patchable, or new files that do not fit it
            files = _sorted_files(root, table, new)
            files_read += len(files)
            rows, modes[table] = _create_table(con, table, files)
            if modes[table] == "none":
                continue
        counts[table] = con.execute(f"SELECT count(*) FROM {_ident(table)}").fetchone()[0]
    for table in set(modes) - set(counts):  # tables that are gone (and "none")
        del modes[table]
    return files_read


def _merge_catalog(con, root: DataRoot, counts: dict[str, int]) -> dict[str, list]:
    """Add the catalog's rows that no partition wrote: missing or duplicate videos, unprocessed clips.
    Returns the keys added per table (the bookkeeping that lets the next compaction take them out again)."""
    added: dict[str, list] = {}
    for table, key in CATALOG_KEYS.items():
        path = root.catalog / f"{table}.parquet"
        if not path.exists():
            continue
        source = f"read_parquet({_sql_str(str(path))})"
        present = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
        target = {row[0] for row in con.execute(f'DESCRIBE "{table}"').fetchall()}
        cols = ", ".join(f'"{c}"' for c in TABLE_SCHEMAS[table] if c in present and c in target)
        new = (f'SELECT {cols} FROM {source} c '
               f'WHERE NOT EXISTS (SELECT 1 FROM "{table}" t WHERE t.{key} = c.{key})')
        added[table] = [r[0] for r in con.execute(f"SELECT DISTINCT c.{key} FROM ({new}) c").fetchall()]
        con.execute(f'INSERT INTO "{table}" ({cols}) {new}')
        counts[table] = con.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
    return added
