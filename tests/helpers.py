"""Shared test helpers: hypothesis strategies, tolerances, finite differences."""
import numpy as np
from hypothesis import strategies as st

DTYPES = [np.float32, np.float64]

# Sizes include 1, primes and non-multiples of 8, where vector loops have tails.
dims = st.integers(min_value=1, max_value=37)
dtypes = st.sampled_from(DTYPES)
seeds = st.integers(min_value=0, max_value=2**32 - 1)


def tol(dtype):
    """Tolerance for comparing a kernel with its NumPy twin in this dtype."""
    if dtype == np.float32:
        return {"rtol": 2e-4, "atol": 2e-5}
    return {"rtol": 1e-10, "atol": 1e-12}


def random_array(rng, shape, dtype, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def numerical_gradient(f, x, eps=1e-6):
    """Central finite differences of the scalar function f at x (float64, perturbed in place)."""
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        plus = f()
        flat[i] = old - eps
        minus = f()
        flat[i] = old
        gflat[i] = (plus - minus) / (2 * eps)
    return grad
