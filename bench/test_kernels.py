"""Each compiled kernel against its cnet.reference twin: same inputs, same group.

float32 (the training dtype), and float64 for the exponential's activations. Before timing,
each benchmark checks that the two implementations agree on its inputs, so a fast wrong
kernel cannot look good here.
"""
import numpy as np
import pytest
from numpy.testing import assert_allclose

from cnet import _activations, _dense, _losses, _optim
from cnet import reference as ref

from bench_common import settle

IMPLS = ("cnet", "reference")
DTYPE = np.float32
TOL = dict(rtol=2e-4, atol=2e-5)


def rand(rng, shape, scale=1.0, dtype=DTYPE):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def grouped(name, cases, ids):
    """Parametrize (case, impl) with cnet and the reference in the group `name <case>`."""
    return pytest.mark.parametrize("case, impl", [
        pytest.param(case, impl, id=f"{case_id}-{impl}",
                     marks=pytest.mark.benchmark(group=f"{name} {case_id}"))
        for case, case_id in zip(cases, ids) for impl in IMPLS])


def module_for(impl, compiled):
    return compiled if impl == "cnet" else ref


def tag(benchmark, kernel, case, impl, **more):
    benchmark.extra_info.update({"kind": "kernel", "kernel": kernel, "case": str(case),
                                 "impl": impl, **more})


# --- dense -----------------------------------------------------------------------------------

DENSE = [(16, 64, 32), (64, 784, 128), (256, 1024, 1024)]
DENSE_IDS = ["x".join(map(str, s)) for s in DENSE]


def dense_arrays(batch, n_in, n_out):
    rng = np.random.default_rng(0)
    return dict(x=rand(rng, (batch, n_in)), w=rand(rng, (n_out, n_in), 0.05),
                b=rand(rng, n_out), y=np.empty((batch, n_out), DTYPE),
                dy=rand(rng, (batch, n_out)), dw=np.empty((n_out, n_in), DTYPE),
                db=np.empty(n_out, DTYPE), dx=np.empty((batch, n_in), DTYPE))


@grouped("dense_forward", DENSE, DENSE_IDS)
def test_dense_forward(benchmark, case, impl):
    a = dense_arrays(*case)
    expected = np.empty_like(a["y"])
    ref.dense_forward(expected, a["x"], a["w"], a["b"])
    kernel = module_for(impl, _dense).dense_forward
    tag(benchmark, "dense_forward", case, impl)
    settle(benchmark)   # BLAS: let the other library's threads go idle first
    benchmark(kernel, a["y"], a["x"], a["w"], a["b"])
    assert_allclose(a["y"], expected, **TOL)


@grouped("dense_backward", DENSE, DENSE_IDS)
def test_dense_backward(benchmark, case, impl):
    a = dense_arrays(*case)
    expected = [np.empty_like(a[k]) for k in ("dw", "db", "dx")]
    ref.dense_backward(*expected, a["dy"], a["x"], a["w"], 0.0)
    kernel = module_for(impl, _dense).dense_backward
    tag(benchmark, "dense_backward", case, impl)
    settle(benchmark)
    benchmark(kernel, a["dw"], a["db"], a["dx"], a["dy"], a["x"], a["w"], 0.0)
    for got, want in zip((a["dw"], a["db"], a["dx"]), expected):
        assert_allclose(got, want, rtol=1e-3, atol=1e-3)


# --- activations: forward then backward --------------------------------------------------------

ACTIVATIONS = ["identity", "relu", "leaky_relu", "sigmoid", "tanh", "softmax"]
ACT_SHAPES = [(64, 128), (256, 1024)]
ACT_CASES = ([(name, shape, np.float32) for name in ACTIVATIONS for shape in ACT_SHAPES]
             + [(name, (256, 1024), np.float64) for name in ("sigmoid", "tanh", "softmax")])
ACT_IDS = [("float64 " if dtype == np.float64 else "") + f"{name} {shape[0]}x{shape[1]}"
           for name, shape, dtype in ACT_CASES]


def activation_pair(module, name):
    forward, backward = getattr(module, f"{name}_forward"), getattr(module, f"{name}_backward")
    if name == "leaky_relu":
        return (lambda y, x: forward(y, x, 0.01),
                lambda dx, dy, x, y: backward(dx, dy, x, y, 0.01))
    return forward, backward


@grouped("activation", ACT_CASES, ACT_IDS)
def test_activation_forward_backward(benchmark, case, impl):
    name, shape, dtype = case
    rng = np.random.default_rng(1)
    x, dy = rand(rng, shape, dtype=dtype), rand(rng, shape, dtype=dtype)
    y, dx = np.empty_like(x), np.empty_like(x)
    forward, backward = activation_pair(module_for(impl, _activations), name)

    def run():
        forward(y, x)
        backward(dx, dy, x, y)

    ref_forward, ref_backward = activation_pair(ref, name)
    want_y, want_dx = np.empty_like(x), np.empty_like(x)
    ref_forward(want_y, x)
    ref_backward(want_dx, dy, x, want_y)
    tag(benchmark, f"{name} forward+backward", shape, impl, dtype=np.dtype(dtype).name)
    benchmark(run)
    tol = TOL if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    assert_allclose(y, want_y, **tol)
    assert_allclose(dx, want_dx, **tol)


@grouped("activation", [(256, 1024)], ["step_forward 256x1024"])
def test_step_forward(benchmark, case, impl):
    x = rand(np.random.default_rng(2), case)
    y = np.empty_like(x)
    forward = module_for(impl, _activations).step_forward
    tag(benchmark, "step forward", case, impl)
    benchmark(forward, y, x)
    assert np.array_equal(y, (x >= 0).astype(DTYPE))


# --- softmax cross-entropy: loss and gradient in one call ------------------------------------

CE = [(16, 10), (64, 10), (256, 10), (256, 1000)]
CE_IDS = ["x".join(map(str, s)) for s in CE]


@grouped("softmax_cross_entropy", CE, CE_IDS)
def test_softmax_cross_entropy(benchmark, case, impl):
    batch, classes = case
    rng = np.random.default_rng(3)
    logits = rand(rng, case, 3.0)
    target = rng.integers(0, classes, batch).astype(np.int64)
    dlogits = np.empty_like(logits)
    kernel = module_for(impl, _losses).softmax_cross_entropy
    want_d = np.empty_like(logits)
    want = ref.softmax_cross_entropy(want_d, None, logits, target)
    tag(benchmark, "softmax_cross_entropy forward+backward", case, impl)
    loss = benchmark(kernel, dlogits, None, logits, target)
    assert loss == pytest.approx(want, rel=1e-5)
    assert_allclose(dlogits, want_d, rtol=1e-4, atol=1e-7)


# --- element-by-element losses: loss and gradient in one call --------------------------------

POINTWISE = ["mse_loss", "l1_loss", "huber_loss", "bce_loss", "bce_with_logits_loss"]
POINTWISE_SHAPE = (64, 784)     # an autoencoder's output on mnist


@grouped("loss", POINTWISE, [f"{name} 64x784" for name in POINTWISE])
def test_pointwise_loss(benchmark, case, impl):
    rng = np.random.default_rng(5)
    x, t = rand(rng, POINTWISE_SHAPE), rand(rng, POINTWISE_SHAPE)
    if case in ("bce_loss", "bce_with_logits_loss"):
        t = (t > 0).astype(DTYPE)
    if case == "bce_loss":      # probabilities, as after a Sigmoid
        x = (1 / (1 + np.exp(-x))).astype(DTYPE)
    grad, want_grad = np.empty_like(x), np.empty_like(x)
    kernel = getattr(module_for(impl, _losses), case)
    want = getattr(ref, case)(want_grad, None, x, t)
    tag(benchmark, f"{case} forward+backward", POINTWISE_SHAPE, impl)
    loss = benchmark(kernel, grad, None, x, t)
    assert loss == pytest.approx(want, rel=1e-5)
    assert_allclose(grad, want_grad, rtol=1e-4, atol=1e-9)


# --- optimizers over a flat arena ------------------------------------------------------------

OPT_SIZES = [100_000, 1_000_000]
OPTIMIZERS = ["sgd", "sgd_momentum", "sgd_nesterov", "adagrad", "rmsprop", "adam"]
OPT_CASES = [(name, n) for name in OPTIMIZERS for n in OPT_SIZES]
OPT_IDS = [f"{name} {n // 1000}k" for name, n in OPT_CASES]


def optimizer_call(module, name, arrays):
    """One step of `name` with typical hyper-parameters (PyTorch's defaults where it has
    them; momentum 0.9 where used)."""
    p, g, s0, s1 = arrays["param"], arrays["grad"], arrays["s0"], arrays["s1"]
    calls = {
        "sgd": lambda: module.sgd_step(p, None, g, 5, 1e-3),
        "sgd_momentum": lambda: module.sgd_step(p, s0, g, 5, 1e-3, 0.9),
        "sgd_nesterov": lambda: module.sgd_step(p, s0, g, 5, 1e-3, 0.9, nesterov=True),
        "adagrad": lambda: module.adagrad_step(p, s1, g, 5, 1e-2),
        "rmsprop": lambda: module.rmsprop_step(p, s1, None, None, g, 5, 1e-2),
        "adam": lambda: module.adam_step(p, s0, s1, None, g, 5, 1e-3, 0.9, 0.999, 1e-8),
    }
    return calls[name]


def optimizer_arrays(n):
    rng = np.random.default_rng(4)
    return {"param": rand(rng, n), "grad": rand(rng, n), "s0": rand(rng, n, 0.1),
            "s1": np.abs(rand(rng, n, 0.1))}


@grouped("optimizer", OPT_CASES, OPT_IDS)
def test_optimizer_step(benchmark, case, impl):
    name, n = case
    arrays, expected = optimizer_arrays(n), optimizer_arrays(n)
    optimizer_call(module_for(impl, _optim), name, arrays)()
    optimizer_call(ref, name, expected)()
    for key in arrays:   # one step from the same state agrees; then time repeated steps
        assert_allclose(arrays[key], expected[key], rtol=1e-4, atol=1e-6)
    tag(benchmark, f"{name} step", n, impl, params=n)
    benchmark(optimizer_call(module_for(impl, _optim), name, arrays))
    assert np.isfinite(arrays["param"]).all()
