"""Data helpers: the bundled digits set, a train/test split and a mini-batch iterator.

- ``load_digits()`` returns the UCI handwritten digits bundled with cnet as ``(X, y)``.
- ``train_test_split(X, y, ...)`` splits rows like scikit-learn's function of the same name,
  optionally stratified by class.
- ``iterate_minibatches(X, y, batch_size)`` yields shuffled ``(X_batch, y_batch)`` pairs for a
  hand-written training loop (``Trainer`` gathers its own batches).

Randomness comes from ``seed``: an int, a ``numpy.random.Generator`` or None.
"""
import functools
import gzip
import math
import numbers
from importlib import resources

import numpy as np

__all__ = ["load_digits", "train_test_split", "iterate_minibatches"]


@functools.lru_cache(maxsize=None)
def _digits():
    source = resources.files("cnet").joinpath("datasets").joinpath("digits.csv.gz")
    with source.open("rb") as raw, gzip.open(raw, "rt") as text:
        table = np.loadtxt(text, delimiter=",", dtype=np.int64)
    X, y = table[:, :64].astype(np.float32), table[:, 64].copy()
    X.flags.writeable = y.flags.writeable = False
    return X, y


def load_digits():
    """The UCI optical handwritten digits (1,797 8x8 images; Alpaydin & Kaynak, 1998, CC BY 4.0).

    Returns ``(X, y)``: ``X`` float32 of shape (1797, 64) with pixel counts 0..16, ``y`` int64
    of shape (1797,) with labels 0..9. The arrays are fresh copies the caller may modify.
    """
    X, y = _digits()
    return X.copy(), y.copy()


def _check_lengths(X, y):
    X, y = np.asarray(X), np.asarray(y)
    if X.ndim == 0 or y.ndim == 0:
        raise ValueError("X and y: expected arrays with one row per sample, got a scalar")
    if len(X) != len(y):
        raise ValueError(f"X and y: expected the same number of rows, got X with {len(X)} "
                         f"and y with {len(y)}")
    return X, y


def _n_test(test_size, n):
    if isinstance(test_size, bool) or not isinstance(test_size, numbers.Real):
        raise TypeError(f"test_size: expected a float in (0, 1) or an int, got {test_size!r}")
    if isinstance(test_size, numbers.Integral):
        n_test = int(test_size)
    elif 0.0 < test_size < 1.0:
        n_test = math.ceil(float(test_size) * n)
    else:
        raise ValueError(f"test_size: expected a float in (0, 1) or an int, got {test_size!r}")
    if not 1 <= n_test <= n - 1:
        raise ValueError(f"test_size: {test_size!r} gives {n_test} test and {n - n_test} train "
                         f"rows out of {n}; both sets must be non-empty")
    return n_test


def _stratified_test_indices(labels, n_test, rng):
    """Test indices drawn per class: each class gets floor or ceil of its proportional share."""
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if counts.min() < 2:
        raise ValueError(f"stratify: the least populated class ({classes[counts.argmin()]!r}) "
                         "has only 1 member, which is too few; every class needs at least 2")
    share = n_test * counts / counts.sum()
    take = np.floor(share).astype(np.int64)
    # Largest remainders get the leftover rows; random tie-breaking keeps classes on equal footing.
    order = np.lexsort((rng.random(len(classes)), -(share - take)))
    take[order[: n_test - take.sum()]] += 1
    return np.concatenate([rng.permutation(np.flatnonzero(inverse == c))[:k]
                           for c, k in enumerate(take)])


def train_test_split(X, y, test_size=0.25, seed=None, stratify=None, shuffle=True):
    """Split rows into ``X_train, X_test, y_train, y_test`` (scikit-learn's order).

    ``test_size`` is a fraction in (0, 1) (the test count is rounded up) or a row count.
    ``stratify`` (usually ``y``) keeps each class's proportion in both parts; it needs
    ``shuffle=True``. Without shuffling the last ``test_size`` rows form the test set.
    """
    X, y = _check_lengths(X, y)
    n = len(X)
    n_test = _n_test(test_size, n)
    if not shuffle:
        if stratify is not None:
            raise ValueError("stratify: stratified splitting requires shuffle=True")
        return X[: n - n_test], X[n - n_test:], y[: n - n_test], y[n - n_test:]
    rng = np.random.default_rng(seed)
    if stratify is None:
        perm = rng.permutation(n)
        test, train = perm[:n_test], perm[n_test:]
    else:
        labels = np.asarray(stratify)
        if labels.ndim != 1 or len(labels) != n:
            raise ValueError(f"stratify: expected {n} labels (one per row of X), "
                             f"got shape {labels.shape}")
        test = rng.permutation(_stratified_test_indices(labels, n_test, rng))
        mask = np.ones(n, dtype=bool)
        mask[test] = False
        train = rng.permutation(np.flatnonzero(mask))
    return X[train], X[test], y[train], y[test]


def iterate_minibatches(X, y, batch_size, shuffle=True, seed=None):
    """Yield ``(X_batch, y_batch)`` covering every row once, in a seeded random order.

    ``batch_size=None`` yields the whole set as one batch; the last batch may be smaller.
    Shuffled batches are copies; with ``shuffle=False`` they are views in row order.
    Arguments are checked when called, before the first batch is requested.
    """
    X, y = _check_lengths(X, y)
    n = len(X)
    if batch_size is None:
        batch_size = max(n, 1)
    elif isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
        raise TypeError(f"batch_size: expected a positive int or None, got {batch_size!r}")
    elif batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int or None, got {batch_size}")
    order = np.random.default_rng(seed).permutation(n) if shuffle else None

    def batches():
        for start in range(0, n, batch_size):
            if order is None:
                yield X[start:start + batch_size], y[start:start + batch_size]
            else:
                idx = order[start:start + batch_size]
                yield X[idx], y[idx]

    return batches()
