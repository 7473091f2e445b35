"""Optimizer objects: trajectories against torch.optim, the step runner against the manual
loop, saving and resuming, hyper-parameter checks, LBFGS and gradient clipping."""
import math

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from cnet import CrossEntropyLoss, Dense, MSELoss, Sequential, Tanh, Trainer, optim
from helpers import closure_for, train_manually

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
    train_manually(manual, getattr(optim, name)(manual.parameters(), **hyper),
                   CrossEntropyLoss(), X, y, 8, 3)
    assert_allclose(fitted.flat_data, manual.flat_data, rtol=1e-12, atol=1e-14)
    assert not np.array_equal(fitted.flat_data, small_model().flat_data)


# --- saving and resuming --------------------------------------------------------------------

ALL_CASES = CASES + [("LBFGS", dict(lr=0.5, max_iter=4, history_size=3)),
                     ("LBFGS", dict(max_iter=3, line_search_fn="strong_wolfe"))]
ALL_IDS = IDS + ["LBFGS-0", "LBFGS-wolfe"]


def regression(n=30, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 7))
    return X, np.tanh(X[:, :3]) + 0.1 * rng.standard_normal((n, 3))


def manual_steps(model, opt, X, Y, steps):
    """`steps` updates of the manual loop on fixed batches (one closure step for LBFGS)."""
    loss_fn = MSELoss()
    X, Y = X.astype(model.dtype), Y.astype(model.dtype)

    def closure(rows=slice(None)):
        opt.zero_grad()
        loss = loss_fn(model(X[rows]), Y[rows])
        model.backward(loss_fn.backward())
        return loss

    for k in range(steps):
        if isinstance(opt, optim.LBFGS):
            opt.step(closure)
        else:
            closure(slice(5 * (k % 6), 5 * (k % 6) + 5))
            opt.step()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, hyper", ALL_CASES, ids=ALL_IDS)
def test_resume_continues_identically(name, hyper, dtype):
    X, Y = regression()
    model = small_model(dtype)
    opt = getattr(optim, name)(model.parameters(), **hyper)
    manual_steps(model, opt, X, Y, 7)
    saved_model, saved_opt = model.state_dict(), opt.state_dict()
    manual_steps(model, opt, X, Y, 6)

    fresh = small_model(dtype, seed=5)
    fresh_opt = getattr(optim, name)(fresh.parameters(), **hyper)
    fresh.load_state_dict(saved_model)
    fresh_opt.load_state_dict(saved_opt)
    assert fresh_opt.step_count == 7
    manual_steps(fresh, fresh_opt, X, Y, 6)
    assert_array_equal(fresh.flat_data, model.flat_data)
    assert fresh_opt.step_count == opt.step_count


def test_state_dict_holds_copies():
    model = small_model()
    opt = optim.Adam(model.parameters(), lr=0.1)
    run_steps(opt, model, random_grads(model, 2))
    saved = opt.state_dict()
    assert set(saved) == {"step", "param_groups", "state"}
    assert set(saved["state"]) == {"exp_avg", "exp_avg_sq"}          # no amsgrad buffer
    assert saved["param_groups"][0]["params"] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    saved["state"]["exp_avg"][:] = 99
    saved["param_groups"][0]["lr"] = 5.0
    assert not np.any(opt.state["exp_avg"] == 99) and opt.lr == 0.1


@pytest.mark.parametrize("name, hyper", [c for c in CASES if c[0] in ("Adagrad", "RMSprop",
                                                                       "Adam")][::2])
def test_resume_through_trainer_into_a_runner_already_built(name, hyper):
    # The step runner keeps pointers to the optimizer's state: load_state_dict must copy into
    # the arrays it points at, so loading after a fit has built the runner still works.
    X, Y = regression()
    model = small_model()
    trainer = Trainer(model, MSELoss(), getattr(optim, name)(model.parameters(), **hyper))
    trainer.fit(X, Y, epochs=2, batch_size=8, seed=1, verbose=0)
    saved_model, saved_opt = model.state_dict(), trainer.optimizer.state_dict()
    trainer.fit(X, Y, epochs=3, batch_size=8, seed=2, verbose=0)

    other = small_model(seed=9)
    other_trainer = Trainer(other, MSELoss(), getattr(optim, name)(other.parameters(), **hyper))
    other_trainer.fit(X[::-1], Y[::-1], epochs=1, batch_size=8, verbose=0)   # builds the runner
    other.load_state_dict(saved_model)
    other_trainer.optimizer.load_state_dict(saved_opt)
    other_trainer.fit(X, Y, epochs=3, batch_size=8, seed=2, verbose=0)
    assert_array_equal(other.flat_data, model.flat_data)


def corrupt(saved, path, value):
    """A copy of a state dict with the entry at `path` (a tuple of keys) replaced."""
    out = {"step": saved["step"], "state": dict(saved["state"]),
           "param_groups": [dict(g) for g in saved["param_groups"]]}
    target = out
    for key in path[:-1]:
        target = target[key]
    if value is DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return out


DELETE = object()
BAD_STATES = [
    (("step",), -1, ValueError, "step"),
    (("step",), 1.5, TypeError, "step"),
    (("state",), DELETE, ValueError, "state"),
    (("state", "exp_avg"), DELETE, ValueError, "exp_avg"),
    (("state", "momentum"), np.zeros(3), ValueError, "momentum"),
    (("state", "exp_avg"), np.zeros(5), ValueError, "exp_avg"),
    (("state", "exp_avg_sq"), np.full(58, np.nan), ValueError, "exp_avg_sq"),
    (("state", "exp_avg"), np.zeros(58, complex), TypeError, "exp_avg"),
    (("state", "exp_avg"), "zeros", TypeError, "exp_avg"),
    (("param_groups", 0, "lr"), -0.1, ValueError, "lr"),
    (("param_groups", 0, "betas"), (0.9, 1.5), ValueError, "betas"),
    (("param_groups", 0, "amsgrad"), True, ValueError, "max_exp_avg_sq"),
    (("param_groups", 0, "params"), ["0.weight"], ValueError, "params"),
    (("param_groups",), [], ValueError, "param_groups"),
]


@pytest.mark.parametrize("path, value, error, match", BAD_STATES)
def test_bad_state_is_named_and_nothing_written(path, value, error, match):
    model = small_model()
    opt = optim.Adam(model.parameters(), lr=0.1)
    run_steps(opt, model, random_grads(model, 3))
    good = opt.state_dict()
    bad = corrupt(good, path, value)
    run_steps(opt, model, random_grads(model, 1, seed=4))     # now differs from `good`
    before = opt.state_dict()
    with pytest.raises(error, match=match):
        opt.load_state_dict(bad)
    after = opt.state_dict()
    assert after["step"] == before["step"] and after["param_groups"] == before["param_groups"]
    for key in before["state"]:
        assert_array_equal(after["state"][key], before["state"][key])


def test_load_keeps_the_state_arrays_in_place():
    model = small_model()
    opt = optim.RMSprop(model.parameters(), momentum=0.9, centered=True)
    arrays = {k: v for k, v in opt.state.items()}
    run_steps(opt, model, random_grads(model, 2))
    saved = opt.state_dict()
    opt.load_state_dict(opt.state_dict() | {"state": {k: np.zeros(58) for k in saved["state"]}})
    assert all(opt.state[k] is arrays[k] for k in arrays)
    assert not opt.state["square_avg"].any()
    opt.load_state_dict(saved)
    assert all(opt.state[k] is arrays[k] for k in arrays)
    assert_array_equal(opt.state["square_avg"], saved["state"]["square_avg"])


# --- hyper-parameter checks -----------------------------------------------------------------

# (optimizer, hyper-parameters, error, name in the message, torch raises ValueError too)
BAD_HYPER = [
    ("SGD", dict(lr=-0.1), ValueError, "lr", True),
    ("SGD", dict(lr="fast"), TypeError, "lr", False),
    ("SGD", dict(lr=float("nan")), ValueError, "lr", False),
    ("SGD", dict(momentum=-0.5), ValueError, "momentum", True),
    ("SGD", dict(dampening=-1), ValueError, "dampening", False),
    ("SGD", dict(weight_decay=-1e-4), ValueError, "weight_decay", True),
    ("SGD", dict(nesterov=True), ValueError, "nesterov", True),
    ("SGD", dict(momentum=0.9, nesterov="yes"), TypeError, "nesterov", False),
    ("Adam", dict(betas=(1.0, 0.999)), ValueError, r"betas\[0\]", True),
    ("Adam", dict(betas=(0.9, -0.1)), ValueError, r"betas\[1\]", True),
    ("Adam", dict(betas=0.9), TypeError, "betas", False),
    ("Adam", dict(eps=-1e-8), ValueError, "eps", True),
    ("Adam", dict(amsgrad=1), TypeError, "amsgrad", False),
    ("AdamW", dict(weight_decay=-0.01), ValueError, "weight_decay", True),
    ("Adagrad", dict(lr=-1), ValueError, "lr", True),
    ("Adagrad", dict(lr_decay=-0.1), ValueError, "lr_decay", True),
    ("Adagrad", dict(initial_accumulator_value=-1), ValueError, "initial_accumulator_value", True),
    ("Adagrad", dict(eps=-1e-10), ValueError, "eps", True),
    ("Adagrad", dict(weight_decay=-1), ValueError, "weight_decay", True),
    ("RMSprop", dict(alpha=-0.1), ValueError, "alpha", True),
    ("RMSprop", dict(alpha=1.5), ValueError, "alpha", False),
    ("RMSprop", dict(eps=-1), ValueError, "eps", True),
    ("RMSprop", dict(momentum=-0.9), ValueError, "momentum", True),
    ("RMSprop", dict(weight_decay=-1), ValueError, "weight_decay", True),
    ("RMSprop", dict(centered=None), TypeError, "centered", False),
    ("LBFGS", dict(lr=-1), ValueError, "lr", True),
    ("LBFGS", dict(max_iter=0), ValueError, "max_iter", False),
    ("LBFGS", dict(max_iter=2.5), TypeError, "max_iter", False),
    ("LBFGS", dict(max_eval=0), ValueError, "max_eval", False),
    ("LBFGS", dict(tolerance_grad=-1), ValueError, "tolerance_grad", False),
    ("LBFGS", dict(tolerance_change=-1), ValueError, "tolerance_change", False),
    ("LBFGS", dict(history_size=0), ValueError, "history_size", False),
    ("LBFGS", dict(line_search_fn="backtracking"), ValueError, "line_search_fn", False),
]


@pytest.mark.parametrize("name, hyper, error, match, _", BAD_HYPER)
def test_bad_hyper_parameter_is_named(name, hyper, error, match, _):
    with pytest.raises(error, match=match):
        getattr(optim, name)(small_model().parameters(), **hyper)


def test_bad_params_are_named():
    model = small_model()
    with pytest.raises(ValueError, match="params"):
        optim.Adagrad([])
    with pytest.raises(TypeError, match="params"):
        optim.RMSprop([np.zeros(3)])
    with pytest.raises(TypeError, match="params"):
        optim.Adagrad(next(model.parameters()))
    with pytest.raises(ValueError, match="params"):
        optim.RMSprop(list(model.parameters()) + list(small_model().parameters()))
    params = list(model.parameters())
    with pytest.raises(ValueError, match="group"):
        optim.LBFGS([{"params": params[:2]}, {"params": params[2:]}])


def test_torch_rejects_the_same_out_of_range_values():
    torch = pytest.importorskip("torch")
    for name, hyper, _, _, torch_too in BAD_HYPER:
        if torch_too:
            with pytest.raises(ValueError):
                getattr(torch.optim, name)([torch.zeros(2)], **hyper)


# --- LBFGS ----------------------------------------------------------------------------------

@pytest.mark.parametrize("line_search_fn, extra, y_scale", [
    (None, {}, 1), ("strong_wolfe", {}, 1),
    (None, {"tolerance_change": 1e-3}, 1),     # iterations end on a loss change below it
    ("strong_wolfe", {"max_iter": 4, "lr": 5.0}, 1),  # max_eval, max_iter * 5 // 4, binds
    # steps of at most lr = 1e-4 under tolerance_change end the iterations, while large
    # targets keep each step's loss change far above it
    (None, {"lr": 1e-4, "tolerance_change": 1e-3}, 1e3),
])
def test_lbfgs_matches_torch(line_search_fn, extra, y_scale):
    torch = pytest.importorskip("torch")
    X, Y = regression()
    Y = Y * y_scale
    model = small_model()
    t_model = torch.nn.Sequential(torch.nn.Linear(7, 5), torch.nn.Tanh(),
                                  torch.nn.Linear(5, 3)).double()
    t_model.load_state_dict({k: torch.tensor(v) for k, v in model.state_dict().items()})
    hyper = {**dict(max_iter=8, history_size=4, line_search_fn=line_search_fn), **extra}
    opt = optim.LBFGS(model.parameters(), **hyper)
    t_opt = torch.optim.LBFGS(t_model.parameters(), **hyper)
    closure = closure_for(model, opt, X, Y, MSELoss())
    Xt, Yt = torch.tensor(X), torch.tensor(Y)

    def t_closure():
        t_opt.zero_grad()
        loss = torch.nn.functional.mse_loss(t_model(Xt), Yt)
        loss.backward()
        return loss

    for step in range(4):
        loss, t_loss = opt.step(closure), t_opt.step(t_closure)
        assert loss == pytest.approx(t_loss.item(), rel=1e-9)
        t_flat = np.concatenate([p.detach().numpy().ravel() for p in t_model.parameters()])
        assert_allclose(model.flat_data, t_flat, rtol=1e-8, atol=1e-10 * y_scale,
                        err_msg=f"step {step}")
    t_state = t_opt.state[next(iter(t_model.parameters()))]
    assert opt._lbfgs["func_evals"] == t_state["func_evals"]
    assert opt._lbfgs["n_iter"] == t_state["n_iter"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_lbfgs_with_lr_0_changes_nothing(line_search_fn, dtype):
    """The line search's first two points coincide at t = 0: its cubic through them divided
    by zero (found by the fuzz tests); torch's NaN there leads to the bounds' midpoint."""
    model = Sequential(Dense(3, 2), dtype=dtype, seed=0)
    before = model.flat_data.copy()
    opt = optim.LBFGS(model.parameters(), lr=0, line_search_fn=line_search_fn)

    def closure():      # |w|², whose gradient 2w the line search follows
        model.flat_grad[:] = 2 * model.flat_data
        return float(np.dot(model.flat_data, model.flat_data))
    for _ in range(2):      # the second step starts its line search at t = lr
        assert opt.step(closure) == closure()
    assert np.array_equal(model.flat_data, before)


def test_lbfgs_reaches_the_least_squares_solution_through_fit():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 5))
    Y = X @ rng.standard_normal((5, 2)) + 0.3 + 0.1 * rng.standard_normal((60, 2))
    model = Sequential(Dense(5, 2), dtype="float64", seed=0)
    opt = optim.LBFGS(model.parameters(), tolerance_grad=1e-12, tolerance_change=1e-15)
    history = Trainer(model, MSELoss(), opt).fit(X, Y, epochs=3, batch_size=None, verbose=0)
    solution = np.linalg.lstsq(np.hstack([X, np.ones((60, 1))]), Y, rcond=None)[0]
    assert_allclose(model[0].weight.data, solution[:5].T, atol=1e-7)
    assert_allclose(model[0].bias.data, solution[5], atol=1e-7)
    assert history.history["loss"][0] > history.history["loss"][-1]
    assert opt.step_count == 3


@pytest.mark.parametrize("dtype", DTYPES)
def test_lbfgs_fits_xor_in_a_few_epochs(dtype):
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype)
    y = np.array([0, 1, 1, 0])
    model = Sequential(Dense(2, 8), Tanh(), Dense(8, 2), dtype=dtype, seed=1)
    trainer = Trainer(model, CrossEntropyLoss(),
                      optim.LBFGS(model.parameters(), line_search_fn="strong_wolfe"))
    history = trainer.fit(X, y, epochs=3, batch_size=None, verbose=0)
    assert history.history["loss"][-1] < 1e-3
    assert history.history["accuracy"][-1] == 1.0
    assert_array_equal(trainer.predict(X), y)


def test_lbfgs_fit_matches_the_manual_closure_loop():
    X, Y = regression()
    fitted, manual = small_model(), small_model()
    hyper = dict(max_iter=5, line_search_fn="strong_wolfe")
    history = Trainer(fitted, MSELoss(), optim.LBFGS(fitted.parameters(), **hyper)).fit(
        X, Y, epochs=3, batch_size=None, verbose=0)
    opt = optim.LBFGS(manual.parameters(), **hyper)
    closure = closure_for(manual, opt, X, Y, MSELoss())
    losses = [opt.step(closure) for _ in range(3)]
    assert_allclose(fitted.flat_data, manual.flat_data, rtol=1e-10, atol=1e-12)
    assert_allclose(history.history["loss"], losses, rtol=1e-10)


def test_lbfgs_in_fit_is_full_batch_only():
    X, Y = regression()
    model = small_model()
    trainer = Trainer(model, MSELoss(), optim.LBFGS(model.parameters()))
    with pytest.raises(ValueError, match="batch_size.*full-batch"):
        trainer.fit(X, Y, verbose=0)
    with pytest.raises(ValueError, match="batch_size.*full-batch"):
        trainer.fit(X, Y, batch_size=len(X), verbose=0)
    clipped = Trainer(model, MSELoss(), optim.LBFGS(model.parameters()), max_grad_norm=1.0)
    with pytest.raises(ValueError, match="max_grad_norm"):
        clipped.fit(X, Y, batch_size=None, verbose=0)
    X[4, 2] = np.nan
    before = model.flat_data.copy()
    with pytest.raises(ValueError, match="row 4"):
        trainer.fit(X, Y, batch_size=None, verbose=0)
    assert_array_equal(model.flat_data, before)


def test_lbfgs_step_needs_a_closure():
    opt = optim.LBFGS(small_model().parameters())
    with pytest.raises(TypeError, match="closure"):
        opt.step()
    with pytest.raises(TypeError, match="closure"):
        opt.step(1.0)


def test_lbfgs_stops_at_once_when_the_gradient_is_below_tolerance():
    model = small_model()
    opt = optim.LBFGS(model.parameters(), tolerance_grad=1e9)
    before = model.flat_data.copy()
    calls = []
    assert opt.step(lambda: calls.append(1) or 2.5) == 2.5
    assert calls == [1] and np.array_equal(model.flat_data, before)


# --- gradient clipping ----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("subset", [False, True])
@pytest.mark.parametrize("max_norm", [0.5, 1e6, math.inf])
def test_clip_grad_norm_matches_torch(dtype, subset, max_norm):
    torch = pytest.importorskip("torch")
    model = small_model(dtype)
    model.flat_grad[...] = random_grads(model, 1)[0] * 3
    params = list(model.parameters())
    if subset:
        params = params[::2]          # the weights: spans that are not contiguous
    tensors = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    for p, t in zip(params, tensors):
        t.grad = torch.tensor(p.grad.copy())
    untouched = model.flat_grad.copy()
    norm = optim.clip_grad_norm_(params if subset else model.parameters(), max_norm)
    t_norm = torch.nn.utils.clip_grad_norm_(tensors, max_norm)
    rtol = 1e-12 if dtype == "float64" else 1e-5
    assert norm == pytest.approx(float(t_norm), rel=rtol)
    for p, t in zip(params, tensors):
        assert_allclose(p.grad, t.grad.numpy(), rtol=rtol, atol=1e-7)
    if subset:                        # the biases are left alone
        for p in list(model.parameters())[1::2]:
            assert_array_equal(p.grad, untouched[p.offset:p.offset + p.size].reshape(p.shape))


def test_clip_grad_norm_returns_the_norm_and_clips_to_max_norm():
    model = small_model()
    model.flat_grad[...] = np.arange(model.flat_grad.size)
    total = np.linalg.norm(model.flat_grad)
    assert optim.clip_grad_norm_(model.parameters(), 2.0) == pytest.approx(total)
    assert np.linalg.norm(model.flat_grad) == pytest.approx(2.0, rel=1e-5)
    assert optim.clip_grad_norm_(next(model.parameters()), 1e9) < 2.0
    assert optim.clip_grad_norm_([], 1.0) == 0.0


def test_clip_grad_norm_checks():
    model = small_model()
    with pytest.raises(ValueError, match="max_norm"):
        optim.clip_grad_norm_(model.parameters(), -1.0)
    with pytest.raises(TypeError, match="max_norm"):
        optim.clip_grad_norm_(model.parameters(), "1")
    with pytest.raises(ValueError, match="norm_type"):
        optim.clip_grad_norm_(model.parameters(), 1.0, norm_type=1)
    with pytest.raises(TypeError, match="parameters"):
        optim.clip_grad_norm_([np.zeros(3)], 1.0)
    model.flat_grad[3] = np.inf
    with pytest.raises(RuntimeError, match="non-finite"):
        optim.clip_grad_norm_(model.parameters(), 1.0, error_if_nonfinite=True)


@pytest.mark.parametrize("dtype", DTYPES)
def test_trainer_clipping_matches_manual_clipping(dtype):
    rng = np.random.default_rng(2)
    X, y = rng.standard_normal((40, 7)) * 5, rng.integers(0, 3, 40)
    fitted, manual = small_model(dtype), small_model(dtype)
    Trainer(fitted, CrossEntropyLoss(), optim.SGD(fitted.parameters(), lr=0.5, momentum=0.9),
            max_grad_norm=0.1).fit(X, y, epochs=3, batch_size=8, shuffle=False, verbose=0)
    opt, loss_fn = optim.SGD(manual.parameters(), lr=0.5, momentum=0.9), CrossEntropyLoss()
    norms = []
    for _ in range(3):
        for start in range(0, 40, 8):
            opt.zero_grad()
            loss_fn(manual(X[start:start + 8]), y[start:start + 8])
            manual.backward(loss_fn.backward())
            norms.append(optim.clip_grad_norm_(manual.parameters(), 0.1))
            opt.step()
    assert max(norms) > 0.1                  # clipping did happen
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == "float64" else dict(rtol=1e-4, atol=1e-5)
    assert_allclose(fitted.flat_data, manual.flat_data, **tol)


def test_hyper_parameters_beyond_float64_are_value_errors():
    model = Sequential(Dense(3, 2), seed=0)
    for kwargs in [dict(lr=10**400), dict(lr=0.1, momentum=10**400),
                   dict(lr=0.1, weight_decay=-10**400)]:
        with pytest.raises(ValueError, match="expected a finite value"):
            optim.SGD(model.parameters(), **kwargs)


@pytest.mark.parametrize("step", [2**63, 2**62 + 1, -1])
def test_a_step_count_beyond_the_step_runners_counter_is_refused(step):
    model = Sequential(Dense(3, 2), seed=0)
    opt = optim.Adam(model.parameters())
    state = opt.state_dict()
    state["step"] = step
    with pytest.raises(ValueError, match=r"step.*\[0, 2\*\*62\]"):
        opt.load_state_dict(state)
    assert opt.step_count == 0


@pytest.mark.parametrize("make, key, value", [
    (lambda p: optim.SGD(p, lr=0.1), "momentum", 0.9),
    (lambda p: optim.Adam(p), "amsgrad", True),
    (lambda p: optim.RMSprop(p), "centered", True),
    (lambda p: optim.RMSprop(p), "momentum", 0.5),
])
def test_an_edited_group_needing_state_not_allocated_is_refused(make, key, value):
    """PyTorch creates such state lazily; cnet's step runner holds pointers to state arrays
    allocated once, so the edit is refused (a null pointer in the kernel, before)."""
    X = np.random.default_rng(0).standard_normal((32, 4))
    y = np.arange(32) % 2
    model = Sequential(Dense(4, 8), Tanh(), Dense(8, 2), seed=0)
    opt = make(model.parameters())
    trainer = Trainer(model, CrossEntropyLoss(), opt)
    trainer.fit(X, y, epochs=1, verbose=0)
    opt.param_groups[0][key] = value
    before = model.flat_data.copy()
    with pytest.raises(ValueError, match="param_groups: the options set since"):
        trainer.fit(X, y, epochs=1, verbose=0)
    model.flat_grad[:] = 1
    with pytest.raises(ValueError, match="param_groups: the options set since"):
        opt.step()
    assert np.array_equal(model.flat_data, before)


def test_a_parameter_of_another_model_in_a_group_is_refused():
    model, other = Sequential(Dense(4, 2), seed=0), Sequential(Dense(4, 2), seed=1)
    opt = optim.SGD(model.parameters(), lr=0.1)
    opt.param_groups[0]["params"].append(other[0].weight)
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['params'\]"):
        opt.step()


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
@pytest.mark.parametrize("fail_at", [1, 2, 5])
def test_an_lbfgs_step_interrupted_by_its_closure_leaves_the_state_as_before(line_search_fn,
                                                                            fail_at):
    """A closure that raises (or Ctrl-C) mid-step: the parameters, history and counts are
    those before the step, so the next steps (and a save) go on as if it had not started."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((64, 5)), rng.integers(0, 3, 64)

    class Interrupted(Exception):
        pass

    def run(interrupt):
        model = Sequential(Dense(5, 8), Tanh(), Dense(8, 3), dtype="float64", seed=0)
        opt = optim.LBFGS(model.parameters(), max_iter=6, line_search_fn=line_search_fn)
        loss_fn, calls = CrossEntropyLoss(), [0]

        def closure():
            calls[0] += 1
            if calls[0] == fail_at:             # counted from 0 only while armed
                raise Interrupted
            opt.zero_grad()
            loss = loss_fn(model(X), y)
            model.backward(loss_fn.backward())
            return loss

        calls[0] = -1000                        # disarmed: a first, whole step
        opt.step(closure)
        if interrupt:
            calls[0] = 0                        # the second step fails at its fail_at-th call
            with pytest.raises(Interrupted):
                opt.step(closure)
        calls[0] = -1000
        opt.step(closure)
        opt.step(closure)
        return model.flat_data.tobytes(), opt.step_count

    assert run(True) == run(False)
