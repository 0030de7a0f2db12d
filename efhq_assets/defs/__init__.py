"""The Dagster layer: thin assets, one module per stage, in flow order."""
