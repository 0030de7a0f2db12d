"""Incremental manifest compaction (docs/scale.md "Incremental compaction") gives the same tables as a full rebuild."""

import shutil
import threading

import duckdb
import polars as pl

from efhq_assets.core.storage import compaction as storage
from efhq_assets.core.storage import (
    INTERNAL_TABLES, DataRoot, atomic_write_parquet, compact_manifest, keyed, query, remove_table_file, write_table,
)

PER_VIDEO = ("videos", "clips", "frames", "faces", "bins", "identities")


def write_video(root, vid, n_faces=3, variant=0, status="ok"):
    """One processed video: its per-video files in several tables, an errors row and a lineage row."""
    write_table(root, "videos", vid, pl.DataFrame({"video_id": [vid], "source_name": [f"{vid}.mp4"], "status": [status],
                                                   "fps": [25.0 + variant], "frame_count": [n_faces]}))
    write_table(root, "clips", vid, pl.DataFrame({"clip_id": [vid], "video_id": [vid], "start_frame": [0],
                                                  "end_frame": [n_faces], "crop": [[0, 0, 8, 8]]}))
    idx = list(range(n_faces))
    write_table(root, "frames", vid, pl.DataFrame({"video_id": [vid] * n_faces, "clip_id": [vid] * n_faces,
                                                   "frame_index": idx, "pts_s": [i / 25 + variant for i in idx]}))
    write_table(root, "faces", vid, pl.DataFrame({
        "video_id": [vid] * n_faces, "clip_id": [vid] * n_faces, "frame_index": idx, "face_index": [0] * n_faces,
        "track_id": [0] * n_faces, "score": [0.9 + 0.01 * i + variant for i in idx],
        "lmk5": [[float(i + variant)] * 10 for i in idx], "passes_efhq_filter": [True] * n_faces}))
    write_table(root, "bins", vid, pl.DataFrame({"video_id": [vid] * n_faces, "clip_id": [vid] * n_faces,
                                                 "frame_index": idx, "face_index": [0] * n_faces,
                                                 "label": ["frontal" if variant == 0 else "profile_left"] * n_faces}))
    write_table(root, "identities", vid, pl.DataFrame({"video_id": [vid], "track_id": [0],
                                                       "identity_id": [f"id{variant}-{vid}"]}))
    write_table(root, "lineage", keyed(vid, "decoded_frames"), pl.DataFrame({
        "asset": ["decoded_frames"], "partition": [vid], "code_version": [f"v{variant}"], "rows": [n_faces]}))


def delete_video(root, vid):
    for table in PER_VIDEO:
        remove_table_file(root, table, vid)
    remove_table_file(root, "lineage", keyed(vid, "decoded_frames"))


def write_catalog(root, videos, clips):
    atomic_write_parquet(pl.DataFrame(videos, infer_schema_length=None), root.catalog / "videos.parquet")
    atomic_write_parquet(pl.DataFrame(clips, infer_schema_length=None), root.catalog / "clips.parquet")


def manifest_content(path):
    """{table: (columns with types, rows sorted)} of every user table: what a SQL user can see."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        names = [r[0] for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' ORDER BY 1").fetchall()]
        out = {}
        for name in names:
            if name in INTERNAL_TABLES:
                continue
            cols = [(r[0], r[1]) for r in con.execute(f'DESCRIBE "{name}"').fetchall()]
            rows = con.execute(f'SELECT * FROM "{name}"').fetchall()
            out[name] = (cols, sorted(rows, key=repr))
        return out
    finally:
        con.close()


def full_rebuild_of(root, tmp_path, step):
    """A fresh data root with the same tables/ and catalog/, compacted from scratch: the reference."""
    ref = DataRoot(tmp_path / f"ref{step}")
    shutil.copytree(root.tables, ref.tables)
    shutil.copytree(root.catalog, ref.catalog)
    stats = compact_manifest(ref)
    assert stats["mode"] == "full"
    return manifest_content(ref.manifest_path)


def assert_same_as_full(root, tmp_path, step):
    got = manifest_content(root.manifest_path)
    want = full_rebuild_of(root, tmp_path, step)
    assert got.keys() == want.keys(), step
    for table in want:
        assert got[table] == want[table], (step, table)
    return got


def test_incremental_compaction_matches_a_full_rebuild_over_a_sequence_of_changes(tmp_path):
    root = DataRoot(tmp_path / "root").ensure()
    vids = [f"v{i:02d}" for i in range(10)]
    for vid in vids:
        write_video(root, vid)
    # Catalog: the processed videos, one missing and one duplicate video (catalog rows only), and a clip of
    # v00 that v00's clips file does not have (a catalog row under a video that has a clips file).
    catalog_videos = [{"video_id": v, "source_name": f"{v}.mp4", "status": "ok"} for v in vids]
    catalog_videos += [{"video_id": "gone", "source_name": "gone.mp4", "status": "missing"},
                       {"video_id": "twin", "source_name": "twin.mp4", "status": "duplicate"}]
    catalog_clips = [{"clip_id": v, "video_id": v, "start_frame": 0, "end_frame": 3} for v in vids]
    catalog_clips += [{"clip_id": "v00_late", "video_id": "v00", "start_frame": 5, "end_frame": 9},
                      {"clip_id": "gone", "video_id": "gone", "start_frame": 0, "end_frame": 3}]
    write_catalog(root, catalog_videos, catalog_clips)
    write_table(root, "errors", keyed("v01", "faces"), pl.DataFrame({"video_id": ["v01"], "stage": ["faces"],
                                                                     "message": ["boom"], "at": ["t"]}))
    write_table(root, "lineage", keyed("all", "face_identities"), pl.DataFrame({
        "asset": ["face_identities"], "partition": [""], "code_version": ["1"], "rows": [10]}))
    write_table(root, "identity_merges", "all", pl.DataFrame({"identity_id": ["a"], "merged_into": ["b"],
                                                              "reason": ["r"]}))

    stats = compact_manifest(root)
    assert stats["mode"] == "full" and stats["reason"] == "no manifest"
    assert stats["files_changed"] == stats["files_read"]
    assert_same_as_full(root, tmp_path, 0)

    def step(n, expect_changed):
        stats = compact_manifest(root, full_rebuild_fraction=1.0)
        assert stats["mode"] == "incremental", (n, stats)
        assert stats["files_changed"] == expect_changed, (n, stats)
        return assert_same_as_full(root, tmp_path, n), stats

    # 1. nothing changed: nothing read
    _, stats = step(1, 0)
    assert stats["files_read"] == 0
    # 2. two new videos (7 files each)
    for vid in ("v10", "v11"):
        write_video(root, vid)
    _, stats = step(2, 14)
    assert stats["files_read"] == 14
    # 3. one video re-written with other rows (more faces, other values)
    write_video(root, "v03", n_faces=5, variant=1)
    content, _ = step(3, 7)
    assert [r for r in content["frames"][1] if r[0] == "v03"].__len__() == 5
    # 4. one video's files deleted; its error row cleared
    delete_video(root, "v05")
    remove_table_file(root, "errors", keyed("v01", "faces"))
    content, _ = step(4, 8)
    assert not [r for r in content["faces"][1] if r[0] == "v05"] and content["errors"][1] == []
    # 5. a new table appears (a stage that did not exist), then one of its files changes
    for vid in ("v00", "v01"):
        write_table(root, "extra_stats", vid, pl.DataFrame({"video_id": [vid], "value": [1.0]}))
    content, _ = step(5, 2)
    assert len(content["extra_stats"][1]) == 2
    write_table(root, "extra_stats", "v01", pl.DataFrame({"video_id": ["v01", "v01"], "value": [2.0, 3.0]}))
    content, _ = step(6, 1)
    assert sorted(r[1] for r in content["extra_stats"][1]) == [1.0, 2.0, 3.0]
    # 7. catalog-only videos get output: the missing one now processed, the duplicate too; no double rows
    write_video(root, "gone")
    write_video(root, "twin")
    content, _ = step(7, 14)
    ids = [r[0] for r in content["videos"][1]]
    assert ids.count("gone") == 1 and ids.count("twin") == 1
    assert dict((r[0], r[6]) for r in content["videos"][1])["gone"] == "ok"  # the file's row, not the catalog's
    assert [r[0] for r in content["clips"][1]].count("gone") == 1
    assert "v00_late" in [r[0] for r in content["clips"][1]]  # catalog clip under a processed video stays
    # 8. ... and loses it again (the catalog row comes back), while the catalog itself changes
    delete_video(root, "gone")
    write_catalog(root, catalog_videos + [{"video_id": "new_missing", "source_name": "n.mp4", "status": "missing"}],
                  [c for c in catalog_clips if c["clip_id"] != "v00_late"])
    content, _ = step(8, 7)
    status = dict((r[0], r[6]) for r in content["videos"][1])
    assert status["gone"] == "missing" and status["new_missing"] == "missing"
    assert "v00_late" not in [r[0] for r in content["clips"][1]]
    # 9. a table whose files hold several videos ("all" files) is rebuilt whole when one changes
    write_table(root, "identity_merges", "all", pl.DataFrame({"identity_id": ["a", "c"], "merged_into": ["b", "d"],
                                                              "reason": ["r", "r"]}))
    write_table(root, "lineage", keyed("all", "face_identities"), pl.DataFrame({
        "asset": ["face_identities"], "partition": [""], "code_version": ["2"], "rows": [12]}))
    content, _ = step(9, 2)
    assert len(content["identity_merges"][1]) == 2
    # 10. a file written by newer code with an extra column: the table is rebuilt (same columns as a full build)
    write_table(root, "bins", "v02", pl.DataFrame({"video_id": ["v02"], "clip_id": ["v02"], "frame_index": [0],
                                                   "face_index": [0], "label": ["frontal"], "new_col": [7]}))
    content, _ = step(10, 1)
    assert content["bins"][0][-1] == ("new_col", "BIGINT")
    # 11. a file whose rows name another video: never patched by key, the table is rebuilt whole
    write_table(root, "extra_stats", "v00", pl.DataFrame({"video_id": ["v01"], "value": [9.0]}))
    step(11, 1)
    write_table(root, "extra_stats", "v00", pl.DataFrame({"video_id": ["v00"], "value": [4.0]}))
    step(12, 1)
    # 13. the new table's files all go: the table goes, as in a full build
    for vid in ("v00", "v01"):
        remove_table_file(root, "extra_stats", vid)
    content, _ = step(13, 2)
    assert "extra_stats" not in content


def test_when_a_full_rebuild_happens(tmp_path, monkeypatch):
    root = DataRoot(tmp_path).ensure()
    for i in range(10):
        write_video(root, f"v{i}")
    assert compact_manifest(root)["mode"] == "full"
    write_video(root, "v0", variant=1)  # 6 of 70 files (its clips file is the same bytes, so left alone)
    stats = compact_manifest(root)
    assert stats["mode"] == "incremental" and stats["files_changed"] == 6 and stats["files_read"] == 6
    for i in range(1, 5):  # 24 of 70 files: over 30 %
        write_video(root, f"v{i}", variant=2)
    stats = compact_manifest(root)
    assert stats["mode"] == "full" and stats["files_changed"] == 24 and "24 of 70 files changed" in stats["reason"]
    assert compact_manifest(root, incremental=False)["mode"] == "full"
    monkeypatch.setattr(storage, "COMPACTION_VERSION", "test-bump")  # schemas / code / readers changed
    stats = compact_manifest(root)
    assert stats["mode"] == "full" and "changed" in stats["reason"]
    assert compact_manifest(root)["mode"] == "incremental"
    # a manifest from before the bookkeeping (or with it dropped): full
    con = duckdb.connect(str(root.manifest_path))
    con.execute(f"DROP TABLE {storage.FILES_TABLE}")
    con.close()
    stats = compact_manifest(root)
    assert stats["mode"] == "full" and "bookkeeping" in stats["reason"]
    # files outside tables/ are not tracked: that compaction and the next are full
    extra = tmp_path / "x.parquet"
    pl.DataFrame({"video_id": ["x"], "frame_index": [0]}).write_parquet(extra)
    assert compact_manifest(root, extra_tables={"frames": [extra]})["mode"] == "full"
    stats = compact_manifest(root)
    assert stats["mode"] == "full" and query(root, "select count(*) from frames where video_id = 'x'")[1] == [(0,)]


def test_bookkeeping_tables_stay_out_of_the_way(tmp_path):
    root = DataRoot(tmp_path).ensure()
    write_video(root, "v1")
    stats = compact_manifest(root)
    assert not set(stats["tables"]) & set(INTERNAL_TABLES)
    shown = [r[0] for r in query(root, "show tables")[1]]
    assert {"videos", "faces", "lineage"} <= set(shown)
    comments = dict(query(root, "select table_name, comment from duckdb_tables()")[1])
    for name in INTERNAL_TABLES:  # visible to `show tables`, but named and commented as internal
        assert name.startswith("_") and "internal bookkeeping" in comments[name]
    assert all(not comments.get(t) for t in shown if t not in INTERNAL_TABLES)  # (landmarks is a view)


def test_parallel_compactions_never_lose_an_update(tmp_path):
    root = DataRoot(tmp_path).ensure()
    for i in range(20):
        write_video(root, f"base{i}")
    compact_manifest(root)
    errors = []

    def worker(name):
        try:
            for i in range(4):
                write_video(root, f"{name}{i}")
                stats = compact_manifest(root, full_rebuild_fraction=1.0)
                assert stats["mode"] == "incremental", stats
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("a", "b", "c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    # Every compaction copied the manifest under the lock, so the last one holds every thread's videos.
    assert query(root, "select count(*) from videos")[1] == [(32,)]
    assert query(root, "select count(distinct video_id) from faces")[1] == [(32,)]
    assert_same_as_full(root, tmp_path, "parallel")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_rewrite_with_the_same_size_is_seen(tmp_path):
    """A rewrite is a new file (new inode), so a same-size rewrite within one mtime tick is still picked up."""
    root = DataRoot(tmp_path).ensure()
    for i in range(5):
        write_video(root, f"v{i}")
    compact_manifest(root)
    before = root.table_file("bins", "v1").stat()
    write_table(root, "bins", "v1", pl.DataFrame({"video_id": ["v1"] * 3, "clip_id": ["v1"] * 3,
                                                  "frame_index": [0, 1, 2], "face_index": [0] * 3,
                                                  "label": ["frontax"] * 3}))
    after = root.table_file("bins", "v1").stat()
    assert after.st_size == before.st_size and after.st_ino != before.st_ino
    stats = compact_manifest(root, full_rebuild_fraction=1.0)
    assert stats["mode"] == "incremental" and stats["files_changed"] == 1
    assert query(root, "select distinct label from bins where video_id = 'v1'")[1] == [("frontax",)]


def test_an_unreadable_manifest_is_rebuilt(tmp_path):
    root = DataRoot(tmp_path).ensure()
    write_video(root, "v1")
    root.manifest_path.write_bytes(b"not a duckdb file" * 100)
    stats = compact_manifest(root)
    assert stats["mode"] == "full" and "could not be opened" in stats["reason"]
    assert query(root, "select count(*) from faces")[1] == [(3,)]
    assert compact_manifest(root)["mode"] == "incremental"


def test_a_file_removed_after_the_listing_is_skipped(tmp_path):
    """A run may remove or replace a table file while the manifest compacts: its rows are left out now and
    the next compaction, seeing the file's new state, puts things right."""
    import polars as pl

    from efhq_assets.core.storage.compaction import _read_chunk

    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    pl.DataFrame({"video_id": ["a"], "x": [1]}).write_parquet(a)
    pl.DataFrame({"video_id": ["b"], "x": [2]}).write_parquet(b)
    chunk, uniform = _read_chunk([a, tmp_path / "gone.parquet", b])
    assert chunk.column("video_id").to_pylist() == ["a", "b"] and uniform is False


def test_files_from_before_a_declared_column_keep_the_table_patchable(tmp_path):
    """Old files that lack a column declared since (faces.found_by) read as nulls, as a full build gives: the table
    stays patched file by file instead of rebuilt whole from every file at each compaction."""
    from efhq_assets.core.storage.compaction import META_TABLE

    root = DataRoot(tmp_path).ensure()
    for i in range(4):
        write_video(root, f"v{i}")
    for i in range(2):  # written by the old code: no found_by column
        path = root.table_file("faces", f"v{i}")
        atomic_write_parquet(pl.read_parquet(path).drop("found_by"), path)
    compact_manifest(root)
    modes = dict(query(root, f"SELECT name, value FROM {META_TABLE}")[1])
    assert modes["mode:faces"] == "keyed"
    write_video(root, "v3", variant=1)
    stats = compact_manifest(root, full_rebuild_fraction=1.0)
    assert stats["mode"] == "incremental" and stats["files_read"] == stats["files_changed"] < 10
    patched = manifest_content(root.manifest_path)
    patched_files = query(root, "SELECT * FROM _compaction_files ORDER BY ALL")[1]
    compact_manifest(root, incremental=False)
    assert manifest_content(root.manifest_path) == patched
    assert query(root, "SELECT * FROM _compaction_files ORDER BY ALL")[1] == patched_files  # bookkeeping patched too
    assert query(root, "SELECT count(*) FROM faces WHERE found_by IS NULL AND video_id IN ('v0', 'v1')")[1] == [(6,)]
