"""Screenshot of the Dagster UI's asset graph for docs/ui.md, with Debian's headless Chromium.

Run: .venv/bin/python benchmarks/ui_screenshot.py DATA_ROOT [--out-dir docs/img]

DATA_ROOT is built with `efhq demo` first if it has no manifest yet. The script starts `efhq ui`
(dagster dev on 127.0.0.1, a free port, DAGSTER_HOME=DATA_ROOT/dagster_home) in its own process group,
waits for the code location, marks the "Join the Dagster community" dialog as seen (a file in that
instance's dagster_home, so it does not cover the graph), takes two screenshots (SHOTS: the global
asset lineage, one box per asset group; the nearest neighbours of `decoded_frames`, whose nodes show
partitions, checks and the latest materialization), downscales each one over --max-kb, and stops the
UI (SIGTERM to the group, SIGKILL after 30 s).
The page shows only the UI chrome, asset and group names and materialization status: no frame
images. Needs /usr/bin/chromium (`apt-get install -y chromium`, or pass --install-chromium).
Prints one JSON object on the last stdout line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
EFHQ = [sys.executable, "-m", "efhq_assets.cli"]
# (UI path, file name). The global lineage collapses groups past a few assets; the upstream lineage of
# `manifest` shows every asset but too small to read at 1600x1000.
SHOTS = [("asset-groups", "asset_graph.png"),
         ("assets/decoded_frames?view=lineage&lineageScope=neighbors&lineageDepth=1", "asset_graph_decoded_frames.png")]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def find_chromium(install: bool) -> str:
    for name in ("/usr/bin/chromium", "chromium", "chromium-browser"):
        if found := shutil.which(name):
            return found
    if install:
        log("installing Debian's chromium (apt-get install -y chromium)")
        subprocess.run(["apt-get", "install", "-y", "chromium"], check=True)
        return find_chromium(install=False)
    sys.exit("ui_screenshot: chromium not found: `apt-get install -y chromium` (or pass --install-chromium)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(port: int, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)["data"]


def start_ui(root: Path, port: int, log_path: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in {"EFHQ_DATA_ROOT", "DAGSTER_HOME"}}
    env.update(DAGSTER_HOME=str(root / "dagster_home"), EFHQ_DATA_ROOT=str(root),
               PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
    cmd = EFHQ + ["ui", "--host", "127.0.0.1", "--port", str(port), "--data-root", str(root)]
    if shutil.which("env"):
        cmd = ["env", "--default-signal=INT,TERM"] + cmd
    with open(log_path, "wb") as out:
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def stop_ui(proc: subprocess.Popen, grace_s: float = 30) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        proc.poll()
        time.sleep(0.2)
    else:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def wait_ready(proc: subprocess.Popen, port: int, log_path: Path, timeout_s: float) -> None:
    query = ("{ workspaceOrError { ... on Workspace { locationEntries { locationOrLoadError { __typename "
             "... on PythonError { message } } } } } }")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"ui_screenshot: efhq ui exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            entries = graphql(port, query)["workspaceOrError"]["locationEntries"]
            kinds = [(e["locationOrLoadError"] or {}).get("__typename") for e in entries]
            if "PythonError" in kinds:
                sys.exit(f"ui_screenshot: code location failed to load: {entries}")
            if kinds and all(k == "RepositoryLocation" for k in kinds):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError, KeyError, TypeError):
            pass
        time.sleep(1)
    sys.exit(f"ui_screenshot: UI not ready after {timeout_s} s:\n{log_path.read_text()[-3000:]}")


def shrink_png(path: Path, max_kb: int) -> None:
    """Downscale (INTER_AREA) until the PNG is under max_kb."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    scale = 1.0
    data = path.read_bytes()
    while len(data) > max_kb * 1024 and scale > 0.3:
        scale *= 0.85
        small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        data = cv2.imencode(".png", small, [cv2.IMWRITE_PNG_COMPRESSION, 9])[1].tobytes()
    path.write_bytes(data)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_root", type=Path)
    parser.add_argument("--out-dir", type=Path, default=REPO / "docs" / "img")
    parser.add_argument("--window", default="1600,1000")
    parser.add_argument("--max-kb", type=int, default=380)
    parser.add_argument("--ready-timeout", type=float, default=180)
    parser.add_argument("--install-chromium", action="store_true")
    args = parser.parse_args()

    chromium = find_chromium(args.install_chromium)
    root = args.data_root.resolve()
    if not (root / "manifest.duckdb").exists():
        log(f"ui_screenshot: building a demo data root in {root} (efhq demo)")
        subprocess.run(EFHQ + ["demo", "--data-root", str(root)], cwd=REPO, check=True, stdout=subprocess.DEVNULL)

    started = time.perf_counter()
    port = free_port()
    results = []
    args.out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="efhq_ui_shot_") as tmp:
        log_path = Path(tmp) / "dagster_dev.log"
        proc = start_ui(root, port, log_path)
        try:
            wait_ready(proc, port, log_path, args.ready_timeout)
            ready_s = time.perf_counter() - started
            graphql(port, "mutation { setNuxSeen }")  # the community dialog would cover the graph
            for n, (page, name) in enumerate(SHOTS):
                shot = Path(tmp) / f"shot{n}.png"
                cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={Path(tmp) / f'chromium{n}'}",
                       f"--window-size={args.window}", "--virtual-time-budget=15000", f"--screenshot={shot}",
                       f"http://127.0.0.1:{port}/{page}"]
                subprocess.run(cmd, check=True, timeout=180, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                if not shot.exists():
                    sys.exit(f"ui_screenshot: chromium wrote no screenshot of {page}")
                raw_kb = shot.stat().st_size // 1024
                shrink_png(shot, args.max_kb)
                shutil.copyfile(shot, args.out_dir / name)
                results.append({"page": page, "out": str(args.out_dir / name), "raw_kb": raw_kb,
                                "kb": (args.out_dir / name).stat().st_size // 1024})
                log(f"ui_screenshot: {page} -> {args.out_dir / name}")
        finally:
            stop_ui(proc)
    print(json.dumps({"shots": results, "ui_ready_s": round(ready_s, 1),
                      "seconds": round(time.perf_counter() - started, 1)}))
    return 0

if __name__ == "__main__":
    sys.exit(main())
