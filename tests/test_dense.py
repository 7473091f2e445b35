import numpy as np
from hypothesis import given
from numpy.testing import assert_allclose

from cnet import _blas, _dense, reference
from helpers import dims, dtypes, numerical_gradient, random_array, seeds, tol


@given(m=dims, n=dims, k=dims, trans_a=..., trans_b=..., beta=..., dtype=dtypes, seed=seeds)
def test_matmul_matches_reference(m, n, k, trans_a: bool, trans_b: bool, beta: bool, dtype, seed):
    rng = np.random.default_rng(seed)
    a = random_array(rng, (k, m) if trans_a else (m, k), dtype)
    b = random_array(rng, (n, k) if trans_b else (k, n), dtype)
    out = random_array(rng, (m, n), dtype)
    expected = out.copy()
    _blas.matmul(out, a, b, trans_a, trans_b, 0.5, float(beta))
    reference.matmul(expected, a, b, trans_a, trans_b, 0.5, float(beta))
    assert_allclose(out, expected, **tol(dtype))


@given(batch=dims, n_in=dims, n_out=dims, use_bias=..., dtype=dtypes, seed=seeds)
def test_dense_forward_matches_reference(batch, n_in, n_out, use_bias: bool, dtype, seed):
    rng = np.random.default_rng(seed)
    x = random_array(rng, (batch, n_in), dtype)
    w = random_array(rng, (n_out, n_in), dtype)
    b = random_array(rng, (n_out,), dtype) if use_bias else None
    y, expected = np.full((2, batch, n_out), np.nan, dtype)
    _dense.dense_forward(y, x, w, b)
    reference.dense_forward(expected, x, w, b)
    assert_allclose(y, expected, **tol(dtype))


@given(batch=dims, n_in=dims, n_out=dims, accumulate=..., skip_dx=..., dtype=dtypes, seed=seeds)
def test_dense_backward_matches_reference(batch, n_in, n_out, accumulate: bool, skip_dx: bool,
                                          dtype, seed):
    rng = np.random.default_rng(seed)
    x = random_array(rng, (batch, n_in), dtype)
    w = random_array(rng, (n_out, n_in), dtype)
    dy = random_array(rng, (batch, n_out), dtype)
    dw = random_array(rng, (n_out, n_in), dtype)
    db = random_array(rng, (n_out,), dtype)
    dx = None if skip_dx else np.full((batch, n_in), np.nan, dtype)
    expected = [dw.copy(), db.copy(), None if skip_dx else dx.copy()]
    beta = 1.0 if accumulate else 0.0
    _dense.dense_backward(dw, db, dx, dy, x, w, beta)
    reference.dense_backward(*expected, dy, x, w, beta)
    assert_allclose(dw, expected[0], **tol(dtype))
    assert_allclose(db, expected[1], **tol(dtype))
    if not skip_dx:
        assert_allclose(dx, expected[2], **tol(dtype))


def test_dense_gradients_match_finite_differences():
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((3, 4)), rng.standard_normal((5, 4)), rng.standard_normal(5)
    upstream = rng.standard_normal((3, 5))
    y = np.empty((3, 5))

    def objective():
        _dense.dense_forward(y, x, w, b)
        return float(np.sum(y * upstream))

    dw, db, dx = np.empty_like(w), np.empty_like(b), np.empty_like(x)
    _dense.dense_backward(dw, db, dx, upstream, x, w)
    assert_allclose(dw, numerical_gradient(objective, w), rtol=1e-6, atol=1e-8)
    assert_allclose(db, numerical_gradient(objective, b), rtol=1e-6, atol=1e-8)
    assert_allclose(dx, numerical_gradient(objective, x), rtol=1e-6, atol=1e-8)
