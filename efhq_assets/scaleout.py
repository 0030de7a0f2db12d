"""Scale-out variants of the project's Definitions: the same assets, run by an existing distributed executor.

Nothing here distributes work itself. Dagster's own executors do:

- `celery_defs()`: dagster-celery (a Redis broker); steps of GPU assets (those in the `gpu` pool) go to the
  Celery queue `gpu`, every other step to the default queue `dagster`. Start workers with
  `dagster-celery worker start -A dagster_celery.app -y deploy/celery.yaml -q dagster` on CPU machines and
  `... -q gpu` on GPU machines.
- `k8s_defs()`: dagster-k8s `k8s_job_executor`, one Kubernetes Job per step; GPU steps carry a
  `dagster-k8s/config` op tag asking for `nvidia.com/gpu`.

Both need a persistent instance shared by every process (Postgres: `deploy/dagster_postgres.yaml`) and a data
root every worker sees at the same path (`docs/scale_out.md`). The broker/backend URLs are read from the
environment (`EFHQ_CELERY_BROKER`, `EFHQ_CELERY_BACKEND`) so that `reconstructable(celery_per_video_job)`
rebuilds the same job in every worker.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping

import dagster as dg

GPU_POOL = "gpu"
GPU_QUEUE = "gpu"
DEFAULT_QUEUE = "dagster"  # dagster-celery's default queue
CELERY_QUEUE_TAG = "dagster-celery/queue"
K8S_CONFIG_TAG = "dagster-k8s/config"
BROKER_ENV = "EFHQ_CELERY_BROKER"
BACKEND_ENV = "EFHQ_CELERY_BACKEND"
DEFAULT_BROKER = "redis://127.0.0.1:6379/0"
DEFAULT_BACKEND = "redis://127.0.0.1:6379/1"


def gpu_op_tags(gpus: int = 1) -> dict[str, object]:
    """Op tags for a GPU step: the Celery queue it goes to and the Kubernetes GPU request of its pod.

    Each executor reads only its own tag, so one set serves both.
    """
    return {
        CELERY_QUEUE_TAG: GPU_QUEUE,
        K8S_CONFIG_TAG: {"container_config": {"resources": {"limits": {"nvidia.com/gpu": str(gpus)},
                                                        "requests": {"nvidia.com/gpu": str(gpus)}}}},
    }


def with_op_tags(asset: dg.AssetsDefinition, tags: Mapping[str, object]) -> dg.AssetsDefinition:
    """The same asset with extra tags on its op (what `@dg.asset(op_tags=...)` sets).

    Dagster 1.13 has no method that adds op tags to an existing asset (`with_attributes` and `map_asset_specs`
    change asset specs, whose tags are asset tags, not the step tags executors read), so this builds the op
    again with the public `dg.OpDefinition` constructor (same compute function, ins, outs, config, resources,
    retry policy, code version and pool) and the asset with the public `dg.AssetsDefinition` constructor from
    the asset's own attributes. `op_tags=gpu_op_tags()` on the asset decorator makes it unnecessary.
    """
    op = asset.op
    if all(op.tags.get(k) == (v if isinstance(v, str) else json.dumps(v)) for k, v in tags.items()):
        return asset  # already tagged (e.g. by `op_tags=` on the asset itself)
    versions = set(asset.code_versions_by_key.values())  # the op's (its outs keep their own in any case)
    new_op = dg.OpDefinition(
        compute_fn=op.compute_fn,
        name=op.name,
        ins=op.ins,
        outs=op.outs,
        description=op.description,
        config_schema=op.config_schema,
        required_resource_keys=op.required_resource_keys,
        tags={**op.tags, **tags},
        retry_policy=op.retry_policy,
        code_version=versions.pop() if len(versions) == 1 else None,
        pool=op.pool,
    )
    with warnings.catch_warnings():  # the asset's own beta parameters (backfill_policy) warned once already
        warnings.simplefilter("ignore", category=dg.BetaWarning)
        warnings.simplefilter("ignore", category=dg.PreviewWarning)
        return dg.AssetsDefinition(**{**asset.get_attributes_dict(), "node_def": new_op})


def gpu_tagged_assets(gpus: int = 1) -> list:
    """Every asset of the project; those in the `gpu` pool carry `gpu_op_tags()`."""
    from efhq_assets.definitions import defs

    out = []
    for asset in defs.assets or []:
        if isinstance(asset, dg.AssetsDefinition) and asset.op.pool == GPU_POOL:
            asset = with_op_tags(asset, gpu_op_tags(gpus))
        out.append(asset)
    return out


def _variant(executor: dg.ExecutorDefinition) -> dg.Definitions:
    from efhq_assets.definitions import defs

    return dg.Definitions(assets=gpu_tagged_assets(), jobs=list(defs.jobs or []),
                          sensors=list(defs.sensors or []), schedules=list(defs.schedules or []),
                          resources=dict(defs.resources or {}), executor=executor)


def celery_executor_config(broker: str | None = None, backend: str | None = None) -> dict:
    """The `celery_executor` config block (the same block as the workers' `-y` file, deploy/celery.yaml).

    URLs default to the environment, read when the job is built (a `{"env": ...}` source would be resolved at
    definition time too, and fail wherever it is unset).
    """
    return {"broker": broker or os.environ.get(BROKER_ENV, DEFAULT_BROKER),
            "backend": backend or os.environ.get(BACKEND_ENV, DEFAULT_BACKEND)}


def celery_defs(broker: str | None = None, backend: str | None = None) -> dg.Definitions:
    """The project's Definitions run by dagster-celery (GPU assets on the `gpu` queue)."""
    from dagster_celery import celery_executor

    return _variant(celery_executor.configured(celery_executor_config(broker, backend), name="efhq_celery"))


def celery_per_video_job() -> dg.JobDefinition:
    """`per_video_job` on the Celery executor; module-level so that `reconstructable()` can point at it."""
    return celery_defs().resolve_job_def("per_video_job")


def k8s_defs(executor_config: Mapping | None = None) -> dg.Definitions:
    """The project's Definitions run by dagster-k8s's `k8s_job_executor` (one pod per step)."""
    from dagster_k8s import k8s_job_executor

    executor = k8s_job_executor.configured(dict(executor_config), name="efhq_k8s") if executor_config \
        else k8s_job_executor
    return _variant(executor)
