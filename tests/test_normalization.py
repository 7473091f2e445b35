"""Dropout and BatchNorm1d: kernels against the NumPy twins, gradients, modes, Trainer."""
import numpy as np
import pytest
from hypothesis import given, strategies as st
from numpy.testing import assert_allclose

from cnet import (BatchNorm1d, CrossEntropyLoss, Dense, Dropout, ReLU, Sequential, Trainer,
                  _batchnorm, _dropout, optim)
from cnet.reference import normalization as ref
from helpers import (check_model_gradients, dims, dtypes, random_array, seeds, tol,
                     train_manually)


@given(rows=dims, cols=dims, p=st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0]), dtype=dtypes,
       seed=seeds)
def test_dropout_matches_reference(rows, cols, p, dtype, seed):
    rng = np.random.default_rng(seed)
    x, dy = random_array(rng, (rows, cols), dtype), random_array(rng, (rows, cols), dtype)
    state = np.array([seed, 7], np.uint64)
    got = [np.empty_like(x) for _ in range(3)] + [state.copy()]
    want = [np.empty_like(x) for _ in range(3)] + [state.copy()]
    _dropout.dropout_forward(got[0].reshape(-1), got[1].reshape(-1), x.reshape(-1), p, got[3])
    ref.dropout_forward(want[0], want[1], x, p, want[3])
    _dropout.dropout_backward(got[2].reshape(-1), dy.reshape(-1), got[1].reshape(-1))
    ref.dropout_backward(want[2], dy, want[1])
    for a, b in zip(got, want):
        assert_allclose(a, b, **tol(dtype))
    assert got[3][1] == 7 + rows * cols


def test_dropout_keeps_the_expected_fraction_and_mean():
    layer = Sequential(Dense(4, 4), Dropout(0.25), seed=0)[1]
    x = np.ones((500, 400))
    y = layer.forward(x)
    assert abs((y == 0).mean() - 0.25) < 0.01
    assert abs(y.mean() - 1.0) < 0.02
    assert set(np.unique(y)) == {0.0, 1 / 0.75}
    layer.training = False
    assert layer.forward(x) is not None and np.array_equal(layer.forward(x), x)


def _batchnorm_args(rng, rows, cols, dtype, affine, track):
    x = random_array(rng, (rows, cols), dtype, scale=3) + 1
    gamma = random_array(rng, cols, dtype) if affine else None
    beta = random_array(rng, cols, dtype) if affine else None
    buffers = ([random_array(rng, cols, dtype), np.abs(random_array(rng, cols, dtype)) + 0.5,
                np.array([3], np.int64)] if track else [None, None, None])
    return x, gamma, beta, buffers


@given(rows=st.integers(2, 37), cols=dims, affine=st.booleans(), track=st.booleans(),
       training=st.booleans(), momentum=st.sampled_from([0.1, 0.5, -1.0]), dtype=dtypes,
       seed=seeds)
def test_batchnorm_matches_reference(rows, cols, affine, track, training, momentum, dtype,
                                     seed):
    rng = np.random.default_rng(seed)
    x, gamma, beta, buffers = _batchnorm_args(rng, rows, cols, dtype, affine, track)
    dy = random_array(rng, (rows, cols), dtype)
    results = []
    for module in (_batchnorm, ref):
        bufs = [None if b is None else b.copy() for b in buffers]
        out = [np.empty_like(x), np.empty_like(x), np.empty(cols, dtype), np.empty(cols, dtype)]
        module.batchnorm_forward(*out, *bufs, x, gamma, beta, 1e-5, momentum, training)
        grads = [np.empty_like(x), np.ones(cols, dtype) if affine else None,
                 np.ones(cols, dtype) if affine else None, np.empty(2 * cols, dtype)]
        module.batchnorm_backward(*grads, dy, out[1], out[3], gamma, True)
        results.append(out + bufs + grads[:3])
    for got, want in zip(*results):
        if want is not None:
            assert_allclose(got, want, **tol(dtype))


def test_batchnorm_gradients_match_finite_differences():
    model = Sequential(Dense(3, 4), BatchNorm1d(4), ReLU(), Dense(4, 3), dtype="float64", seed=0)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((6, 3)), np.array([0, 1, 2, 1, 0, 2])
    running = model.flat_buffers.copy()

    def objective():
        model.flat_buffers[:] = running      # forward in training updates running statistics
        return objective.loss_fn(model(x), y)

    objective.loss_fn = CrossEntropyLoss()
    check_model_gradients(model, objective, x)


def test_batchnorm_train_and_eval_semantics():
    model = Sequential(BatchNorm1d(3, momentum=0.5), dtype="float64")
    x = np.array([[1.0, 2.0, 3.0], [3.0, 6.0, 9.0]])
    y = model(x)
    assert_allclose(y.mean(axis=0), 0, atol=1e-12)
    assert_allclose(y.var(axis=0), 1, rtol=1e-4)          # biased variance, eps = 1e-5
    bn = model[0]
    assert_allclose(bn.running_mean, 0.5 * x.mean(axis=0))
    assert_allclose(bn.running_var, 0.5 + 0.5 * x.var(axis=0, ddof=1))   # unbiased
    state = model.state_dict()
    assert list(state) == ["0.weight", "0.bias", "0.running_mean", "0.running_var",
                           "0.num_batches_tracked"]
    assert state["0.num_batches_tracked"] == 1
    model.eval()
    assert_allclose(model(x), (x - bn.running_mean) / np.sqrt(bn.running_var + 1e-5))
    with pytest.raises(ValueError, match="more than 1 row"):
        model.train()(x[:1])


def test_batchnorm_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 5))
    ours = Sequential(BatchNorm1d(5, momentum=0.3), dtype="float64")
    theirs = torch.nn.BatchNorm1d(5, momentum=0.3).double()
    for _ in range(2):
        out = ours(x)
        expected = theirs(torch.from_numpy(x))
        assert_allclose(out, expected.detach().numpy(), rtol=1e-10, atol=1e-12)
    for key, value in theirs.state_dict().items():
        assert_allclose(ours.state_dict()[f"0.{key}"], value.numpy(), rtol=1e-12)
    ours.eval(), theirs.eval()
    assert_allclose(ours(x), theirs(torch.from_numpy(x)).detach().numpy(), rtol=1e-10)


def net(seed=0):
    return Sequential(Dense(6, 16), BatchNorm1d(16), ReLU(), Dropout(0.3), Dense(16, 4),
                      dtype="float64", seed=seed)


def test_fit_with_dropout_and_batchnorm_matches_the_manual_loop():
    rng = np.random.default_rng(4)
    X, y = rng.standard_normal((48, 6)), rng.integers(0, 4, 48)
    fitted, manual = net(), net()
    Trainer(fitted, CrossEntropyLoss(), optim.Adam(fitted.parameters(), lr=1e-2)).fit(
        X, y, epochs=3, batch_size=16, shuffle=False, verbose=0)
    train_manually(manual, optim.Adam(manual.parameters(), lr=1e-2), CrossEntropyLoss(), X, y,
                   16, 3)
    assert_allclose(fitted.flat_data, manual.flat_data, rtol=1e-9, atol=1e-12)
    assert_allclose(fitted.flat_buffers, manual.flat_buffers, rtol=1e-9, atol=1e-12)
    assert np.array_equal(fitted[3].rng_state, manual[3].rng_state)
    # Prediction runs in evaluation mode: no dropout, running statistics.
    trainer = Trainer(fitted, CrossEntropyLoss(), optim.SGD(fitted.parameters()))
    manual.eval()
    assert_allclose(trainer._outputs(X), manual(X), rtol=1e-10)


def test_fit_rejects_a_batch_of_one_row_with_batchnorm():
    model = net()
    trainer = Trainer(model, CrossEntropyLoss(), optim.SGD(model.parameters()))
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="batch of 1 row"):
        trainer.fit(rng.standard_normal((17, 6)), rng.integers(0, 4, 17), batch_size=8,
                    verbose=0)


@pytest.mark.parametrize("make, match", [
    (lambda: Dropout(1.5), "p:"),
    (lambda: Dropout(-0.1), "p:"),
    (lambda: BatchNorm1d(0), "num_features"),
    (lambda: BatchNorm1d(3, eps=0), "eps"),
    (lambda: BatchNorm1d(3, momentum=2), "momentum"),
    (lambda: Sequential(Dense(3, 4), BatchNorm1d(5)), "5 input features"),
    (lambda: Dense(3, 4, init="glorot"), "init"),
])
def test_bad_layer_arguments(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


@pytest.mark.parametrize("init", ["torch", "he", "xavier", "normal", "zeros"])
def test_initialisers_have_their_documented_scale(init):
    model = Sequential(Dense(400, 300, init=init), dtype="float64", seed=0)
    w, b = model[0].weight.data, model[0].bias.data
    expected_std = {"torch": 1 / np.sqrt(3 * 400), "he": np.sqrt(2 / 400),
                    "xavier": np.sqrt(2 / 700), "normal": 0.01, "zeros": 0.0}[init]
    assert_allclose(w.std(), expected_std, rtol=0.02, atol=1e-12)
    assert (b.std() > 0) == (init == "torch")


@pytest.mark.parametrize("eps", [1e-3, 0.5])
def test_batchnorm_eval_normalises_with_its_own_eps(eps):
    """Evaluation divides by sqrt(running_var + eps) with the layer's eps, not the default,
    in the layer's forward and in the step runner's prediction."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((8, 3)) * 0.2
    model = Sequential(BatchNorm1d(3, eps=eps, momentum=1.0), dtype="float64")
    model(x)                                  # momentum 1: the running stats are the batch's
    bn = model[0]
    expected = (x - bn.running_mean) / np.sqrt(bn.running_var + eps)
    trainer = Trainer(model, CrossEntropyLoss(), optim.SGD(model.parameters()))
    model.eval()
    assert_allclose(model(x), expected, rtol=1e-12)
    assert_allclose(trainer._outputs(x), expected, rtol=1e-12)
    torch = pytest.importorskip("torch")
    theirs = torch.nn.BatchNorm1d(3, eps=eps, momentum=1.0).double()
    theirs(torch.from_numpy(x))
    theirs.eval()
    assert_allclose(model(x), theirs(torch.from_numpy(x)).detach().numpy(), rtol=1e-10)
