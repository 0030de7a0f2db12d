"""Every stage's run records: its `lineage` row (code and model versions, run id, the fingerprint of what it
consumed) and its `errors` rows, one file per (video, stage) so parallel runs never write the same file.

`lineage` and `errors` are the only tables that hold times and run ids: the data tables stay byte-identical
across re-runs.
"""

from __future__ import annotations

import datetime as dt
import json

import polars as pl

from .storage import DataRoot, keyed, remove_table_file, write_table


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def record_error(root: DataRoot, video_id: str, stage: str, message: str, at: str | None = None) -> None:
    # `at` is kept out of source-scan errors ("") so rescans rewrite identical bytes.
    df = pl.DataFrame({"video_id": [video_id], "stage": [stage], "message": [message], "at": [now_iso() if at is None else at]})
    write_table(root, "errors", keyed(video_id, stage), df)


def clear_error(root: DataRoot, video_id: str, stage: str) -> None:
    remove_table_file(root, "errors", keyed(video_id, stage))


def record_lineage(root: DataRoot, asset: str, partition: str, code_version: str, run_id: str,
                   input_fingerprint: str, rows: int, model_versions: dict | None = None) -> None:
    df = pl.DataFrame({
        "asset": [asset], "partition": [partition], "code_version": [code_version],
        "model_versions": [json.dumps(model_versions or {}, sort_keys=True)], "run_id": [run_id],
        "input_fingerprint": [input_fingerprint], "rows": [rows], "at": [now_iso()],
    })
    write_table(root, "lineage", keyed(partition or "all", asset), df)


def lineage_fingerprint(root: DataRoot, asset: str, partition: str) -> str | None:
    path = root.table_file("lineage", keyed(partition, asset))
    if not path.exists():
        return None
    return pl.read_parquet(path)["input_fingerprint"][0]
