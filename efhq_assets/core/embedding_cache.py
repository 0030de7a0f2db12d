"""Face embeddings cached per data root, so that a rebuild embeds only the faces it has not seen.

One Parquet file (`<data_root>/cache/embeddings.parquet`), replaced atomically (storage.atomic_write_parquet).
A row is keyed by (`key`, `params`, `model`, `weights_sha256`):

- `key`: what identifies the input image, e.g. the sha256 of an aligned image's bytes, so that any change
  to the frame, the landmarks, the alignment or the degradation gives a new key;
- `params`: how the image is cropped and fed to the model (a string the caller builds from its constants);
- `model`, `weights_sha256`: which network, down to its weight files.

The vector is stored as the model returned it (float32), so a hit gives exactly what a fresh call would.
`save()` keeps the rows looked up or added in this use (for the current model) plus the rows of other
models, so the file follows the current set of images instead of growing without bound.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .storage import DataRoot, atomic_write_parquet

COLUMNS = ("key", "params", "model", "weights_sha256", "embedding")


def cache_path(root: DataRoot, name: str = "embeddings") -> Path:
    return root.path / "cache" / f"{name}.parquet"


class EmbeddingCache:
    """Vectors by key for one (params, model, weights) combination; `save()` writes the file back."""

    def __init__(self, path: Path, params: str, model: str, weights_sha256: str):
        self.path = Path(path)
        self.params, self.model, self.weights_sha256 = params, model, weights_sha256
        self._vectors: dict[str, np.ndarray] = {}
        self._others = None  # rows of other params/models, kept as they are
        self._used: set[str] = set()
        self.hits = self.misses = 0
        self._load()

    def _load(self) -> None:
        import polars as pl

        if not self.path.exists():
            return
        try:
            df = pl.read_parquet(self.path)
        except Exception:  # an unreadable cache is only a slower build
            return
        if not set(COLUMNS) <= set(df.columns):
            return
        mine = ((pl.col("params") == self.params) & (pl.col("model") == self.model)
                & (pl.col("weights_sha256") == self.weights_sha256))
        self._others = df.filter(~mine).select(COLUMNS)
        for key, emb in df.filter(mine).select("key", "embedding").iter_rows():
            self._vectors[key] = np.asarray(emb, np.float32)

    def get(self, key: str) -> np.ndarray | None:
        vector = self._vectors.get(key)
        if vector is None:
            self.misses += 1
        else:
            self.hits += 1
            self._used.add(key)
        return vector

    def put(self, key: str, vector: np.ndarray) -> None:
        self._vectors[key] = np.asarray(vector, np.float32).reshape(-1)
        self._used.add(key)

    def save(self) -> None:
        """Write the rows used or added since loading (and every other model's rows), atomically."""
        import polars as pl

        keys = sorted(self._used)
        mine = pl.DataFrame({
            "key": keys, "params": [self.params] * len(keys), "model": [self.model] * len(keys),
            "weights_sha256": [self.weights_sha256] * len(keys),
            "embedding": [self._vectors[k].tolist() for k in keys],
        }, schema={"key": pl.Utf8, "params": pl.Utf8, "model": pl.Utf8, "weights_sha256": pl.Utf8,
                   "embedding": pl.List(pl.Float32)})
        df = pl.concat([self._others, mine]) if self._others is not None and self._others.height else mine
        atomic_write_parquet(df, self.path)
