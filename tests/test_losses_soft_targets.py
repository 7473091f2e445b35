"""CrossEntropyLoss with class-probability targets (soft labels): the kernel against its
NumPy twin, finite differences, PyTorch's formula by hand, the object, errors, and PyTorch
when installed."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpy.testing import assert_allclose

from cnet import _losses, reference
from cnet.losses import CrossEntropyLoss
from helpers import dims, dtypes, numerical_gradient, random_array, seeds, tol

NONE, MEAN, SUM = 0, 1, 2
smoothings = st.sampled_from([0.0, 0.1, 1.0]) | st.floats(min_value=0.0, max_value=1.0)


def soft_case(rng, batch, classes, dtype, use_weight=False):
    logits = random_array(rng, (batch, classes), dtype, scale=3.0)
    target = rng.dirichlet(np.ones(classes), batch).astype(dtype)
    target[rng.random(batch) < 0.2] = np.eye(classes, dtype=dtype)[0]   # some hard rows
    weight = rng.uniform(0.1, 2.0, classes).astype(dtype) if use_weight else None
    return logits, target, weight


def soft(logits, target, weight=None, label_smoothing=0.0, reduction=MEAN):
    dlogits, losses = np.empty_like(logits), np.empty(logits.shape[0], logits.dtype)
    loss = _losses.soft_cross_entropy(dlogits, losses, logits, target, weight, label_smoothing,
                                      reduction)
    return loss, losses, dlogits


def hard(logits, labels, weight=None, label_smoothing=0.0, reduction=MEAN):
    dlogits, losses = np.empty_like(logits), np.empty(logits.shape[0], logits.dtype)
    loss = _losses.softmax_cross_entropy(dlogits, losses, logits, np.asarray(labels), weight,
                                         -100, label_smoothing, reduction)
    return loss, losses, dlogits


@given(batch=dims, classes=dims, dtype=dtypes, seed=seeds, use_weight=...,
       label_smoothing=smoothings, reduction=st.sampled_from([NONE, MEAN, SUM]),
       skip_grad=..., skip_losses=...)
def test_kernel_matches_reference(batch, classes, dtype, seed, use_weight: bool,
                                  label_smoothing, reduction, skip_grad: bool,
                                  skip_losses: bool):
    rng = np.random.default_rng(seed)
    logits, target, weight = soft_case(rng, batch, classes, dtype, use_weight)
    out = [None if skip_grad else np.full((batch, classes), np.nan, dtype),
           None if skip_losses else np.full(batch, np.nan, dtype)]
    expected = [None if a is None else a.copy() for a in out]
    args = (logits, target, weight, label_smoothing, reduction)
    loss = _losses.soft_cross_entropy(*out, *args)
    assert_allclose(loss, reference.soft_cross_entropy(*expected, *args), **tol(dtype))
    for got, want in zip(out, expected):
        if got is not None:
            assert_allclose(got, want, **tol(dtype))


@pytest.mark.parametrize("reduction", [NONE, MEAN, SUM])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.3])
@pytest.mark.parametrize("use_weight", [False, True])
def test_gradient_matches_finite_differences(reduction, label_smoothing, use_weight):
    rng = np.random.default_rng(1)
    logits, target, weight = soft_case(rng, 5, 4, np.float64, use_weight)
    args = (target, weight, label_smoothing, reduction)
    numeric = numerical_gradient(lambda: soft(logits, *args)[0], logits)
    assert_allclose(soft(logits, *args)[2], numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.25])
@pytest.mark.parametrize("reduction", [NONE, MEAN, SUM])
def test_one_hot_probabilities_equal_class_indices(label_smoothing, reduction):
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((6, 5))
    labels = rng.integers(0, 5, 6)
    one_hot = np.eye(5)[labels]
    for got, want in zip(soft(logits, one_hot, None, label_smoothing, reduction),
                         hard(logits, labels, None, label_smoothing, reduction)):
        assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    # with class weights the sums agree too ('mean' differs: see below)
    weight = rng.uniform(0.5, 2.0, 5)
    assert soft(logits, one_hot, weight, label_smoothing, SUM)[0] == pytest.approx(
        hard(logits, labels, weight, label_smoothing, SUM)[0])


def test_by_hand():
    # p = (3/4, 1/4); target (1/4, 3/4): -(¼ log ¾ + ¾ log ¼)
    logits = np.array([[math.log(3), 0.0]])
    target = np.array([[0.25, 0.75]])
    loss, _, dlogits = soft(logits, target)
    assert loss == pytest.approx(-(0.25 * math.log(0.75) + 0.75 * math.log(0.25)))
    assert_allclose(dlogits, [[0.75 - 0.25, 0.25 - 0.75]])    # softmax - target
    # label smoothing mixes the target with the uniform distribution: (0.3, 0.7)
    smoothed = soft(logits, target, label_smoothing=0.2)[0]
    assert smoothed == pytest.approx(-(0.3 * math.log(0.75) + 0.7 * math.log(0.25)))


def test_weighted_mean_divides_by_the_batch_size():
    # As PyTorch: with probability targets 'mean' is Σ loss / batch, not / Σ weights.
    logits = np.zeros((2, 2))
    target = np.array([[1.0, 0.0], [0.0, 1.0]])
    weight = np.array([3.0, 1.0])
    assert soft(logits, target, weight)[0] == pytest.approx((3 + 1) * math.log(2) / 2)
    assert hard(logits, [0, 1], weight)[0] == pytest.approx((3 + 1) * math.log(2) / 4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_logits_are_stable(dtype):
    logits = np.array([[1000.0, -1000.0, 0.0]], dtype)
    loss, _, dlogits = soft(logits, np.array([[0.0, 0.5, 0.5]], dtype), reduction=SUM)
    assert loss == pytest.approx(0.5 * 2000 + 0.5 * 1000, rel=1e-6)
    assert_allclose(dlogits, [[1.0, -0.5, -0.5]], atol=1e-6)


# ---- the loss object ------------------------------------------------------------------------

@given(batch=dims, classes=dims, dtype=dtypes, seed=seeds, use_weight=...,
       label_smoothing=smoothings, reduction=st.sampled_from(["none", "mean", "sum"]))
def test_object_matches_reference(batch, classes, dtype, seed, use_weight: bool,
                                  label_smoothing, reduction):
    rng = np.random.default_rng(seed)
    logits, target, weight = soft_case(rng, batch, classes, dtype, use_weight)
    loss_fn = CrossEntropyLoss(weight, reduction=reduction, label_smoothing=label_smoothing)
    loss = loss_fn(logits, target.astype(np.float64))   # converted to the logits' dtype
    dlogits, losses = np.empty((batch, classes)), np.empty(batch)
    expected = reference.soft_cross_entropy(dlogits, losses, logits, target, weight,
                                            label_smoothing, _losses.REDUCTIONS[reduction])
    assert_allclose(loss, losses if reduction == "none" else expected, **tol(dtype))
    assert ((loss.shape, loss.dtype) == ((batch,), dtype) if reduction == "none"
            else type(loss) is float)
    assert loss_fn.backward().dtype == dtype
    assert_allclose(loss_fn.backward(), dlogits, **tol(dtype))


def test_the_target_shape_decides_as_in_pytorch():
    logits = np.zeros((3, 3), np.float32)
    loss_fn = CrossEntropyLoss()
    assert loss_fn(logits, np.full((3, 3), 1 / 3)) == pytest.approx(math.log(3))
    assert loss_fn(logits, [0, 1, 2]) == pytest.approx(math.log(3))


def test_step_runner_spec_follows_the_targets():
    loss_fn = CrossEntropyLoss([1.0, 2.0], label_smoothing=0.1)
    labels = loss_fn._validate_target([0, 1, 1], 2, 3)
    probs = loss_fn._validate_target(np.full((3, 2), 0.5), 2, 3, dtype="float32")
    assert probs.dtype == np.float32 and probs.shape == (3, 2)
    assert loss_fn._for_targets(labels) is loss_fn
    spec = loss_fn._for_targets(probs)._kernel_spec()
    assert spec["kind"] == _losses.LOSS_SOFT_CROSS_ENTROPY
    assert spec["weight"].tolist() == [1.0, 2.0] and spec["label_smoothing"] == 0.1


@pytest.mark.parametrize("make, target, error, match", [
    (CrossEntropyLoss, np.zeros((4, 3), np.int64), TypeError,
     "target: .*class probabilities and must be float32 or float64, got dtype int64"),
    (lambda: CrossEntropyLoss(ignore_index=0), np.full((4, 3), 1 / 3), ValueError,
     "ignore_index: not supported with class-probability targets, got 0"),
    (lambda: CrossEntropyLoss(np.ones(2)), np.full((4, 3), 1 / 3), ValueError,
     "weight: expected 3 values"),
    (CrossEntropyLoss, np.zeros((4, 2)), TypeError, "target: .*float64"),
])
def test_bad_probability_targets_are_rejected(make, target, error, match):
    with pytest.raises(error, match=match):
        make()(np.zeros((4, 3)), target)


def test_validate_target_checks_probabilities():
    with pytest.raises(ValueError, match="y: expected finite.*nan at row 1"):
        CrossEntropyLoss()._validate_target([[0.5, 0.5], [np.nan, 1.0]], 2, 2, name="y")
    with pytest.raises(ValueError, match="ignore_index: "):
        CrossEntropyLoss(ignore_index=1)._validate_target(np.eye(2), 2, 2, name="y")


# ---- PyTorch itself, when installed ---------------------------------------------------------

@given(batch=dims, classes=dims, dtype=dtypes, seed=seeds, use_weight=...,
       label_smoothing=smoothings, reduction=st.sampled_from(["none", "mean", "sum"]))
def test_matches_torch(batch, classes, dtype, seed, use_weight: bool, label_smoothing,
                       reduction):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    logits, target, weight = soft_case(rng, batch, classes, dtype, use_weight)
    loss_fn = CrossEntropyLoss(weight, reduction=reduction, label_smoothing=label_smoothing)
    loss = loss_fn(logits, target)
    x = torch.tensor(logits, requires_grad=True)
    expected = torch.nn.functional.cross_entropy(
        x, torch.tensor(target), None if weight is None else torch.tensor(weight),
        reduction=reduction, label_smoothing=label_smoothing)
    expected.sum().backward()
    assert_allclose(loss, expected.detach().numpy(), **tol(dtype))
    assert_allclose(loss_fn.backward(), x.grad.numpy(), **tol(dtype))
