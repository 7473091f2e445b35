"""Shared test helpers: hypothesis strategies, tolerances, finite differences."""
import contextlib

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


def train_manually(model, optimizer, loss_fn, X, y, batch_size, epochs, seed=None,
                   shuffle=False, max_grad_norm=None):
    """The PyTorch-style loop Trainer.fit must reproduce: the same batches (one
    default_rng(seed).permutation per epoch when shuffling), zero_grad, forward, loss,
    backward, optional global-norm clipping, step."""
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(len(X)) if shuffle else np.arange(len(X))
        for start in range(0, len(X), batch_size):
            rows = order[start:start + batch_size]
            optimizer.zero_grad()
            loss_fn(model(X[rows]), y[rows])
            model.backward(loss_fn.backward())
            if max_grad_norm is not None:
                norm = np.linalg.norm(model.flat_grad)
                model.flat_grad *= min(1.0, max_grad_norm / (norm + 1e-6))
            optimizer.step()


def check_model_gradients(model, objective, x, rtol=1e-5, atol=1e-8):
    """Backpropagated gradients of every parameter and of the input x against central
    finite differences of objective() (which runs the forward pass and the loss)."""
    from numpy.testing import assert_allclose
    objective()
    model.zero_grad()
    grad_x = model.backward(objective.loss_fn.backward())
    for name, p in model.named_parameters():
        assert_allclose(p.grad, numerical_gradient(objective, p.data), rtol=rtol, atol=atol,
                        err_msg=name)
    assert_allclose(grad_x, numerical_gradient(objective, x), rtol=rtol, atol=atol)


def closure_for(model, optimizer, X, Y, loss_fn):
    """The closure LBFGS.step takes: zero the gradients, forward, loss, backward."""
    def closure():
        optimizer.zero_grad()
        loss = loss_fn(model(X), Y)
        model.backward(loss_fn.backward())
        return loss
    return closure


def in_threads(jobs):
    """Run jobs [(function, args)] at the same moment, one thread each, under one BLAS
    thread (threadpoolctl); their results. Each function takes a `start` barrier."""
    import threading

    from threadpoolctl import threadpool_limits
    start = threading.Barrier(len(jobs))
    results = [None] * len(jobs)
    errors = []

    def run(i, fn, args):
        try:
            with threadpool_limits(1):
                results[i] = fn(*args, start=start)
        except BaseException as exc:   # noqa: BLE001 - reported below
            errors.append(exc)
            start.abort()

    threads = [threading.Thread(target=run, args=(i, fn, args)) for i, (fn, args) in
               enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


@contextlib.contextmanager
def every_product_shared():
    """set_threaded_min_work(0) inside; set_num_threads and the threshold restored after."""
    import cnet
    previous = cnet.get_num_threads(), cnet.set_threaded_min_work(0)
    try:
        yield
    finally:
        cnet.set_num_threads(previous[0])
        cnet.set_threaded_min_work(previous[1])


def scipy_blas_threads():
    """The thread count of the OpenBLAS that scipy (and so cnet) calls; skips the test
    where there is none with the thread control cnet uses."""
    import pytest

    from cnet import _blas
    threadpoolctl = pytest.importorskip("threadpoolctl")
    counts = [p["num_threads"] for p in threadpoolctl.threadpool_info()
              if p["user_api"] == "blas" and "scipy_openblas" in p["filepath"]
              and "64_" not in p["filepath"]]      # NumPy's own is scipy_openblas64_
    if not counts or not _blas.THREAD_CONTROL:
        pytest.skip("scipy's BLAS is not an OpenBLAS with thread control")
    return counts[0]


TINY32 = np.finfo(np.float32).tiny      # the smallest normal float32, 1.18e-38


def first_moment_after_zero_gradients(flush, hidden=3):
    """Adam's exp_avg of a first layer (4 -> hidden) whose gradient is exactly zero (all-zero
    inputs), started just above the denormal range: it decays by beta1 = 0.9 each step and
    leaves the normal range on the third. Returns (the moments, the Trainer)."""
    import cnet
    from cnet import CrossEntropyLoss, Dense, ReLU, Sequential, Trainer, optim
    model = Sequential(Dense(4, hidden), ReLU(), Dense(hidden, 2), dtype="float32", seed=0)
    opt = optim.Adam(model.parameters(), lr=1e-3)
    opt.state["exp_avg"][...] = 1.5 * TINY32
    previous = cnet.set_flush_denormal(flush)
    try:
        trainer = Trainer(model, CrossEntropyLoss(), opt)
        trainer.fit(np.zeros((40, 4), np.float32), np.arange(40) % 2, epochs=1, batch_size=8,
                    shuffle=False, verbose=0)
    finally:
        cnet.set_flush_denormal(previous)
    weight = model[0].weight
    return opt.state["exp_avg"][weight.offset:weight.offset + weight.size], trainer
