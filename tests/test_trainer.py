"""Trainer: the compiled step runner against the manual loop, learning, and input checks."""
import copy
import re

import numpy as np
import pytest
from numpy.testing import assert_allclose

from cnet import (BatchNorm1d, BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, Dense, Dropout,
                  LeakyReLU, MSELoss, ReLU, Sequential, Sigmoid, Tanh, Trainer, cli, optim)
from cnet.callbacks import Callback
from cnet.data import load_digits
from cnet.progress import EpochProgress
from cnet.trainer import History
from helpers import train_manually


def classifier(dtype="float64", seed=0):
    return Sequential(Dense(6, 8), ReLU(), Dense(8, 5), Tanh(), Dense(5, 4), dtype=dtype, seed=seed)


def data(n=50, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 6)), rng.integers(0, 4, n)


OPTIMIZERS = [
    lambda p: optim.SGD(p, lr=0.1),
    lambda p: optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    lambda p: optim.Adam(p, lr=1e-2, amsgrad=True),
    lambda p: optim.AdamW(p, lr=1e-2),
]


@pytest.mark.parametrize("make_optimizer", OPTIMIZERS)
@pytest.mark.parametrize("shuffle", [False, True])
def test_fit_matches_the_manual_loop(make_optimizer, shuffle):
    X, y = data()
    batch, epochs, seed = 16, 3, 7
    fitted, manual = classifier(), classifier()
    Trainer(fitted, CrossEntropyLoss(), make_optimizer(fitted.parameters())).fit(
        X, y, epochs=epochs, batch_size=batch, shuffle=shuffle, seed=seed, verbose=0)

    train_manually(manual, make_optimizer(manual.parameters()), CrossEntropyLoss(), X, y,
                   batch, epochs, seed, shuffle)
    assert_allclose(fitted.flat_data, manual.flat_data, rtol=1e-9, atol=1e-12)
    assert not np.array_equal(fitted.flat_data, classifier().flat_data)


def test_fit_matches_manual_loop_for_mse_regression_float32():
    rng = np.random.default_rng(3)
    X, Y = rng.standard_normal((40, 6)).astype(np.float32), rng.standard_normal((40, 2))
    make = lambda: Sequential(Dense(6, 5), Tanh(), Dense(5, 2), seed=1)   # noqa: E731
    fitted, manual = make(), make()
    Trainer(fitted, MSELoss(), optim.Adam(fitted.parameters(), lr=1e-2)).fit(
        X, Y, epochs=2, batch_size=8, shuffle=False, verbose=0)
    train_manually(manual, optim.Adam(manual.parameters(), lr=1e-2), MSELoss(), X, Y, 8, 2)
    assert_allclose(fitted.flat_data, manual.flat_data, rtol=1e-5, atol=1e-6)


def test_same_seed_gives_the_same_training_run():
    X, y = data()
    runs = []
    for _ in range(2):
        model = classifier()
        Trainer(model, CrossEntropyLoss(), optim.Adam(model.parameters())).fit(
            X, y, epochs=2, batch_size=8, seed=11, verbose=0)
        runs.append(model.flat_data.copy())
    assert np.array_equal(runs[0], runs[1])


def test_xor_is_learned_by_a_2_4_1_network():
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float64)
    y = np.array([[0], [1], [1], [0]], np.float64)
    model = Sequential(Dense(2, 4), Tanh(), Dense(4, 1), Sigmoid(), dtype="float64", seed=0)
    trainer = Trainer(model, MSELoss(), optim.SGD(model.parameters(), lr=0.5, momentum=0.9))
    history = trainer.fit(X, y, epochs=500, batch_size=None, verbose=0)   # full batch
    assert history.history["loss"][-1] < history.history["loss"][0] / 10
    assert np.array_equal(trainer.predict(X) > 0.5, y > 0.5)


def test_history_validation_and_batch_modes():
    X, y = data(60)
    model = classifier()
    trainer = Trainer(model, CrossEntropyLoss(), optim.Adam(model.parameters(), lr=1e-2))
    history = trainer.fit(X, y, epochs=3, batch_size=1, validation_split=0.25, seed=0,
                          verbose=0)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert history.epoch == [0, 1, 2] and all(len(v) == 3 for v in history.history.values())
    assert trainer.optimizer.step_count == 3 * 45          # stochastic: one step per sample
    trainer.fit(X, y, epochs=2, batch_size=None, verbose=0)
    assert trainer.optimizer.step_count == 3 * 45 + 2      # full batch: one step per epoch
    assert_allclose(trainer.evaluate(X, y)["accuracy"], np.mean(trainer.predict(X) == y))
    # Full-batch gradient descent from fresh weights: every epoch lowers the loss.
    model = classifier()
    full = Trainer(model, CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1)).fit(
        X, y, epochs=5, batch_size=None, verbose=0)
    assert all(np.diff(full.history["loss"]) < 0)


def test_predict_proba_rows_are_probabilities():
    X, y = data()
    model = classifier("float32")
    trainer = Trainer(model, CrossEntropyLoss(), optim.SGD(model.parameters()))
    proba = trainer.predict_proba(X)
    assert proba.shape == (50, 4) and proba.dtype == np.float32
    assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    assert np.array_equal(proba.argmax(axis=1), trainer.predict(X))


@pytest.mark.parametrize("X, y, kwargs, error, match", [
    (np.ones((5, 3)), np.zeros(5, int), {}, ValueError, "X: expected 6 features, got 3"),
    (np.ones(6), np.zeros(1, int), {}, ValueError, "X: expected a 2-D array"),
    (np.ones((5, 6)), np.zeros(4, int), {}, ValueError, "5"),
    (np.ones((5, 6)), np.array([0, 1, 2, 3, 4]), {}, ValueError, r"\[0, 4\).*4 at row 4"),
    (np.ones((5, 6)), np.array([0, 1, -2, 3, 0]), {}, ValueError, "-2"),
    (np.ones((5, 6)), np.array([0, 1, 0.5, 3, 0]), {}, TypeError, "y: expected integer"),
    (np.ones((0, 6)), np.zeros(0, int), {}, ValueError, "at least one row"),
    (np.ones((5, 6), np.float16), np.zeros(5, int), {}, TypeError, "float16"),
    (np.ones((5, 6)), np.zeros(5, int), {"batch_size": 0}, ValueError, "batch_size"),
    (np.ones((5, 6)), np.zeros(5, int), {"epochs": 0}, ValueError, "epochs"),
    (np.ones((5, 6)), np.zeros(5, int), {"validation_split": 1.5}, ValueError,
     "validation_split"),
])
def test_fit_rejects_bad_input(X, y, kwargs, error, match):
    model = classifier()
    trainer = Trainer(model, CrossEntropyLoss(), optim.SGD(model.parameters()))
    before = model.flat_data.copy()
    with pytest.raises(error, match=match):
        trainer.fit(X, y, verbose=0, **kwargs)
    assert np.array_equal(model.flat_data, before)


def test_fit_names_the_row_holding_nan_and_leaves_the_model_as_it_was():
    X, y = data()
    X[37, 2] = np.nan
    model = classifier()
    opt = optim.Adam(model.parameters())
    trainer = Trainer(model, CrossEntropyLoss(), opt)
    trainer.fit(X[:30], y[:30], batch_size=10, verbose=0)
    before = (model.flat_data.copy(), opt.state["exp_avg"].copy(), opt.step_count)
    with pytest.raises(ValueError, match="X: expected finite values, got nan at row 37"):
        trainer.fit(X, y, batch_size=10, shuffle=False, verbose=0)
    assert np.array_equal(model.flat_data, before[0])
    assert np.array_equal(opt.state["exp_avg"], before[1]) and opt.step_count == before[2]
    X[37, 2] = -np.inf
    with pytest.raises(ValueError, match="-inf at row 37"):
        trainer.predict(X)


def test_trainer_rejects_mismatched_parts():
    model, other = classifier(), classifier()
    with pytest.raises(ValueError, match="optimizer"):
        Trainer(model, CrossEntropyLoss(), optim.SGD(other.parameters()))
    with pytest.raises(TypeError, match="loss"):
        Trainer(model, "cross_entropy", optim.SGD(model.parameters()))
    with pytest.raises(ValueError, match="reduction"):
        Trainer(model, CrossEntropyLoss(reduction="none"), optim.SGD(model.parameters())).fit(
            *data(), verbose=0)


def test_default_cli_network_reaches_95_percent_on_held_out_digits(capsys):
    assert cli.main(["train"]) == 0
    out = capsys.readouterr().out
    accuracy = float(re.search(r"test accuracy: ([0-9.]+)", out).group(1))
    assert accuracy >= 0.95, out
    assert "samples/s" in out and "Epoch 20/20" in out


def test_digits_accuracy_through_the_api():
    X, y = load_digits()
    model = Sequential(Dense(64, 32), ReLU(), Dense(32, 10), seed=0)
    trainer = Trainer(model, CrossEntropyLoss(), optim.Adam(model.parameters(), lr=1e-2))
    history = trainer.fit(X[:1500] / 16, y[:1500], epochs=5, batch_size=32, seed=0, verbose=0)
    assert history.history["accuracy"][-1] > 0.9
    assert trainer.evaluate(X[1500:] / 16, y[1500:])["accuracy"] > 0.85


def test_max_grad_norm_clips_every_step_like_the_manual_loop():
    X, y = data()
    fitted, manual = classifier(), classifier()
    Trainer(fitted, CrossEntropyLoss(), optim.SGD(fitted.parameters(), lr=0.5),
            max_grad_norm=0.1).fit(X, y, epochs=2, batch_size=25, shuffle=False, verbose=0)
    train_manually(manual, optim.SGD(manual.parameters(), lr=0.5), CrossEntropyLoss(), X, y,
                   25, 2, max_grad_norm=0.1)
    assert_allclose(fitted.flat_data, manual.flat_data, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="max_grad_norm"):
        Trainer(fitted, CrossEntropyLoss(), optim.SGD(fitted.parameters()), max_grad_norm=-1)


def digits_with_learning_rate(lr):
    X, y = load_digits()
    model = Sequential(Dense(64, 32), LeakyReLU(), Dense(32, 10), seed=0)
    return Trainer(model, CrossEntropyLoss(), optim.SGD(model.parameters(), lr=lr)), X, y


def test_divergence_raises_with_epoch_and_batch_and_keeps_finite_weights():
    trainer, X, y = digits_with_learning_rate(1e6)
    with pytest.raises(FloatingPointError, match=r"loss: became (nan|inf) at epoch 1, batch \d+"):
        trainer.fit(X, y, epochs=5, batch_size=64, verbose=0)
    assert np.isfinite(trainer.model.flat_data).all()


def test_divergence_stop_warns_and_returns_the_history():
    trainer, X, y = digits_with_learning_rate(1e6)
    with pytest.warns(RuntimeWarning, match="loss: became"):
        history = trainer.fit(X, y, epochs=5, batch_size=64, verbose=0, on_nan="stop")
    assert np.isnan(history.history["loss"][-1]) and len(history.epoch) < 5
    assert np.isfinite(trainer.model.flat_data).all()


def test_divergence_continue_trains_on_like_keras():
    trainer, X, y = digits_with_learning_rate(1e6)
    with np.errstate(all="ignore"):
        history = trainer.fit(X, y, epochs=2, batch_size=64, verbose=0, on_nan="continue")
    assert len(history.epoch) == 2 and not np.isfinite(history.history["loss"][-1])
    with pytest.raises(ValueError, match="on_nan"):
        trainer.fit(X, y, on_nan="ignore")


def test_nan_in_the_validation_split_rows_is_refused_before_training():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 4)).astype(np.float32)
    y = rng.integers(0, 3, 20)
    X[19, 2] = np.nan                           # in the last 20%: the validation rows
    model = Sequential(Dense(4, 8), ReLU(), Dense(8, 3), seed=0)
    before = model.flat_data.copy()
    trainer = Trainer(model, CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="X: expected finite values, got nan at row 19"):
        trainer.fit(X, y, epochs=3, validation_split=0.2, verbose=0)
    assert np.array_equal(model.flat_data, before)


@pytest.mark.parametrize("epochs", [1, 2])
def test_weights_overflowed_by_an_update_after_a_finite_loss_are_not_kept(epochs):
    """The last update of an epoch can make the weights infinite while its loss was finite;
    fit then stops as for a non-finite loss, with the epoch's starting weights."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 4)).astype(np.float32)
    y = rng.integers(0, 3, 20)
    model = Sequential(Dense(4, 8), ReLU(), Dense(8, 3), seed=0)
    trainer = Trainer(model, CrossEntropyLoss(), optim.SGD(model.parameters(), lr=1e300))
    with pytest.raises(FloatingPointError, match="weights: became NaN or infinite in epoch 1"):
        trainer.fit(X, y, epochs=epochs, batch_size=32, verbose=0)
    assert np.isfinite(model.flat_data).all()
    with pytest.warns(RuntimeWarning, match="weights: became"):
        history = trainer.fit(X, y, epochs=epochs, batch_size=32, verbose=0, on_nan="stop")
    assert np.isfinite(model.flat_data).all() and np.isnan(history.history["loss"][-1])


def _two_fits(change, model_layers, **first):
    """Weights after fit, `change`, fit again on one Trainer; and the same with a new Trainer
    (built after the change) for the second fit: the first must not reuse stale copies."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((32, 6)), rng.integers(0, 4, 32)
    results = []
    for fresh in (False, True):
        model = Sequential(*model_layers(), dtype="float64", seed=0)
        trainer = Trainer(model, CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1),
                          **first)
        trainer.fit(X, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
        trainer.predict_proba(X)
        change(trainer)
        if fresh:
            trainer = Trainer(model, trainer.loss, trainer.optimizer,
                              max_grad_norm=trainer.max_grad_norm)
        trainer.fit(X, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
        results.append((model.state_dict(), trainer.predict_proba(X)))
    (state, proba), (state_fresh, proba_fresh) = results
    assert all(state[k].tobytes() == state_fresh[k].tobytes() for k in state)
    assert proba.tobytes() == proba_fresh.tobytes()


def _set(layer_index, **values):
    def change(trainer):
        for k, v in values.items():
            setattr(trainer.model.layers[layer_index], k, v)
    return change


@pytest.mark.parametrize("change, model_layers", [
    (lambda t: setattr(t, "optimizer", optim.Adam(t.model.parameters(), lr=0.01)),
     lambda: (Dense(6, 8), Tanh(), Dense(8, 4))),
    (lambda t: setattr(t, "max_grad_norm", 0.05), lambda: (Dense(6, 8), Tanh(), Dense(8, 4))),
    (lambda t: setattr(t, "loss", CrossEntropyLoss(label_smoothing=0.2)),
     lambda: (Dense(6, 8), Tanh(), Dense(8, 4))),
    (lambda t: setattr(t.loss, "label_smoothing", 0.2),
     lambda: (Dense(6, 8), Tanh(), Dense(8, 4))),
    (_set(1, negative_slope=1.0), lambda: (Dense(6, 8), LeakyReLU(0.01), Dense(8, 4))),
    (_set(1, momentum=0.5, eps=0.1), lambda: (Dense(6, 8), BatchNorm1d(8), Dense(8, 4))),
    (_set(1, p=0.5), lambda: (Dense(6, 8), Dropout(0.1), Dense(8, 4))),
])
def test_a_trainer_follows_changes_made_after_its_first_call(change, model_layers):
    _two_fits(change, model_layers)


def test_an_optimizer_of_another_model_is_refused_when_swapped_in():
    model, other = Sequential(Dense(4, 2), seed=0), Sequential(Dense(4, 2), seed=1)
    trainer = Trainer(model, CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1))
    trainer.optimizer = optim.SGD(other.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="optimizer: expected an optimizer over this model"):
        trainer.fit(np.zeros((4, 4)), np.zeros(4, np.int64), verbose=0)


def test_batch_norm_without_running_statistics_predicts_with_the_whole_input():
    """In eval mode it normalises with the statistics of its input (as PyTorch): predict and
    evaluate must not split X into chunks (1,500 rows: more than one chunk of 1,024)."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((1500, 6)) * [1, 2, 3, 4, 5, 6] + 3, rng.integers(0, 3, 1500)
    model = Sequential(Dense(6, 8), BatchNorm1d(8, track_running_stats=False), Tanh(),
                       Dense(8, 3), dtype="float64", seed=0).eval()
    trainer = Trainer(model, CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1))
    logits = model(X)                      # the manual forward: all rows at once
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    assert_allclose(trainer.predict_proba(X), expected, rtol=1e-12, atol=1e-15)
    assert trainer.evaluate(X, y)["loss"] == pytest.approx(
        CrossEntropyLoss()(logits, y), rel=1e-12)


@pytest.mark.parametrize("loss", [
    CrossEntropyLoss(),
    MSELoss(),
    CrossEntropyLoss(reduction="sum"),
    CrossEntropyLoss(weight=[0.5, 2.0, 1.0, 3.0]),
    CrossEntropyLoss(weight=[0.5, 2.0, 1.0, 3.0], ignore_index=1, reduction="mean"),
    MSELoss(reduction="sum"),
])
@pytest.mark.parametrize("shuffle", [False, True])
def test_the_epoch_loss_is_what_evaluate_gives_on_the_same_weights(loss, shuffle):
    """With lr=0 the weights stay put: the epoch's logged loss, from its batches' losses, is
    the loss of all the rows (a sum for reduction="sum", PyTorch's weighted mean with class
    weights), as evaluate and val_loss report it. 37 rows: a last batch of 5."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((37, 6))
    y = rng.integers(0, 4, 37) if isinstance(loss, CrossEntropyLoss) else rng.standard_normal(37)
    model = Sequential(Dense(6, 8), Tanh(), Dense(8, 4 if y.dtype.kind == "i" else 1),
                       dtype="float64", seed=0)
    trainer = Trainer(model, loss, optim.SGD(model.parameters(), lr=0.0))
    history = trainer.fit(X, y, epochs=1, batch_size=8, shuffle=shuffle, verbose=0,
                          validation_data=(X, y))
    assert history.history["loss"][0] == pytest.approx(trainer.evaluate(X, y)["loss"],
                                                       rel=1e-12)
    assert history.history["loss"][0] == pytest.approx(history.history["val_loss"][0],
                                                       rel=1e-12)


def test_a_trainer_follows_a_model_swapped_in_after_its_first_call():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 6))
    first, second = (Sequential(Dense(6, 8), Tanh(), Dense(8, 4), dtype="float64", seed=s)
                     for s in (0, 1))
    trainer = Trainer(first, CrossEntropyLoss(), optim.SGD(first.parameters(), lr=0.1))
    trainer.predict_proba(X)
    trainer.model, trainer.optimizer = second, optim.SGD(second.parameters(), lr=0.1)
    expected = Trainer(second, CrossEntropyLoss(), trainer.optimizer).predict_proba(X)
    assert trainer.predict_proba(X).tobytes() == expected.tobytes()


def test_a_run_stopped_by_divergence_keeps_one_history_value_per_epoch_for_every_metric(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 4))
    y = (X[:, 0] > 0).astype(np.int64)
    model = Sequential(Dense(4, 8), ReLU(), Dense(8, 2), dtype="float64", seed=0)
    trainer = Trainer(model, CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1))

    class Diverge(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 1:
                trainer.optimizer.lr = 1e305

    with pytest.warns(RuntimeWarning, match="became"):
        history = trainer.fit(X, y, epochs=5, verbose=0, validation_split=0.2, on_nan="stop",
                              callbacks=[Diverge()])
    assert history.epoch == [0, 1, 2]
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    for key, values in history.history.items():
        assert len(values) == 3 and np.isnan(values[-1]) and np.isfinite(values[:2]).all(), key
    pytest.importorskip("matplotlib")
    history.plot(tmp_path / "curves.png")          # x and y of different lengths before


def test_history_plot_draws_a_validation_accuracy_logged_without_a_training_one(tmp_path):
    """The accuracy panel shows whichever accuracy curves were logged."""
    history = History()
    for epoch, accuracy in enumerate([0.5, 0.75]):
        history._append(epoch, {"loss": 1.0 - accuracy, "val_loss": 1.0,
                                "val_accuracy": accuracy})
    pytest.importorskip("matplotlib")
    fig = history.plot(tmp_path / "curves.png")
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss", "accuracy"]
    assert [line.get_label() for line in fig.axes[1].lines] == ["validation"]
    assert list(fig.axes[1].lines[0].get_ydata()) == history.history["val_accuracy"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss, head, soft", [
    (BCEWithLogitsLoss(), [], False), (BCELoss(), [Sigmoid], False),
    (CrossEntropyLoss(), [], True),
])
def test_fit_logs_the_accuracy_evaluate_gives_for_float_targets(loss, head, soft, dtype):
    """Multi-label and soft-label fits log a training accuracy counted by the step runner as
    evaluate counts it (each label, or each row's most probable class): one full-batch
    step's is the accuracy before its update."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 4))
    Y = (X[:, :3] > 0).astype(np.float64)
    if soft:
        Y = 0.8 * np.eye(3)[rng.integers(0, 3, 50)] + 0.2 / 3
    model = Sequential(Dense(4, 3), *(layer() for layer in head), dtype=dtype, seed=0)
    trainer = Trainer(model, loss, optim.SGD(model.parameters(), lr=0.5))
    for _ in range(2):
        before = trainer.evaluate(X, Y)["accuracy"]
        assert 0 < before < 1
        assert trainer.fit(X, Y, batch_size=None, verbose=0).history["accuracy"] == [before]


@pytest.mark.parametrize("verbose", [-1, 3, "2", 1.0, None, "Auto"])
def test_fit_refuses_a_verbose_level_it_has_not(verbose):
    trainer, X, y = digits_with_learning_rate(0.1)
    before = trainer.model.flat_data.copy()
    with pytest.raises(ValueError, match="verbose: expected 0 .* got"):
        trainer.fit(X, y, verbose=verbose)
    assert np.array_equal(trainer.model.flat_data, before)


def test_fit_verbose_auto_is_verbose_1_as_in_keras(capsys, monkeypatch):
    import cnet.trainer
    levels = []

    class Recorded(cnet.trainer.EpochProgress):     # without a terminal 1 and 2 print alike
        def __init__(self, verbose, *args):
            levels.append(verbose)
            super().__init__(verbose, *args)

    monkeypatch.setattr(cnet.trainer, "EpochProgress", Recorded)
    shown = {}
    for verbose in ("auto", 1):
        trainer, X, y = digits_with_learning_rate(0.1)
        trainer.fit(X, y, epochs=2, seed=0, verbose=verbose)
        # one line per epoch without a terminal; the samples/s and seconds vary
        shown[verbose] = [line.split(" - ")[-2:] for line in capsys.readouterr().out.splitlines()]
    assert len(shown[1]) == 2 and shown["auto"] == shown[1]
    assert levels == [1, 1]


def test_repr_names_loss_optimizer_clipping_and_model():
    model = Sequential(Dense(4, 2), seed=0)
    trainer = Trainer(model, MSELoss(), optim.SGD(model.parameters(), lr=0.1), max_grad_norm=1)
    assert repr(trainer) == (
        "Trainer(\n  loss=MSELoss(reduction='mean'),\n"
        "  optimizer=SGD(lr=0.1, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False),\n"
        "  max_grad_norm=1.0,\n"
        "  model=Sequential(\n"
        "    (0): Dense(in_features=4, out_features=2, bias=True, init='torch')\n"
        "  )  # dtype=float32\n)")
    assert "max_grad_norm" not in repr(Trainer(model, MSELoss(), optim.SGD(model.parameters())))


def test_epoch_line_shows_numbers_as_keras_does(capsys):
    """4 decimals; exponent form below 0.001 (not 0.0000); milliseconds below a second."""
    progress = EpochProgress(2, 3, 10, 100)
    progress.end(0, {"loss": 2e-5, "accuracy": 0.98, "val_loss": 0.0, "lr": float("nan"),
                     "note": "x"}, 0.0456)
    progress.end(2, {"loss": -1234.5}, 1.5)
    assert capsys.readouterr().out.splitlines() == [
        "Epoch 1/3 - 45.6ms - 2,193 samples/s - loss: 2.0000e-05 - accuracy: 0.9800 - "
        "val_loss: 0.0000 - lr: nan - note: x",
        "Epoch 3/3 - 1.50s - 67 samples/s - loss: -1234.5000"]


@pytest.mark.parametrize("training", [True, False])
def test_fit_and_predict_leave_the_model_in_the_mode_they_found(training):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 4)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    model = Sequential(Dense(4, 8), Dropout(0.5), Dense(8, 3), seed=0)
    trainer = Trainer(model, CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1))
    model.train(training)
    trainer.fit(X, y, epochs=2, verbose=0, validation_split=0.25)
    assert model.training is training and all(layer.training is training for layer in model)
    trainer.predict(X)
    assert model.training is training and model[1].training is training


def test_fit_accuracy_breaks_ties_to_the_first_class_as_argmax():
    """Every logit 0 (zero weights): the predicted class is the first of the tied maxima, as
    np.argmax, torch.argmax and evaluate take it, so the accuracy fit logs is the fraction
    of labels 0 (measured before the batch's update)."""
    X, y = np.ones((6, 3)), np.array([0, 0, 0, 1, 2, 2])
    model = Sequential(Dense(3, 3, init="zeros"), dtype="float64")
    trainer = Trainer(model, CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1))
    assert trainer.evaluate(X, y)["accuracy"] == 0.5
    history = trainer.fit(X, y, epochs=1, batch_size=6, shuffle=False, verbose=0)
    assert history.history["accuracy"][0] == 0.5


@pytest.mark.parametrize("split, n_val", [(0.25, 3), (0.5, 5)])
def test_validation_split_holds_out_the_last_rows(split, n_val):
    """As Keras: the last ceil(n * split) rows, before any shuffling, are the validation
    data; the others are trained on. lr=0 keeps the weights, so the logged losses are
    evaluate's on those rows."""
    rng = np.random.default_rng(2)
    X, y = rng.standard_normal((10, 6)), rng.integers(0, 4, 10)
    model = classifier()
    trainer = Trainer(model, CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.0))
    logs = trainer.fit(X, y, epochs=1, batch_size=4, validation_split=split, seed=0,
                       verbose=0).history
    val = trainer.evaluate(X[-n_val:], y[-n_val:])
    assert logs["val_loss"][0] == pytest.approx(val["loss"], rel=1e-12)
    assert logs["val_accuracy"][0] == val["accuracy"]
    assert logs["loss"][0] == pytest.approx(trainer.evaluate(X[:-n_val], y[:-n_val])["loss"],
                                            rel=1e-12)


def test_bce_loss_labels_and_accuracy_threshold_probabilities_at_one_half():
    """BCELoss takes probabilities (a Sigmoid output): a label is 1 above 0.5, not above 0
    as for BCEWithLogitsLoss's logits."""
    X = np.array([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.0], [0.0, -2.0]])
    model = Sequential(Dense(2, 2), Sigmoid(), dtype="float64", seed=0)
    model[0].weight.data[...] = np.eye(2)
    model[0].bias.data[...] = 0.0
    trainer = Trainer(model, BCELoss(), optim.SGD(model.parameters(), lr=0.1))
    labels = (X > 0).astype(np.int64)
    assert np.array_equal(trainer.predict(X), labels)
    assert trainer.evaluate(X, labels.astype(np.float64))["accuracy"] == 1.0


def test_lbfgs_fit_logs_the_accuracy_at_the_start_of_the_step_as_its_loss():
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float64)
    y = np.array([0, 1, 1, 0])
    model = Sequential(Dense(2, 8), Tanh(), Dense(8, 2), dtype="float64", seed=1)
    trainer = Trainer(model, CrossEntropyLoss(),
                      optim.LBFGS(model.parameters(), line_search_fn="strong_wolfe"))
    before = trainer.evaluate(X, y)
    history = trainer.fit(X, y, epochs=1, batch_size=None, verbose=0)
    assert history.history["loss"] == [pytest.approx(before["loss"], rel=1e-12)]
    assert history.history["accuracy"] == [before["accuracy"]]
    assert trainer.evaluate(X, y)["accuracy"] != before["accuracy"]    # the step changed it


def test_a_model_swapped_into_a_trainer_is_checked():
    trainer, X, y = digits_with_learning_rate(0.1)
    with pytest.raises(TypeError, match="model: expected a cnet Sequential, got str"):
        trainer.model = "model.safetensors"
    with pytest.raises(ValueError, match="model: expected a Dense or BatchNorm1d layer"):
        trainer.model = Sequential(ReLU())
    assert trainer.predict(X).shape == y.shape        # the trainer kept its model


def test_a_model_is_not_swapped_into_a_trainer_during_its_call():
    """fit goes on with the model it started with: a callback replacing trainer.model
    would have the rest of the epochs train one model and log another."""
    trainer, X, y = digits_with_learning_rate(0.1)
    first, other = trainer.model, copy.deepcopy(trainer.model)

    class Swap(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            trainer.model = other

    with pytest.raises(RuntimeError, match="model: cannot be replaced while"):
        trainer.fit(X, y, epochs=2, verbose=0, callbacks=[Swap()])
    assert trainer.model is first
    trainer.model = other                       # between calls it may
    assert trainer.model is other and trainer.predict(X).shape == y.shape
    assert copy.deepcopy(trainer).model.flat_data.shape == other.flat_data.shape


def test_accuracy_skips_rows_at_an_ignore_index_that_is_a_class():
    """With ignore_index a real class, a row labelled with it counts neither as correct nor
    in the total, even where the model predicts that class."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((50, 6)), rng.integers(0, 3, 50)
    model = Sequential(Dense(6, 8), ReLU(), Dense(8, 3), dtype="float64", seed=0)
    pred, keep = model(X).argmax(axis=1), y != 0
    assert np.any(pred[~keep] == 0)     # ignored rows that would count if not skipped
    history = Trainer(model, CrossEntropyLoss(ignore_index=0),
                      optim.SGD(model.parameters(), lr=0.0)).fit(
        X, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    assert history.history["accuracy"][0] == pytest.approx(np.mean(pred[keep] == y[keep]))
