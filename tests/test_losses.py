import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

from cnet import _losses, reference
from cnet.losses import CrossEntropyLoss, MSELoss
from helpers import DTYPES, dims, dtypes, numerical_gradient, random_array, seeds, tol

NONE, MEAN, SUM = 0, 1, 2
reductions = st.sampled_from([NONE, MEAN, SUM])
reduction_names = st.sampled_from(["none", "mean", "sum"])
smoothings = st.sampled_from([0.0, 0.1, 1.0]) | st.floats(min_value=0.0, max_value=1.0)
# -100 is PyTorch's default; 0 makes a real class the ignored one, as PyTorch allows.
ignore_indices = st.sampled_from([-100, -1, 0])


def classification(rng, batch, classes, dtype, ignore_index=-100, use_weight=False):
    """Logits, labels with about a quarter of the rows ignored, and an optional class weight."""
    logits = random_array(rng, (batch, classes), dtype, scale=3.0)
    target = rng.integers(0, classes, batch)
    target[rng.random(batch) < 0.25] = ignore_index
    weight = rng.uniform(0.1, 2.0, classes).astype(dtype) if use_weight else None
    return logits, target, weight


def outputs(shape, rows, dtype, skip_grad, skip_losses):
    """NaN-filled gradient and per-row loss buffers (or None), and copies for the reference."""
    out = [None if skip_grad else np.full(shape, np.nan, dtype),
           None if skip_losses else np.full(rows, np.nan, dtype)]
    return out, [None if a is None else a.copy() for a in out]


def assert_outputs_match(out, expected, dtype):
    for got, want in zip(out, expected):
        if got is not None:
            assert_allclose(got, want, **tol(dtype))


def cross_entropy(logits, target, weight=None, ignore_index=-100, label_smoothing=0.0,
                  reduction=MEAN):
    """Loss, per-row losses and dlogits from the kernel."""
    dlogits, losses = np.empty_like(logits), np.empty(logits.shape[0], logits.dtype)
    loss = _losses.softmax_cross_entropy(dlogits, losses, logits, np.asarray(target), weight,
                                         ignore_index, label_smoothing, reduction)
    return loss, losses, dlogits


# ---- kernels against the NumPy reference ----------------------------------------------------

@given(batch=dims, classes=dims, dtype=dtypes, seed=seeds, ignore_index=ignore_indices,
       use_weight=..., label_smoothing=smoothings, reduction=reductions, skip_grad=...,
       skip_losses=...)
def test_cross_entropy_matches_reference(batch, classes, dtype, seed, ignore_index,
                                         use_weight: bool, label_smoothing, reduction,
                                         skip_grad: bool, skip_losses: bool):
    rng = np.random.default_rng(seed)
    logits, target, weight = classification(rng, batch, classes, dtype, ignore_index, use_weight)
    out, expected = outputs((batch, classes), batch, dtype, skip_grad, skip_losses)
    args = (logits, target, weight, ignore_index, label_smoothing, reduction)
    loss = _losses.softmax_cross_entropy(*out, *args)
    assert_allclose(loss, reference.softmax_cross_entropy(*expected, *args), **tol(dtype))
    assert_outputs_match(out, expected, dtype)


@pytest.mark.parametrize("classes", [3, 10, 15, 16, 100, 128, 130])
@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_loss_is_the_same_with_or_without_its_gradient(classes, dtype):
    """evaluate() asks for the loss alone, training for the loss and dlogits: the two must
    agree to the last bit (short rows, long rows, rows longer than the kernel's chunk, whole
    chunks)."""
    rng = np.random.default_rng(classes)
    logits = (rng.standard_normal((37, classes)) * 3).astype(dtype)
    target = rng.integers(0, classes, 37)
    for losses in (None, np.empty(37, dtype)):
        alone = _losses.softmax_cross_entropy(None, losses, logits, target)
        with_grad = _losses.softmax_cross_entropy(np.empty_like(logits), losses, logits, target)
        assert alone == with_grad


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_total_without_per_row_losses_survives_a_huge_product(dtype):
    """Without per-row losses the kernel takes one log of the product of the rows' sums of
    exponentials; 300 rows of 1,000 near-equal logits make that product about 1e900, which
    must be renormalised on the way instead of overflowing."""
    rng = np.random.default_rng(5)
    logits = (rng.standard_normal((300, 1000)) * 1e-3).astype(dtype)
    target = rng.integers(0, 1000, 300)
    for reduction in (MEAN, SUM):
        with_rows = _losses.softmax_cross_entropy(None, np.empty(300, dtype), logits, target,
                                                  None, -100, 0.1, reduction)
        total_only = _losses.softmax_cross_entropy(None, None, logits, target, None, -100, 0.1,
                                                   reduction)
        assert np.isfinite(total_only)
        assert total_only == pytest.approx(with_rows, rel=1e-12)
        assert total_only == pytest.approx(
            reference.softmax_cross_entropy(None, None, logits, target, None, -100, 0.1,
                                            reduction), rel=1e-5)


@given(n=st.integers(min_value=1, max_value=300), dtype=dtypes, seed=seeds,
       reduction=reductions, skip_grad=..., skip_losses=...)
def test_mse_matches_reference(n, dtype, seed, reduction, skip_grad: bool, skip_losses: bool):
    rng = np.random.default_rng(seed)
    x, y = random_array(rng, n, dtype), random_array(rng, n, dtype)
    out, expected = outputs(n, n, dtype, skip_grad, skip_losses)
    loss = _losses.mse_loss(*out, x, y, reduction)
    assert_allclose(loss, reference.mse_loss(*expected, x, y, reduction), **tol(dtype))
    assert_outputs_match(out, expected, dtype)


def test_reduction_codes_agree():
    assert _losses.REDUCTIONS == {"none": reference.losses.REDUCTION_NONE,
                                  "mean": reference.losses.REDUCTION_MEAN,
                                  "sum": reference.losses.REDUCTION_SUM}


# ---- gradients against finite differences ---------------------------------------------------

@pytest.mark.parametrize("reduction", [NONE, MEAN, SUM])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.3])
@pytest.mark.parametrize("use_weight", [False, True])
def test_cross_entropy_gradient_matches_finite_differences(reduction, label_smoothing,
                                                           use_weight):
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((5, 4)) * 2
    target = np.array([0, 3, -100, 1, 3])
    weight = rng.uniform(0.5, 2.0, 4) if use_weight else None
    args = (target, weight, -100, label_smoothing, reduction)
    dlogits = cross_entropy(logits, *args)[2]
    numeric = numerical_gradient(lambda: cross_entropy(logits, *args)[0], logits)
    assert_allclose(dlogits, numeric, rtol=1e-6, atol=1e-8)
    assert_array_equal(dlogits[2], 0.0)


@pytest.mark.parametrize("reduction", [NONE, MEAN, SUM])
def test_mse_gradient_matches_finite_differences(reduction):
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal(7), rng.standard_normal(7)
    dx = np.empty_like(x)
    _losses.mse_loss(dx, None, x, y, reduction)
    numeric = numerical_gradient(lambda: _losses.mse_loss(None, None, x, y, reduction), x)
    assert_allclose(dx, numeric, rtol=1e-6, atol=1e-8)


# ---- cases computed by hand (PyTorch's documented formulas) ---------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.4])
def test_uniform_logits_give_log_classes(dtype, label_smoothing):
    logits = np.full((3, 10), 2.5, dtype)
    loss, losses, dlogits = cross_entropy(logits, [0, 4, 9], label_smoothing=label_smoothing)
    assert loss == pytest.approx(math.log(10), rel=1e-6)
    assert_allclose(losses, math.log(10), rtol=1e-6)
    # softmax is 1/10 everywhere; the smoothed one-hot is (1-ε)·onehot + ε/10
    expected = np.full((3, 10), 0.1 - label_smoothing / 10)
    expected[[0, 1, 2], [0, 4, 9]] -= 1 - label_smoothing
    assert_allclose(dlogits, expected / 3, rtol=1e-5, atol=1e-7)


def test_weighted_mean_with_an_ignored_row_by_hand():
    # row 0: p = (1/2, 1/2), target 1 (weight 1); row 1: p = (3/4, 1/4), target 0 (weight 2)
    logits = np.array([[0.0, 0.0], [math.log(3), 0.0], [5.0, -5.0]])
    weight = np.array([2.0, 1.0])
    loss, losses, dlogits = cross_entropy(logits, [1, 0, -100], weight)
    assert loss == pytest.approx((math.log(2) + 2 * math.log(4 / 3)) / 3)
    assert_allclose(losses, [math.log(2), 2 * math.log(4 / 3), 0.0])
    assert_allclose(dlogits, [[1 / 6, -1 / 6], [-1 / 6, 1 / 6], [0.0, 0.0]])


def test_label_smoothing_by_hand():
    logits = np.array([[math.log(3), 0.0]])  # p = (3/4, 1/4)
    loss = cross_entropy(logits, [0], label_smoothing=0.2, reduction=SUM)[0]
    assert loss == pytest.approx(0.8 * math.log(4 / 3) + 0.1 * (math.log(4 / 3) + math.log(4)))


def test_mse_by_hand():
    x, y, dx = np.array([1.0, 2.0, 3.0]), np.array([1.0, 0.0, 0.0]), np.empty(3)
    losses = np.empty(3)
    assert _losses.mse_loss(dx, losses, x, y, MEAN) == pytest.approx(13 / 3)
    assert_allclose(dx, [0.0, 4 / 3, 2.0])
    assert_allclose(losses, [0.0, 4.0, 9.0])
    assert _losses.mse_loss(dx, None, x, y, SUM) == pytest.approx(13.0)
    assert_allclose(dx, [0.0, 4.0, 6.0])


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("use_weight", [False, True])
def test_all_rows_ignored_is_nan_mean_and_zero_gradient(label_smoothing, use_weight):
    # PyTorch: mean over no rows is 0/0 = NaN, sum is 0, and no row gets a gradient.
    logits = np.random.default_rng(3).standard_normal((3, 4))
    weight = np.ones(4) if use_weight else None
    target = [-100] * 3
    loss, _, dlogits = cross_entropy(logits, target, weight, label_smoothing=label_smoothing)
    assert math.isnan(loss)
    assert_array_equal(dlogits, 0.0)
    assert cross_entropy(logits, target, weight, label_smoothing=label_smoothing,
                         reduction=SUM)[0] == 0.0


def test_zero_total_weight_is_nan_on_the_rows_not_ignored():
    # As PyTorch 2.13: NaN loss, NaN gradient on rows not ignored, zero on the ignored row.
    logits = np.random.default_rng(4).standard_normal((3, 4))
    loss, _, dlogits = cross_entropy(logits, [0, 1, -100], np.array([0.0, 0.0, 1.0, 1.0]),
                                     label_smoothing=0.1)
    assert math.isnan(loss)
    assert np.isnan(dlogits[:2]).all()
    assert_array_equal(dlogits[2], 0.0)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.5])
def test_one_class_gives_zero_loss_and_gradient(label_smoothing):
    loss, losses, dlogits = cross_entropy(np.array([[3.0], [-2.0]]), [0, 0],
                                          label_smoothing=label_smoothing)
    assert loss == 0.0
    assert_array_equal(losses, 0.0)
    assert_array_equal(dlogits, 0.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_logits_are_stable(dtype):
    logits = np.array([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 999.0]], dtype)
    loss, losses, dlogits = cross_entropy(logits, [1, 1], label_smoothing=0.1, reduction=NONE)
    assert np.isfinite(loss) and np.isfinite(losses).all() and np.isfinite(dlogits).all()
    # row 0: -log p_1 = 2000 for the target; smoothing adds 0.1/3 · (0 + 2000 + 1000)
    assert losses[0] == pytest.approx(0.9 * 2000 + 0.1 / 3 * 3000, rel=1e-6)
    assert_allclose(dlogits[0], [1 - 0.1 / 3, -0.9 - 0.1 / 3, -0.1 / 3], atol=1e-6)


def test_nan_logits_give_nan_loss():
    logits = np.array([[0.0, np.nan], [1.0, 2.0]], np.float32)
    assert math.isnan(CrossEntropyLoss()(logits, [0, 1]))
    assert math.isnan(MSELoss()(logits, np.zeros((2, 2))))


# ---- loss objects ---------------------------------------------------------------------------

@given(batch=dims, classes=dims, dtype=dtypes, seed=seeds, use_weight=...,
       label_smoothing=smoothings, reduction=reduction_names)
def test_cross_entropy_loss_matches_reference(batch, classes, dtype, seed, use_weight: bool,
                                              label_smoothing, reduction):
    rng = np.random.default_rng(seed)
    logits, target, weight = classification(rng, batch, classes, dtype, use_weight=use_weight)
    loss_fn = CrossEntropyLoss(weight, reduction=reduction, label_smoothing=label_smoothing)
    loss = loss_fn(logits, target.astype(np.int32))
    code = _losses.REDUCTIONS[reduction]
    dlogits, losses = np.empty((batch, classes)), np.empty(batch)
    expected = reference.softmax_cross_entropy(dlogits, losses, logits, target, weight, -100,
                                               label_smoothing, code)
    if reduction == "none":
        assert loss.dtype == dtype and loss.shape == (batch,)
        assert_allclose(loss, losses, **tol(dtype))
    else:
        assert type(loss) is float
        assert_allclose(loss, expected, **tol(dtype))
    grad = loss_fn.backward()
    assert grad.dtype == dtype
    assert_allclose(grad, dlogits, **tol(dtype))


@given(rows=dims, cols=dims, dtype=dtypes, seed=seeds, reduction=reduction_names)
def test_mse_loss_matches_reference(rows, cols, dtype, seed, reduction):
    rng = np.random.default_rng(seed)
    x, y = random_array(rng, (rows, cols), dtype), random_array(rng, (rows, cols), np.float64)
    loss_fn = MSELoss(reduction)
    loss = loss_fn(x, y)
    dx, losses = np.empty(rows * cols), np.empty(rows * cols)
    expected = reference.mse_loss(dx, losses, x.ravel(), y.astype(dtype).ravel(),
                                  _losses.REDUCTIONS[reduction])
    if reduction == "none":
        assert loss.shape == x.shape and loss.dtype == dtype
        assert_allclose(loss.ravel(), losses, **tol(dtype))
    else:
        assert type(loss) is float
        assert_allclose(loss, expected, **tol(dtype))
    assert_allclose(loss_fn.backward().ravel(), dx, **tol(dtype))


def test_backward_scales_by_grad_output():
    rng = np.random.default_rng(5)
    logits, target, _ = classification(rng, 6, 4, np.float64)
    loss_fn = CrossEntropyLoss(reduction="sum")
    loss_fn(logits, target)
    grad = loss_fn.backward().copy()
    assert_allclose(loss_fn.backward(2.5), 2.5 * grad)
    per_row = CrossEntropyLoss(reduction="none")
    per_row(logits, target)
    upstream = rng.standard_normal(6)
    assert_allclose(per_row.backward(upstream), grad * upstream[:, None])
    mse = MSELoss(reduction="none")
    x = rng.standard_normal((3, 2))
    mse(x, np.zeros((3, 2)))
    assert_allclose(mse.backward(np.full((3, 2), 0.5)), x)


def test_mse_accepts_a_flat_target_for_a_column_output():
    x = np.array([[1.0], [2.0], [4.0]], np.float32)
    assert MSELoss()(x, [1, 0, 0]) == pytest.approx((0 + 4 + 16) / 3)
    assert MSELoss(reduction="none")(x, [1, 0, 0]).shape == (3, 1)


def test_non_contiguous_output_is_accepted():
    rng = np.random.default_rng(6)
    wide = rng.standard_normal((5, 8))
    target = rng.integers(0, 4, 5)
    loss_fn = CrossEntropyLoss()
    assert loss_fn(wide[:, ::2], target) == pytest.approx(loss_fn(wide[:, ::2].copy(), target))
    assert loss_fn.backward().flags.c_contiguous


def test_ignore_index_can_be_a_class():
    logits = np.random.default_rng(7).standard_normal((4, 3))
    loss, _, dlogits = cross_entropy(logits, [0, 1, 2, 0], ignore_index=0, reduction=SUM)
    kept = cross_entropy(logits[1:3], [1, 2], reduction=SUM)
    assert loss == pytest.approx(kept[0])
    assert_array_equal(dlogits[[0, 3]], 0.0)


def test_kernel_specs():
    weight = [1.0, 2.0, 3.0]
    spec = CrossEntropyLoss(weight, ignore_index=2, reduction="sum",
                            label_smoothing=0.1)._kernel_spec()
    assert spec["kind"] == _losses.LOSS_CROSS_ENTROPY and spec["ignore_index"] == 2
    assert spec["label_smoothing"] == 0.1 and spec["reduction"] == SUM
    assert spec["weight"].dtype == np.float64 and spec["weight"].tolist() == weight
    assert CrossEntropyLoss()._kernel_spec()["weight"] is None
    assert MSELoss()._kernel_spec() == {"kind": _losses.LOSS_MSE, "reduction": MEAN}


def test_validate_target_converts_once():
    labels = CrossEntropyLoss()._validate_target([2, 0, 1], 3, 3)
    assert labels.dtype == np.int64 and labels.flags.c_contiguous and labels.tolist() == [2, 0, 1]
    values = MSELoss()._validate_target(np.arange(4), 1, 4)
    assert values.shape == (4, 1) and values.dtype == np.float32
    values = MSELoss()._validate_target(np.ones((4, 2)), 2, 4, dtype="float32")
    assert values.dtype == np.float32 and values.flags.c_contiguous


# ---- errors ---------------------------------------------------------------------------------

LOGITS = np.zeros((4, 10), np.float32)
LABELS = np.array([1, 2, 3, 4])


@pytest.mark.parametrize("make, output, target, error, match", [
    (CrossEntropyLoss, LOGITS.astype(np.int64), LABELS, TypeError, "output: .*float32"),
    (CrossEntropyLoss, LOGITS.astype(np.float16), LABELS, TypeError, "output: .*float16"),
    (CrossEntropyLoss, LOGITS.astype(complex), LABELS, TypeError, "output: .*complex"),
    (CrossEntropyLoss, LOGITS.astype(object), LABELS, TypeError, "output: .*object"),
    (CrossEntropyLoss, np.zeros(10), LABELS, ValueError, r"output: .*\(10,\)"),
    (CrossEntropyLoss, np.zeros((0, 10)), [], ValueError, "output: .*non-empty"),
    (CrossEntropyLoss, np.zeros((4, 0)), LABELS, ValueError, r"output: .*\(4, 0\)"),
    (CrossEntropyLoss, LOGITS, LABELS.astype(bool), TypeError, "target: .*bool"),
    (CrossEntropyLoss, LOGITS, LABELS.astype(float), TypeError, "target: .*float64"),
    (CrossEntropyLoss, LOGITS, LABELS.astype(object), TypeError, "target: .*object"),
    (CrossEntropyLoss, LOGITS, LABELS[:, None], ValueError, r"target: .*\(4, 1\)"),
    (CrossEntropyLoss, LOGITS, LABELS[:3], ValueError, "target: expected 4 .*got 3"),
    (CrossEntropyLoss, LOGITS, [0, 1, 2, 11], ValueError,
     r"target: expected class indices in \[0, 10\).*got 11 at row 3"),
    (CrossEntropyLoss, LOGITS, [0, -1, 2, 3], ValueError, "target: .*got -1 at row 1"),
    (lambda: CrossEntropyLoss(np.ones(7)), LOGITS, LABELS, ValueError,
     "weight: expected 10 values.*got 7"),
    (MSELoss, LOGITS.astype(np.int32), LOGITS, TypeError, "output: .*int32"),
    (MSELoss, LOGITS, np.zeros((4, 9)), ValueError, r"target: .*\(4, 10\).*\(4, 9\)"),
    (MSELoss, np.zeros(4), np.zeros((4, 1)), ValueError, "target: "),
    (MSELoss, LOGITS, np.full((4, 10), "a"), TypeError, "target: "),
    (MSELoss, np.zeros((0, 1)), np.zeros((0, 1)), ValueError, "output: .*non-empty"),
])
def test_bad_call_arguments_are_rejected(make, output, target, error, match):
    with pytest.raises(error, match=match):
        make()(output, target)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"weight": [1.0, np.nan]}, ValueError, "weight: expected finite.*nan at index 1"),
    ({"weight": [1.0, np.inf]}, ValueError, "weight: expected finite"),
    ({"weight": np.ones((2, 2))}, ValueError, r"weight: .*\(2, 2\)"),
    ({"weight": [True, False]}, TypeError, "weight: "),
    ({"weight": ["a", "b"]}, TypeError, "weight: "),
    ({"reduction": "avg"}, ValueError, "reduction: .*'avg'"),
    ({"reduction": None}, ValueError, "reduction: "),
    ({"reduction": "batchmean"}, ValueError, "reduction: "),
    ({"label_smoothing": 1.5}, ValueError, "label_smoothing: .*1.5"),
    ({"label_smoothing": -0.1}, ValueError, "label_smoothing: "),
    ({"label_smoothing": float("nan")}, ValueError, "label_smoothing: "),
    ({"label_smoothing": "0.1"}, TypeError, "label_smoothing: "),
    ({"ignore_index": 1.5}, TypeError, "ignore_index: "),
    ({"ignore_index": True}, TypeError, "ignore_index: "),
    ({"ignore_index": 2**64}, ValueError, "ignore_index: "),
])
def test_bad_cross_entropy_settings_are_rejected(kwargs, error, match):
    with pytest.raises(error, match=match):
        CrossEntropyLoss(**kwargs)


def test_bad_mse_reduction_is_rejected():
    with pytest.raises(ValueError, match="reduction: .*'avg'"):
        MSELoss("avg")


def test_backward_errors():
    loss_fn = CrossEntropyLoss(reduction="none")
    with pytest.raises(RuntimeError, match="backward"):
        loss_fn.backward()
    loss_fn(LOGITS, LABELS)
    with pytest.raises(ValueError, match=r"grad_output: expected shape \(4,\)"):
        loss_fn.backward(np.ones(3))
    mean_fn = MSELoss()
    mean_fn(LOGITS, LOGITS)
    with pytest.raises(ValueError, match=r"grad_output: expected shape \(\)"):
        mean_fn.backward(np.ones(2))
    with pytest.raises(TypeError, match="grad_output: "):
        mean_fn.backward("x")


@pytest.mark.parametrize("make, target, n_outputs, n_rows, error, match", [
    (CrossEntropyLoss, [0, 1, 5], 3, 3, ValueError, r"y: expected class indices in \[0, 3\)"),
    (CrossEntropyLoss, [0, 1], 3, 3, ValueError, "y: expected 3 .*got 2"),
    (CrossEntropyLoss, [0.0, 1.0], 3, 2, TypeError, "y: .*float64"),
    (lambda: CrossEntropyLoss([1.0, 2.0]), [0, 1], 3, 2, ValueError, "weight: expected 3"),
    (MSELoss, np.ones((3, 2)), 2, 4, ValueError, "y: expected 4 rows.*got 3"),
    (MSELoss, np.ones((3, 2)), 1, 3, ValueError, "y: expected 1 features"),
    (MSELoss, [1.0, np.nan, 2.0], 1, 3, ValueError, "y: expected finite.*nan at row 1"),
    (MSELoss, [True, False], 1, 2, TypeError, "y: "),
])
def test_validate_target_errors(make, target, n_outputs, n_rows, error, match):
    with pytest.raises(error, match=match):
        make()._validate_target(target, n_outputs, n_rows, name="y")


# ---- PyTorch itself, when installed ---------------------------------------------------------

@given(batch=dims, classes=dims, dtype=dtypes, seed=seeds, ignore_index=ignore_indices,
       use_weight=..., label_smoothing=smoothings, reduction=reduction_names)
def test_cross_entropy_matches_torch(batch, classes, dtype, seed, ignore_index,
                                     use_weight: bool, label_smoothing, reduction):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    logits, target, weight = classification(rng, batch, classes, dtype, ignore_index, use_weight)
    loss_fn = CrossEntropyLoss(weight, ignore_index, reduction, label_smoothing)
    loss = loss_fn(logits, target)
    x = torch.tensor(logits, requires_grad=True)
    expected = torch.nn.functional.cross_entropy(
        x, torch.tensor(target), None if weight is None else torch.tensor(weight),
        ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing)
    expected.sum().backward()
    assert_allclose(loss, expected.detach().numpy(), **tol(dtype))
    assert_allclose(loss_fn.backward(), x.grad.numpy(), **tol(dtype))


@given(rows=dims, cols=dims, dtype=dtypes, seed=seeds, reduction=reduction_names)
def test_mse_matches_torch(rows, cols, dtype, seed, reduction):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    x, y = random_array(rng, (rows, cols), dtype), random_array(rng, (rows, cols), dtype)
    loss_fn = MSELoss(reduction)
    loss = loss_fn(x, y)
    xt = torch.tensor(x, requires_grad=True)
    expected = torch.nn.functional.mse_loss(xt, torch.tensor(y), reduction=reduction)
    expected.sum().backward()
    assert_allclose(loss, expected.detach().numpy(), **tol(dtype))
    assert_allclose(loss_fn.backward(), xt.grad.numpy(), **tol(dtype))
