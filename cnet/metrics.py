"""Metrics in NumPy: information measures of probability vectors, classification scores
and distances between vectors. They run once per evaluation, not per training step.

Information measures use the natural log (nats): a fair coin has entropy log 2 ≈ 0.693,
a fair die log 6 ≈ 1.792, and 0 · log 0 counts as 0. They and the distances work along
the last axis: a 1-D input gives a float, a (n, k) input one value per row (inputs
broadcast against each other, as NumPy does).
"""
import math
import numbers

import numpy as np

from cnet._validation import FLOAT_DTYPES

__all__ = ["entropy", "cross_entropy", "kl_divergence", "accuracy", "confusion_matrix",
           "l1_distance", "l2_distance", "linf_distance", "minkowski_distance",
           "cosine_similarity", "hamming_distance"]


def _as_real(name, x):
    """x as a float64 array of real numbers with at least one dimension and one value."""
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name}: expected an array of real numbers ({exc})") from None
    if not (arr.dtype.kind in "iu" or arr.dtype in FLOAT_DTYPES):
        raise TypeError(f"{name}: expected float32, float64 or integer values, got dtype "
                        f"{arr.dtype}")
    if arr.ndim == 0 or arr.size == 0:
        raise ValueError(f"{name}: expected a non-empty array of at least one dimension, "
                         f"got shape {arr.shape}")
    return arr.astype(np.float64)


def _scalar_or_array(values):
    return float(values) if values.ndim == 0 else values


def _probabilities(name, p):
    """p as float64 probability vectors along the last axis: finite, non-negative, each
    summing to 1 within float32 round-off (as a float32 softmax sums)."""
    arr = _as_real(name, p)
    bad = ~np.isfinite(arr) | (arr < 0)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name}: expected non-negative finite probabilities, got "
                         f"{arr[index]} at index {index if arr.ndim > 1 else index[0]}")
    sums = arr.sum(axis=-1)
    tolerance = max(1e-6, 16 * float(np.finfo(np.float32).eps) * arr.shape[-1])
    off = np.abs(sums - 1) > tolerance
    if off.any():
        row = tuple(int(i) for i in np.argwhere(np.atleast_1d(off))[0])
        where = "" if arr.ndim == 1 else f" at row {row if len(row) > 1 else row[0]}"
        raise ValueError(f"{name}: expected probabilities summing to 1 along the last axis, "
                         f"got a sum of {np.atleast_1d(sums)[row]:.6g}{where}")
    return arr


def _pair(name_a, a, name_b, b, convert):
    a, b = convert(name_a, a), convert(name_b, b)
    try:
        np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(f"{name_b}: expected a shape that broadcasts with {name_a}'s "
                         f"{a.shape}, got {b.shape}") from None
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"{name_b}: expected {a.shape[-1]} values along the last axis "
                         f"({name_a}'s), got {b.shape[-1]}")
    return a, b


def _xlogy(x, y):
    """x log y, 0 where x is 0 (whatever y is), as scipy.special.xlogy."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x == 0, 0.0, x * np.log(np.where(x == 0, 1.0, y)))


# ---- information measures -------------------------------------------------------------

def entropy(p):
    """Shannon entropy H(p) = -Σ p log p in nats, along the last axis."""
    p = _probabilities("p", p)
    return _scalar_or_array(0.0 - _xlogy(p, p).sum(axis=-1))   # 0.0 - : no -0.0


def cross_entropy(p, q):
    """Cross-entropy H(p, q) = -Σ p log q in nats: the entropy of p plus KL(p || q);
    inf where q is 0 and p is not."""
    p, q = _pair("p", p, "q", q, _probabilities)
    return _scalar_or_array(0.0 - _xlogy(p, q).sum(axis=-1))


def kl_divergence(p, q):
    """Kullback-Leibler divergence KL(p || q) = Σ p log(p / q) in nats (0 where p is 0,
    inf where q is 0 and p is not). Not symmetric: it is KL of q from p."""
    p, q = _pair("p", p, "q", q, _probabilities)
    return _scalar_or_array((_xlogy(p, p) - _xlogy(p, q)).sum(axis=-1))


# ---- classification -------------------------------------------------------------------

def _labels(name, y):
    try:
        arr = np.asarray(y)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name}: expected an array of labels ({exc})") from None
    if arr.ndim == 0 or arr.size == 0:
        raise ValueError(f"{name}: expected a non-empty array of labels, got shape {arr.shape}")
    return arr


def _class_labels(name, y):
    """y as a non-empty array of class labels, all numbers (bool, int, or float with whole
    values such as 1.0) or all strings, as scikit-learn's classification metrics take."""
    arr = _labels(name, y)
    if arr.dtype == object:             # e.g. a list holding None, or strings beside numbers
        kinds = {"string" if isinstance(v, str) else "number" if isinstance(v, numbers.Real)
                 else type(v).__name__ for v in arr.flat}
        if kinds not in ({"string"}, {"number"}):
            raise ValueError(f"{name}: expected labels that are all numbers or all strings, "
                             f"got {' and '.join(sorted(kinds))} values")
        arr = arr.astype(str if kinds == {"string"} else np.float64)
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.trunc(arr))
        if bad.any():
            index = tuple(int(i) for i in np.argwhere(bad)[0])
            hint = " (convert with .astype(np.int64))" if np.isfinite(arr[index]) else ""
            raise ValueError(f"{name}: expected whole-number class labels, got "
                             f"{arr[index]} at index {index if arr.ndim > 1 else index[0]}{hint}")
    elif arr.dtype.kind not in "biuUS":
        raise TypeError(f"{name}: expected integer, bool, whole-number float or string labels, "
                        f"got dtype {arr.dtype}")
    return arr


def _is_text(labels):
    return labels.dtype.kind in "US"


def accuracy(y_true, y_pred):
    """The fraction of positions where y_pred equals y_true (labels of one shape: class
    labels (n,), or 0/1 multi-label arrays (n, k), scored element by element). Labels are
    numbers (int, bool, or whole-number floats such as 1.0) or strings, the same in both."""
    y_true, y_pred = _class_labels("y_true", y_true), _class_labels("y_pred", y_pred)
    if y_pred.shape != y_true.shape:
        raise ValueError(f"y_pred: expected y_true's shape {y_true.shape}, got {y_pred.shape}")
    if _is_text(y_pred) != _is_text(y_true):
        kind = "strings" if _is_text(y_true) else "numbers"
        raise ValueError(f"y_pred: expected labels of y_true's kind ({kind}), got dtype "
                         f"{y_pred.dtype}")
    return float(np.mean(y_true == y_pred))


def _class_indices(name, y):
    arr = _class_labels(name, y)
    if _is_text(arr):
        raise TypeError(f"{name}: expected integer class indices, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of class indices, got shape {arr.shape}")
    if (arr < 0).any():
        row = int(np.argmax(arr < 0))
        raise ValueError(f"{name}: expected non-negative class indices, got {arr[row]} "
                         f"at row {row}")
    if int(arr.max()) >= MAX_CLASSES:   # before int64 arithmetic (uint64 labels wrap)
        row = int(np.argmax(arr >= MAX_CLASSES))
        raise ValueError(f"{name}: expected class indices below {MAX_CLASSES} (a confusion "
                         f"matrix of more classes is too large), got {arr[row]} at row {row}")
    return arr.astype(np.int64)


MAX_CLASSES = 46_340    # a confusion matrix holds at most MAX_CLASSES**2 < 2**31 counts


def confusion_matrix(y_true, y_pred, num_classes=None):
    """counts[i, j]: the samples of true class i predicted as class j (rows true, columns
    predicted, as scikit-learn), int64 of shape (num_classes, num_classes). num_classes
    defaults to the largest label seen plus one. Labels are class indices: ints, bools
    (e.g. p > 0.5) or whole-number floats (e.g. 1.0)."""
    y_true, y_pred = _class_indices("y_true", y_true), _class_indices("y_pred", y_pred)
    if y_pred.shape != y_true.shape:
        raise ValueError(f"y_pred: expected {len(y_true)} labels (y_true's), got {len(y_pred)}")
    largest = int(max(y_true.max(), y_pred.max()))
    if num_classes is None:
        num_classes = largest + 1
    elif isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral):
        raise TypeError(f"num_classes: expected a positive int, got {num_classes!r}")
    elif num_classes < 1 or largest >= num_classes:
        raise ValueError(f"num_classes: expected a positive int above every label "
                         f"(largest {largest}), got {num_classes}")
    elif num_classes > MAX_CLASSES:
        raise ValueError(f"num_classes: expected at most {MAX_CLASSES} (a confusion matrix of "
                         f"more classes is too large), got {num_classes}")
    flat = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


# ---- distances and similarity -----------------------------------------------------------

# Below this a sum of squares may hold underflowed (subnormal or zero) squares that matter.
_SQUARES_UNDERFLOW = np.finfo(np.float64).tiny / np.finfo(np.float64).eps


def _scaled_minkowski(diff, p):
    """(Σ diff^p)^(1/p) along the last axis, scaled by the largest difference so diff^p
    neither overflows nor underflows (as scipy's norms; numpy.linalg.norm does not scale)."""
    top = diff.max(axis=-1, keepdims=True)
    safe = np.where(top == 0, 1.0, top)
    with np.errstate(invalid="ignore"):    # inf / inf: an infinite difference
        total = safe[..., 0] * ((diff / safe) ** p).sum(axis=-1) ** (1.0 / p)
    return np.where(np.isinf(top[..., 0]), np.inf, total)


def minkowski_distance(a, b, p):
    """(Σ |a - b|^p)^(1/p) along the last axis, for p >= 1 (a metric there; p = inf is the
    L∞ distance)."""
    if isinstance(p, bool) or not isinstance(p, numbers.Real):
        raise TypeError(f"p: expected a real number >= 1, got {p!r}")
    if not p >= 1:
        raise ValueError(f"p: expected a real number >= 1 (or inf), got {p}")
    p = float(p)    # a numpy float32 p would compute 1 / p in float32
    a, b = _pair("a", a, "b", b, _as_real)
    diff = np.abs(a - b)
    if p == 1:
        total = diff.sum(axis=-1)       # overflows only where the distance itself does
    elif p == 2:
        with np.errstate(over="ignore", under="ignore"):
            squares = (diff * diff).sum(axis=-1)
        total = np.sqrt(squares)
        risky = np.isinf(squares) | (squares < _SQUARES_UNDERFLOW)   # rare: rescaled
        if risky.any():
            total = np.where(risky, _scaled_minkowski(diff, p), total)
    elif math.isinf(p):
        total = diff.max(axis=-1)
    else:
        total = _scaled_minkowski(diff, p)
    return _scalar_or_array(total)


def l1_distance(a, b):
    """Σ |a - b| along the last axis (Manhattan distance)."""
    return minkowski_distance(a, b, 1)


def l2_distance(a, b):
    """sqrt(Σ (a - b)²) along the last axis (Euclidean distance)."""
    return minkowski_distance(a, b, 2)


def linf_distance(a, b):
    """max |a - b| along the last axis (Chebyshev distance)."""
    return minkowski_distance(a, b, math.inf)


def cosine_similarity(a, b, eps=1e-8):
    """a · b / (max(||a||, eps) max(||b||, eps)) along the last axis, in [-1, 1]; 0 for a
    zero vector (each norm clamped at eps, as torch.nn.functional.cosine_similarity)."""
    a, b = _pair("a", a, "b", b, _as_real)
    norm_a = np.maximum(np.linalg.norm(a, axis=-1), eps)
    norm_b = np.maximum(np.linalg.norm(b, axis=-1), eps)
    return _scalar_or_array((a * b).sum(axis=-1) / (norm_a * norm_b))


def hamming_distance(a, b):
    """The number of positions where a and b differ, along the last axis (an int, or int64
    per row). Not normalised: divide by the length for scipy's hamming fraction. Any
    dtype that compares with ==, e.g. bits, labels or characters."""
    a, b = _pair("a", a, "b", b, _labels)
    counts = np.count_nonzero(a != b, axis=-1)
    return int(counts) if np.ndim(counts) == 0 else counts.astype(np.int64)
