"""Pure library: no dagster import anywhere below here.

Modules import only numpy (and torch where needed) at module level, so benchmarks and the GPU
check can use `efhq_assets.core` on a machine with only torch installed.
"""
