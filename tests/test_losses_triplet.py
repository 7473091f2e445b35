"""TripletMarginLoss: the kernel against its NumPy twin, finite differences for all three
inputs, PyTorch's formula by hand (eps inside the distance, swap), the object and its
errors, and PyTorch when installed."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

from cnet import _losses, reference
from cnet.losses import TripletMarginLoss
from helpers import dims, dtypes, numerical_gradient, random_array, seeds, tol

NONE, MEAN, SUM = 0, 1, 2
norms = st.sampled_from([1.0, 2.0, 3.0, 0.5, math.inf])
margins = st.sampled_from([0.01, 0.5, 1.0, 3.0])


def triplets(rng, batch, dim, dtype):
    return tuple(random_array(rng, (batch, dim), dtype) for _ in range(3))


def kernel(inputs, margin=1.0, p=2.0, eps=1e-6, swap=False, reduction=MEAN, grads=True):
    """Loss, per-row losses and the three gradients from the compiled kernel."""
    out = [np.empty_like(inputs[0]) for _ in range(3)] if grads else [None] * 3
    losses = np.empty(inputs[0].shape[0], inputs[0].dtype)
    loss = _losses.triplet_margin_loss(*out, losses, *inputs, margin, p, eps, swap, reduction)
    return loss, losses, out


@given(batch=dims, dim=dims, dtype=dtypes, seed=seeds, p=norms, margin=margins, swap=...,
       reduction=st.sampled_from([NONE, MEAN, SUM]), skip_grads=..., skip_losses=...)
def test_kernel_matches_reference(batch, dim, dtype, seed, p, margin, swap: bool, reduction,
                                  skip_grads: bool, skip_losses: bool):
    rng = np.random.default_rng(seed)
    inputs = triplets(rng, batch, dim, dtype)
    out = [None if skip_grads else np.full((batch, dim), np.nan, dtype) for _ in range(3)]
    out.append(None if skip_losses else np.full(batch, np.nan, dtype))
    expected = [None if a is None else a.copy() for a in out]
    args = (margin, p, 1e-6, swap, reduction)
    loss = _losses.triplet_margin_loss(*out, *inputs, *args)
    assert_allclose(loss, reference.triplet_margin_loss(*expected, *inputs, *args), **tol(dtype))
    for got, want in zip(out, expected):
        if got is not None:
            assert_allclose(got, want, rtol=tol(dtype)["rtol"], atol=tol(dtype)["atol"] * 10)


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0, 1.5, math.inf])
@pytest.mark.parametrize("swap", [False, True])
@pytest.mark.parametrize("reduction", [NONE, MEAN, SUM])
def test_gradients_of_all_three_inputs_match_finite_differences(p, swap, reduction):
    rng = np.random.default_rng(7)
    inputs = triplets(rng, 6, 5, np.float64)
    # a large margin keeps every triplet active, so every row has a gradient to check
    args = dict(margin=4.0, p=p, swap=swap, reduction=reduction)
    _, _, grads = kernel(inputs, **args)
    for x, grad in zip(inputs, grads):
        numeric = numerical_gradient(lambda: kernel(inputs, grads=False, **args)[0], x)
        assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)
    assert all(np.abs(g).sum() > 0 for g in grads)


def test_by_hand_with_and_without_swap():
    # a = (0, 0), p = (0, 1), n = (0, 2): d(a, p) = 1, d(a, n) = 2, d(p, n) = 1 (eps = 0).
    inputs = tuple(np.array([v], np.float64) for v in ([0.0, 0.0], [0.0, 1.0], [0.0, 2.0]))
    loss, _, (da, dp, dn) = kernel(inputs, margin=1.5, eps=0.0)
    assert loss == pytest.approx(1.5 + 1 - 2)
    assert_allclose(da, [[0.0, 0.0]])            # (a - p)/1 - (a - n)/2
    assert_allclose(dp, [[0.0, 1.0]])
    assert_allclose(dn, [[0.0, -1.0]])
    # swap: min(d(a, n), d(p, n)) = d(p, n) = 1, so the loss grows and p feels n too
    loss, _, (da, dp, dn) = kernel(inputs, margin=1.5, eps=0.0, swap=True)
    assert loss == pytest.approx(1.5 + 1 - 1)
    assert_allclose(da, [[0.0, -1.0]])
    assert_allclose(dp, [[0.0, 2.0]])
    assert_allclose(dn, [[0.0, -1.0]])


def test_eps_is_added_to_the_difference():
    # PyTorch's pairwise_distance: ||a - b + eps||, so equal points are sqrt(D)·eps apart.
    a = np.zeros((1, 4))
    n = np.full((1, 4), 3.0)
    loss = kernel((a, a, n), margin=7.0, eps=0.01, grads=False)[0]
    assert loss == pytest.approx(7.0 + 2 * 0.01 - math.sqrt(4 * (0.01 - 3.0) ** 2))


def test_inactive_triplets_have_no_loss_and_no_gradient():
    rng = np.random.default_rng(8)
    a = rng.standard_normal((3, 4))
    loss, losses, grads = kernel((a, a + 0.01, a + 10.0), margin=1.0, reduction=SUM)
    assert loss == 0.0
    assert_array_equal(losses, 0.0)
    for g in grads:
        assert_array_equal(g, 0.0)


@pytest.mark.parametrize("p, expected", [(1.0, 7.0), (2.0, 5.0), (math.inf, 4.0),
                                         (3.0, (27 + 64) ** (1 / 3))])
def test_norms_by_hand(p, expected):
    # d(a, p) = ||(3, 4)||_p and d(a, n) = 0, so loss = margin + ||(3, 4)||_p
    a, pos = np.array([[3.0, 4.0]]), np.zeros((1, 2))
    loss = kernel((a, pos, a), margin=1.0, p=p, eps=0.0, grads=False)[0]
    assert loss == pytest.approx(1.0 + expected)


def test_nan_embeddings_give_nan_loss():
    a = np.array([[0.0, np.nan]])
    assert math.isnan(kernel((a, np.zeros((1, 2)), np.ones((1, 2))), grads=False)[0])


# ---- the loss object ------------------------------------------------------------------------

@given(batch=dims, dim=dims, dtype=dtypes, seed=seeds, p=norms, swap=...,
       reduction=st.sampled_from(["none", "mean", "sum"]))
def test_object_matches_reference(batch, dim, dtype, seed, p, swap: bool, reduction):
    rng = np.random.default_rng(seed)
    inputs = triplets(rng, batch, dim, dtype)
    loss_fn = TripletMarginLoss(margin=0.7, p=p, swap=swap, reduction=reduction)
    loss = loss_fn(*inputs)
    grads = [np.empty((batch, dim)) for _ in range(3)]
    losses = np.empty(batch)
    expected = reference.triplet_margin_loss(*grads, losses, *inputs, 0.7, p, 1e-6, swap,
                                             _losses.REDUCTIONS[reduction])
    assert_allclose(loss, losses if reduction == "none" else expected, **tol(dtype))
    assert ((loss.shape, loss.dtype) == ((batch,), dtype) if reduction == "none"
            else type(loss) is float)
    backward = loss_fn.backward()
    assert isinstance(backward, tuple) and len(backward) == 3
    for got, want in zip(backward, grads):
        assert got.dtype == dtype and got.shape == (batch, dim)
        assert_allclose(got, want, rtol=tol(dtype)["rtol"], atol=tol(dtype)["atol"] * 10)


def test_single_triplet_of_vectors():
    # (dim,) inputs: one triplet, as PyTorch's unbatched form; 'none' gives a 0-d array
    a, p, n = np.array([1.0, 0.0]), np.array([0.0, 0.0]), np.array([0.0, 3.0])
    loss_fn = TripletMarginLoss(margin=3.0, reduction="none", eps=0.0)
    loss = loss_fn(a, p, n)
    assert loss.shape == () and float(loss) == pytest.approx(3 + 1 - math.sqrt(10))
    da, dp, dn = loss_fn.backward()
    assert da.shape == dp.shape == dn.shape == (2,)
    assert_allclose(loss_fn.backward(2.0)[1], 2 * dp)


def test_backward_scales_by_grad_output():
    rng = np.random.default_rng(9)
    inputs = triplets(rng, 4, 3, np.float64)
    loss_fn = TripletMarginLoss(margin=3.0, reduction="none")
    loss_fn(*inputs)
    upstream = rng.standard_normal(4)
    for scaled, grad in zip(loss_fn.backward(upstream), loss_fn.backward()):
        assert_allclose(scaled, grad * upstream[:, None])


def test_repr():
    assert repr(TripletMarginLoss(swap=True)) == ("TripletMarginLoss(margin=1.0, p=2.0, "
                                                  "eps=1e-06, swap=True, reduction='mean')")


A = np.zeros((4, 3), np.float32)


@pytest.mark.parametrize("inputs, error, match", [
    ((A, A, A[:3]), ValueError, r"negative: expected anchor's shape \(4, 3\), got \(3, 3\)"),
    ((A, A[:, :2], A), ValueError, "positive: expected anchor's shape"),
    ((A, A.astype(np.float64), A), TypeError, "positive: expected anchor's dtype float32"),
    ((A, A, A.astype(np.int32)), TypeError, "negative: expected float32 or float64"),
    ((np.zeros((2, 2, 2)),) * 3, ValueError, r"anchor: expected \(batch, dim\) or \(dim,\)"),
    ((np.zeros((0, 3)),) * 3, ValueError, "anchor: expected a non-empty batch"),
    ((np.float64(1.0),) * 3, ValueError, "anchor: "),
])
def test_bad_inputs_are_rejected(inputs, error, match):
    with pytest.raises(error, match=match):
        TripletMarginLoss()(*inputs)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"margin": math.nan}, ValueError, "margin: "),
    ({"margin": 0.0}, ValueError, "margin: expected a finite number > 0.0, got 0.0"),
    ({"margin": "1"}, TypeError, "margin: "),
    ({"p": 0}, ValueError, "p: expected a number > 0.0, got 0.0"),
    ({"p": -2}, ValueError, "p: "),
    ({"eps": math.inf}, ValueError, "eps: "),
    ({"swap": 1}, TypeError, "swap: expected a bool"),
    ({"reduction": "batchmean"}, ValueError, "reduction: "),
])
def test_bad_settings_are_rejected(kwargs, error, match):
    with pytest.raises(error, match=match):
        TripletMarginLoss(**kwargs)


def test_backward_before_a_call_is_an_error():
    with pytest.raises(RuntimeError, match="backward"):
        TripletMarginLoss().backward()
    loss_fn = TripletMarginLoss()
    loss_fn(A, A, A)
    with pytest.raises(ValueError, match=r"grad_output: expected shape \(\)"):
        loss_fn.backward(np.ones(4))


def test_not_accepted_by_trainer():
    from cnet import Dense, Sequential, Trainer
    from cnet.optim import SGD
    model = Sequential(Dense(2, 2), seed=0)
    with pytest.raises(TypeError, match="loss: "):
        Trainer(model, TripletMarginLoss(), SGD(model.parameters(), lr=0.1))


# ---- PyTorch itself, when installed ---------------------------------------------------------

@given(batch=dims, dim=dims, dtype=dtypes, seed=seeds, p=norms, margin=margins, swap=...,
       reduction=st.sampled_from(["none", "mean", "sum"]))
def test_matches_torch(batch, dim, dtype, seed, p, margin, swap: bool, reduction):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    inputs = triplets(rng, batch, dim, dtype)
    loss_fn = TripletMarginLoss(margin, p, 1e-6, swap, reduction)
    loss = loss_fn(*inputs)
    tensors = [torch.tensor(x, requires_grad=True) for x in inputs]
    expected = torch.nn.functional.triplet_margin_loss(*tensors, margin=margin, p=p, eps=1e-6,
                                                       swap=swap, reduction=reduction)
    expected.sum().backward()
    # The loss is a difference of distances, which PyTorch rounds in the input's dtype: an
    # absolute tolerance in proportion to the largest distance.
    a, pos, neg = (x.astype(np.float64) for x in inputs)
    scale = max(1.0, *(np.linalg.norm(x - y + 1e-6, ord=p, axis=1).max()
                       for x, y in ((a, pos), (a, neg), (pos, neg))))
    assert_allclose(loss, expected.detach().numpy(), rtol=tol(dtype)["rtol"],
                    atol=tol(dtype)["atol"] * scale)
    for got, t in zip(loss_fn.backward(), tensors):
        assert_allclose(got, t.grad.numpy(), rtol=tol(dtype)["rtol"],
                        atol=tol(dtype)["atol"] * 10)


def test_a_triplet_exactly_at_the_margin_still_passes_its_gradient():
    """loss = max(d(a, p) - d(a, n) + margin, 0) exactly 0: torch's clamp_min passes the
    gradient where its input equals the bound, so the three gradients are not zero.
    a = (0, 0), p = (3, 0), n = (0, 4), eps = 0: d(a, p) = 3, d(a, n) = 4, margin 1."""
    inputs = tuple(np.array([v], np.float64) for v in ([0.0, 0.0], [3.0, 0.0], [0.0, 4.0]))
    loss, losses, (da, dp, dn) = kernel(inputs, margin=1.0, eps=0.0)
    assert loss == 0.0 and losses[0] == 0.0
    assert_allclose(da, [[-1.0, 1.0]])       # (a - p)/3 - (a - n)/4
    assert_allclose(dp, [[1.0, 0.0]])
    assert_allclose(dn, [[0.0, -1.0]])
    torch = pytest.importorskip("torch")
    t = [torch.tensor(x, requires_grad=True) for x in inputs]
    torch.nn.TripletMarginLoss(margin=1.0, eps=0.0)(*t).backward()
    for got, x in zip((da, dp, dn), t):
        assert_allclose(got, x.grad.numpy())
