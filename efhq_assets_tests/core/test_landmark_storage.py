"""Landmarks stored as int16 fixed point (core/schemas.py LANDMARK_SCALE): exact enough, and invisible to queries."""

import re
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from efhq_assets.core.schemas import LANDMARK_RANGE_PX, LANDMARK_SCALE
from efhq_assets.core.storage import (
    DataRoot, atomic_write_parquet, compact_manifest, keyed, query, read_rows, read_table, read_table_files,
    write_table,
)

PRECISION_PX = 0.5 / LANDMARK_SCALE  # the stated precision: half a fixed-point step (1/16 px)
README = Path(__file__).resolve().parents[2] / "README.md"


def readme_lineage_query() -> str:
    text = README.read_text()
    start = text.index("-- lineage of every StyleGAN sample")
    return text[start:text.index("```", start)].strip().rstrip(";")


def landmark_rows(video_id, n, rng, lo=-300.0, hi=2200.0):
    key = {"video_id": [video_id] * n, "clip_id": [video_id] * n, "frame_index": list(range(n)), "face_index": [0] * n}
    lmk478 = [rng.uniform(lo, hi, 956).astype(np.float32).tolist() for _ in range(n)]
    lmk68 = [None if i == 1 else rng.uniform(lo, hi, 136).tolist() for i in range(n)]  # float64, one face without
    return pl.DataFrame({**key, "lmk478": lmk478, "lmk68": lmk68},
                        schema_overrides={"lmk478": pl.List(pl.Float32), "lmk68": pl.List(pl.Float64)})


def test_landmarks_round_trip_within_the_stated_precision(tmp_path):
    root = DataRoot(tmp_path).ensure()
    rng = np.random.default_rng(0)
    df = landmark_rows("v1", 4, rng)
    edges = [LANDMARK_RANGE_PX[0], LANDMARK_RANGE_PX[1], 0.0, -0.125, 1919.875, 1080.5]
    df = df.with_columns(pl.Series("lmk478", [edges * 159 + edges[:2]] + df["lmk478"].to_list()[1:],
                                   dtype=pl.List(pl.Float32)))
    path = write_table(root, "landmarks", "v1", df)

    stored = pl.read_parquet(path)
    assert stored.schema["lmk478"] == pl.List(pl.Int16) and stored.schema["lmk68"] == pl.List(pl.Int16)
    assert not pq.ParquetFile(path).metadata.row_group(0).column(0).is_stats_set  # no statistics in per-video files

    back = read_table(root, "landmarks", "v1")
    assert back.schema["lmk478"] == pl.List(pl.Float32)
    for col in ("lmk478", "lmk68"):
        for before, after in zip(df[col].to_list(), back[col].to_list()):
            if before is None:
                assert after is None
                continue
            err = np.abs(np.asarray(before, np.float64) - np.asarray(after, np.float64))
            assert len(after) == len(before) and err.max() <= PRECISION_PX + 1e-4
    # values already on the 1/8 px grid (what faces.landmark_list produces) come back exactly
    assert back["lmk478"][0].to_list()[:6] == [-4096.0, 4095.875, 0.0, -0.125, 1919.875, 1080.5]
    assert read_rows(root, "landmarks", "v1")[2]["lmk68"] == back["lmk68"][2].to_list()
    assert read_table_files(root, "landmarks", ["video_id", "lmk478"])["lmk478"].to_list() == back["lmk478"].to_list()
    # the manifest keeps the int16 values; landmark_px() gives SQL the same pixels
    compact_manifest(root)
    _, rows = query(root, "SELECT frame_index, landmark_px(lmk478), typeof(lmk478) FROM landmarks ORDER BY 1")
    assert [r[1] for r in rows] == [pytest.approx(v, abs=0) for v in back["lmk478"].to_list()]
    assert rows[0][2] == "SMALLINT[]"


def test_landmarks_outside_the_int16_range_or_nan_are_refused(tmp_path):
    root = DataRoot(tmp_path).ensure()
    rng = np.random.default_rng(1)
    far = landmark_rows("v1", 2, rng, lo=3000, hi=4200)  # a point past 4095.875 px
    with pytest.raises(ValueError, match="outside the int16 fixed-point range"):
        write_table(root, "landmarks", "v1", far)
    nan = landmark_rows("v1", 2, rng).with_columns(pl.Series("lmk68", [[float("nan")] * 136, None]))
    with pytest.raises(ValueError, match="NaN"):
        write_table(root, "landmarks", "v1", nan)
    assert not root.table_file("landmarks", "v1").exists()


def test_float_landmark_files_from_before_compact_to_the_same_values(tmp_path):
    """A data root written before the change (float32 lists on the 1/8 px grid) next to new files: one int16 table;
    the full build rewrote the old file encoded."""
    root = DataRoot(tmp_path).ensure()
    rng = np.random.default_rng(2)
    old = landmark_rows("old", 3, rng).with_columns(
        pl.col("lmk478").list.eval((pl.element() * 8).round() / 8).cast(pl.List(pl.Float32)),
        pl.col("lmk68").list.eval((pl.element() * 8).round() / 8).cast(pl.List(pl.Float32)))
    atomic_write_parquet(old, root.table_file("landmarks", "old"))  # the old writer: floats as given
    write_table(root, "landmarks", "new", landmark_rows("new", 2, rng))
    compact_manifest(root)
    _, rows = query(root, "SELECT landmark_px(lmk478), landmark_px(lmk68), typeof(lmk478) FROM landmarks "
                          "WHERE video_id = 'old' ORDER BY frame_index")
    assert [r[0] for r in rows] == old["lmk478"].to_list()
    assert [r[1] for r in rows] == old["lmk68"].to_list()
    assert {r[2] for r in rows} == {"SMALLINT[]"}
    assert read_table(root, "landmarks", "old").equals(old)  # same values from the file the full build re-encoded
    assert pq.read_schema(root.table_file("landmarks", "old")).field("lmk478").type.value_type == "int16"  # (the view
    # reads files as they are: compaction.VIEW_TABLES)


def pipeline_tables(video_id, variant=0):
    """The tables the README's lineage query joins, as the stages hand them to the writer."""
    rng = np.random.default_rng(len(video_id) + variant)
    n = 4
    key = {"video_id": [video_id] * n, "clip_id": [video_id] * n, "frame_index": [0, 3, 6, 9], "face_index": [0] * n}
    faces = pl.DataFrame({**key, "track_id": [0] * n, "x1": rng.uniform(0, 100, n), "y1": rng.uniform(0, 100, n),
                          "x2": rng.uniform(300, 400, n), "y2": rng.uniform(300, 400, n), "score": rng.uniform(0.9, 1, n),
                          "lmk5": rng.uniform(0, 400, (n, 10)).tolist(), "passes_efhq_filter": [True, True, False, True],
                          "detector": ["mtcnn"] * n, "detector_sha256": ["ab" * 32] * n, "detected": [True] * n})
    poses = pl.DataFrame({**{k: v * 3 for k, v in key.items()},
                          "estimator": [e for e in ("facemesh", "dlib68", "combined") for _ in range(n)],
                          "yaw": rng.uniform(-90, 90, 3 * n), "pitch": rng.uniform(-30, 30, 3 * n),
                          "roll": rng.uniform(-20, 20, 3 * n),
                          "weights_sha256": [w for w in ("fm" * 32, None, "cb" * 32) for _ in range(n)]})
    marks = landmark_rows(video_id, n, rng, lo=0, hi=1920).with_columns(frame_index=pl.Series(key["frame_index"]))
    lineage = pl.DataFrame({"asset": ["pose_annotations"], "partition": [video_id],
                            "code_version": [f"pose_annotations-{3 + variant}"], "model_versions": ["{}"],
                            "run_id": ["r1"], "input_fingerprint": ["f" * 32], "rows": [3 * n], "at": ["2026-12-03"]})
    return {"faces": faces, "poses": poses, "landmarks": marks, "lineage": lineage}


def test_readme_lineage_query_returns_the_same_rows_before_and_after_the_storage_change(tmp_path):
    """Before: the README's query on the rows exactly as the stages produced them (float landmarks, no writer, no
    manifest). After: through the writer (int16 landmarks, no statistics) and the compacted manifest, full and
    incremental. Same rows; the landmarks joined in on the same key agree within the stated precision."""
    sql = readme_lineage_query()
    assert re.search(r"join lineage l on", sql)
    videos = ["vid_a", "vid_b", "vid_c"]
    tables = {v: pipeline_tables(v) for v in videos}
    split_gan = pl.DataFrame([{"video_id": v, "frame_index": f, "face_index": 0, "split": "train", "label": "frontal"}
                              for v in videos for f in (0, 6, 9)])

    def before(tables_by_video, split):
        con = duckdb.connect()
        for name in ("faces", "poses", "landmarks", "lineage"):
            frame = pl.concat([t[name] for t in tables_by_video.values()], how="diagonal_relaxed")  # noqa: F841
            con.execute(f"CREATE TABLE {name} AS SELECT * FROM frame")
        con.register("split_gan", split.to_arrow())
        rows = con.execute(sql).fetchall()
        marks = con.execute("SELECT s.video_id, s.frame_index, m.lmk478 FROM split_gan s JOIN landmarks m "
                            "USING (video_id, frame_index, face_index) ORDER BY 1, 2").fetchall()
        return sorted(rows), marks

    root = DataRoot(tmp_path).ensure()
    for v, t in tables.items():
        for name in ("faces", "poses", "landmarks"):
            write_table(root, name, v, t[name])
        write_table(root, "lineage", keyed(v, "pose_annotations"), t["lineage"])
    write_table(root, "split_gan", "all", split_gan)
    assert compact_manifest(root)["mode"] == "full"
    after_marks = query(root, "SELECT s.video_id, s.frame_index, landmark_px(m.lmk478) FROM split_gan s JOIN "
                              "landmarks m USING (video_id, frame_index, face_index) ORDER BY 1, 2")[1]
    expected, expected_marks = before(tables, split_gan)
    assert len(expected) == 9  # every sample has its face, its combined pose and its lineage row
    assert sorted(query(root, sql)[1]) == expected
    assert [r[:2] for r in after_marks] == [r[:2] for r in expected_marks]
    for (_, _, a), (_, _, b) in zip(after_marks, expected_marks):
        assert np.abs(np.asarray(a) - np.asarray(b)).max() <= PRECISION_PX + 1e-4

    tables["vid_b"] = pipeline_tables("vid_b", variant=1)  # one video processed again
    for name in ("faces", "poses", "landmarks"):
        write_table(root, name, "vid_b", tables["vid_b"][name])
    write_table(root, "lineage", keyed("vid_b", "pose_annotations"), tables["vid_b"]["lineage"])
    assert compact_manifest(root, full_rebuild_fraction=1.0)["mode"] == "incremental"
    expected, _ = before(tables, split_gan)
    assert sorted(query(root, sql)[1]) == expected
    assert {r[-1] for r in expected if r[0] == "vid_b"} == {"pose_annotations-4"}


def test_in_place_patch_gives_the_rows_of_a_patched_copy_and_yields_to_readers(tmp_path):
    """compact_manifest(in_place=True) (the design scale.py measures beside the copy): same rows as the copy's
    patch; with a reader holding the manifest open it patches a copy instead, and the reader keeps working."""
    import shutil

    from efhq_assets.core.storage import connect_read_only

    sums = "SELECT count(*), sum(hash(t)::HUGEINT)::VARCHAR FROM {} t"
    root = DataRoot(tmp_path / "root").ensure()
    for v in ("vid_a", "vid_b", "vid_c", "vid_d"):
        for name, df in pipeline_tables(v).items():
            write_table(root, name, keyed(v, "pose_annotations") if name == "lineage" else v, df)
    compact_manifest(root)
    for name, df in pipeline_tables("vid_b", variant=1).items():
        write_table(root, name, keyed("vid_b", "pose_annotations") if name == "lineage" else "vid_b", df)
    before = tmp_path / "before.duckdb"
    shutil.copyfile(root.manifest_path, before)

    copied = compact_manifest(root, full_rebuild_fraction=1.0)
    assert copied["mode"] == "incremental" and not copied["in_place"]
    expected = {t: query(root, sums.format(t))[1] for t in ("faces", "poses", "landmarks", "lineage")}

    shutil.copyfile(before, root.manifest_path)
    patched = compact_manifest(root, full_rebuild_fraction=1.0, in_place=True)
    assert patched["mode"] == "incremental" and patched["in_place"] and patched["files_read"] == copied["files_read"]
    assert {t: query(root, sums.format(t))[1] for t in expected} == expected
    assert query(root, "SELECT code_version FROM lineage WHERE partition = 'vid_b'")[1] == [("pose_annotations-4",)]

    write_table(root, "faces", "vid_c", pipeline_tables("vid_c", variant=2)["faces"])
    reader = connect_read_only(root)
    try:
        held = compact_manifest(root, full_rebuild_fraction=1.0, in_place=True)
        assert held["mode"] == "incremental" and not held["in_place"]  # the copy was patched and swapped in
        assert reader.execute("SELECT count(*) FROM faces").fetchone() == (16,)
    finally:
        reader.close()


def test_landmarks_are_a_view_over_their_files_and_queries_read_no_other_file(tmp_path):
    """The manifest keeps no copy of the landmark lists (compaction.VIEW_TABLES; docs/scale.md "Bytes"): `landmarks`
    is a view over tables/landmarks with the declared columns, empty before any file, and `efhq sql` may read those
    files and no other."""
    from efhq_assets.core.schemas import TABLE_SCHEMAS
    from efhq_assets.core.storage import connect_read_only

    root = DataRoot(tmp_path).ensure()
    write_table(root, "frames", "v1", pl.DataFrame({"video_id": ["v1"], "clip_id": ["v1"], "frame_index": [0]}))
    compact_manifest(root)
    names, rows = query(root, "SELECT * FROM landmarks")
    assert names == list(TABLE_SCHEMAS["landmarks"]) and rows == []
    rng = np.random.default_rng(5)
    marks = {v: landmark_rows(v, 3, rng) for v in ("v1", "v2")}
    for v, df in marks.items():
        write_table(root, "landmarks", v, df)
    stats = compact_manifest(root)
    assert stats["mode"] == "incremental" and stats["files_read"] == 0  # nothing copied: the view reads them
    assert query(root, "SELECT view_name FROM duckdb_views() WHERE NOT internal")[1] == [("landmarks",)]
    assert query(root, "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'landmarks'")[1] == [(0,)]
    _, rows = query(root, "SELECT video_id, frame_index, landmark_px(lmk478), typeof(lmk478) FROM landmarks "
                          "ORDER BY 1, 2")
    assert [(r[0], r[1]) for r in rows] == [(v, i) for v in ("v1", "v2") for i in range(3)]
    assert {r[3] for r in rows} == {"SMALLINT[]"}
    got = np.asarray([r[2] for r in rows])
    want = np.asarray(marks["v1"]["lmk478"].to_list() + marks["v2"]["lmk478"].to_list())
    assert np.abs(got - want).max() <= PRECISION_PX + 1e-4
    con = connect_read_only(root)
    try:
        for sql in (f"SELECT * FROM read_parquet('{root.table_file('frames', 'v1')}')",
                    f"SELECT * FROM read_parquet('{root.tables}/landmarks/../frames/v1.parquet')",
                    "SELECT * FROM read_csv('/etc/passwd')"):
            with pytest.raises(duckdb.Error, match="(?i)permission|disabled|access"):
                con.execute(sql).fetchall()
        with pytest.raises(duckdb.Error):
            con.execute("SET enable_external_access = true")
    finally:
        con.close()
