"""efhq-assets: the EFHQ extreme-pose face dataset pipeline as a Dagster asset platform.

Importing this package imports nothing heavy: `efhq_assets.core` works with numpy/torch alone,
and the Dagster layer lives in `efhq_assets.defs` / `efhq_assets.definitions`.
"""

__version__ = "0.1.0"
