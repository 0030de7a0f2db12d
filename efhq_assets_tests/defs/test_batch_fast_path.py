"""defs/batch.py's per-partition metadata goes through Dagster's private step accumulator (measured: the public
`add_asset_metadata` re-lists every dynamic partition per call). If an upgrade of Dagster renames or reshapes
that accumulator, batch.py falls back to the public call, correct but slow: these tests notice."""

import builtins

import dagster as dg

from efhq_assets.core.storage import DataRoot
from efhq_assets.defs import batch

PARTS = dg.DynamicPartitionsDefinition(name="fast_path_videos")
KEYS = ["vid_a", "vid_b", "vid_c"]


def _materialize_three_videos(tmp_path, monkeypatch):
    """One run over three partitions of a toy per-video asset built on `batch.each_partition`; returns whether
    the step offered the private accumulator, the partitions passed to the public `add_asset_metadata`, and
    each partition's recorded metadata."""
    public_calls = []
    original = dg.AssetExecutionContext.add_asset_metadata

    def counting(self, *args, **kwargs):
        public_calls.append(kwargs.get("partition_key"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(dg.AssetExecutionContext, "add_asset_metadata", counting)
    root = DataRoot.at(tmp_path / "root").ensure()
    seen = {}

    @dg.asset(partitions_def=PARTS)
    def toy(context: dg.AssetExecutionContext):
        accumulator = getattr(context.get_step_execution_context(), "_metadata_accumulator", None)
        seen["fast_path_available"] = hasattr(accumulator, "with_additional_asset_metadata")
        yield from batch.each_partition(context, root, lambda key: dg.MaterializeResult(
            metadata={"rows": len(key), "video": key}, data_version=dg.DataVersion(f"fp-{key}")))

    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(PARTS.name, KEYS)
    result = dg.materialize([toy], instance=instance, tags={
        "dagster/asset_partition_range_start": KEYS[0], "dagster/asset_partition_range_end": KEYS[-1]})
    assert result.success
    records = instance.fetch_materializations(dg.AssetKey("toy"), limit=10).records
    metadata = {r.partition_key: r.asset_materialization.metadata for r in records if r.run_id == result.run_id}
    assert sorted(metadata) == KEYS
    for key in KEYS:  # each video keeps its own metadata, fingerprint included
        assert metadata[key]["video"].value == key
        assert metadata[key]["rows"].value == len(key)
        assert metadata[key]["efhq/fingerprint"].value == f"fp-{key}"
    return seen["fast_path_available"], public_calls


def test_multi_partition_metadata_takes_the_fast_path_with_the_installed_dagster(tmp_path, monkeypatch):
    available, public_calls = _materialize_three_videos(tmp_path, monkeypatch)
    assert available, f"dagster {dg.__version__}: the step has no usable _metadata_accumulator"
    assert public_calls == [], "batch._set_partition_metadata fell back to context.add_asset_metadata"


def test_a_dagster_without_the_accumulator_gets_the_public_call_which_the_check_above_would_see(tmp_path,
                                                                                                monkeypatch):
    def no_accumulator(obj, name, *default):
        return None if name == "_metadata_accumulator" else builtins.getattr(obj, name, *default)

    monkeypatch.setattr(batch, "getattr", no_accumulator, raising=False)  # batch's own lookups only
    _, public_calls = _materialize_three_videos(tmp_path, monkeypatch)
    assert public_calls == KEYS  # same metadata per video (checked in the helper), by the slow public path
