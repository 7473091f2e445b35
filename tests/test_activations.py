import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

from cnet import _activations, reference
from helpers import DTYPES, dims, dtypes, numerical_gradient, random_array, seeds, tol

NAMES = ["identity", "relu", "leaky_relu", "sigmoid", "tanh", "step", "softmax"]
DIFFERENTIABLE = [name for name in NAMES if name != "step"]  # step has no backward
STABLE = ["sigmoid", "tanh", "softmax"]  # must stay finite and quiet at any input

# Leaky ReLU's negative slope: None keeps the default (0.01); negative slopes are allowed.
slopes = st.none() | st.floats(min_value=-2, max_value=2, allow_subnormal=False)


def kernels(module, name):
    """The (forward, backward) pair of an activation in module (backward None for step)."""
    return getattr(module, f"{name}_forward"), getattr(module, f"{name}_backward", None)


def options(name, slope):
    """Keyword arguments for the kernels of `name`: negative_slope for leaky ReLU only."""
    return {"negative_slope": slope} if name == "leaky_relu" and slope is not None else {}


def sample(rng, shape, dtype):
    """Inputs spread over the interesting range, with some exact zeros (ReLU's and step's edge)."""
    x = random_array(rng, shape, dtype, scale=3.0)
    x[rng.random(shape) < 0.1] = 0
    return x


def forward_pair(name, rows, cols, slope, dtype, seed):
    """x, dy and the reference output y of activation `name` on a random (rows, cols) input."""
    rng = np.random.default_rng(seed)
    x = sample(rng, (rows, cols), dtype)
    dy = random_array(rng, (rows, cols), dtype)
    y = np.empty_like(x)
    kernels(reference, name)[0](y, x, **options(name, slope))
    return x, dy, y


@pytest.mark.parametrize("name", NAMES)
@given(rows=dims, cols=dims, slope=slopes, dtype=dtypes, seed=seeds)
def test_forward_matches_reference(name, rows, cols, slope, dtype, seed):
    x, _, expected = forward_pair(name, rows, cols, slope, dtype, seed)
    y = np.full_like(x, np.nan)
    kernels(_activations, name)[0](y, x, **options(name, slope))
    assert_allclose(y, expected, **tol(dtype))


@pytest.mark.parametrize("name", DIFFERENTIABLE)
@given(rows=dims, cols=dims, slope=slopes, dtype=dtypes, seed=seeds)
def test_backward_matches_reference(name, rows, cols, slope, dtype, seed):
    x, dy, y = forward_pair(name, rows, cols, slope, dtype, seed)
    dx, expected = np.full((2, rows, cols), np.nan, dtype)
    kernels(_activations, name)[1](dx, dy, x, y, **options(name, slope))
    kernels(reference, name)[1](expected, dy, x, y, **options(name, slope))
    assert_allclose(dx, expected, **tol(dtype))


def assert_same_in_place(kernel, source, *inputs, **kwargs):
    """kernel(out, source, *inputs) into a separate out, then with out = source (overwritten)."""
    out = np.full_like(source, np.nan)
    kernel(out, source, *inputs, **kwargs)
    kernel(source, source, *inputs, **kwargs)
    assert_array_equal(source, out)


@pytest.mark.parametrize("name", NAMES)
@given(rows=dims, cols=dims, slope=slopes, dtype=dtypes, seed=seeds)
def test_in_place_gives_the_same_result(name, rows, cols, slope, dtype, seed):
    """y is x in forward and dx is dy in backward: the aliasing the step runner uses."""
    x, dy, y = forward_pair(name, rows, cols, slope, dtype, seed)
    forward, backward = kernels(_activations, name)
    if backward is not None:  # before forward overwrites x
        assert_same_in_place(backward, dy, x, y, **options(name, slope))
    assert_same_in_place(forward, x, **options(name, slope))


EXTREMES = [-1000, -89, -88, -20, -1, -0.0, 0, 1e-30, 1, 20, 88, 89, 1000]


@pytest.mark.parametrize("name", STABLE)
@pytest.mark.parametrize("dtype", DTYPES)
def test_extreme_inputs_give_finite_outputs_without_warnings(name, dtype):
    width = len(EXTREMES)
    x = np.array([EXTREMES, EXTREMES[::-1], [-1000] * width, [1000] * width, [0] * width], dtype)
    y, dx, expected_y, expected_dx = np.full((4, *x.shape), np.nan, dtype)
    dy = np.ones_like(x)
    (forward, backward), (ref_forward, ref_backward) = (kernels(_activations, name),
                                                        kernels(reference, name))
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        forward(y, x)
        backward(dx, dy, x, y)
        ref_forward(expected_y, x)
        ref_backward(expected_dx, dy, x, expected_y)
    assert np.isfinite(y).all() and np.isfinite(dx).all()
    assert_allclose(y, expected_y, **tol(dtype))
    assert_allclose(dx, expected_dx, **tol(dtype))
    if name == "softmax":
        assert_allclose(y.sum(axis=1), 1, rtol=10 * np.finfo(dtype).eps)
        assert_allclose(y[2:], 1 / width)  # constant rows, however large, are uniform
    else:  # saturated at ±1000: exactly the limits
        low, high = (0, 1) if name == "sigmoid" else (-1, 1)
        assert (y[2] == low).all() and (y[3] == high).all()
        assert ((y >= low) & (y <= high)).all()


@given(rows=dims, cols=dims, scale=st.sampled_from([0.1, 1, 30, 1000]), dtype=dtypes, seed=seeds)
def test_softmax_rows_are_distributions(rows, cols, scale, dtype, seed):
    x = random_array(np.random.default_rng(seed), (rows, cols), dtype, scale)
    y = np.full_like(x, np.nan)
    _activations.softmax_forward(y, x)
    assert ((y >= 0) & (y <= 1)).all()
    assert_allclose(y.sum(axis=1), 1, rtol=50 * np.finfo(dtype).eps)
    assert (np.argmax(y, axis=1) == np.argmax(x, axis=1)).all()


@pytest.mark.parametrize("cols, where", [(5, 0), (5, 4), (9, 0), (9, 3), (9, 8), (70, 6),
                                         (70, 69), (70, 40)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_nan_anywhere_in_a_row_makes_that_row_nan(cols, where, dtype):
    """The row maximum is taken over lanes of 8 then a tail: a NaN in the first element, in
    a lane or in the tail must poison its own row (as NumPy's), and no other."""
    x = random_array(np.random.default_rng(cols), (3, cols), dtype, 3.0)
    x[1, where] = np.nan
    y, dx = np.full_like(x, 7.0), np.full_like(x, 7.0)
    _activations.softmax_forward(y, x)
    _activations.softmax_backward(dx, np.ones_like(x), x, y)
    assert np.isnan(y[1]).all() and np.isnan(dx[1]).all()
    expected = np.empty_like(x)
    reference.softmax_forward(expected, x)
    assert_allclose(y[[0, 2]], expected[[0, 2]], **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_step_is_one_at_and_above_zero(dtype):
    x = np.array([[-np.inf, -1e30, -1, -1e-30, -0.0, 0.0, 1e-30, 1, 1e30, np.inf]], dtype)
    y = np.full_like(x, np.nan)
    _activations.step_forward(y, x)
    assert_array_equal(y, [[0, 0, 0, 0, 1, 1, 1, 1, 1, 1]])


def test_step_has_no_backward():
    assert not hasattr(_activations, "step_backward")
    assert not hasattr(reference, "step_backward")


@pytest.mark.parametrize("name, slope", [(name, None) for name in DIFFERENTIABLE]
                         + [("leaky_relu", -0.5), ("leaky_relu", 2.0)])
def test_gradients_match_finite_differences(name, slope):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 7))
    x += np.copysign(0.1, x)  # keep away from the kink at 0
    upstream = rng.standard_normal((3, 7))
    y, dx = np.empty_like(x), np.empty_like(x)
    forward, backward = kernels(_activations, name)
    kwargs = options(name, slope)

    def objective():
        forward(y, x, **kwargs)
        return float(np.sum(y * upstream))

    objective()
    backward(dx, upstream, x, y, **kwargs)
    assert_allclose(dx, numerical_gradient(objective, x), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", ["sigmoid", "tanh"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_element_gets_the_same_bits_in_a_whole_or_a_partial_block(name, dtype):
    """The exponential's kernels run blocks of 16 elements, the last one partial and
    zero-padded: an element's result must not depend on which it falls in (the dispatched
    build once compiled the partial block's copy for another instruction set than the whole
    ones')."""
    forward = getattr(_activations, f"{name}_forward")
    x = np.random.default_rng(0).uniform(-12, 12, (3000, 16)).astype(dtype)
    whole = np.empty_like(x)
    forward(whole, x)                     # contiguous rows of 16: whole blocks only
    for row, want in zip(x, whole):
        part = row[None, :15].copy()      # one partial block
        got = np.empty_like(part)
        forward(got, part)
        assert_array_equal(got[0], want[:15])
