"""Optimizer objects: trajectories against torch.optim, the step runner against the manual
loop, saving and resuming, hyper-parameter checks, LBFGS and gradient clipping."""
import math

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from cnet import CrossEntropyLoss, Dense, MSELoss, ReLU, Sequential, Tanh, Trainer, optim

DTYPES = ["float32", "float64"]

# (optimizer name, hyper-parameters): the same names and values in cnet.optim and torch.optim.
CASES = [
    ("SGD", dict(lr=0.05)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=1e-2)),
    ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True)),
    ("Adam", dict(lr=1e-2, betas=(0.8, 0.99), weight_decay=1e-2)),
    ("Adam", dict(lr=1e-2, amsgrad=True)),
    ("AdamW", dict(lr=1e-2)),
    ("AdamW", dict(lr=1e-2, weight_decay=0.1, amsgrad=True)),
    ("Adagrad", dict(lr=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.05, weight_decay=1e-2, initial_accumulator_value=0.1,
                     eps=1e-6)),
    ("RMSprop", dict(lr=1e-2)),
    ("RMSprop", dict(lr=1e-2, alpha=0.9, momentum=0.9, centered=True, weight_decay=1e-2)),
    ("RMSprop", dict(lr=1e-3, alpha=0.3, centered=True)),
    ("RMSprop", dict(lr=1e-3, momentum=0.5, eps=1e-4)),
]
IDS = [f"{name}-{i}" for i, (name, _) in enumerate(CASES)]


def small_model(dtype="float64", seed=0):
    return Sequential(Dense(7, 5), Tanh(), Dense(5, 3), dtype=dtype, seed=seed)


def random_grads(model, steps, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(model.flat_grad.size).astype(model.dtype) for _ in range(steps)]


def run_steps(opt, model, grads):
    for g in grads:
        model.flat_grad[...] = g
        opt.step()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, hyper", CASES, ids=IDS)
def test_trajectory_matches_torch(name, hyper, dtype):
    torch = pytest.importorskip("torch")
    model = small_model(dtype)
    params = list(model.parameters())
    # Two groups (the second with half the lr) so per-group hyper-parameters are exercised.
    groups = [{"params": params[:2]}, {"params": params[2:], "lr": hyper["lr"] / 2}]
    opt = getattr(optim, name)(groups, **hyper)
    tensors = [torch.tensor(p.data.copy()) for p in params]
    t_groups = [{"params": tensors[:2]}, {"params": tensors[2:], "lr": hyper["lr"] / 2}]
    t_opt = getattr(torch.optim, name)(t_groups, **hyper)
    tol = dict(rtol=1e-11, atol=1e-13) if dtype == "float64" else dict(rtol=2e-5, atol=2e-6)
    for step, g in enumerate(random_grads(model, 25)):
        model.flat_grad[...] = g
        for p, t in zip(params, tensors):
            t.grad = torch.tensor(p.grad.copy())
        opt.step()
        t_opt.step()
        for p, t in zip(params, tensors):
            assert_allclose(p.data, t.numpy(), **tol, err_msg=f"{p.name} at step {step + 1}")


@pytest.mark.parametrize("name, hyper", [c for c in CASES if c[0] in ("Adagrad", "RMSprop")])
def test_step_runner_matches_the_manual_loop(name, hyper):
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((40, 7)), rng.integers(0, 3, 40)
    fitted, manual = small_model(), small_model()
    Trainer(fitted, CrossEntropyLoss(), getattr(optim, name)(fitted.parameters(), **hyper)).fit(
        X, y, epochs=3, batch_size=8, shuffle=False, verbose=0)
    opt, loss_fn = getattr(optim, name)(manual.parameters(), **hyper), CrossEntropyLoss()
    for _ in range(3):
        for start in range(0, 40, 8):
            opt.zero_grad()
            loss_fn(manual(X[start:start + 8]), y[start:start + 8])
            manual.backward(loss_fn.backward())
            opt.step()
    assert_allclose(fitted.flat_data, manual.flat_data, rtol=1e-12, atol=1e-14)
    assert not np.array_equal(fitted.flat_data, small_model().flat_data)
