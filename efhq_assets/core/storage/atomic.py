"""The one atomic writer: temp file beside the target, fsync, `os.replace`, and a sweep of what a killed
writer left behind (docs/architecture.md "Invariants")."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:  # polars is imported where used: core must import with numpy/torch alone
    import polars as pl

    from .layout import DataRoot

_UMASK = os.umask(0o022)
os.umask(_UMASK)


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


def atomic_write_parquet(df: "pl.DataFrame", target: Path, statistics: bool = True, compression_level: int = 3) -> Path:
    """Replace `target` with df's rows (zstd). No timestamps or writer metadata vary between runs: same rows,
    same bytes. `statistics=False` leaves out the per-column min/max, which a file read whole never uses and
    which is 40 % of a small per-video file (a 1-row lineage file: 2.3 kB instead of 3.8 kB)."""
    with atomic_path(target) as tmp:
        df.write_parquet(tmp, compression="zstd", compression_level=compression_level, statistics=statistics)
    return target
