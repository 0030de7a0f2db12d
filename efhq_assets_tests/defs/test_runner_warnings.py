"""No Dagster warning is muted: the deprecated calls the demo used to make are gone from the code."""

import re
import warnings
from pathlib import Path

from efhq_assets import runner
from efhq_assets.core.storage import DataRoot

PACKAGE = Path(runner.__file__).resolve().parent


def test_prepare_instance_adds_no_warning_filter(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", "")  # prepare_instance points these at the data root
    monkeypatch.setenv("EFHQ_DATA_ROOT", "")
    before = list(warnings.filters)
    runner.prepare_instance(DataRoot(tmp_path / "root"))
    assert list(warnings.filters) == before


def test_the_deprecated_dagster_calls_are_gone():
    """`context.run_id` (use context.run.run_id) and `define_asset_job(partitions_def=)` (inferred from the
    assets) were the two deprecation notices `efhq demo` printed with Dagster 1.13.27."""
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"context\.run_id\b", text), path
        assert not re.search(r"define_asset_job\([^)]*partitions_def=", text, re.S), path
