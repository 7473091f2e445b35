"""The element-by-element losses (L1, Huber, BCE, BCE with logits, KL divergence; MSE shares
their driver): kernels against the NumPy twins, finite differences, hand-computed cases,
the loss objects, their errors, and PyTorch when installed."""
import math
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

from cnet import Dense, Sequential, Sigmoid, Trainer, _losses, optim, reference
from cnet.losses import BCELoss, BCEWithLogitsLoss, HuberLoss, KLDivLoss, L1Loss, MSELoss
from helpers import dims, dtypes, numerical_gradient, random_array, seeds, tol

NONE, MEAN, SUM, BATCHMEAN = 0, 1, 2, 3
NAMES = {"none": NONE, "mean": MEAN, "sum": SUM, "batchmean": BATCHMEAN}
KERNELS = ["mse_loss", "l1_loss", "huber_loss", "bce_loss", "bce_with_logits_loss",
           "kl_div_loss"]
# How a weight may broadcast over a (rows, cols) output.
WEIGHT_SHAPES = [None, (), (1,), "cols", "rows1", "full"]


def weight_shape(kind, rows, cols):
    return {None: None, (): (), (1,): (1,), "cols": (cols,), "rows1": (rows, 1),
            "full": (rows, cols)}[kind]


def log_softmax(x):
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def make_case(name, rng, rows, cols, dtype, weight_kind=None, use_pos_weight=False,
              delta=1.0, log_target=False, safe=False):
    """(input, target, kernel keyword arguments) for one element-by-element kernel. safe:
    keep inputs away from the kinks (for finite differences)."""
    shape = (rows, cols)
    kwargs = {}
    if name in ("mse_loss", "l1_loss", "huber_loss"):
        x, t = random_array(rng, shape, dtype, 2.0), random_array(rng, shape, dtype, 2.0)
        if safe:   # |x - t| at least 0.05 from 0 and from delta
            size = np.where(rng.random(shape) < 0.5, rng.uniform(0.05, delta - 0.05, shape),
                            rng.uniform(delta + 0.05, 3.0, shape))
            x = (t + rng.choice([-1, 1], shape) * size).astype(dtype)
        if name == "huber_loss":
            kwargs["delta"] = delta
    elif name == "bce_loss":
        low = 0.05 if safe else 0.0
        x = rng.uniform(low, 1 - low, shape).astype(dtype)
        if not safe:   # exact 0 and 1, where the logs are clamped
            x[rng.random(shape) < 0.1] = 0.0
            x[rng.random(shape) < 0.1] = 1.0
        t = rng.choice([0.0, 1.0, 0.3], shape).astype(dtype)
        kwargs["weight"] = make_weight(rng, weight_kind, rows, cols, dtype)
    elif name == "bce_with_logits_loss":
        x = random_array(rng, shape, dtype, 4.0)
        t = rng.choice([0.0, 1.0, 0.7], shape).astype(dtype)
        kwargs["weight"] = make_weight(rng, weight_kind, rows, cols, dtype)
        kwargs["pos_weight"] = (rng.uniform(0.2, 4.0, cols).astype(dtype) if use_pos_weight
                                else None)
    else:  # kl_div_loss: log-probabilities against probabilities with some zeros
        x = log_softmax(rng.standard_normal(shape)).astype(dtype)
        p = rng.uniform(0, 1, shape) * (rng.random(shape) > 0.2)
        p = p / np.maximum(p.sum(axis=1, keepdims=True), 1e-12)
        t = (np.log(p + 1e-3) if log_target else p).astype(dtype)
        kwargs["log_target"] = log_target
    return x, t, kwargs


def make_weight(rng, kind, rows, cols, dtype):
    shape = weight_shape(kind, rows, cols)
    return None if shape is None else rng.uniform(0.1, 2.0, shape).astype(dtype)


def reductions_for(name):
    return [NONE, MEAN, SUM] + ([BATCHMEAN] if name == "kl_div_loss" else [])


# ---- kernels against the NumPy reference ----------------------------------------------------

@given(name=st.sampled_from(KERNELS), rows=dims, cols=dims, dtype=dtypes, seed=seeds,
       weight_kind=st.sampled_from(WEIGHT_SHAPES), use_pos_weight=...,
       delta=st.sampled_from([0.1, 1.0, 2.5]), log_target=..., data=st.data(),
       skip_grad=..., skip_losses=...)
def test_kernels_match_reference(name, rows, cols, dtype, seed, weight_kind,
                                 use_pos_weight: bool, delta, log_target: bool, data,
                                 skip_grad: bool, skip_losses: bool):
    rng = np.random.default_rng(seed)
    x, t, kwargs = make_case(name, rng, rows, cols, dtype, weight_kind, use_pos_weight, delta,
                             log_target)
    reduction = data.draw(st.sampled_from(reductions_for(name)))
    out = [None if skip else np.full(x.shape, np.nan, dtype) for skip in (skip_grad, skip_losses)]
    expected = [None if a is None else a.copy() for a in out]
    loss = getattr(_losses, name)(*out, x, t, **kwargs, reduction=reduction)
    want = getattr(reference, name)(*expected, x, t, **kwargs, reduction=reduction)
    assert_allclose(loss, want, **tol(dtype))
    for got, ref in zip(out, expected):
        if got is not None:
            assert_allclose(got, ref, rtol=tol(dtype)["rtol"], atol=tol(dtype)["atol"] * 10)


@pytest.mark.parametrize("name", KERNELS)
@pytest.mark.parametrize("cols", [64, 70, 130])
@pytest.mark.parametrize("weight_kind", ["cols", "full"])
def test_kernels_match_reference_on_rows_longer_than_a_chunk(name, cols, weight_kind):
    """Rows are taken 64 elements at a time (BCE with logits computes a chunk's exponentials
    first): weights and pos_weight must stay aligned across the chunks."""
    rng = np.random.default_rng(cols)
    x, t, kwargs = make_case(name, rng, 3, cols, np.float64, weight_kind, True)
    out, expected = np.full((2, 3, cols), np.nan), np.full((2, 3, cols), np.nan)
    loss = getattr(_losses, name)(*out, x, t, **kwargs, reduction=SUM)
    want = getattr(reference, name)(*expected, x, t, **kwargs, reduction=SUM)
    assert_allclose(loss, want, rtol=1e-12)
    assert_allclose(out, expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("target", [0.0, 1.0, 0.25])
def test_bce_with_logits_float32_keeps_its_accuracy_at_every_logit(target):
    """In float32 the exponential and log1p(e^-|x|) are kernels.h's own vectorised ones:
    each element's loss within a few float32 ulps of the float64 reference, from the middle
    to where e^-|x| is tiny (where log(1 + e) would have rounded to 0: at t = 1 and x > 0
    the loss is l itself, 1e-38 at x = 87), and its gradient
    (σ(x) - t, at most 1) within float32's rounding of 1."""
    x = np.concatenate([np.linspace(-87, 87, 2001), [-1e-6, -1e-30, 0.0, 1e-30, 1e-6]])
    x = x.astype(np.float32)[None, :]
    t = np.full_like(x, target)
    got = np.empty((2, *x.shape), np.float32)
    want = np.empty((2, *x.shape))
    _losses.bce_with_logits_loss(*got, x, t, reduction=NONE)
    reference.bce_with_logits_loss(*want, x.astype(np.float64), t.astype(np.float64),
                                   reduction=NONE)
    grad, losses = got
    # atol: (1 - t) x - log σ(x) cancels to l = log1p(e^-|x|) in double, within an ulp of |x|
    assert_allclose(losses, want[1], rtol=4e-7, atol=2e-14)
    assert_allclose(grad, want[0], rtol=4e-7, atol=1.2e-7)


@pytest.mark.parametrize("name", KERNELS)
def test_kernels_take_flat_arrays_as_one_row(name):
    rng = np.random.default_rng(0)
    x, t, kwargs = make_case(name, rng, 1, 11, np.float64)
    kwargs.pop("weight", None)
    grad, flat_grad = np.empty((1, 11)), np.empty(11)
    loss = getattr(_losses, name)(grad, None, x, t, **kwargs)
    assert getattr(_losses, name)(flat_grad, None, x[0], t[0], **kwargs) == loss
    assert_array_equal(flat_grad, grad[0])


def test_reduction_codes_agree():
    assert _losses.BATCHMEAN == reference.losses.REDUCTION_BATCHMEAN == BATCHMEAN


# ---- gradients against finite differences (float64) -----------------------------------------

CASES = [("mse_loss", {}), ("l1_loss", {}), ("huber_loss", {"delta": 0.7}),
         ("bce_loss", {"weight_kind": "rows1"}), ("bce_loss", {"weight_kind": "full"}),
         ("bce_with_logits_loss", {}),
         ("bce_with_logits_loss", {"weight_kind": "cols", "use_pos_weight": True}),
         ("kl_div_loss", {}), ("kl_div_loss", {"log_target": True})]


@pytest.mark.parametrize("name, options", CASES)
@pytest.mark.parametrize("rows, cols", [(1, 1), (4, 3), (3, 9)])
def test_gradients_match_finite_differences(name, options, rows, cols):
    rng = np.random.default_rng(rows * 10 + cols)
    x, t, kwargs = make_case(name, rng, rows, cols, np.float64, safe=True, **options)
    kernel = getattr(_losses, name)
    for reduction in reductions_for(name):
        grad = np.empty_like(x)
        kernel(grad, None, x, t, **kwargs, reduction=reduction)
        numeric = numerical_gradient(lambda: kernel(None, None, x, t, **kwargs,
                                                    reduction=reduction), x)
        assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


# ---- PyTorch's documented formulas, by hand ---------------------------------------------------

@pytest.mark.parametrize("name", ["mse_loss", "l1_loss", "huber_loss", "bce_loss",
                                  "bce_with_logits_loss"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows, cols", [(1, 5), (3, 8), (7, 13), (64, 33), (3, 130)])
def test_loss_and_gradient_have_the_same_bits_whichever_outputs_are_asked_for(name, dtype,
                                                                               rows, cols):
    """The gradient alone (the step runner's call) takes its own loop, over the rows as one:
    its loss must be the loss alone's (evaluate's) to the last bit, and its gradient that of
    the row-by-row loop that also writes each element's loss. (That loop's sum may differ in
    the last bit where the compiler fuses the other loops' multiply-adds and not its own, as
    gcc does for AVX-512 or aarch64: its loss is compared to 1e-15.)"""
    rng = np.random.default_rng(rows * cols)
    x, t, kwargs = make_case(name, rng, rows, cols, dtype)
    if name in ("mse_loss", "l1_loss", "huber_loss"):
        x[0, 0] = t[0, 0]                          # a zero residual: sign 0 for L1
    kernel = getattr(_losses, name)
    grad_only, grad, losses = np.full((3, rows, cols), np.nan, dtype)
    loss_grad_only = kernel(grad_only, None, x, t, **kwargs, reduction=SUM)
    loss_both = kernel(grad, losses, x, t, **kwargs, reduction=SUM)
    loss_alone = kernel(None, None, x, t, **kwargs, reduction=SUM)
    assert loss_grad_only == loss_alone
    assert loss_both == pytest.approx(loss_alone, rel=1e-15)
    assert_array_equal(grad_only, grad)


def run(name, x, t, reduction=MEAN, **kwargs):
    """Loss, per-element losses and gradient from a kernel, in float64."""
    x, t = np.asarray(x, np.float64), np.asarray(t, np.float64)
    grad, losses = np.empty_like(x), np.empty_like(x)
    loss = getattr(_losses, name)(grad, losses, x, t, **kwargs, reduction=reduction)
    return loss, losses, grad


def test_l1_by_hand():
    loss, losses, grad = run("l1_loss", [[1.0, -2.0, 3.0]], [[0.0, 0.0, 3.0]])
    assert loss == pytest.approx(1.0)
    assert_allclose(losses, [[1.0, 2.0, 0.0]])
    assert_allclose(grad, [[1 / 3, -1 / 3, 0.0]])   # sign(0) = 0, as torch


def test_huber_at_and_around_delta():
    # r = 2 = delta: both branches give ½ δ² = δ(|r| - ½ δ) = 2 and the gradient δ.
    r = np.array([[2.0, -2.0, 3.0, 0.5, -5.0]])
    loss, losses, grad = run("huber_loss", r, np.zeros_like(r), SUM, delta=2.0)
    assert_allclose(losses, [[2.0, 2.0, 4.0, 0.125, 8.0]])
    assert loss == pytest.approx(16.125)
    assert_allclose(grad, [[2.0, -2.0, 2.0, 0.5, -2.0]])
    mean_grad = run("huber_loss", r, np.zeros_like(r), MEAN, delta=2.0)[2]
    assert_allclose(mean_grad, grad / 5)


def test_huber_with_delta_one_is_smooth_l1():
    rng = np.random.default_rng(1)
    x, t = rng.standard_normal((3, 4)) * 2, rng.standard_normal((3, 4))
    r = np.abs(x - t)
    assert run("huber_loss", x, t)[0] == pytest.approx(
        np.where(r < 1, 0.5 * r * r, r - 0.5).mean())


def test_bce_clamps_its_logs_at_minus_100():
    # As PyTorch: log 0 becomes -100, and the gradient is (x - t) / max(x (1 - x), 1e-12).
    loss, losses, grad = run("bce_loss", [[0.0, 1.0, 0.0, 1.0]], [[1.0, 0.0, 0.0, 1.0]], NONE)
    assert_array_equal(losses, [[100.0, 100.0, 0.0, 0.0]])
    assert loss == 200.0
    assert_allclose(grad, [[-1e12, 1e12, 0.0, 0.0]])


def test_bce_by_hand_with_weight():
    x, t = [[0.8, 0.4], [0.5, 0.1]], [[1.0, 0.0], [1.0, 1.0]]
    weight = np.array([2.0, 0.5])          # per column, broadcast over rows
    loss, losses, grad = run("bce_loss", x, t, MEAN, weight=weight)
    expected = np.array([[-2 * math.log(0.8), -0.5 * math.log(0.6)],
                         [-2 * math.log(0.5), -0.5 * math.log(0.1)]])
    assert_allclose(losses, expected)
    assert loss == pytest.approx(expected.mean())
    assert_allclose(grad, weight * (np.array(x) - t) / (np.array(x) * (1 - np.array(x))) / 4)


def test_bce_with_logits_and_pos_weight_by_hand():
    # σ(0) = ½: a positive costs pos_weight · log 2, a negative log 2.
    x, t = [[0.0, 0.0], [0.0, 0.0]], [[1.0, 0.0], [1.0, 1.0]]
    loss, losses, grad = run("bce_with_logits_loss", x, t, SUM, pos_weight=np.array([3.0, 0.5]))
    log2 = math.log(2)
    assert_allclose(losses, [[3 * log2, log2], [3 * log2, 0.5 * log2]])
    assert loss == pytest.approx(7.5 * log2)
    # d/dx = (1 - t) - (1 + (pw - 1) t) σ(-x)
    assert_allclose(grad, [[-1.5, 0.5], [-1.5, -0.25]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_with_logits_is_stable_for_huge_logits(dtype):
    x = np.array([[1000.0, -1000.0, 1000.0, -1000.0, 40.0]], dtype)
    t = np.array([[0.0, 1.0, 1.0, 0.0, 0.0]], dtype)
    grad, losses = np.empty_like(x), np.empty_like(x)
    _losses.bce_with_logits_loss(grad, losses, x, t, reduction=NONE)
    assert_allclose(losses, [[1000.0, 1000.0, 0.0, 0.0, 40.0]], rtol=1e-6)
    assert_allclose(grad, [[1.0, -1.0, 0.0, 0.0, 1.0]], atol=1e-7)


def test_bce_with_logits_equals_bce_of_sigmoid():
    rng = np.random.default_rng(2)
    x, t = rng.standard_normal((5, 3)), rng.uniform(0, 1, (5, 3))
    weight = rng.uniform(0.5, 2, (5, 1))
    p = 1 / (1 + np.exp(-x))
    with_logits = run("bce_with_logits_loss", x, t, weight=weight)
    on_probabilities = run("bce_loss", p, t, weight=weight)
    assert with_logits[0] == pytest.approx(on_probabilities[0])
    # the chain rule through σ: d/dx = d/dp · p (1 - p)
    assert_allclose(with_logits[2], on_probabilities[2] * p * (1 - p))


@pytest.mark.parametrize("target", [0.0, 1.0, 0.3])
def test_bce_float32_keeps_its_accuracy_at_every_probability(target):
    """In float32 BCE's logarithms are kernels.h's own vectorised ones: each element's loss
    within a few float32 ulps of torch's formula evaluated in float64, from subnormal
    probabilities to 1 - 2^-24 (log1p(-x) keeping its relative accuracy for tiny x)."""
    x = np.concatenate([np.geomspace(1e-45, 1, 3000), 1 - np.geomspace(1e-8, 0.5, 1000),
                        [0.0, 1.0, 0.5, 0.49999997, 0.50000006]]).astype(np.float32)[None, :]
    t = np.full_like(x, target)
    got = np.empty((2, *x.shape), np.float32)
    _losses.bce_loss(*got, x, t, reduction=NONE)
    x64, t64 = x.astype(np.float64), float(t[0, 0])
    with np.errstate(divide="ignore"):
        logs = np.maximum(np.log(x64), -100), np.maximum(np.log1p(-x64), -100)
    want_loss = -(t64 * logs[0] + (1 - t64) * logs[1])
    want_grad = (x64 - t64) / np.maximum(x64 * (1 - x64), 1e-12)
    assert_allclose(got[1], want_loss, rtol=4e-7, atol=3e-45)   # a subnormal step or two
    assert_allclose(got[0], want_grad, rtol=4e-7, atol=0)


def test_kl_div_batchmean_by_hand():
    # Row 0 matches its target (KL 0); row 1: ½ log(½ / ¼) + ½ log(½ / ¾) = ½ log(4/3).
    x = np.log([[0.5, 0.5], [0.25, 0.75]])
    t = np.array([[0.5, 0.5], [0.5, 0.5]])
    kl = 0.5 * math.log(4 / 3)
    assert run("kl_div_loss", x, t, BATCHMEAN)[0] == pytest.approx(kl / 2)
    assert run("kl_div_loss", x, t, SUM)[0] == pytest.approx(kl)
    assert run("kl_div_loss", x, t, MEAN)[0] == pytest.approx(kl / 4)
    assert_allclose(run("kl_div_loss", x, t, BATCHMEAN)[2], -t / 2)
    # log_target=True: the same divergence from log-probabilities
    assert run("kl_div_loss", x, np.log(t), BATCHMEAN, log_target=True)[0] == pytest.approx(kl / 2)


def test_kl_div_zero_target_contributes_zero():
    loss, losses, grad = run("kl_div_loss", np.log([[0.5, 0.5]]), [[1.0, 0.0]], SUM)
    assert loss == pytest.approx(math.log(2))
    assert losses[0, 1] == 0.0 and grad[0, 1] == 0.0


# ---- loss objects ---------------------------------------------------------------------------

OBJECTS = {"mse_loss": lambda kw, r: MSELoss(r),
           "l1_loss": lambda kw, r: L1Loss(r),
           "huber_loss": lambda kw, r: HuberLoss(r, kw["delta"]),
           "bce_loss": lambda kw, r: BCELoss(kw["weight"], r),
           "bce_with_logits_loss": lambda kw, r: BCEWithLogitsLoss(kw["weight"], r,
                                                                    kw["pos_weight"]),
           "kl_div_loss": lambda kw, r: KLDivLoss(r, kw["log_target"])}


@given(name=st.sampled_from(KERNELS), rows=dims, cols=dims, dtype=dtypes, seed=seeds,
       weight_kind=st.sampled_from(WEIGHT_SHAPES), use_pos_weight=..., data=st.data())
def test_loss_objects_match_reference(name, rows, cols, dtype, seed, weight_kind,
                                      use_pos_weight: bool, data):
    rng = np.random.default_rng(seed)
    x, t, kwargs = make_case(name, rng, rows, cols, dtype, weight_kind, use_pos_weight, 0.5)
    reduction = data.draw(st.sampled_from([r for r, code in NAMES.items()
                                           if code in reductions_for(name)]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)   # KLDivLoss's 'mean'
        loss_fn = OBJECTS[name](kwargs, reduction)
    loss = loss_fn(x, t.astype(np.float64))
    grad, losses = np.empty(x.shape), np.empty(x.shape)
    expected = getattr(reference, name)(grad, losses, x, t, **kwargs,
                                        reduction=NAMES[reduction])
    assert_allclose(loss, losses if reduction == "none" else expected, **tol(dtype))
    assert ((loss.shape, loss.dtype) == (x.shape, dtype) if reduction == "none"
            else type(loss) is float)
    backward = loss_fn.backward()
    assert backward.dtype == dtype and backward.shape == x.shape
    assert_allclose(backward, grad, rtol=tol(dtype)["rtol"], atol=tol(dtype)["atol"] * 10)


def test_objects_take_any_number_of_dimensions():
    # The last axis is the column: pos_weight and a per-column weight follow it.
    rng = np.random.default_rng(3)
    x, t = rng.standard_normal((2, 3, 4)), rng.uniform(0, 1, (2, 3, 4))
    pos_weight, weight = rng.uniform(0.5, 2, 4), rng.uniform(0.5, 2, (2, 1, 4))
    loss = BCEWithLogitsLoss(weight, "none", pos_weight)(x, t)
    expected = np.empty((6, 4))
    reference.bce_with_logits_loss(None, expected, x.reshape(6, 4), t.reshape(6, 4),
                                   np.broadcast_to(weight, x.shape).reshape(6, 4), pos_weight,
                                   NONE)
    assert_allclose(loss, expected.reshape(x.shape))
    # KLDivLoss's 'batchmean' divides by the first axis
    logp = log_softmax(rng.standard_normal((2, 3, 4)))
    p = np.exp(log_softmax(rng.standard_normal((2, 3, 4))))
    assert KLDivLoss("batchmean")(logp, p) == pytest.approx(KLDivLoss("sum")(logp, p) / 2)
    flat = rng.standard_normal(5)
    assert L1Loss()(flat, np.zeros(5)) == pytest.approx(np.abs(flat).mean())


def test_flat_target_for_a_column_output():
    x = np.array([[1.0], [2.0], [4.0]], np.float32)
    assert L1Loss()(x, [1, 0, 0]) == pytest.approx(6 / 3)
    assert HuberLoss(delta=1.0)(x, [1, 0, 0]) == pytest.approx((0 + 1.5 + 3.5) / 3)


def test_backward_scales_by_grad_output():
    rng = np.random.default_rng(4)
    x, t = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    loss_fn = HuberLoss("none")
    loss_fn(x, t)
    upstream = rng.standard_normal((3, 2))
    assert_allclose(loss_fn.backward(upstream), loss_fn.backward() * upstream)
    summed = KLDivLoss("batchmean")
    summed(log_softmax(x), np.full((3, 2), 0.5))
    assert_allclose(summed.backward(3.0), 3 * summed.backward())


def test_kl_div_mean_warns_as_torch():
    with pytest.warns(UserWarning, match="batchmean"):
        KLDivLoss()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        KLDivLoss("batchmean")
        KLDivLoss("sum", log_target=True)


def test_kernel_specs():
    assert L1Loss("sum")._kernel_spec() == {"kind": _losses.LOSS_L1, "reduction": SUM}
    assert HuberLoss(delta=0.3)._kernel_spec() == {"kind": _losses.LOSS_HUBER,
                                                   "reduction": MEAN, "delta": 0.3}
    spec = BCEWithLogitsLoss([[1.0, 2.0]], pos_weight=[3.0, 4.0])._kernel_spec()
    assert spec["kind"] == _losses.LOSS_BCE_WITH_LOGITS
    assert spec["weight"].tolist() == [1.0, 2.0] and spec["pos_weight"].tolist() == [3.0, 4.0]
    assert BCELoss()._kernel_spec() == {"kind": _losses.LOSS_BCE, "reduction": MEAN,
                                        "weight": None}
    assert KLDivLoss("sum", True)._kernel_spec() == {"kind": _losses.LOSS_KL_DIV,
                                                     "reduction": SUM, "log_target": True}


def test_reprs():
    assert repr(HuberLoss(delta=2)) == "HuberLoss(reduction='mean', delta=2.0)"
    assert "pos_weight=array([2.])" in repr(BCEWithLogitsLoss(pos_weight=[2]))
    assert repr(KLDivLoss("batchmean")) == "KLDivLoss(reduction='batchmean', log_target=False)"


# ---- errors ---------------------------------------------------------------------------------

OUT = np.full((4, 3), 0.5, np.float32)


@pytest.mark.parametrize("make, output, target, error, match", [
    (L1Loss, OUT.astype(np.int64), OUT, TypeError, "output: .*int64"),
    (L1Loss, OUT, np.zeros((4, 2)), ValueError, r"target: .*\(4, 3\).*\(4, 2\)"),
    (HuberLoss, np.zeros((0, 3)), np.zeros((0, 3)), ValueError, "output: .*non-empty"),
    (BCELoss, OUT + 1, OUT, ValueError, r"output: expected probabilities in \[0, 1\].*1.5"),
    (BCELoss, np.array([[0.5, np.nan]]), np.zeros((1, 2)), ValueError, "output: .*nan"),
    (BCELoss, -OUT, OUT, ValueError, r"output: .*-0.5 at index \(0, 0\)"),
    (lambda: BCELoss(np.ones(2)), OUT, OUT, ValueError,
     r"weight: expected a shape that broadcasts to output's \(4, 3\), got \(2,\)"),
    (lambda: BCEWithLogitsLoss(pos_weight=np.ones(2)), OUT, OUT, ValueError,
     r"pos_weight: expected 1 or 3 values"),
    (KLDivLoss, OUT, np.full((4, 3), "a"), TypeError, "target: "),
])
def test_bad_call_arguments_are_rejected(make, output, target, error, match):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        loss_fn = make()
    with pytest.raises(error, match=match):
        loss_fn(output, target)


@pytest.mark.parametrize("make, error, match", [
    (lambda: HuberLoss(delta=0), ValueError, "delta: expected a finite number > 0.0, got 0.0"),
    (lambda: HuberLoss(delta=-1.0), ValueError, "delta: "),
    (lambda: HuberLoss(delta=math.inf), ValueError, "delta: "),
    (lambda: HuberLoss(delta="1"), TypeError, "delta: "),
    (lambda: HuberLoss(delta=True), TypeError, "delta: "),
    (lambda: L1Loss("batchmean"), ValueError, "reduction: .*'batchmean'"),
    (lambda: MSELoss("avg"), ValueError, "reduction: .*'avg'"),
    (lambda: KLDivLoss("avg"), ValueError, "reduction: .*'batchmean'.*'avg'"),
    (lambda: KLDivLoss("sum", log_target="yes"), TypeError, "log_target: "),
    (lambda: BCELoss([1.0, np.nan]), ValueError, "weight: expected finite.*nan at index 1"),
    (lambda: BCELoss([]), ValueError, "weight: expected at least one value"),
    (lambda: BCELoss(["a"]), TypeError, "weight: "),
    (lambda: BCEWithLogitsLoss(pos_weight=np.ones((2, 2))), ValueError,
     r"pos_weight: expected at most 1 dimension.*\(2, 2\)"),
    (lambda: BCEWithLogitsLoss(pos_weight=[np.inf]), ValueError, "pos_weight: expected finite"),
])
def test_bad_settings_are_rejected(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("make, target, n_outputs, n_rows, error, match", [
    (L1Loss, np.ones((3, 2)), 2, 4, ValueError, "y: expected 4 rows.*got 3"),
    (HuberLoss, [1.0, np.inf, 2.0], 1, 3, ValueError, "y: expected finite.*inf at row 1"),
    (lambda: BCELoss(np.ones((5, 1))), np.ones((5, 1)), 1, 5, ValueError,
     r"weight: Trainer.fit needs one value per output column.*\(5, 1\)"),
    (lambda: BCEWithLogitsLoss(np.ones(3)), np.ones((5, 2)), 2, 5, ValueError,
     "weight: expected 1 or 2 values"),
    (lambda: BCEWithLogitsLoss(pos_weight=np.ones(3)), np.ones((5, 2)), 2, 5, ValueError,
     "pos_weight: expected 1 or 2 values"),
])
def test_validate_target_errors(make, target, n_outputs, n_rows, error, match):
    with pytest.raises(error, match=match):
        make()._validate_target(target, n_outputs, n_rows, name="y")


def test_validate_target_converts_once():
    values = BCEWithLogitsLoss()._validate_target(np.eye(3, dtype=np.int64), 3, 3,
                                                  dtype="float64")
    assert values.dtype == np.float64 and values.flags.c_contiguous
    assert HuberLoss()._validate_target(np.arange(4.0), 1, 4).shape == (4, 1)


# ---- PyTorch itself, when installed ---------------------------------------------------------

def torch_loss(torch, name, x, t, kwargs, reduction):
    F = torch.nn.functional
    tensor = (lambda a: None if a is None else torch.tensor(np.asarray(a)))
    if name == "mse_loss":
        return F.mse_loss(x, t, reduction=reduction)
    if name == "l1_loss":
        return F.l1_loss(x, t, reduction=reduction)
    if name == "huber_loss":
        return F.huber_loss(x, t, reduction=reduction, delta=kwargs["delta"])
    if name == "bce_loss":
        return F.binary_cross_entropy(x, t, tensor(kwargs["weight"]), reduction=reduction)
    if name == "bce_with_logits_loss":
        return F.binary_cross_entropy_with_logits(x, t, tensor(kwargs["weight"]),
                                                  reduction=reduction,
                                                  pos_weight=tensor(kwargs["pos_weight"]))
    return F.kl_div(x, t, reduction=reduction, log_target=kwargs["log_target"])


@given(name=st.sampled_from(KERNELS), rows=dims, cols=dims, dtype=dtypes, seed=seeds,
       weight_kind=st.sampled_from(WEIGHT_SHAPES), use_pos_weight=..., log_target=...,
       data=st.data())
def test_losses_match_torch(name, rows, cols, dtype, seed, weight_kind, use_pos_weight: bool,
                            log_target: bool, data):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    x, t, kwargs = make_case(name, rng, rows, cols, dtype, weight_kind, use_pos_weight, 0.5,
                             log_target, safe=name == "bce_loss")
    reduction = data.draw(st.sampled_from([r for r, code in NAMES.items()
                                           if code in reductions_for(name)]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        loss_fn = OBJECTS[name](kwargs, reduction)
        loss = loss_fn(x, t)
        xt = torch.tensor(x, requires_grad=True)
        expected = torch_loss(torch, name, xt, torch.tensor(t), kwargs, reduction)
    expected.sum().backward()
    assert_allclose(loss, expected.detach().numpy(), **tol(dtype))
    assert_allclose(loss_fn.backward(), xt.grad.numpy(), rtol=tol(dtype)["rtol"],
                    atol=tol(dtype)["atol"] * 10)


@pytest.mark.parametrize("loss", [BCELoss(reduction="none"), BCEWithLogitsLoss(reduction="none")],
                         ids=["bce", "bce_with_logits"])
def test_float32_element_gets_the_same_bits_in_a_whole_or_a_partial_block(loss):
    """BCE's float32 logarithms and exponentials run blocks of 16 elements, the last one
    partial and zero-padded: an element's loss must not depend on which it falls in."""
    rng = np.random.default_rng(0)
    low, high = (0.0, 1.0) if isinstance(loss, BCELoss) else (-12.0, 12.0)   # p or logits
    output = rng.uniform(low, high, (3000, 16)).astype(np.float32)
    target = rng.uniform(0, 1, (3000, 16)).astype(np.float32)
    whole = loss(output, target)          # rows of 16: whole blocks only
    for r in range(len(output)):
        part = loss(output[r:r + 1, :15].copy(), target[r:r + 1, :15].copy())
        assert_array_equal(part[0], whole[r, :15])


@pytest.mark.parametrize("bad", [2.0, -1.0, np.nan])
def test_bce_targets_outside_0_1_are_refused_as_in_pytorch(bad):
    """torch.nn.BCELoss raises "all elements of target should be between 0 and 1"."""
    output = np.array([[0.9, 0.2]], np.float32)
    with pytest.raises(ValueError, match=r"target: expected probabilities in \[0, 1\]"):
        BCELoss()(output, np.array([[1.0, bad]], np.float32))
    model = Sequential(Dense(2, 2), Sigmoid(), seed=0)
    trainer = Trainer(model, BCELoss(), optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match=r"y: expected (probabilities in \[0, 1\]|finite)"):
        trainer.fit(np.ones((4, 2), np.float32), np.full((4, 2), bad, np.float32), verbose=0)
    assert BCELoss()(output, np.array([[1.0, 0.0]], np.float32)) > 0
