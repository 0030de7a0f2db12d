"""Typed resources: where the data root is."""


import dagster as dg

from efhq_assets.core.storage import DataRoot


class EfhqStorage(dg.ConfigurableResource):
    """The data root every asset reads and writes (default: EFHQ_DATA_ROOT, else ./efhq_data)."""

    data_root: str | None = None

    def root(self) -> DataRoot:
        return DataRoot.at(self.data_root).ensure()
