import csv
import io
import threading

import polars as pl
import pytest

from efhq_assets.core.storage import (
    DataRoot, ReadOnlyQueryError, atomic_path, compact_manifest, connect_read_only, query, read_table, table_files,
    write_table,
)


def frames_df(video_id, n):
    return pl.DataFrame({"video_id": [video_id] * n, "clip_id": [video_id] * n, "frame_index": list(range(n))})


def test_atomic_write_keeps_the_old_file_on_a_crash(tmp_path):
    root = DataRoot(tmp_path).ensure()
    write_table(root, "frames", "v1", frames_df("v1", 3))
    path = root.table_file("frames", "v1")
    before = path.read_bytes()
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_bytes(b"half a parquet file")
            raise RuntimeError("crash mid-write")
    assert path.read_bytes() == before
    assert read_table(root, "frames", "v1").height == 3
    assert [p.name for p in path.parent.iterdir()] == ["v1.parquet"]  # no temp file left behind


def test_unchanged_rewrite_keeps_bytes_and_mtime(tmp_path):
    root = DataRoot(tmp_path).ensure()
    path = write_table(root, "frames", "v1", frames_df("v1", 3))
    stat = path.stat()
    write_table(root, "frames", "v1", frames_df("v1", 3))
    assert path.stat().st_mtime_ns == stat.st_mtime_ns


def test_table_keys_cannot_escape_the_data_root(tmp_path):
    root = DataRoot(tmp_path)
    for key in ("../x", "/etc/passwd", "a/b", "..", "x\x00"):
        with pytest.raises(ValueError):
            root.table_file("frames", key)
    with pytest.raises(ValueError):
        root.table_file("../tables", "v1")


def test_manifest_has_every_table_even_when_empty(tmp_path):
    root = DataRoot(tmp_path)
    stats = compact_manifest(root)
    assert stats["tables"]["videos"] == 0 and stats["tables"]["frames"] == 0
    assert query(root, "select count(*) from errors")[1] == [(0,)]


def test_manifest_swap_under_a_concurrent_reader(tmp_path):
    root = DataRoot(tmp_path).ensure()
    write_table(root, "frames", "v1", frames_df("v1", 5))
    compact_manifest(root)
    reader = connect_read_only(root)  # a reader holding the old file open
    assert reader.execute("select count(*) from frames").fetchone() == (5,)
    errors = []

    def rebuild():
        try:
            for i in range(3):
                write_table(root, "frames", f"w{i}", frames_df(f"w{i}", 10))
                compact_manifest(root)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    writer = threading.Thread(target=rebuild)
    writer.start()
    for _ in range(20):  # the old reader keeps answering while the manifest is rebuilt
        assert reader.execute("select count(*) from frames").fetchone() == (5,)
    writer.join()
    assert not errors
    assert reader.execute("select count(*) from frames").fetchone() == (5,)
    reader.close()
    assert query(root, "select count(*) from frames")[1] == [(35,)]  # a new reader sees the new file
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


@pytest.mark.parametrize("sql", [
    "delete from frames", "insert into frames (video_id) values ('x')", "copy frames to 'out.csv'",
    "attach 'other.duckdb'", "select 1; delete from frames", "create table t as select 1", "drop table frames",
    "update frames set frame_index = 0", "set enable_external_access = true", "install httpfs",
])
def test_sql_refuses_writes(tmp_path, sql):
    root = DataRoot(tmp_path).ensure()
    write_table(root, "frames", "v1", frames_df("v1", 2))
    compact_manifest(root)
    before = root.manifest_path.read_bytes()
    with pytest.raises(ReadOnlyQueryError, match="refused|one statement"):
        query(root, sql)
    assert root.manifest_path.read_bytes() == before
    assert query(root, "select count(*) from frames")[1] == [(2,)]


def test_sql_cannot_read_files_outside_the_manifest(tmp_path):
    root = DataRoot(tmp_path).ensure()
    compact_manifest(root)
    with pytest.raises(Exception, match="disabled by configuration"):
        query(root, "select * from read_csv('/etc/passwd')")


def test_table_files_ignore_temp_files(tmp_path):
    root = DataRoot(tmp_path).ensure()
    write_table(root, "frames", "v1", frames_df("v1", 1))
    (root.tables / "frames" / ".tmp-v2.parquet.abc").write_bytes(b"partial")
    assert [p.name for p in table_files(root, "frames")] == ["v1.parquet"]


def test_sweep_removes_only_temp_files_of_dead_writers(tmp_path):
    import os
    import subprocess

    from efhq_assets.core.storage import sweep_stale_temp_files

    root = DataRoot(tmp_path).ensure()
    proc = subprocess.Popen(["true"])
    proc.wait()
    folder = root.tables / "frames"
    folder.mkdir(parents=True)
    stale = folder / f".tmp-{proc.pid}-v1.parquet.abc"
    live = folder / f".tmp-{os.getpid()}-v2.parquet.def"
    stale.write_bytes(b"partial")
    live.write_bytes(b"being written")
    assert sweep_stale_temp_files(root) == 1
    assert not stale.exists() and live.exists()


@pytest.mark.parametrize("sql", [
    "select 1 as n",
    "select * from (values ('a,b', 1, null), ('x\"y', -2, 'plain'), ('', 3, 'new\nline'), (null, null, ' sp'), "
    "('ü', 9223372036854775807, '#x'), ('''q''', 0, '')) t(s, i, s2)",
    "select 1.5 as f, true as b",  # other types: the csv module, as before
    "select 'a' || chr(13) || 'b' as s",
    "select video_id, frame_index from frames order by 2",
    "select video_id from frames where false",
])
@pytest.mark.parametrize("large_from", [1, 2, 10**6])  # every result here large / some / none
def test_efhq_sql_csv_fast_path_prints_what_the_csv_module_prints(tmp_path, capsys, monkeypatch, sql, large_from):
    """`efhq sql --format csv` runs the query once and writes large text/integer results from Arrow
    (cli._sql_csv), small ones by the csv module: the same bytes either way."""
    from efhq_assets import cli

    monkeypatch.setattr(cli, "CSV_ARROW_ROWS", large_from)
    root = DataRoot(tmp_path).ensure()
    write_table(root, "frames", "v1", frames_df("v1", 3))
    compact_manifest(root)
    args = ["sql", sql, "--data-root", str(root.path), "--format", "csv"]
    assert cli.main(args) == 0
    fast = capsys.readouterr().out
    names, rows = query(root, sql)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(names)
    writer.writerows(rows)
    assert fast == buffer.getvalue()
