"""Identity clustering quality on the demo corpus: pairwise precision/recall over face tracks.

Usage: .venv/bin/python benchmarks/identity.py [--data-root DIR]   (builds the demo there if needed)

Truth comes from demo_truth.json (which real person each clip shows). Identities are defined within a
source (a YouTube id), as in EFHQ; pairs are scored within sources (the target: precision and recall
>= 0.95) and, for information, across all tracks (different sources are never merged by design).
Prints progress to stderr and one JSON object on its last stdout line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-root")
    args = parser.parse_args()
    root = Path(args.data_root or tempfile.mkdtemp(prefix="efhq-identity-")) / ("" if args.data_root else "root")
    started = time.perf_counter()
    if not (root / "manifest.duckdb").exists():
        print(f"building the demo in {root} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "efhq_assets.cli", "demo", "--data-root", str(root)], check=True)
    from efhq_assets.core.identities import pairwise_precision_recall
    from efhq_assets.core.storage import DataRoot, query

    truth = json.loads((root / "demo_sources" / "demo_truth.json").read_text())
    person_of_clip = {c["clip_id"]: c["identity"] for c in truth["clips"] if c.get("identity")}
    _, rows = query(DataRoot(root), "select distinct f.video_id, f.track_id, f.clip_id, i.identity_id, i.source_id "
                                    "from faces f join identities i using (video_id, track_id) "
                                    "where f.passes_efhq_filter")
    pred, true, pred_src, true_src = {}, {}, {}, {}
    for video_id, track_id, clip_id, identity_id, source_id in rows:
        person = person_of_clip.get(clip_id)
        if person is None:
            continue
        key = (video_id, track_id)
        pred[key], true[key] = identity_id, person
        pred_src[key], true_src[key] = identity_id, (source_id, person)
    precision, recall = pairwise_precision_recall(pred_src, true_src)
    precision_all, recall_all = pairwise_precision_recall(pred, true)
    print(json.dumps({
        "n_identities": len(set(pred.values())), "n_true_people": len(set(true.values())), "n_tracks": len(pred),
        "precision": round(precision, 4), "recall": round(recall, 4),
        "precision_across_sources": round(precision_all, 4), "recall_across_sources": round(recall_all, 4),
        "note": "identities are per source (YouTube id); cross-source recall is < 1 by design",
        "seconds": round(time.perf_counter() - started, 1),
    }))


if __name__ == "__main__":
    main()
