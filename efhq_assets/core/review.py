"""Manual pose review as data: contact sheets out, validated relabels in.

EFHQ's review was an interactive Streamlit app whose decisions survive only as its output CSVs.
Here a reviewer exports a contact sheet (HTML with thumbnails + a CSV to edit), and imports the
edited CSV; every imported sheet is kept under `catalog/review/` in import order, and the
`review_overrides` asset rebuilds the per-video overrides from them, so the review is
reproducible and auditable.
"""

from __future__ import annotations

import base64
import csv
import html
import io
from dataclasses import dataclass
from pathlib import Path

from .bins import REVIEW_LABELS
from .storage import DataRoot, atomic_write_bytes, table_files

CSV_COLUMNS = ("video_id", "frame_index", "face_index", "current_label", "new_label")


@dataclass
class ReviewRow:
    line: int
    video_id: str
    frame_index: int
    face_index: int
    label: str


class ReviewFileError(ValueError):
    """A review CSV with bad rows: every problem with its line number; nothing was applied."""

    def __init__(self, path: str, problems: list[str]):
        self.problems = problems
        super().__init__(f"{path}: {len(problems)} problem(s), nothing imported:\n  " + "\n  ".join(problems[:50]))


def parse_review_csv(path: str | Path, known_faces: set[tuple[str, int, int]]) -> list[ReviewRow]:
    """Rows with a non-empty `new_label`; raises ReviewFileError listing every bad line (all or nothing)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ReviewFileError(str(path), [f"cannot read the file: {exc}"]) from None
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in ("video_id", "frame_index", "face_index", "new_label") if c not in (reader.fieldnames or [])]
    if missing:
        raise ReviewFileError(str(path), [f"line 1: missing column(s) {', '.join(missing)}; expected {','.join(CSV_COLUMNS)}"])
    rows, problems, seen = [], [], {}
    for line, rec in enumerate(reader, start=2):
        label = (rec.get("new_label") or "").strip()
        if not label:
            continue
        try:
            key = (rec["video_id"].strip(), int(rec["frame_index"]), int(rec["face_index"]))
        except (TypeError, ValueError, AttributeError):
            problems.append(f"line {line}: frame_index and face_index must be integers")
            continue
        if label not in REVIEW_LABELS:
            problems.append(f"line {line}: label {label!r} is not one of {', '.join(REVIEW_LABELS)}")
            continue
        if key not in known_faces:
            problems.append(f"line {line}: no face {key[0]} frame {key[1]} face {key[2]} in the manifest")
            continue
        if key in seen and seen[key][1] != label:
            problems.append(f"line {line}: face relabelled twice in one file (also line {seen[key][0]})")
            continue
        seen[key] = (line, label)
        rows.append(ReviewRow(line, *key, label))
    if problems:
        raise ReviewFileError(str(path), problems)
    return rows


def merge_reviews(files: list[Path], known_faces: set[tuple[str, int, int]]) -> dict[tuple[str, int, int], str]:
    """Apply imported sheets in order (later sheets win). A sheet that no longer validates is skipped whole."""
    merged: dict[tuple[str, int, int], str] = {}
    for path in sorted(files):
        try:
            rows = parse_review_csv(path, known_faces)
        except ReviewFileError:
            continue
        for r in rows:
            merged[(r.video_id, r.frame_index, r.face_index)] = r.label
    return merged


def write_sheet(faces: list[dict], thumbnails: dict[tuple[str, int, int], bytes], html_path: Path, title: str) -> Path:
    """The contact sheet (self-contained HTML) and the CSV to edit beside it; returns the CSV path."""
    csv_path = html_path.with_suffix(".csv")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    cards = []
    for f in faces:
        key = (f["video_id"], int(f["frame_index"]), int(f["face_index"]))
        writer.writerow([*key, f["label"], ""])
        img = thumbnails.get(key)
        src = f"data:image/jpeg;base64,{base64.b64encode(img).decode()}" if img else ""
        angles = ", ".join(f"{k} {f[k]:.0f}" for k in ("yaw", "pitch", "roll") if f.get(k) is not None)
        cards.append(f'<figure><img src="{src}" alt="face"><figcaption><b>{html.escape(f["label"])}</b><br>'
                     f'{html.escape(key[0])}<br>frame {key[1]} face {key[2]}<br>{html.escape(angles)}</figcaption></figure>')
    page = (f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title>"
            "<style>body{font:13px sans-serif}figure{display:inline-block;margin:4px;width:140px;vertical-align:top}"
            "img{width:128px;height:128px;object-fit:cover;background:#222}</style>"
            f"<h1>{html.escape(title)}</h1><p>{len(faces)} faces. Edit <code>{html.escape(csv_path.name)}</code>: "
            f"set <code>new_label</code> to one of {', '.join(REVIEW_LABELS)}, then "
            f"<code>efhq review import {html.escape(csv_path.name)}</code>.</p>" + "".join(cards))
    atomic_write_bytes(html_path, page.encode())
    atomic_write_bytes(csv_path, buf.getvalue().encode())
    return csv_path


def known_faces(root: DataRoot) -> set[tuple[str, int, int]]:
    """(video_id, frame_index, face_index) of every detected face: the faces a review sheet may relabel."""
    import polars as pl  # lazy: the review page and sheet code need no polars

    files = table_files(root, "faces")
    if not files:
        return set()
    df = pl.concat([pl.read_parquet(p, columns=["video_id", "frame_index", "face_index"]) for p in files])
    return {(v, int(f), int(i)) for v, f, i in df.iter_rows()}
