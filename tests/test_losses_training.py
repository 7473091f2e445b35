"""The new losses inside the compiled step runner: each kind gives the loss and gradients of
the manual path, and regression, multi-label and soft-label training work through
Trainer.fit / evaluate / predict."""
import numpy as np
import pytest
from numpy.testing import assert_allclose

from cnet import (BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, Dense, HuberLoss, KLDivLoss,
                  L1Loss, MSELoss, ReLU, Sequential, Sigmoid, Trainer)
from cnet.data import load_digits
from cnet.optim import SGD, Adam


def log_softmax(x):
    shifted = x - x.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def targets_for(loss_fn, rng, n, k):
    if isinstance(loss_fn, (BCELoss, BCEWithLogitsLoss)):
        return (rng.random((n, k)) < 0.4).astype(np.float64)
    if isinstance(loss_fn, (KLDivLoss, CrossEntropyLoss)):
        return rng.dirichlet(np.ones(k), n)
    return rng.standard_normal((n, k))


STEP_RUNNER_LOSSES = [
    lambda: L1Loss(),
    lambda: L1Loss("sum"),
    lambda: HuberLoss(delta=0.3),
    lambda: MSELoss("sum"),
    lambda: BCELoss([0.5, 1.0, 2.0]),
    lambda: BCELoss([[3.0]], reduction="sum"),
    lambda: BCEWithLogitsLoss(),
    lambda: BCEWithLogitsLoss([1.0, 2.0, 0.5], pos_weight=[2.0, 1.0, 0.3]),
    lambda: BCEWithLogitsLoss(pos_weight=[4.0], reduction="sum"),
    lambda: KLDivLoss("sum"),
    lambda: CrossEntropyLoss(),                       # with class probabilities
    lambda: CrossEntropyLoss([1.0, 2.0, 3.0], reduction="sum", label_smoothing=0.2),
]


@pytest.mark.parametrize("make", STEP_RUNNER_LOSSES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_step_runner_matches_the_manual_path(make, dtype):
    # With lr = 0 the step runner's loss and the gradients it leaves in the arena are the
    # loss and gradients of one forward and backward in the manual loop.
    loss_fn = make()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((13, 4))
    y = targets_for(loss_fn, rng, 13, 3)
    last = [Sigmoid()] if isinstance(loss_fn, BCELoss) else []
    model = Sequential(Dense(4, 5), ReLU(), Dense(5, 3), *last, dtype=dtype, seed=1)
    trainer = Trainer(model, loss_fn, SGD(model.parameters(), lr=0.0))
    history = trainer.fit(X, y, epochs=1, batch_size=None, verbose=0)
    compiled_grad = model.flat_grad.copy()
    model.zero_grad()
    output = model(X.astype(dtype))   # KLDivLoss reads it as log-probabilities, as given
    expected = loss_fn(output, y)
    model.backward(loss_fn.backward())
    rtol = 1e-4 if dtype == "float32" else 1e-10
    assert history.history["loss"][0] == pytest.approx(expected, rel=rtol)
    assert_allclose(compiled_grad, model.flat_grad, rtol=rtol, atol=rtol * 1e-2)


@pytest.mark.parametrize("loss_fn", [L1Loss(), HuberLoss(delta=0.5)])
def test_regression_fits_a_plane(loss_fn):
    # y = 3 x1 - 2 x2 + 1 in float32, targets of shape (n,) for one output
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (256, 2)).astype(np.float32)
    y = 3 * X[:, 0] - 2 * X[:, 1] + 1
    model = Sequential(Dense(2, 1), seed=0)
    trainer = Trainer(model, loss_fn, Adam(model.parameters(), lr=0.05))
    history = trainer.fit(X, y, epochs=60, batch_size=16, seed=0, verbose=0)
    assert "accuracy" not in history.history
    assert history.history["loss"][-1] < 0.05 * history.history["loss"][0]
    assert_allclose(model[0].weight.data, [[3.0, -2.0]], atol=0.05)
    assert_allclose(model[0].bias.data, [1.0], atol=0.05)
    assert trainer.evaluate(X, y)["loss"] < 0.03
    predictions = trainer.predict(X)
    assert predictions.shape == (256, 1) and predictions.dtype == np.float32
    assert np.abs(predictions[:, 0] - y).max() < 0.2


def test_regression_with_several_outputs():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((200, 3))
    Y = np.stack([X @ [1.0, 2.0, 0.0], X @ [0.0, -1.0, 0.5] - 2], axis=1)
    model = Sequential(Dense(3, 2), dtype="float64", seed=0)
    trainer = Trainer(model, HuberLoss(), Adam(model.parameters(), lr=0.05))
    trainer.fit(X, Y, epochs=80, batch_size=20, seed=0, verbose=0)
    assert trainer.evaluate(X, Y)["loss"] < 1e-3


def multilabel_data(rng, n=400):
    X = rng.standard_normal((n, 5)).astype(np.float32)
    Y = np.stack([X[:, 0] > 0, X[:, 1] + X[:, 2] > 0, X[:, 3] > 0.5], axis=1)
    return X, Y.astype(np.float32)


def test_multilabel_with_bce_with_logits():
    rng = np.random.default_rng(2)
    X, Y = multilabel_data(rng)
    model = Sequential(Dense(5, 32), ReLU(), Dense(32, 3), seed=0)
    trainer = Trainer(model, BCEWithLogitsLoss(pos_weight=[1.0, 1.0, 2.0]),
                      Adam(model.parameters(), lr=0.01))
    history = trainer.fit(X[:300], Y[:300], epochs=60, batch_size=32, seed=0, verbose=0,
                          validation_data=(X[300:], Y[300:]))
    assert history.history["loss"][-1] < 0.2 * history.history["loss"][0]
    assert history.history["val_accuracy"][-1] > 0.93
    logs = trainer.evaluate(X[300:], Y[300:])
    assert set(logs) == {"loss", "accuracy"} and logs["accuracy"] > 0.93
    labels = trainer.predict(X[300:])
    assert labels.dtype == np.int64 and labels.shape == (100, 3)
    assert set(np.unique(labels)) <= {0, 1}
    assert logs["accuracy"] == pytest.approx(np.mean(labels == Y[300:]))
    proba = trainer.predict_proba(X[300:])
    logits = trainer._outputs(X[300:])
    assert_allclose(proba, 1 / (1 + np.exp(-logits)), rtol=1e-5)
    assert np.array_equal(labels, (proba > 0.5).astype(np.int64))


def test_multilabel_with_bce_on_sigmoid_outputs():
    rng = np.random.default_rng(3)
    X, Y = multilabel_data(rng)
    model = Sequential(Dense(5, 32), ReLU(), Dense(32, 3), Sigmoid(), seed=0)
    trainer = Trainer(model, BCELoss(), Adam(model.parameters(), lr=0.01))
    trainer.fit(X, Y, epochs=60, batch_size=32, seed=0, verbose=0)
    assert trainer.evaluate(X, Y)["accuracy"] > 0.93
    proba = trainer.predict_proba(X)
    assert np.array_equal(trainer.predict(X), (proba > 0.5).astype(np.int64))


def test_soft_labels_train_the_digits():
    X, y = load_digits()
    X = (X / 16).astype(np.float32)
    soft = np.full((len(y), 10), 0.01, np.float32)
    soft[np.arange(len(y)), y] = 0.91
    model = Sequential(Dense(64, 32), ReLU(), Dense(32, 10), seed=0)
    trainer = Trainer(model, CrossEntropyLoss(), Adam(model.parameters(), lr=0.01))
    history = trainer.fit(X, soft, epochs=5, seed=0, verbose=0, validation_split=0.2)
    assert history.history["accuracy"][-1] > 0.9    # counted on each row's likeliest class
    assert history.history["val_accuracy"][-1] > 0.85
    assert trainer.evaluate(X, y)["accuracy"] > 0.9
    assert trainer.evaluate(X, soft)["accuracy"] == trainer.evaluate(X, y)["accuracy"]
    # the same trainer then takes class indices (another compiled plan)
    history = trainer.fit(X, y, epochs=1, seed=0, verbose=0)
    assert history.history["accuracy"][0] > 0.9


def test_trainer_rejects_row_weights():
    model = Sequential(Dense(2, 1), seed=0)
    trainer = Trainer(model, BCEWithLogitsLoss(np.ones((4, 1))),
                      SGD(model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="weight: Trainer.fit needs one value per output column"):
        trainer.fit(np.zeros((4, 2)), np.zeros(4), verbose=0)


def test_trainer_rejects_batchmean():
    model = Sequential(Dense(2, 2), seed=0)
    trainer = Trainer(model, KLDivLoss("batchmean"), SGD(model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="loss: Trainer.fit needs reduction 'mean' or 'sum'"):
        trainer.fit(np.zeros((4, 2)), np.full((4, 2), 0.5), verbose=0)


def test_predict_proba_errors_for_regression():
    model = Sequential(Dense(2, 1), seed=0)
    trainer = Trainer(model, L1Loss(), SGD(model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="predict_proba: only for classifiers"):
        trainer.predict_proba(np.zeros((2, 2)))
