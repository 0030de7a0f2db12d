"""Several videos per Dagster run: every per-video asset does its work for each partition key of its run.

A run costs a fixed amount whatever it does (creating it, a new SQLite event shard, every step's start,
output and success events): measured at about 0.4 s per run plus 0.1 s per step on the 2-core machine of
docs/scale.md, against about 13 ms per event that really belongs to a partition (its planned and its
materialization events). So `efhq build` gives each run a range of partitions (`runner.build`), and a UI
backfill does the same (`BACKFILL_POLICY`). A run of one partition (the sensor's, a click in the UI) works
as before.

Per video, `each_partition` keeps what one run per video gave:

- the video's own materialization, with its own metadata (row counts, preview strip, ...);
- a video that fails (a `dg.Failure`, any other exception, or a failed blocking check) fails alone: it gets
  one `errors` row and no materialization of the failing asset, while the others of the run land. The
  step then fails (so Dagster records no materialization for the failed video and starts no downstream
  step); `efhq build` runs the remaining assets again for the videos that landed.
"""

from __future__ import annotations

import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator

import dagster as dg

from efhq_assets.core.lineage import clear_error, record_error
from efhq_assets.core.plan import MAX_PARTITIONS_PER_RUN
from efhq_assets.core.storage import DataRoot, table_files

# The tag Dagster reads a materialization's data version from (not exported by `dagster`).
DATA_VERSION_TAG = "dagster/data_version"
BACKFILL_POLICY = dg.BackfillPolicy.multi_run(max_partitions_per_run=MAX_PARTITIONS_PER_RUN)
# A backfill of the per-video assets from the UI runs up to 50 videos per run too. Dagster 1.13 marks the
# parameter beta; the notice would be printed once per asset at every import.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)


def _set_partition_metadata(context: dg.AssetExecutionContext, key: str, metadata) -> None:
    """`context.add_asset_metadata(metadata, partition_key=key)` without its check that `key` is in the run's
    range: for a range of dynamic partitions that check lists every partition of the instance (0.14 s at
    50,000), once per call, i.e. once per video and asset. The keys come from `context.partition_keys`."""
    step = context.get_step_execution_context()
    accumulator = getattr(step, "_metadata_accumulator", None)
    if accumulator is None or not hasattr(accumulator, "with_additional_asset_metadata"):
        context.add_asset_metadata(dict(metadata), partition_key=key)  # another Dagster version: the public way
        return
    step._metadata_accumulator = accumulator.with_additional_asset_metadata(
        asset_key=context.asset_key, partition_key=key, metadata=dict(metadata))


def _combined_checks(results: dict[str, dg.MaterializeResult]):
    """One result per check over the videos of the run: passed when every video passed; counts summed."""
    by_name: dict[str, list[tuple[str, dg.AssetCheckResult]]] = {}
    for key, result in results.items():
        for check in result.check_results or []:
            by_name.setdefault(check.check_name, []).append((key, check))
    out = []
    for name, checks in by_name.items():
        metadata: dict = {"partitions": len(checks)}
        for _, check in checks:
            for k, v in check.metadata.items():
                value = getattr(v, "value", v)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    metadata[k] = metadata.get(k, 0) + value
        bad = [key for key, check in checks if not check.passed]
        if bad:
            metadata["failed_partitions"] = ", ".join(bad[:50])
        out.append(dg.AssetCheckResult(check_name=name, passed=not bad, metadata=metadata))
    return out


def each_partition(context: dg.AssetExecutionContext, root: DataRoot,
                   one: Callable[[str], dg.MaterializeResult]) -> Iterator:
    """The body of a per-video asset: `one(key)` per partition key of the run (what the asset did for one video).

    Use as `yield from each_partition(context, root, lambda key: ...)`.
    """
    asset = context.asset_key.to_user_string()
    keys = list(context.partition_keys)
    if len(keys) == 1:  # one video: exactly the single-partition behaviour (and its traceback in the UI)
        key = keys[0]
        try:
            result = one(key)
        except Exception as exc:
            _record_failure(root, key, asset, exc)
            raise
        if _failed_checks(result):
            _record_check_failure(root, key, asset, _failed_checks(result))
        else:
            clear_error(root, key, asset)
        yield result
        return

    results: dict[str, dg.MaterializeResult] = {}
    raised: dict[str, str] = {}
    progress = _Progress(asset, len(keys))
    for key in keys:
        try:
            result = one(key)
        except Exception as exc:
            raised[key] = _record_failure(root, key, asset, exc)
            context.log.error(f"{key}: {raised[key]}\n" + ("" if isinstance(exc, dg.Failure)
                                                           else traceback.format_exc()))
            continue
        finally:
            progress.step()
        results[key] = result
        bad = _failed_checks(result)
        if bad:
            _record_check_failure(root, key, asset, bad)
        else:
            clear_error(root, key, asset)
    checks = _combined_checks(results)
    if not raised:
        # Dagster records one materialization per partition key of the run, each with its own metadata (and
        # its own fingerprint there: a multi-partition step has a single data version).
        for key, result in results.items():
            _set_partition_metadata(context, key, _with_fingerprint(result))
        yield dg.MaterializeResult(check_results=checks)  # a failed blocking check fails the step after that
        return
    for key, result in results.items():  # the videos that landed, one by one, each with its data version
        tags = {DATA_VERSION_TAG: result.data_version.value} if result.data_version else None
        yield dg.AssetMaterialization(asset_key=context.asset_key, partition=key, metadata=_with_fingerprint(result),
                                      tags=tags)
    yield from checks
    raise dg.Failure(description=f"{len(raised)} of {len(keys)} videos failed in {asset}: "
                                 + "; ".join(f"{k}: {m}" for k, m in list(raised.items())[:10]),
                     allow_retries=False)


class _Progress:
    """A long multi-video step says how far it is: a stderr line at most every 10 s and one at the end (the
    per-video lines of `efhq build` only come once the whole run is done)."""

    EVERY_S = 10.0

    def __init__(self, asset: str, total: int):
        self.asset, self.total, self.done = asset, total, 0
        self.started = self.last = time.perf_counter()

    def step(self) -> None:
        self.done += 1
        now = time.perf_counter()
        if self.done == self.total or now - self.last >= self.EVERY_S:
            self.last = now
            print(f"    {self.asset}: {self.done}/{self.total} videos ({now - self.started:.1f} s)",
                  file=sys.stderr, flush=True)


def _with_fingerprint(result: dg.MaterializeResult) -> dict:
    """The result's metadata plus its data version (the stage fingerprint) as `efhq/fingerprint`."""
    metadata = dict(result.metadata or {})
    if result.data_version is not None:
        metadata["efhq/fingerprint"] = result.data_version.value
    return metadata


def _failed_checks(result: dg.MaterializeResult) -> list[str]:
    out = []
    for check in result.check_results or []:
        if not check.passed:
            details = ", ".join(f"{k}={getattr(v, 'value', v)}" for k, v in check.metadata.items())
            out.append(f"{check.check_name} ({details})")
    return out


def _has_error_row(root: DataRoot, key: str) -> bool:
    return any(p.stem.startswith(key + "@") for p in table_files(root, "errors"))


def _record_failure(root: DataRoot, key: str, asset: str, exc: Exception) -> str:
    """One clear `errors` row per failed video. A dg.Failure is an asset's own verdict: it wrote its row (or an
    upstream failure did), so a row is added only when the video has none. Anything else is recorded here."""
    if isinstance(exc, dg.Failure):
        message = exc.description or str(exc)
        if not _has_error_row(root, key):
            record_error(root, key, asset, message)
        return message
    message = f"unexpected error in {asset}: {type(exc).__name__}: {exc}".strip()
    record_error(root, key, asset, message)
    return message


def _record_check_failure(root: DataRoot, key: str, asset: str, failed: list[str]) -> None:
    record_error(root, key, asset, f"{asset}: blocking check failed: {'; '.join(failed)}")
