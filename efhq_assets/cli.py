"""The `efhq` command: demo, build, sql, status, ui.

The data root comes from --data-root, else EFHQ_DATA_ROOT, else ./efhq_data; nothing is written
outside it. Progress goes to stderr, results to stdout (so `--format csv` output is just the table).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
from pathlib import Path

from efhq_assets.cli_models import add_models_command
from efhq_assets.core.storage import DataRoot, NoManifestError, ReadOnlyQueryError


def _root(args) -> DataRoot:
    return DataRoot.at(args.data_root)


def cmd_build(args) -> int:
    from efhq_assets import runner
    from efhq_assets.core.sources import SourceConfig

    config = SourceConfig(
        videos=[str(Path(p).resolve()) for p in args.videos or []],
        vfhq_annotations=[str(Path(p).resolve()) for p in args.vfhq_annotations or []],
        celebv_info=[str(Path(p).resolve()) for p in args.celebv_info or []],
        efhq_metadata=[str(Path(p).resolve()) for p in args.efhq_metadata or []],
    )
    for folder in config.videos:
        if not Path(folder).is_dir():
            print(f"efhq build: --videos {folder} is not a folder", file=sys.stderr)
            return 2
    from efhq_assets.core.settings import SettingsError

    if args.dry_run:
        return _print_plan(args)
    try:  # settings are validated together before anything is saved or run: a typo gets a message
        report = runner.build(_root(args), config, sampling=args.sample, force=args.force, detector=args.detector,
                              pose_camera=args.pose_camera, render_exports=args.render_exports)
    except SettingsError as exc:
        print(f"efhq build: {exc}", file=sys.stderr)
        return 2
    print(runner.summary_json(report))
    if report.failed:
        print(f"efhq build: {len(report.failed)} video(s) failed; see `efhq status` and the `errors` table",
              file=sys.stderr)
    return 1 if report.failed else 0


def _print_plan(args) -> int:
    """`efhq build --dry-run`: the plan `efhq build` and the daemon's sensor would run now (nothing runs)."""
    from efhq_assets import runner
    from efhq_assets.core.settings import SettingsError

    try:
        build_plan = runner.dry_run(_root(args))
    except SettingsError as exc:
        print(f"efhq build: {exc}", file=sys.stderr)
        return 2
    if args.format == "json":
        print(json.dumps(build_plan.to_json(), indent=1, default=str))
        return 0
    for selection, keys in build_plan.runs:
        print(f"run {len(keys)} video(s) {keys[0]}{' .. ' + keys[-1] if len(keys) > 1 else ''}: {', '.join(selection)}")
    if build_plan.unpartitioned_stale:
        print("then: review_overrides (if sheets changed), face_identities, dataset_card, splits, verification, manifest")
    print(f"{len(build_plan.stale)} video(s) stale, {len(build_plan.up_to_date)} up to date"
          + ("" if build_plan.stale or build_plan.unpartitioned_stale else ": nothing to do"))
    return 0


def cmd_settings(args) -> int:
    """Show, set or unset the data root's settings (validated; nothing is saved when a value is refused)."""
    from efhq_assets.core import settings as settings_mod

    root = _root(args)
    try:
        if args.action == "set":
            settings_mod.update_settings(root, **{args.name: settings_mod.parse_value(args.name, args.value)})
        elif args.action == "unset":
            settings_mod.parse_value(args.name, "")  # an unknown name is refused
            settings_mod.update_settings(root, **{args.name: None})
        current = settings_mod.load_settings(root)
        if args.action != "show":  # the UI's staleness sees the change at once (the sensor would on its next tick)
            from efhq_assets import runner

            runner.observe_settings(runner.prepare_instance(root), current)
    except settings_mod.SettingsError as exc:
        print(f"efhq settings: {exc}", file=sys.stderr)
        return 2
    explicit = settings_mod.stored(root)
    if args.format == "json":
        print(json.dumps(current.model_dump(), indent=1))
        return 0
    _print_settings(current, explicit)
    return 0


def _print_settings(current, explicit: dict) -> None:
    from efhq_assets.core.settings import describe

    for item in describe():
        name = item["name"]
        origin = "set" if name in explicit else "default"
        print(f"{name} = {getattr(current, name)!r}  ({origin})")
        print(f"    {item['description']}")


EXPORTS = {"gan": "gan", "eg3d": "eg3d", "t2i": "t2i", "reenactment": "reenactment", "verification": "verification"}


def cmd_export(args) -> int:
    """Render a task's training export (the same rows as its split table) into --out."""
    from efhq_assets import runner
    from efhq_assets.core.tasks.exports import export_task

    root = _root(args)
    if not root.manifest_path.exists():
        print(f"efhq export: nothing built in {root.path} yet: run `efhq build` (or `efhq demo`) first", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    if out.exists() and any(out.iterdir()):
        print(f"efhq export: {out} exists and is not empty; choose a new folder", file=sys.stderr)
        return 2
    runner.log(f"efhq export: rendering {args.task} into {out} ...")
    try:
        result = export_task(root, EXPORTS[args.task], out,
                             progress=lambda done, total: runner.log(f"efhq export: {done}/{total} rows rendered"))
    except FileNotFoundError as exc:
        print(f"efhq export: {exc}", file=sys.stderr)
        return 2
    files = sum(1 for p in out.rglob("*") if p.is_file())
    print(json.dumps({"task": args.task, "out": str(out), "files": files, "images": result.get("count")}))
    return 0


def cmd_refresh(args) -> int:
    from efhq_assets import runner

    report = runner.refresh(_root(args))
    print(runner.summary_json(report))
    return 1 if report.failed else 0


def cmd_demo(args) -> int:
    from efhq_assets import runner
    from efhq_assets.demo.corpus import make_demo_corpus

    root = _root(args).ensure()
    sources = root.path / "demo_sources"
    runner.log(f"efhq demo: synthesizing the demo corpus in {sources}")
    corpus = make_demo_corpus(sources, seed=args.seed)
    report = runner.build(root, corpus.source_config(), sampling=args.sample)
    print(runner.summary_json(report))
    runner.log(f"efhq demo: done in {report.seconds} s. Try:\n"
               f"  efhq sql \"select source, status, count(*) from videos group by all\"\n"
               f"  efhq sql \"select softbin, count(*) from bins group by 1\"\n"
               f"  efhq sql \"select protocol, far, tar from verification_report order by 1, 2 desc\"\n"
               f"  efhq export gan --out exports/gan    # the StyleGAN2-ADA zip (also eg3d, t2i, reenactment, verification)\n"
               f"  cat {root.path}/card/dataset_card.md\n"
               f"  efhq ui     # the Dagster UI for this data root")
    return 1 if report.failed else 0


def _print_table(names: list[str], rows: list[tuple]) -> None:
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(n)] + [len(r[i]) for r in cells]) for i, n in enumerate(names)]
    print("  ".join(n.ljust(w) for n, w in zip(names, widths)))
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)))
    print(f"({len(rows)} row{'s' if len(rows) != 1 else ''})", file=sys.stderr)


def cmd_sql(args) -> int:
    from efhq_assets.core.storage import query

    try:
        if args.format == "csv":
            _sql_csv(_root(args), args.query)
            return 0
        names, rows = query(_root(args), args.query)
    except (ReadOnlyQueryError, NoManifestError) as exc:
        print(f"efhq sql: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # duckdb errors: a message, not a traceback
        print(f"efhq sql: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    if args.format == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(names)
        writer.writerows(rows)
    elif args.format == "json":
        print(json.dumps([dict(zip(names, r)) for r in rows], default=str, indent=1))
    else:
        _print_table(names, rows)
    return 0


CSV_ARROW_ROWS = 20_000  # a result of this many rows or more is written from Arrow (polars), fewer by the csv module
_CSV_ARROW_TYPES = {"VARCHAR", "BIGINT", "INTEGER", "SMALLINT", "TINYINT", "UBIGINT", "UINTEGER", "USMALLINT",
                    "UTINYINT"}


def _sql_csv(root: DataRoot, sql: str) -> None:
    """`--format csv`, the query run once. A large result of text and integer columns only (the README's lineage
    join: 209,661 rows at 50,000 videos) is written by polars from Arrow, without a Python object per value; the
    text is the csv module's (quoted where needed, empty strings and nulls both empty; a value with a carriage
    return, which the csv module leaves unquoted, goes through the csv module). Small results never import polars."""
    from efhq_assets.core.storage import check_read_only, connect_read_only

    check_read_only(sql)
    con = connect_read_only(root)
    writer = csv.writer(sys.stdout, lineterminator="\n")
    try:
        cur = con.execute(sql)
        names = [d[0] for d in cur.description] if cur.description else []
        if names and all(str(d[1]) in _CSV_ARROW_TYPES for d in cur.description):
            reader = cur.to_arrow_reader(CSV_ARROW_ROWS)
            batches, n = [], 0
            for batch in reader:  # until the result proves large (or ends)
                batches.append(batch)
                n += batch.num_rows
                if n >= CSV_ARROW_ROWS:
                    break
            if n >= CSV_ARROW_ROWS:
                import pyarrow as pa

                table = pa.Table.from_batches(batches + list(reader), schema=reader.schema)
                if _write_csv_from_arrow(table, writer):
                    return
                batches = table.to_batches()
            writer.writerow(names)
            for batch in batches:
                columns = [batch.column(i).to_pylist() for i in range(batch.num_columns)]
                writer.writerows(zip(*columns))
            return
        rows = cur.fetchmany(CSV_ARROW_ROWS)
        writer.writerow(names)
        while rows:
            writer.writerows(rows)
            rows = cur.fetchmany(CSV_ARROW_ROWS)
    finally:
        con.close()


def _write_csv_from_arrow(table, writer) -> bool:
    """The csv module's text for an Arrow table of text and integer columns; False where only the csv module
    writes it (a value with a carriage return). Values that need no quoting (nearly all: ids, hashes, numbers) go
    through Arrow's own writer, which refuses anything that would need quotes; only then is polars imported (0.3 s
    of an `efhq sql` that prints 200,000 rows in about 1 s) to quote what needs it."""
    import io

    import pyarrow as pa
    import pyarrow.csv as pa_csv

    if table.num_columns > 1:  # the csv module writes a lone empty field as "": one column goes through polars
        buffer = io.BytesIO()
        try:
            pa_csv.write_csv(table, buffer, pa_csv.WriteOptions(include_header=False, quoting_style="none"))
        except pa.ArrowInvalid:  # a delimiter, quote or line break in some value
            pass
        else:
            writer.writerow(table.schema.names)
            sys.stdout.flush()
            sys.stdout.buffer.write(buffer.getbuffer())
            return True
    import polars as pl

    frame = pl.from_arrow(table)
    text = [c for c, t in frame.schema.items() if t == pl.Utf8]
    if text and frame.select(pl.any_horizontal(pl.col(text).str.contains("\r", literal=True).any())).item():
        return False
    frame = frame.with_columns(pl.when(pl.col(c) != "").then(pl.col(c)).alias(c) for c in text)
    writer.writerow(table.schema.names)
    sys.stdout.flush()
    frame.write_csv(sys.stdout.buffer, include_header=False, line_terminator="\n", quote_style="necessary")
    return True


def cmd_status(args) -> int:
    from efhq_assets.core.catalog import load_catalog

    root = _root(args)
    catalog = load_catalog(root)
    if not catalog.videos:
        print(f"no sources registered in {root.path}: run `efhq demo` or `efhq build --videos DIR`")
        return 0
    if args.missing:
        missing = [v for v in catalog.videos if v["status"] == "missing"]
        for v in missing:
            clips = catalog.clips_of(v["video_id"])
            print(f"{v['video_id']}\t{v['source']}\tyoutube_id={v['youtube_id']}\tclips={len(clips)}")
        print(f"{len(missing)} annotated video(s) not on disk: download them into a --videos folder", file=sys.stderr)
        return 0
    try:
        from efhq_assets.core.storage import query

        _, by_status = query(root, "select status, count(*) from videos group by 1 order by 1")
        _, errors = query(root, "select video_id, stage, message from errors order by 1, 2")
        _, counts = query(root, "select (select count(*) from clips), (select count(*) from frames)")
    except NoManifestError as exc:
        print(str(exc))
        return 0
    print(f"data root: {root.path}")
    print("videos: " + ", ".join(f"{s} {n}" for s, n in by_status))
    print(f"clips: {counts[0][0]}  frames: {counts[0][1]}")
    print(f"errors: {len(errors)}")
    for vid, stage, message in errors:
        print(f"  {vid} [{stage}]: {message}")
    from efhq_assets.core import settings as settings_mod

    print("settings (efhq settings set NAME VALUE / unset NAME):")
    try:
        current = settings_mod.load_settings(root)
    except settings_mod.SettingsError as exc:
        print(f"  {exc}")
        return 0
    explicit = settings_mod.stored(root)
    for name, value in current.model_dump().items():
        print(f"  {name} = {value!r}{'' if name in explicit else '  (default)'}")
    return 0


def dagster_executable() -> str:
    """`dagster` beside the running interpreter (a venv's bin/, activated or not), else the one on PATH."""
    beside = Path(sys.executable).parent / "dagster"
    if beside.exists():
        return str(beside)
    found = shutil.which("dagster")
    if found is None:
        raise SystemExit(f"efhq ui: no `dagster` beside {sys.executable} nor on PATH: install dagster-webserver")
    return found


def cmd_ui(args) -> int:
    from efhq_assets import runner

    root = _root(args)
    runner.prepare_instance(root)
    workspace = runner.REPO_ROOT / "workspace.yaml"
    cmd = [dagster_executable(), "dev", "-h", args.host, "-p", str(args.port)]
    if workspace.exists():
        cmd += ["-w", str(workspace)]
        os.chdir(runner.REPO_ROOT)
    else:
        cmd += ["-m", "efhq_assets.definitions"]
    print(f"efhq ui: Dagster UI for {root.path} at http://{args.host}:{args.port}", file=sys.stderr)
    os.execvpe(cmd[0], cmd, os.environ.copy())
    return 0


def cmd_review_export(args) -> int:
    import cv2
    import numpy as np

    from efhq_assets.core.face_crops import iter_faces_by_frame
    from efhq_assets.core.quality import face_crop
    from efhq_assets.core.review import write_sheet
    root = _root(args)
    where = "" if args.bin == "all" else "where (b.softbin = ? or b.label = ?)"
    sql = ("select b.video_id, b.frame_index, b.face_index, b.label, p.yaw, p.pitch, p.roll, f.x1, f.y1, f.x2, f.y2, "
           "v.path from bins b join faces f using (video_id, clip_id, frame_index, face_index) "
           "join poses p using (video_id, clip_id, frame_index, face_index) join videos v using (video_id) "
           f"{'where' if not where else where + ' and'} p.estimator = 'combined' "
           f"order by b.video_id, b.frame_index, b.face_index limit {int(args.limit)}")
    try:
        from efhq_assets.core.storage import connect_read_only

        con = connect_read_only(root)
        cur = con.execute(sql, [] if args.bin == "all" else [args.bin, args.bin])
        names = [d[0] for d in cur.description]
        faces = [dict(zip(names, r)) for r in cur.fetchall()]
        con.close()
    except Exception as exc:  # no manifest yet, or a duckdb error: a message, not a traceback
        print(f"efhq review export: {exc}", file=sys.stderr)
        return 2
    thumbs = {}
    for path in sorted({f["path"] for f in faces}):
        for image, rows in iter_faces_by_frame(path, [f for f in faces if f["path"] == path]):
            for f in rows:
                crop = face_crop(image, [f["x1"], f["y1"], f["x2"], f["y2"]], out=128)
                ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(crop), [cv2.IMWRITE_JPEG_QUALITY, 85])
                thumbs[(f["video_id"], int(f["frame_index"]), int(f["face_index"]))] = buf.tobytes()
    out = Path(args.out).resolve()
    csv_path = write_sheet(faces, thumbs, out, f"EFHQ review: {args.bin}")
    print(f"wrote {out} ({len(faces)} faces) and {csv_path}: fill new_label, then `efhq review import {csv_path}`",
          file=sys.stderr)
    return 0


def cmd_review_import(args) -> int:
    import datetime as dt

    from efhq_assets import runner
    from efhq_assets.core.review import ReviewFileError, parse_review_csv
    from efhq_assets.core.storage import atomic_write_bytes
    from efhq_assets.core.plan import review_files
    from efhq_assets.core.review import known_faces

    root = _root(args)
    try:
        rows = parse_review_csv(args.file, known_faces(root))
    except ReviewFileError as exc:
        print(f"efhq review import: {exc}", file=sys.stderr)
        return 2
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    target = root.catalog / "review" / f"{len(review_files(root)):05d}-{stamp}.csv"
    atomic_write_bytes(target, Path(args.file).read_bytes())
    print(f"imported {len(rows)} relabel(s) as {target.name}; re-materializing the affected pose_bins", file=sys.stderr)
    report = runner.build(root)
    print(runner.summary_json(report))
    return 1 if report.failed else 0


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="efhq", description="EFHQ extreme-pose face dataset pipeline (Dagster + DuckDB)")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-root", help="data root (default: $EFHQ_DATA_ROOT, else ./efhq_data)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", parents=[common], help="synthesize the offline demo corpus and build it end to end")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sample", default=None, help="frame sampling: all | fps:N | max:N (default: all, as EFHQ)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("build", parents=[common], help="register sources and process every new or changed video")
    p.add_argument("--videos", action="append", help="folder of video files (repeatable)")
    p.add_argument("--vfhq-annotations", action="append", help="folder of VFHQ per-clip annotation .txt files")
    p.add_argument("--celebv-info", action="append", help="CelebV-HQ celebvhq_info.json")
    p.add_argument("--efhq-metadata", action="append",
                   help="EFHQ's released per-frame metadata: a CSV, or a folder of them (EFHQ's per-clip <clip id>.csv "
                        "files, its 4_binned_edited/<bin>/ review output); rebuild its frames' task outputs without "
                        "running detection or pose (VFHQ clips on full videos, with --vfhq-annotations for their "
                        "annotated size; CelebV clips with --celebv-info or pre-cut files)")
    p.add_argument("--sample", default=None, help="frame sampling: all | fps:N | max:N (saved in the data root)")
    p.add_argument("--force", action="store_true", help="re-materialize videos even when up to date")
    p.add_argument("--dry-run", action="store_true",
                   help="print what would run (the plan the daemon's sensor follows too) and run nothing")
    p.add_argument("--format", choices=["text", "json"], default="text", help="--dry-run output format")
    p.add_argument("--render-exports", action=argparse.BooleanOptionalAction, default=None,
                   help="render the training exports into <data_root>/tasks/ on every build, or stop doing so "
                        "(saved; default: on request, with efhq export)")
    p.add_argument("--detector", default=None,
                   help="face detector backend (default mtcnn; e.g. scrfd_10g_bnkps with its weights; see efhq models list)")
    p.add_argument("--pose-camera", default=None,
                   help="camera model of the pose fit (saved in the data root): frame (default, focal = the frame's "
                        "longer side), weak (no perspective: for videos that are already tight face crops), or f:K "
                        "(focal = K x the longer side)")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("settings", parents=[common], help="show, set or unset the data root's settings (every "
                                                          "process reads them: CLI, UI, daemon, workers)")
    p.add_argument("action", nargs="?", choices=["show", "set", "unset"], default="show")
    p.add_argument("name", nargs="?")
    p.add_argument("value", nargs="?")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_settings)

    p = sub.add_parser("refresh", parents=[common],
                       help="one sensor tick + recompute only what is stale (new videos, changed files or code)")
    p.set_defaults(func=cmd_refresh)

    p = sub.add_parser("export", parents=[common], help="copy a task's training export (gan zip, eg3d, t2i, "
                                                        "reenactment, verification) to a folder")
    p.add_argument("task", choices=sorted(EXPORTS))
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("sql", parents=[common], help="run one read-only SQL query on the manifest")
    p.add_argument("query")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.set_defaults(func=cmd_sql)

    p = sub.add_parser("status", parents=[common], help="videos by status, errors; --missing lists what to download")
    p.add_argument("--missing", action="store_true")
    p.set_defaults(func=cmd_status)

    review = sub.add_parser("review", help="export contact sheets for manual review; import relabels")
    review_sub = review.add_subparsers(dest="review_command", required=True)
    p = review_sub.add_parser("export", parents=[common], help="contact sheet (HTML) + CSV to edit, for one bin")
    p.add_argument("--bin", default="profile_horizontal", help="softbin or label to review, or 'all'")
    p.add_argument("--out", required=True, help="HTML file to write (the CSV goes beside it)")
    p.add_argument("--limit", type=int, default=500)
    p.set_defaults(func=cmd_review_export)
    p = review_sub.add_parser("import", parents=[common], help="validate an edited review CSV and apply it")
    p.add_argument("file")
    p.set_defaults(func=cmd_review_import)

    p = sub.add_parser("ui", parents=[common], help="run the Dagster UI (dagster dev) on this data root's instance")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p.set_defaults(func=cmd_ui)

    add_models_command(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.command == "settings" and args.action != "show" and (
            args.name is None or (args.action == "set") != (args.value is not None)):
        parser.error("usage: efhq settings [show] | set NAME VALUE | unset NAME")
    try:
        return int(args.func(args) or 0)
    except Exception as exc:
        if not _is_weights_error(exc):
            raise
        print(f"efhq {args.command}: {exc}", file=sys.stderr)
        return 2


def _is_weights_error(exc: Exception) -> bool:
    """A missing or corrupt model file: a message, not a traceback. The model registry (0.4 s of imports) is not
    imported for this: a command that raised one of its errors has imported it already."""
    for name in ("efhq_assets.core.models.weights", "efhq_assets.core.models.registry"):
        module = sys.modules.get(name)
        if module is not None and isinstance(exc, (module.MissingWeightsError, module.ChecksumError)):
            return True
    return False


if __name__ == "__main__":
    sys.exit(main())
