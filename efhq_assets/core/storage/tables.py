"""Per-video Parquet tables: conformed to core/schemas.py, landmarks as int16 fixed point, read and written
whole through the atomic writer."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

from ..schemas import LANDMARK_COLUMNS, LANDMARK_RANGE_PX, LANDMARK_SCALE, TABLE_SCHEMAS
from .atomic import atomic_write_parquet
from .layout import DataRoot, table_files

if TYPE_CHECKING:  # polars is imported where used: core must import with numpy/torch alone
    import polars as pl


def empty_frame(table: str) -> "pl.DataFrame":
    import polars as pl

    return pl.DataFrame(schema={c: _polars_type(t) for c, t in TABLE_SCHEMAS[table].items()})


def _polars_type(duck: str):
    import polars as pl

    base = {"VARCHAR": pl.Utf8, "BIGINT": pl.Int64, "INTEGER": pl.Int32, "DOUBLE": pl.Float64,
            "BOOLEAN": pl.Boolean, "FLOAT": pl.Float32, "SMALLINT": pl.Int16}
    if duck.endswith("[]"):
        return pl.List(base[duck[:-2]])
    return base[duck]


def conform(df: "pl.DataFrame", table: str) -> "pl.DataFrame":
    """Cast to the table's declared schema and order (declared columns first, extras after)."""
    import polars as pl

    schema = TABLE_SCHEMAS.get(table, {})
    df = encode_landmarks(df, table)
    exprs = []
    for col, duck in schema.items():
        exprs.append((pl.col(col) if col in df.columns else pl.lit(None)).cast(_polars_type(duck)).alias(col))
    extras = [pl.col(c) for c in df.columns if c not in schema]
    return df.select(exprs + extras)


def _is_float_list(dtype) -> bool:
    import polars as pl

    return isinstance(dtype, pl.List) and dtype.inner in (pl.Float32, pl.Float64)


def encode_landmarks(df: "pl.DataFrame", table: str) -> "pl.DataFrame":
    """Pixel landmark lists (float) -> fixed-point int16 lists (schemas.LANDMARK_SCALE steps per pixel).

    Lists that are already int16 (read back undecoded) pass unchanged; a point outside
    schemas.LANDMARK_RANGE_PX is refused with a message rather than wrapped or clipped."""
    import polars as pl

    cols = [c for c in LANDMARK_COLUMNS.get(table, ()) if c in df.columns and _is_float_list(df.schema[c])]
    if not cols:
        return df
    scaled = df.select([pl.col(c).list.eval((pl.element().cast(pl.Float64) * LANDMARK_SCALE).round()).alias(c)
                        for c in cols])
    lo, hi = LANDMARK_RANGE_PX[0] * LANDMARK_SCALE, LANDMARK_RANGE_PX[1] * LANDMARK_SCALE
    for c in cols:
        values = scaled[c].explode().drop_nulls()
        if values.is_nan().any() or values.is_infinite().any():
            raise ValueError(f"{table}.{c}: a landmark is NaN or infinite; store the face without it (null) instead")
        if values.len() and (values.min() < lo or values.max() > hi):
            raise ValueError(f"{table}.{c}: a landmark at {values.min() / LANDMARK_SCALE:.1f}..."
                             f"{values.max() / LANDMARK_SCALE:.1f} px is outside the int16 fixed-point range "
                             f"{LANDMARK_RANGE_PX[0]:.0f}..{LANDMARK_RANGE_PX[1]:.3f} px (frames up to 4096 px)")
    return df.with_columns([scaled[c].cast(pl.List(pl.Int16)) for c in cols])


def decode_landmarks(df: "pl.DataFrame", table: str) -> "pl.DataFrame":
    """The stored int16 landmark lists back to pixels (float32, exactly the 1/8 px values written)."""
    import polars as pl

    cols = [c for c in LANDMARK_COLUMNS.get(table, ()) if c in df.columns
            and isinstance(df.schema[c], pl.List) and df.schema[c].inner == pl.Int16]
    if not cols:
        return df
    return df.with_columns([pl.col(c).list.eval(pl.element().cast(pl.Float32) / LANDMARK_SCALE).cast(
        pl.List(pl.Float32)).alias(c) for c in cols])


# zstd level of the landmark files: 19 finds the shape that repeats from face to face (level 17 does not): a
# 714-face file of benchmarks/decode.py's 1080p clip is 814 kB instead of 1,162 kB at level 3, for 1.6 CPU s of
# writing (2.2 ms per face, once per video; reading is as fast). They are the largest per-video table, and since
# the manifest reads them through a view (compaction.VIEW_TABLES) the only copy of the landmark lists.
LANDMARK_COMPRESSION_LEVEL = 19


def write_table(root: DataRoot, table: str, key: str, df: "pl.DataFrame") -> Path:
    """tables/<table>/<key>.parquet, atomically: conformed to the table's schema, landmarks as int16 fixed point
    (zstd level 19), no column statistics (every reader reads a per-video file whole; the manifest is what
    queries filter)."""
    level = LANDMARK_COMPRESSION_LEVEL if table in LANDMARK_COLUMNS else 3
    return atomic_write_parquet(conform(df, table), root.table_file(table, key), statistics=False,
                                compression_level=level)


def read_table(root: DataRoot, table: str, key: str) -> "pl.DataFrame | None":
    """One file's rows as the stage wrote them (landmarks decoded back to pixels)."""
    import polars as pl

    path = root.table_file(table, key)
    return decode_landmarks(pl.read_parquet(path), table) if path.exists() else None


def read_rows(root: DataRoot, table: str, key: str) -> list[dict]:
    df = read_table(root, table, key)
    return df.to_dicts() if df is not None else []


def read_table_files(root: DataRoot, table: str, columns: list[str] | None = None) -> "pl.DataFrame | None":
    """Every per-video file of a table in one frame (columns aligned by name); None when there is no row."""
    import polars as pl

    frames = [decode_landmarks(f, table) for f in (pl.read_parquet(p, columns=columns) for p in table_files(root, table))
              if f.height]
    return pl.concat(frames, how="diagonal_relaxed") if frames else None


def remove_table_file(root: DataRoot, table: str, key: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        root.table_file(table, key).unlink()
