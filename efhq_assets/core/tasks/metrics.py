"""Verification metrics (docs/efhq.md, "Per-task outputs"), table ``verification_report``.

Scores are similarities (cosine for L2-normalised 512-d features): higher = more alike; a pair
is accepted as "same" when ``score > threshold`` (strict).

Folds: genuine and impostor scores are split into ``n_folds`` folds separately (stratified):
``rng = np.random.default_rng(seed)``; ``perm_g = rng.permutation(n_genuine)``, then
``perm_i = rng.permutation(n_impostor)``; the item at ``perm[k]`` goes to fold ``k % n_folds``.
The folds therefore do not depend on the order the pairs were written in (EFHQ's insightface
eval used contiguous ``KFold(shuffle=False)`` folds, which assumes LFW-style interleaved pair
lists).

TAR @ FAR (:func:`tar_at_far`): per held-out fold, the threshold is taken from the other folds'
impostor scores as an **exact order statistic**: with ``n`` training impostors sorted
descending and ``k = floor(far * n)``, threshold = the (k+1)-th largest, so at most ``k``
training impostors score above it (training FAR <= target, the largest acceptance that keeps it).
The held-out fold's genuine scores above it give the fold's TAR; mean and (population) std over
folds are reported.  EFHQ instead interpolated FAR over a fixed 0..1 threshold grid with step 0.001
(insightface ``calculate_val``): that grid cannot resolve FAR 1e-4 / 1e-5 when thousands of
impostor scores fall inside one 0.001 step, and it cannot place a threshold below 0 (cosine
similarity can be negative), so the exact quantile is used.

The "None" rule: a FAR below ``1 / (impostors per held-out fold)`` (the smallest fold) cannot be
observed on a fold, so its ``tar``, ``tar_std`` and ``threshold`` are ``None``, not a number.
With 20,000 pairs per protocol (10,000 impostors, 1,000 per fold) that is FAR 1e-4 and 1e-5.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

__all__ = [
    "DEFAULT_FARS",
    "VERIFICATION_REPORT_COLUMNS",
    "fold_ids",
    "tar_at_far",
    "cfp_accuracy",
    "drop",
    "verification_report_rows",
    "pair_scores",
]

DEFAULT_FARS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)
VERIFICATION_REPORT_COLUMNS = ("protocol", "far", "tar", "tar_std", "threshold", "far_measured", "n_genuine",
                               "n_impostor", "n_folds", "model", "drop_vs_f2f")


def fold_ids(n: int, n_folds: int, rng: np.random.Generator) -> np.ndarray:
    """Fold of each of ``n`` items: item ``perm[k]`` -> fold ``k % n_folds``."""
    folds = np.empty(n, dtype=np.int64)
    folds[rng.permutation(n)] = np.arange(n) % n_folds
    return folds


def _scores(x, name) -> np.ndarray:
    a = np.asarray(list(x) if not isinstance(x, np.ndarray) else x, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} holds NaN or infinite scores")
    return a


def tar_at_far(
    genuine_scores: Sequence[float] | np.ndarray,
    impostor_scores: Sequence[float] | np.ndarray,
    fars: Iterable[float] = DEFAULT_FARS,
    n_folds: int = 10,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """10-fold TAR at each FAR; one dict per FAR, in the given order.

    Keys: far, tar, tar_std, threshold (mean over folds), far_measured (mean held-out-fold FAR),
    n_genuine, n_impostor, n_folds.  ``tar``/``tar_std``/``threshold``/``far_measured`` are None
    when ``far < 1 / (impostors in the smallest fold)`` or when there are fewer than ``n_folds``
    genuine or impostor scores.
    """
    g = _scores(genuine_scores, "genuine_scores")
    im = _scores(impostor_scores, "impostor_scores")
    if n_folds < 2:
        raise ValueError("n_folds must be >= 2")
    rng = np.random.default_rng(seed)
    fg = fold_ids(len(g), n_folds, rng)
    fi = fold_ids(len(im), n_folds, rng)
    enough = len(g) >= n_folds and len(im) >= n_folds
    per_fold_imp = len(im) // n_folds  # the smallest held-out fold
    # per fold: training impostors sorted descending, held-out genuine / impostor
    folds = []
    if enough:
        for f in range(n_folds):
            train = np.sort(im[fi != f])[::-1]
            folds.append((train, g[fg == f], im[fi == f]))
    out = []
    for far in fars:
        far = float(far)
        row: dict[str, Any] = {
            "far": far, "tar": None, "tar_std": None, "threshold": None, "far_measured": None,
            "n_genuine": int(len(g)), "n_impostor": int(len(im)), "n_folds": int(n_folds),
        }
        if enough and far * per_fold_imp >= 1.0 - 1e-9:
            tars, thrs, fms = [], [], []
            for train, g_test, i_test in folds:
                k = int(math.floor(far * len(train) + 1e-9))
                thr = -math.inf if k >= len(train) else float(train[k])
                tars.append(float(np.mean(g_test > thr)))
                fms.append(float(np.mean(i_test > thr)))
                thrs.append(thr)
            row["tar"] = float(np.mean(tars))
            row["tar_std"] = float(np.std(tars))
            row["threshold"] = float(np.mean(thrs)) if all(math.isfinite(t) for t in thrs) else None
            row["far_measured"] = float(np.mean(fms))
        out.append(row)
    return out


def _best_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(threshold, accuracy) maximising accuracy of ``score > t`` over t in {-inf} + scores."""
    pos = np.sort(scores[labels])
    neg = np.sort(scores[~labels])
    cand = np.concatenate([[-math.inf], np.unique(scores)])
    pos_gt = len(pos) - np.searchsorted(pos, cand, side="right")
    neg_le = np.searchsorted(neg, cand, side="right")
    acc = (pos_gt + neg_le) / len(scores)
    best = int(np.argmax(acc))  # first maximum = lowest threshold among ties
    return float(cand[best]), float(acc[best])


def cfp_accuracy(
    scores: Sequence[float] | np.ndarray,
    labels: Sequence[bool] | np.ndarray,
    n_folds: int = 10,
    seed: int = 0,
) -> dict[str, Any]:
    """CFP/LFW-style verification accuracy: per fold the accuracy-maximising threshold on the
    other folds, accuracy on this fold; mean and (population) std over folds.

    ``labels``: issame (bool or 1/0).  Folds are stratified as in :func:`tar_at_far` (genuine
    pairs permuted first, then impostor pairs).  Returns accuracy, accuracy_std, threshold (mean),
    n, n_folds; accuracy None when there are fewer than ``n_folds`` of either class.
    """
    s = _scores(scores, "scores")
    y = np.asarray(list(labels) if not isinstance(labels, np.ndarray) else labels).reshape(-1).astype(bool)
    if len(s) != len(y):
        raise ValueError("scores and labels differ in length")
    rng = np.random.default_rng(seed)
    idx_pos, idx_neg = np.flatnonzero(y), np.flatnonzero(~y)
    folds = np.empty(len(s), dtype=np.int64)
    folds[idx_pos] = fold_ids(len(idx_pos), n_folds, rng)
    folds[idx_neg] = fold_ids(len(idx_neg), n_folds, rng)
    res: dict[str, Any] = {"accuracy": None, "accuracy_std": None, "threshold": None, "n": int(len(s)), "n_folds": int(n_folds)}
    if len(idx_pos) < n_folds or len(idx_neg) < n_folds:
        return res
    accs, thrs = [], []
    for f in range(n_folds):
        tr, te = folds != f, folds == f
        t, _ = _best_threshold(s[tr], y[tr])
        accs.append(float(np.mean((s[te] > t) == y[te])))
        thrs.append(t)
    res["accuracy"] = float(np.mean(accs))
    res["accuracy_std"] = float(np.std(accs))
    res["threshold"] = float(np.mean(thrs)) if all(math.isfinite(t) for t in thrs) else None
    return res


def drop(f2f: float | None, other: float | None) -> float | None:
    """Relative drop of ``other`` against ``f2f``: ``(f2f - other) / f2f`` (0.37 = 37 % lower).

    None when either is None or ``f2f`` is 0.
    """
    if f2f is None or other is None or f2f == 0:
        return None
    return (float(f2f) - float(other)) / float(f2f)


def verification_report_rows(
    pairs: Sequence[Mapping[str, Any]],
    scores: Sequence[float] | np.ndarray,
    model: str,
    fars: Iterable[float] = DEFAULT_FARS,
    n_folds: int = 10,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Rows of ``verification_report``: one per (protocol, FAR).

    ``pairs``: ``verification_pairs`` rows (protocol, issame); ``scores[i]``: the model's
    similarity for ``pairs[i]``.  Columns: protocol, far, tar, tar_std, threshold, far_measured,
    n_genuine, n_impostor, n_folds, model, drop_vs_f2f (relative TAR drop against f2f at the same
    FAR; None for f2f itself or when either TAR is None).
    """
    s = _scores(scores, "scores")
    if len(s) != len(pairs):
        raise ValueError("scores and pairs differ in length")
    fars = tuple(float(f) for f in fars)
    by_proto: dict[str, tuple[list[float], list[float]]] = {}
    for p, sc in zip(pairs, s.tolist()):
        gen, imp = by_proto.setdefault(str(p["protocol"]), ([], []))
        (gen if bool(int(p["issame"])) else imp).append(sc)
    out: list[dict[str, Any]] = []
    tars: dict[tuple[str, float], float | None] = {}
    for proto in sorted(by_proto, key=lambda x: (x != "f2f", x)):
        gen, imp = by_proto[proto]
        for r in tar_at_far(gen, imp, fars, n_folds=n_folds, seed=seed):
            tars[(proto, r["far"])] = r["tar"]
            r = {"protocol": proto, **r, "model": model}
            r["drop_vs_f2f"] = None if proto == "f2f" else drop(tars.get(("f2f", r["far"])), r["tar"])
            out.append(r)
    return out


def pair_scores(pairs: Sequence[Mapping[str, Any]], embed) -> tuple[str, list[float]]:
    """(model name, similarity per pair) for ``verification_pairs`` rows: every image (path1/path2) is embedded
    once, by ``embed(sorted paths) -> (model name, L2-normalised vectors in that order)``, and a pair's score
    is the dot product of its two vectors. No pairs: ("none", [])."""
    paths = sorted({p for r in pairs for p in (r["path1"], r["path2"])})
    model, vectors = embed(paths) if paths else ("none", np.zeros((0, 1)))
    index = {p: i for i, p in enumerate(paths)}
    return model, [float(vectors[index[r["path1"]]] @ vectors[index[r["path2"]]]) for r in pairs]
