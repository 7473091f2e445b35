"""Argument checks shared by the Python layer: the compiled kernels trust what passes here."""
import math
import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def resolve_dtype(dtype):
    """'float32' / 'float64', the numpy types or torch.float32 / torch.float64 as a numpy
    dtype; anything else (None included: numpy would read it as float64) is a TypeError."""
    name = dtype
    if type(dtype).__module__ == "torch":       # torch.float32 -> "float32", torch not imported
        name = str(dtype).removeprefix("torch.")
    try:
        resolved = None if name is None else np.dtype(name)
    except TypeError:
        resolved = None
    if resolved is None or resolved not in FLOAT_DTYPES:
        raise TypeError(f"dtype: expected 'float32' or 'float64', got {dtype!r}")
    return resolved


def check_number(name, value, expected, ok=lambda v: True):
    """value as a float: a real number (not a bool or a string), finite, and ok(value);
    else a TypeError or ValueError naming `name` and `expected`."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected {expected}, got {value!r}")
    try:
        number = float(value)
    except OverflowError:           # an int beyond float64
        number = float("inf")
    if not (math.isfinite(number) and ok(number)):
        raise ValueError(f"{name}: expected {expected}, got {value!r}")
    return number


def check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected a positive int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value}")
    return int(value)


def c_array(x, dtype=None):
    """x as a C-contiguous, aligned ndarray (copied only when needed): what a kernel may
    read. np.ascontiguousarray alone passes unaligned buffers through (e.g. np.frombuffer
    at an odd offset), and a misaligned load is undefined behaviour in C."""
    arr = np.ascontiguousarray(x, dtype=dtype)
    return arr if arr.flags.aligned else arr.copy()


def as_generator(name, seed):
    """seed (None, a non-negative int, a SeedSequence or a numpy.random.Generator, which is
    used as it is, so its state carries on) as a Generator; anything else names `name`."""
    if isinstance(seed, (bool, np.bool_)):      # default_rng would take True for 1
        raise TypeError(f"{name}: expected None, a non-negative int or a "
                        f"numpy.random.Generator, got {seed!r}")
    try:
        return np.random.default_rng(seed)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{name}: expected None, a non-negative int or a "
                        f"numpy.random.Generator, got {seed!r} ({exc})") from None


def as_numeric_array(name, x):
    """x as an ndarray of real numbers (ints or float32/float64); other dtypes are a TypeError."""
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name}: expected an array of real numbers ({exc})") from None
    kind = arr.dtype.kind
    if not (kind in "iu" or arr.dtype in FLOAT_DTYPES):
        raise TypeError(f"{name}: expected float32, float64 or integer values, "
                        f"got dtype {arr.dtype}")
    return arr


def first_non_finite(arr):
    """(row, value) of the first NaN/inf in a 2-D array, or None when all values are finite."""
    bad = ~np.isfinite(arr)
    if not bad.any():
        return None
    row, col = np.argwhere(bad)[0]
    return int(row), arr[row, col]


def as_matrix(name, x, dtype, n_features=None, check_finite=True):
    """x as a C-contiguous (rows, features) array of `dtype`, validated for the kernels."""
    arr = as_numeric_array(name, x)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array (samples, features), "
                         f"got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name}: expected at least one row, got shape {arr.shape}")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(f"{name}: expected {n_features} features, got {arr.shape[1]}")
    arr = c_array(arr, dtype)
    if check_finite:
        found = first_non_finite(arr)
        if found is not None:
            raise ValueError(f"{name}: expected finite values, got {found[1]} at row {found[0]}")
    return arr
