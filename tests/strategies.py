"""Shared hypothesis strategies: shapes that include 1, primes and non-multiples of 8."""
import numpy as np
from hypothesis import strategies as st

dims = st.integers(min_value=1, max_value=37)
dtypes = st.sampled_from([np.float32, np.float64])
seeds = st.integers(min_value=0, max_value=2**32 - 1)


def tol(dtype):
    return {"rtol": 2e-4, "atol": 2e-5} if dtype == np.float32 else {"rtol": 1e-10, "atol": 1e-12}


def random_array(rng, shape, dtype, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)
