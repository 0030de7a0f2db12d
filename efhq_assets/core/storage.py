"""Data-root layout, atomic Parquet writes and the DuckDB manifest.

Per-video stages write one Parquet file per (table, video) under `tables/` (parallel-safe: no two
runs write the same file). The manifest is a DuckDB file of native tables compacted from those files:
built beside the old one and swapped in with `os.replace` under an `fcntl` lock, so readers never see
a half-built database and never hold a lock a writer needs (ARCHITECTURE.md "The manifest").
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from .ids import is_safe_id
from .schemas import TABLE_SCHEMAS

if TYPE_CHECKING:  # polars/duckdb are imported where used: core must import with numpy/torch alone
    import polars as pl

DEFAULT_DATA_ROOT = "efhq_data"
TABLE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
KEY_SEPARATOR = "@"
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # never valid in a video id, so "<video_id>@<stage>" file names are unambiguous


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


# --------------------------------------------------------------------------- atomic writes

def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _same_content(a: Path, b: Path) -> bool:
    try:
        if a.stat().st_size != b.stat().st_size:
            return False
    except FileNotFoundError:
        return False
    return a.read_bytes() == b.read_bytes()


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temp path in the target's folder; on success fsync it and os.replace it into place.

    On any exception (or a SIGKILL) the target keeps its old content; the temp file is removed
    (or, after SIGKILL, left with a `.tmp-` prefix that no reader globs for).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    # The writer's pid is in the name, so a later run can sweep what a killed writer left behind.
    fd, tmp_name = tempfile.mkstemp(prefix=f".tmp-{os.getpid()}-{target.name}.", dir=target.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; data files are as readable as any other
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if _same_content(tmp, target):
            return  # leave the old file (and its mtime) alone: an unchanged re-run touches nothing
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def sweep_stale_temp_files(root: "DataRoot") -> int:
    """Remove `.tmp-<pid>-...` files whose writer process no longer exists (a SIGKILLed run)."""
    removed = 0
    for path in root.path.rglob(".tmp-*"):
        try:
            pid = int(path.name.split("-")[1])
            os.kill(pid, 0)
            continue  # still being written
        except ProcessLookupError:
            pass
        except (ValueError, IndexError, PermissionError):
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed += 1
    return removed


def atomic_write_bytes(target: Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def atomic_write_parquet(df: "pl.DataFrame", target: Path) -> Path:
    with atomic_path(target) as tmp:
        # No statistics timestamps or writer metadata vary between runs: same rows, same bytes.
        df.write_parquet(tmp, compression="zstd", compression_level=3, statistics=True)
    return target


def empty_frame(table: str) -> "pl.DataFrame":
    import polars as pl

    return pl.DataFrame(schema={c: _polars_type(t) for c, t in TABLE_SCHEMAS[table].items()})


def _polars_type(duck: str):
    import polars as pl

    base = {"VARCHAR": pl.Utf8, "BIGINT": pl.Int64, "INTEGER": pl.Int32, "DOUBLE": pl.Float64,
            "BOOLEAN": pl.Boolean, "FLOAT": pl.Float32}
    if duck.endswith("[]"):
        return pl.List(base[duck[:-2]])
    return base[duck]


def conform(df: "pl.DataFrame", table: str) -> "pl.DataFrame":
    """Cast to the table's declared schema and order (declared columns first, extras after)."""
    import polars as pl

    schema = TABLE_SCHEMAS.get(table, {})
    exprs = []
    for col, duck in schema.items():
        exprs.append((pl.col(col) if col in df.columns else pl.lit(None)).cast(_polars_type(duck)).alias(col))
    extras = [pl.col(c) for c in df.columns if c not in schema]
    return df.select(exprs + extras)


def write_table(root: DataRoot, table: str, key: str, df: "pl.DataFrame") -> Path:
    return atomic_write_parquet(conform(df, table), root.table_file(table, key))


def read_table(root: DataRoot, table: str, key: str) -> "pl.DataFrame | None":
    import polars as pl

    path = root.table_file(table, key)
    return pl.read_parquet(path) if path.exists() else None


def read_rows(root: DataRoot, table: str, key: str) -> list[dict]:
    df = read_table(root, table, key)
    return df.to_dicts() if df is not None else []


def read_table_files(root: DataRoot, table: str, columns: list[str] | None = None) -> "pl.DataFrame | None":
    """Every per-video file of a table in one frame (columns aligned by name); None when there is no row."""
    import polars as pl

    frames = [f for f in (pl.read_parquet(p, columns=columns) for p in table_files(root, table)) if f.height]
    return pl.concat(frames, how="diagonal_relaxed") if frames else None


def remove_table_file(root: DataRoot, table: str, key: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        root.table_file(table, key).unlink()


def table_files(root: DataRoot, table: str) -> list[Path]:
    folder = root.tables / table
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.parquet") if not p.name.startswith("."))


# --------------------------------------------------------------------------- the manifest

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


COMPACTION_CHUNK = 5000  # files per read: bounds memory for wide tables (landmarks)


def _read_chunk(files: list[Path]):
    """One Arrow table from many small Parquet files. polars reads them ~10x faster than DuckDB's
    read_parquet over a long file list (benchmarks/scale.py: 24.6 s vs 280 s for 150,000 files)."""
    import polars as pl

    try:  # the common case: every file has the table's (conformed) columns
        return pl.scan_parquet(files, missing_columns="insert").collect().to_arrow()
    except Exception:  # files from different code versions: align columns by name
        return pl.concat([pl.read_parquet(p) for p in files], how="diagonal_relaxed").to_arrow()


def _create_table(con, table: str, files: list[Path]) -> int:
    schema = TABLE_SCHEMAS.get(table)
    if files:
        for start in range(0, len(files), COMPACTION_CHUNK):
            chunk = _read_chunk(files[start:start + COMPACTION_CHUNK])  # noqa: F841 - read by name below
            if start == 0:
                con.execute(f'CREATE TABLE "{table}" AS SELECT * FROM chunk')
            else:
                con.execute(f'INSERT INTO "{table}" BY NAME SELECT * FROM chunk')
    elif schema:
        cols = ", ".join(f'"{c}" {t}' for c, t in schema.items())
        con.execute(f'CREATE TABLE "{table}" ({cols})')
    else:
        return 0
    return con.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]


def compact_manifest(root: DataRoot, extra_tables: dict[str, list[Path]] | None = None) -> dict:
    """Rebuild manifest.duckdb from tables/ (plus the source catalog) and swap it in atomically.

    `videos` and `clips` are the per-partition rows plus the catalog's rows for videos that have
    no partition output (missing files, duplicates), so `efhq sql` sees every known video.
    """
    import duckdb

    root.ensure()
    started = time.perf_counter()
    with manifest_lock(root):
        fd, tmp_name = tempfile.mkstemp(prefix=f".tmp-{os.getpid()}-manifest.", suffix=".duckdb", dir=root.path)
        os.close(fd)
        os.unlink(tmp_name)  # duckdb must create the file itself
        tmp = Path(tmp_name)
        counts: dict[str, int] = {}
        files_read = 0
        try:
            con = duckdb.connect(str(tmp))
            try:
                names = set(TABLE_SCHEMAS) | {p.name for p in root.tables.glob("*") if p.is_dir()}
                names |= set(extra_tables or {})
                for table in sorted(names):
                    if not TABLE_NAME.match(table):
                        continue
                    files = table_files(root, table) + list((extra_tables or {}).get(table, []))
                    files_read += len(files)
                    counts[table] = _create_table(con, table, files)
                _merge_catalog(con, root, counts)
                con.execute("CHECKPOINT")
            finally:
                con.close()
            os.replace(tmp, root.manifest_path)
            _fsync_dir(root.path)
        finally:
            for leftover in (tmp, Path(str(tmp) + ".wal")):
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()
    return {"tables": counts, "files_read": files_read, "seconds": round(time.perf_counter() - started, 3),
            "bytes": root.manifest_path.stat().st_size}


def _merge_catalog(con, root: DataRoot, counts: dict[str, int]) -> None:
    """Add the catalog's rows that no partition wrote: missing or duplicate videos, unprocessed clips."""
    for table, key in (("videos", "video_id"), ("clips", "clip_id")):
        path = root.catalog / f"{table}.parquet"
        if not path.exists():
            continue
        source = f"read_parquet({_sql_str(str(path))})"
        present = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
        target = {row[0] for row in con.execute(f'DESCRIBE "{table}"').fetchall()}
        cols = ", ".join(f'"{c}"' for c in TABLE_SCHEMAS[table] if c in present and c in target)
        con.execute(f'INSERT INTO "{table}" ({cols}) SELECT {cols} FROM {source} c '
                    f'WHERE NOT EXISTS (SELECT 1 FROM "{table}" t WHERE t.{key} = c.{key})')
        counts[table] = con.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]


# --------------------------------------------------------------------------- read-only SQL

READ_STATEMENTS = {"SELECT", "EXPLAIN"}
READ_KEYWORDS = ("select", "with", "describe", "show", "explain", "summarize", "from", "values", "table", "(")


class ReadOnlyQueryError(ValueError):
    """A statement that is not a read (or could touch files outside the manifest)."""


class NoManifestError(FileNotFoundError):
    pass


def _strip_sql_comments(sql: str) -> str:
    sql = re.sub(r"/\*.*?\*/", " ", sql, flags=re.S)
    return re.sub(r"--[^\n]*", " ", sql)


def check_read_only(sql: str) -> None:
    """Accept only read statements; the engine settings are the second line of defence."""
    import duckdb

    text = _strip_sql_comments(sql).strip()
    if not text:
        raise ReadOnlyQueryError("empty query")
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise ReadOnlyQueryError(f"could not parse the query: {exc}") from None
    if len(statements) != 1:
        raise ReadOnlyQueryError("exactly one statement per query, please")
    kind = statements[0].type.name
    first = text.split(None, 1)[0].lower()
    if kind not in READ_STATEMENTS or not first.startswith(READ_KEYWORDS):
        raise ReadOnlyQueryError(
            f"refused: `efhq sql` only runs read statements (SELECT, WITH, DESCRIBE, SHOW, EXPLAIN, SUMMARIZE); "
            f"got a {kind} statement. The manifest is rebuilt from tables/ by `efhq build`; nothing was changed.")


def connect_read_only(root: DataRoot):
    import duckdb

    if not root.manifest_path.exists():
        raise NoManifestError(f"no manifest at {root.manifest_path}: run `efhq demo` or `efhq build` first")
    return duckdb.connect(str(root.manifest_path), read_only=True,
                          config={"enable_external_access": False, "lock_configuration": True})


def query(root: DataRoot, sql: str):
    """Run one read statement on the manifest; returns (column names, rows)."""
    check_read_only(sql)
    con = connect_read_only(root)
    try:
        cur = con.execute(sql)
        names = [d[0] for d in cur.description] if cur.description else []
        return names, cur.fetchall()
    finally:
        con.close()
