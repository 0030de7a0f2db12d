"""runner.prepare_instance mutes exactly the Dagster notices a build was measured to emit, not every Dagster warning."""

import warnings

import dagster as dg

from efhq_assets import runner
from efhq_assets.core.storage import DataRoot

RUN_ID_NOTICE = ("AssetExecutionContext.run_id is deprecated and will be removed in a future release. You have "
                 "called the deprecated method run_id on AssetExecutionContext. Use context.run.run_id instead.")
JOB_NOTICE = ("Parameter `partitions_def` of function `define_asset_job` is deprecated and will be removed in 2.0.0. "
              "Partitioning is inferred from the selected assets, so setting this is redundant.")


def _warn_from_dagster(message: str, category: type[Warning]) -> None:
    warnings.warn_explicit(message, category, "dagster/_core/definitions/x.py", 1, module="dagster._core.definitions")


def test_prepare_instance_mutes_only_the_measured_notices(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", "")  # prepare_instance points these at the data root
    monkeypatch.setenv("EFHQ_DATA_ROOT", "")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runner.prepare_instance(DataRoot(tmp_path / "root"))
        blanket = [f for f in warnings.filters if f[0] == "ignore" and f[1] is None and f[3] is not None
                   and f[3].pattern.startswith("dagster")]
        assert blanket == []
        warnings.warn(RUN_ID_NOTICE, DeprecationWarning)  # as defs/ code triggers them (attributed to the caller)
        warnings.warn(JOB_NOTICE, DeprecationWarning)
        _warn_from_dagster("Parameter `foo` of function `bar` is deprecated", DeprecationWarning)
        _warn_from_dagster("Parameter `pool` is currently in beta", dg.BetaWarning)
        warnings.warn("a warning of our own", UserWarning)
    assert [str(w.message) for w in caught] == ["Parameter `foo` of function `bar` is deprecated",
                                                "Parameter `pool` is currently in beta", "a warning of our own"]
