import numpy as np
import pytest
from hypothesis import given, strategies as st
from numpy.testing import assert_allclose

from cnet import _optim, reference
from helpers import dtypes, random_array, seeds, tol

# 1, sizes around the vector widths (tails of 1..15 elements) and ones past 64.
sizes = st.one_of(st.sampled_from([1, 7, 9, 17, 65, 127, 257]),
                  st.integers(min_value=1, max_value=300))


def trajectories(step_fn, ref_fn, n_state, n, dtype, seed, steps=20, initial=0.0, **hyper):
    """Run kernel and reference side by side for `steps` updates on the same gradients
    (state arrays start at `initial`)."""
    rng = np.random.default_rng(seed)
    param = random_array(rng, n, dtype)
    state = [np.full(n, initial, dtype) for _ in range(n_state)]
    ref_param, ref_state = param.copy(), [s.copy() for s in state]
    for step in range(1, steps + 1):
        grad = random_array(rng, n, dtype)
        step_fn(param, *state, grad, step, **hyper)
        ref_fn(ref_param, *ref_state, grad, step, **hyper)
    return param, ref_param, state, ref_state


@given(n=sizes, dtype=dtypes, seed=seeds, momentum=st.sampled_from([0.0, 0.9]),
       dampening=st.sampled_from([0.0, 0.3]), weight_decay=st.sampled_from([0.0, 1e-2]),
       nesterov=st.booleans())
def test_sgd_trajectory_matches_reference(n, dtype, seed, momentum, dampening, weight_decay,
                                          nesterov):
    nesterov = nesterov and momentum > 0 and dampening == 0
    param, ref_param, state, ref_state = trajectories(
        _optim.sgd_step, reference.sgd_step, 1, n, dtype, seed, lr=0.05, momentum=momentum,
        dampening=dampening, weight_decay=weight_decay, nesterov=nesterov)
    assert_allclose(param, ref_param, **tol(dtype))
    assert_allclose(state[0], ref_state[0], **tol(dtype))


@given(n=sizes, dtype=dtypes, seed=seeds, weight_decay=st.sampled_from([0.0, 1e-2]),
       amsgrad=st.booleans(), decoupled=st.booleans())
def test_adam_trajectory_matches_reference(n, dtype, seed, weight_decay, amsgrad, decoupled):
    param, ref_param, state, ref_state = trajectories(
        _optim.adam_step, reference.adam_step, 3, n, dtype, seed, lr=0.01, beta1=0.8,
        beta2=0.99, eps=1e-8, weight_decay=weight_decay, amsgrad=amsgrad, decoupled=decoupled)
    assert_allclose(param, ref_param, **tol(dtype))
    for got, expected in zip(state, ref_state):
        assert_allclose(got, expected, **tol(dtype))


@given(n=sizes, dtype=dtypes, seed=seeds, scale=st.sampled_from([1e-3, 1.0, 1e3]),
       max_norm=st.sampled_from([0.0, 0.5, 10.0, float("inf")]))
def test_clip_grad_norm_matches_reference(n, dtype, seed, scale, max_norm):
    grad = random_array(np.random.default_rng(seed), n, dtype) * dtype(scale)
    expected = grad.copy()
    ref_norm = reference.clip_grad_norm(expected, max_norm)
    norm = _optim.clip_grad_norm(grad, max_norm)
    assert norm == pytest.approx(ref_norm, rel=tol(dtype)["rtol"])
    assert_allclose(grad, expected, **tol(dtype))
    if ref_norm > max_norm:     # clipped to max_norm (to 1e-6 / norm of it)
        assert np.linalg.norm(grad.astype(np.float64)) <= max_norm * (1 + 1e-4)


def test_adam_first_step_moves_each_parameter_by_lr():
    # With bias correction, Adam's first update is lr * sign(grad) (up to eps).
    param = np.zeros(5)
    grad = np.array([3.0, -2.0, 0.5, -1e-3, 7.0])
    state = [np.zeros(5) for _ in range(3)]
    _optim.adam_step(param, *state, grad, 1, lr=0.1)
    assert_allclose(param, -0.1 * np.sign(grad), rtol=1e-5)


def test_sgd_momentum_buffer_starts_as_first_gradient():
    param, buf = np.zeros(3), np.full(3, 99.0)
    _optim.sgd_step(param, buf, np.array([1.0, 2.0, 3.0]), 1, lr=1.0, momentum=0.9,
                    dampening=0.5)
    assert_allclose(buf, [1.0, 2.0, 3.0])
    assert_allclose(param, [-1.0, -2.0, -3.0])


@given(n=sizes, dtype=dtypes, seed=seeds, lr_decay=st.sampled_from([0.0, 0.05]),
       weight_decay=st.sampled_from([0.0, 1e-2]), initial=st.sampled_from([0.0, 0.1]))
def test_adagrad_trajectory_matches_reference(n, dtype, seed, lr_decay, weight_decay, initial):
    param, ref_param, state, ref_state = trajectories(
        _optim.adagrad_step, reference.adagrad_step, 1, n, dtype, seed, lr=0.05,
        lr_decay=lr_decay, weight_decay=weight_decay, eps=1e-10, initial=initial)
    assert_allclose(param, ref_param, **tol(dtype))
    assert_allclose(state[0], ref_state[0], **tol(dtype))


@given(n=sizes, dtype=dtypes, seed=seeds, alpha=st.sampled_from([0.99, 0.9, 0.3]),
       momentum=st.sampled_from([0.0, 0.9]), centered=st.booleans(),
       weight_decay=st.sampled_from([0.0, 1e-2]))
def test_rmsprop_trajectory_matches_reference(n, dtype, seed, alpha, momentum, centered,
                                              weight_decay):
    param, ref_param, state, ref_state = trajectories(
        _optim.rmsprop_step, reference.rmsprop_step, 3, n, dtype, seed, lr=0.01, alpha=alpha,
        eps=1e-8, weight_decay=weight_decay, momentum=momentum, centered=centered)
    assert_allclose(param, ref_param, **tol(dtype))
    for got, expected in zip(state, ref_state):
        assert_allclose(got, expected, **tol(dtype))


def test_adagrad_first_step_is_lr_times_sign():
    # From a zero accumulator, the first update is g / sqrt(g^2) = sign(g) times lr.
    param, state_sum = np.zeros(4), np.zeros(4)
    grad = np.array([2.0, -0.5, 1e-3, -9.0])
    _optim.adagrad_step(param, state_sum, grad, 1, lr=0.1)
    assert_allclose(param, -0.1 * np.sign(grad), rtol=1e-6)
    assert_allclose(state_sum, grad**2)


def test_rmsprop_first_step_hand_computed():
    # square_avg = (1 - alpha) g^2, so the first update is lr * g / (sqrt(1 - alpha) |g| + eps).
    param, sq = np.zeros(2), np.zeros(2)
    grad = np.array([3.0, -4.0])
    _optim.rmsprop_step(param, sq, None, None, grad, 1, lr=0.01, alpha=0.99, eps=0.0)
    assert_allclose(param, -0.01 * np.sign(grad) / np.sqrt(0.01))


# Every optimizer kernel, with the options that change its loop, and its state arrays' count.
KERNELS = [
    (_optim.sgd_step, 1, dict(lr=0.05, weight_decay=1e-2)),
    (_optim.sgd_step, 1, dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=1e-2)),
    (_optim.sgd_step, 1, dict(lr=0.05, momentum=0.9, weight_decay=1e-2, nesterov=True)),
    (_optim.adam_step, 3, dict(lr=0.01, weight_decay=1e-2)),
    (_optim.adam_step, 3, dict(lr=0.01, weight_decay=1e-2, decoupled=True)),
    (_optim.adam_step, 3, dict(lr=0.01, weight_decay=1e-2, amsgrad=True, decoupled=True)),
    (_optim.adagrad_step, 1, dict(lr=0.05, lr_decay=0.01, weight_decay=1e-2)),
    (_optim.rmsprop_step, 3, dict(lr=0.01, weight_decay=1e-2)),
    (_optim.rmsprop_step, 3, dict(lr=0.01, momentum=0.9, weight_decay=1e-2, centered=True)),
]


@given(kernel=st.sampled_from(range(len(KERNELS))), n=st.integers(1, 200), dtype=dtypes,
       seed=seeds, cuts=st.lists(st.integers(1, 199), max_size=6))
def test_an_update_has_the_same_bits_however_the_entries_are_split_into_calls(kernel, n,
                                                                             dtype, seed,
                                                                             cuts):
    """The step runner updates a layer's entries in pieces (a thread's rows, a parameter
    group's span), Optimizer.step in spans: each entry's update must not depend on where
    its call began. (It did in the AVX-512F clone, which fused multiply-adds in a loop's
    512-bit body and scalar remainder but not in its 256-bit tail, and in AdamW's loops
    while its decay was a second product in the update, fused in the vector body and not in
    the remainder.)"""
    step_fn, n_state, hyper = KERNELS[kernel]
    rng = np.random.default_rng(seed)
    bounds = [0] + sorted({c for c in cuts if c < n}) + [n]
    whole = [random_array(rng, n, dtype)] + [np.zeros(n, dtype) for _ in range(n_state)]
    split = [a.copy() for a in whole]
    for step in range(1, 4):
        grad = random_array(rng, n, dtype)
        step_fn(*whole, grad, step, **hyper)
        for lo, hi in zip(bounds, bounds[1:]):
            step_fn(*(a[lo:hi] for a in split), grad[lo:hi], step, **hyper)
    for got, expected in zip(split, whole):
        np.testing.assert_array_equal(got, expected)
