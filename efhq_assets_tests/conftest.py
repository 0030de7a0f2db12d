"""Shared fixtures: small real videos and annotation files written at test time (nothing committed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
EFHQ = [sys.executable, "-m", "efhq_assets.cli"]

#: The longest files first.  `make test` runs `-n 2 --dist loadfile`, which hands whole files to the two workers in
#: collection order, so a long file collected late ends the run alone: e2e/test_cli.py (the demo build and its
#: exports) is about a third of the suite's work, and it came 32nd of 45.
SLOWEST_FILES_FIRST = ("e2e/test_cli.py", "e2e/test_concurrency.py", "e2e/test_daemon.py", "e2e/test_settings_plan.py")


def pytest_collection_modifyitems(session, config, items):
    """Start the slowest files first (:data:`SLOWEST_FILES_FIRST`); the order within a file, and of the other files,
    is kept (a stable sort)."""
    def rank(item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return next((k for k, name in enumerate(SLOWEST_FILES_FIRST) if path.endswith(name)), len(SLOWEST_FILES_FIRST))

    items.sort(key=rank)


def moving_square_frames(n: int, size: tuple[int, int] = (96, 64), seed: int = 0) -> list[np.ndarray]:
    """Frames whose content encodes the frame number (a bright square moving right)."""
    rng = np.random.default_rng(seed)
    w, h = size
    base = rng.integers(30, 60, size=(h, w, 3), dtype=np.uint8)
    frames = []
    for i in range(n):
        f = base.copy()
        x = (i * 3) % (w - 12)
        f[h // 3: h // 3 + 12, x: x + 12] = (230, 230, 230)
        frames.append(f)
    return frames


@pytest.fixture
def make_video(tmp_path):
    from efhq_assets.core.video import write_test_video

    def _make(path: Path, n: int = 20, size=(96, 64), fps: float = 25.0, seed: int = 0) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_test_video(path, moving_square_frames(n, size, seed), fps=fps)
        return path

    return _make


def run_efhq(*args: str, data_root: Path | None = None, cwd: Path | None = None, check: bool = True,
             env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in {"EFHQ_DATA_ROOT", "DAGSTER_HOME"}}
    full_env.update(env or {})
    cmd = EFHQ + list(args) + (["--data-root", str(data_root)] if data_root else [])
    proc = subprocess.run(cmd, cwd=cwd or REPO, env=full_env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    """One `efhq demo` per test session (through the real CLI), shared read-only by e2e tests."""
    root = tmp_path_factory.mktemp("demo") / "root"
    run_efhq("demo", data_root=root, timeout=1800)  # the whole corpus: minutes, more when the machine is shared
    return root
