"""verification_report's embeddings: cached per data root, identical with and without the cache."""

import numpy as np
import polars as pl
import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("dlib")


def _aligned_images(folder, n, start=0):
    from efhq_assets.core.models.sample_images import astronaut_bgr

    img = astronaut_bgr()
    paths = []
    for k in range(start, start + n):
        crop = img[40 + 3 * k: 240 + 3 * k, 150 + 2 * k: 330 + 2 * k]
        path = folder / f"face_{k}.png"
        cv2.imwrite(str(path), cv2.resize(crop, (112, 112), interpolation=cv2.INTER_AREA))
        paths.append(path)
    return paths


@pytest.fixture
def counted_embed(monkeypatch):
    from efhq_assets.core.tasks.exports import verification_embedder

    model = verification_embedder()
    calls = []
    real = model.embed

    def embed(image, boxes, lmk5=None):
        calls.append(len(boxes))
        return real(image, boxes, lmk5)

    monkeypatch.setattr(model, "embed", embed)
    return calls


def test_cached_embeddings_are_identical_and_only_new_faces_are_embedded(tmp_path, counted_embed):
    from efhq_assets.core.tasks.exports import embed_aligned

    paths = _aligned_images(tmp_path, 5)
    cache = tmp_path / "root" / "cache" / "verification_embeddings.parquet"

    name, plain = embed_aligned(paths)  # no cache: every image embedded
    assert len(counted_embed) == 5 and plain.shape[0] == 5
    counted_embed.clear()

    _, first = embed_aligned(paths, cache)  # empty cache: every image embedded, then written
    assert len(counted_embed) == 5 and cache.exists()
    counted_embed.clear()

    _, again = embed_aligned(paths, cache)  # nothing new: nothing embedded
    assert counted_embed == []
    assert np.array_equal(plain, first) and np.array_equal(plain, again)

    more = paths + _aligned_images(tmp_path, 2, start=5)
    _, grown = embed_aligned(more, cache)  # two new faces: two embeddings
    assert len(counted_embed) == 2
    counted_embed.clear()
    _, fresh = embed_aligned(more)
    assert np.array_equal(grown, fresh)

    # The file keeps the images in use: a dropped image leaves it on the next save.
    embed_aligned(more[1:], cache)
    assert pl.read_parquet(cache).height == 6
    # A rewritten image (same path, new bytes) is a new key: embedded again, never served stale.
    counted_embed.clear()
    cv2.imwrite(str(more[1]), np.zeros((112, 112, 3), np.uint8))
    _, changed = embed_aligned(more[1:], cache)
    assert len(counted_embed) == 1
    assert np.array_equal(changed, embed_aligned(more[1:])[1])


def test_cache_is_per_model_weights_and_survives_a_corrupt_file(tmp_path, counted_embed):
    from efhq_assets.core.embedding_cache import EmbeddingCache
    from efhq_assets.core.tasks.exports import embed_aligned

    paths = _aligned_images(tmp_path, 2)
    cache = tmp_path / "cache.parquet"
    embed_aligned(paths, cache)
    rows = pl.read_parquet(cache)
    other = EmbeddingCache(cache, rows["params"][0], rows["model"][0], "other-weights")
    assert other.get(rows["key"][0]) is None  # another weight file never sees these vectors
    cache.write_bytes(b"not parquet")
    counted_embed.clear()
    _, vectors = embed_aligned(paths, cache)
    assert len(counted_embed) == 2 and pl.read_parquet(cache).height == 2
    assert np.array_equal(vectors, embed_aligned(paths)[1])
