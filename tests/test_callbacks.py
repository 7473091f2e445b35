"""Callbacks: early stopping (with best-weight restore), stopping on NaN, and what the
checkpoint and learning-rate callbacks refuse."""
import re
import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from cnet import BatchNorm1d, CrossEntropyLoss, Dense, MSELoss, ReLU, Sequential, Trainer, optim
from cnet.schedulers import ReduceLROnPlateau, StepLR
from cnet.callbacks import (Callback, EarlyStopping, LearningRateScheduler, ModelCheckpoint,
                            TerminateOnNaN)


def problem(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((80, 5))
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
    model = Sequential(Dense(5, 16), ReLU(), Dense(16, 2), dtype="float64", seed=seed)
    return model, X, y


class Recorder(Callback):
    def __init__(self):
        self.calls = []

    def on_train_begin(self, trainer):
        self.calls.append("begin")

    def on_epoch_begin(self, trainer, epoch):
        self.calls.append(epoch)

    def on_epoch_end(self, trainer, epoch, logs):
        self.calls.append((epoch, sorted(logs)))

    def on_train_end(self, trainer):
        self.calls.append("end")


def test_callback_hooks_run_in_order_with_the_epoch_logs():
    model, X, y = problem()
    recorder = Recorder()

    class WithoutEpochBegin:        # not a Callback: on_epoch_begin stays optional
        def on_train_begin(self, trainer):
            pass

        def on_epoch_end(self, trainer, epoch, logs):
            pass

        def on_train_end(self, trainer):
            pass

    with warnings.catch_warnings():
        warnings.simplefilter("error")      # nothing to warn about
        Trainer(model, CrossEntropyLoss(), optim.SGD(model.parameters())).fit(
            X, y, epochs=3, initial_epoch=1, validation_split=0.25, verbose=0,
            callbacks=[recorder, WithoutEpochBegin()])
    keys = ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert recorder.calls == ["begin", 1, (1, keys), 2, (2, keys), "end"]


class KerasEpochEnd(Callback):
    def on_epoch_end(self, epoch, logs=None):
        pass


class KerasEpochBegin(Callback):
    def on_epoch_begin(self, epoch, logs=None):
        pass


class KerasTrainBegin(Callback):
    def on_train_begin(self, logs=None):
        pass


@pytest.mark.parametrize("callback, error", [
    (KerasEpochEnd(), r"KerasEpochEnd\.on_epoch_end\(epoch, logs=None\) cannot be called as "
                      r"on_epoch_end\(self, trainer, epoch, logs\): too many"),
    # These two bind, but would take the trainer for their epoch or logs.
    (KerasEpochBegin(), r"KerasEpochBegin\.on_epoch_begin\(epoch, logs=None\) cannot be "
                        r"called as on_epoch_begin\(self, trainer, epoch\): it would take the "
                        r"trainer as its 'epoch'"),
    (KerasTrainBegin(), r"KerasTrainBegin\.on_train_begin\(logs=None\) cannot be called as "
                        r"on_train_begin\(self, trainer\): it would take the trainer as its "
                        r"'logs'")])
def test_keras_style_hooks_are_refused_before_training(callback, error):
    model, X, y = problem()
    before = model.flat_data.copy()
    trainer = Trainer(model, CrossEntropyLoss(), optim.SGD(model.parameters()))
    with pytest.raises(TypeError, match=r"callbacks\[1\]: " + error):
        trainer.fit(X, y, epochs=2, verbose=0, callbacks=[Recorder(), callback])
    assert np.array_equal(model.flat_data, before)


def test_keras_hooks_cnet_never_calls_are_named_in_one_warning_per_fit():
    class Batches(Callback):
        def on_train_batch_end(self, batch, logs=None):
            raise AssertionError("called")

        def on_test_end(self, logs=None):
            raise AssertionError("called")

    model, X, y = problem()
    trainer = Trainer(model, CrossEntropyLoss(), optim.SGD(model.parameters()))
    with pytest.warns(UserWarning) as caught:
        trainer.fit(X, y, epochs=3, verbose=0, callbacks=[Recorder(), Batches()])
    assert len(caught) == 1 and caught[0].filename == __file__
    assert re.match(r"Batches\.on_train_batch_end \(callbacks\[1\]\), Batches\.on_test_end "
                    r"\(callbacks\[1\]\): cnet never calls these hooks\. fit runs each "
                    r"epoch's batches in compiled code, so there are no per-batch hooks",
                    str(caught[0].message))


def test_early_stopping_stops_and_restores_the_best_weights():
    model, X, y = problem()
    trainer = Trainer(model, CrossEntropyLoss(), optim.Adam(model.parameters(), lr=0.05))
    # Validation on noise labels: it stops improving quickly while training goes on.
    X_val = np.random.default_rng(9).standard_normal((40, 5))
    y_val = np.random.default_rng(9).integers(0, 2, 40)
    snapshots = []

    class Snapshot(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            snapshots.append(trainer.model.flat_data.copy())

    stopper = EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    history = trainer.fit(X, y, epochs=100, batch_size=16, validation_data=(X_val, y_val),
                          verbose=0, callbacks=[Snapshot(), stopper])
    val = history.history["val_loss"]
    assert len(val) < 100 and stopper.stopped_epoch == len(val) - 1
    assert stopper.best_epoch == int(np.argmin(val))
    assert len(val) - 1 - stopper.best_epoch == 2          # patience 2: stops on the second miss
    assert np.array_equal(model.flat_data, snapshots[stopper.best_epoch])


def test_early_stopping_on_an_unlogged_metric_says_what_is_logged():
    model, X, y = problem()
    trainer = Trainer(model, CrossEntropyLoss(), optim.SGD(model.parameters()))
    with pytest.raises(ValueError, match="'val_f1' is not logged; available: .*'loss'"):
        trainer.fit(X, y, epochs=2, verbose=0, callbacks=[EarlyStopping("val_f1")])


@pytest.mark.parametrize("make", [
    lambda folder: EarlyStopping(), lambda folder: EarlyStopping("val_accuracy"),
    lambda folder: ModelCheckpoint(folder / "best.safetensors", save_best_only=True),
])
def test_a_validation_metric_without_validation_data_is_refused_before_training(make, tmp_path):
    """fit logs val_loss and val_accuracy only with validation data: refused up front, not
    after an epoch of training (the model is left as it was)."""
    callback = make(tmp_path)
    model, X, y = problem()
    trainer = Trainer(model, CrossEntropyLoss(), optim.SGD(model.parameters()))
    before = model.flat_data.copy()
    with pytest.raises(ValueError, match=r"callbacks\[1\]: .* monitors 'val_.*validation_split"):
        trainer.fit(X, y, epochs=2, verbose=0, callbacks=[TerminateOnNaN(), callback])
    assert np.array_equal(model.flat_data, before)
    assert trainer.fit(X, y, epochs=1, verbose=0, callbacks=[callback],
                       validation_split=0.25).history["val_loss"]


def test_terminate_on_nan_stops_a_diverging_run():
    model, X, _ = problem()
    trainer = Trainer(model, MSELoss(), optim.SGD(model.parameters(), lr=1e6))
    Y = X[:, :2] * 1e3
    history = trainer.fit(X, Y, epochs=50, verbose=0, callbacks=[TerminateOnNaN()],
                          on_nan="continue")
    assert len(history.epoch) < 50
    assert not np.isfinite(history.history["loss"][-1])
    assert all(np.isfinite(history.history["loss"][:-1]))


def test_a_callback_class_instead_of_an_instance_is_named():
    model, X, y = problem()
    trainer = Trainer(model, CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.01))
    with pytest.raises(TypeError, match=r"callbacks\[0\]: .*the class EarlyStopping"):
        trainer.fit(X, y, epochs=1, verbose=0, callbacks=[EarlyStopping])


def test_checkpoint_path_naming_a_missing_log_is_a_clear_error(tmp_path):
    model, X, y = problem()
    trainer = Trainer(model, CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.01))
    for template in ["m-{val_loss:.3f}.safetensors", "{run}.safetensors", "m-{}.safetensors"]:
        callback = ModelCheckpoint(str(tmp_path / template))
        with pytest.raises(ValueError, match=r"filepath: cannot fill .*\['accuracy', 'loss'\]"):
            trainer.fit(X, y, epochs=1, verbose=0, callbacks=[callback])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("scheduler", [None, 0.1, "step"])
def test_learning_rate_scheduler_needs_a_scheduler_or_a_schedule(scheduler):
    with pytest.raises(TypeError, match=r"scheduler: expected a cnet.schedulers scheduler "
                                        r"\(with step\(\)\) or a function schedule\(epoch, lr\)"):
        LearningRateScheduler(scheduler)


@pytest.mark.parametrize("schedule, error", [
    (lambda epoch: 0.1, "too many positional arguments"),          # Keras 1's form
    (lambda lr, epoch: lr, "it would take the epoch as its 'lr'")])
def test_a_schedule_that_cannot_take_epoch_and_lr_is_refused(schedule, error):
    with pytest.raises(TypeError, match=r"scheduler: <lambda>\(.*\) cannot be called as "
                                        r"schedule\(epoch, lr\): " + error):
        LearningRateScheduler(schedule)


def test_a_schedule_function_sets_every_group_before_each_epoch_as_keras():
    model, X, y = problem()
    params = list(model.parameters())
    opt = optim.SGD([{"params": params[:2]}, {"params": params[2:], "lr": 0.3}], lr=0.1)
    calls, snapshots = [], []

    def schedule(epoch, lr):
        calls.append((epoch, lr))
        return {1: 0.2, 2: 0.0, 3: np.float32(0.5)}[epoch]

    class Snapshot(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            snapshots.append(trainer.model.flat_data.copy())

    history = Trainer(model, CrossEntropyLoss(), opt).fit(
        X, y, epochs=4, initial_epoch=1, verbose=0,
        callbacks=[Snapshot(), LearningRateScheduler(schedule)])
    # The absolute epoch and the first group's lr at the time; the epoch trains with the
    # rate returned (lr 0: epoch 2 leaves the weights as they were).
    assert calls == [(1, 0.1), (2, 0.2), (3, 0.0)]
    assert history.history["lr"] == [0.2, 0.0, 0.5]
    assert np.array_equal(snapshots[0], snapshots[1])
    assert not np.array_equal(snapshots[1], snapshots[2])
    assert [group["lr"] for group in opt.param_groups] == [0.5, 0.5]


@pytest.mark.parametrize("lr, error", [(float("nan"), ValueError), (-0.1, ValueError),
                                       (float("inf"), ValueError), ("0.1", TypeError),
                                       (None, TypeError)])
def test_a_schedule_returning_no_learning_rate_is_named_before_the_epoch_trains(lr, error):
    model, X, y = problem()
    before = model.flat_data.copy()

    def decay(epoch, current):
        return lr

    trainer = Trainer(model, CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(error, match=r"scheduler: decay\(epoch=0, lr=0\.1\) returned a bad "
                                    r"learning rate: expected a finite number >= 0, got"):
        trainer.fit(X, y, epochs=2, verbose=0, callbacks=[LearningRateScheduler(decay)])
    assert np.array_equal(model.flat_data, before) and trainer.optimizer.lr == 0.1


@pytest.mark.parametrize("monitor, mode, needed", [
    ("val_accuracy", "min", "max"), ("accuracy", "min", "max"), ("val_loss", "max", "min"),
    ("loss", "max", "min")])
def test_a_plateau_scheduler_whose_mode_goes_against_its_monitor_is_refused(monitor, mode, needed):
    """ReduceLROnPlateau's mode is "min" by default, as PyTorch's: on an accuracy it would
    cut the rate while the model improves. The mode is not changed behind the user's back."""
    model, _, _ = problem()
    scheduler = ReduceLROnPlateau(optim.SGD(model.parameters()), mode=mode)
    with pytest.raises(ValueError, match=rf"monitor: '{monitor}' .*mode='{mode}'.*build "
                                         rf"ReduceLROnPlateau\(optimizer, mode='{needed}'\)"):
        LearningRateScheduler(scheduler, monitor=monitor)
    assert scheduler.mode == mode


@pytest.mark.parametrize("monitor, mode", [("val_accuracy", "max"), ("val_loss", "min"),
                                           ("val_f1", "max"), ("val_f1", "min")])
def test_a_plateau_scheduler_whose_mode_suits_its_monitor_is_taken(monitor, mode):
    model, _, _ = problem()
    LearningRateScheduler(ReduceLROnPlateau(optim.SGD(model.parameters()), mode=mode),
                          monitor=monitor)


@pytest.mark.parametrize("patience", [0, 1, 2, 3])
def test_early_stopping_stops_after_patience_epochs_without_improvement_as_keras(patience):
    # Keras: EarlyStopping(patience=3) on a loss that never improves runs 4 epochs (its
    # docstring's example): the first sets the best, then `patience` misses stop training.
    model, X, y = problem()
    trainer = Trainer(model, CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.0))
    stopper = EarlyStopping(monitor="loss", patience=patience)
    history = trainer.fit(X, y, epochs=20, shuffle=False, verbose=0, callbacks=[stopper])
    assert len(history.epoch) == max(patience, 1) + 1
    assert stopper.best_epoch == 0 and stopper.stopped_epoch == max(patience, 1)


@pytest.mark.parametrize("kwargs, error", [
    (dict(patience=-1), ValueError), (dict(patience=2.5), TypeError),
    (dict(patience="3"), TypeError), (dict(monitor=None), TypeError)])
def test_early_stopping_checks_its_arguments(kwargs, error):
    with pytest.raises(error, match=next(iter(kwargs))):
        EarlyStopping(**kwargs)


def test_learning_rate_scheduler_logs_the_rate_each_epoch_trained_with():
    model, X, y = problem()
    opt = optim.SGD(model.parameters(), lr=0.1)
    snapshots = []

    class Snapshot(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            snapshots.append(trainer.model.flat_data.copy())

    # gamma=0: the first epoch trains at 0.1, every later one at 0 (no change to the weights)
    history = Trainer(model, CrossEntropyLoss(), opt).fit(
        X, y, epochs=3, verbose=0,
        callbacks=[Snapshot(), LearningRateScheduler(StepLR(opt, 1, 0.0))])
    assert history.history["lr"] == [0.1, 0.0, 0.0]
    assert np.array_equal(snapshots[1], snapshots[2])


def drive(stopper, values, trainer=None, monitor="val_loss"):
    """Feed stopper one epoch's logs per value, as fit does; the epochs it let pass."""
    trainer = trainer or SimpleNamespace(model=None)
    trainer.stop_training = False
    stopper.on_train_begin(trainer)
    for epoch, value in enumerate(values):
        stopper.on_epoch_end(trainer, epoch, {monitor: value})
        if trainer.stop_training:
            break
    stopper.on_train_end(trainer)
    return epoch + 1


def test_early_stopping_min_delta_is_the_improvement_needed():
    """As Keras: with min_delta, a loss improves only when below best - min_delta, so a
    smaller gain, or a worse value, counts as a miss."""
    stopper = EarlyStopping(min_delta=0.1, patience=0)
    assert drive(stopper, [1.0, 0.95, 0.5]) == 2
    assert stopper.best_epoch == 0 and stopper.stopped_epoch == 1
    stopper = EarlyStopping(min_delta=0.1, patience=0)
    assert drive(stopper, [1.0, 1.05, 0.5]) == 2
    stopper = EarlyStopping(min_delta=0.1, patience=0)
    assert drive(stopper, [1.0, 0.85, 0.7, 0.7]) == 4 and stopper.best_epoch == 2
    stopper = EarlyStopping(monitor="val_accuracy", min_delta=0.1, patience=0)
    assert drive(stopper, [0.5, 0.55, 0.9], monitor="val_accuracy") == 2


@pytest.mark.parametrize("monitor", ["accuracy", "val_accuracy"])
def test_early_stopping_auto_mode_maximises_accuracies(monitor):
    """mode='auto' is 'max' for a metric named like an accuracy (Keras: 'acc' in the name)."""
    stopper = EarlyStopping(monitor=monitor, patience=0)
    assert drive(stopper, [0.5, 0.6, 0.7, 0.65], monitor=monitor) == 4
    assert stopper.best_epoch == 2 and stopper.stopped_epoch == 3


def test_early_stopping_used_for_a_second_fit_starts_afresh():
    """on_train_begin forgets the previous run's best value (as Keras), so a second fit
    whose losses are all above the first one's best is not stopped at once."""
    stopper = EarlyStopping(patience=0)
    assert drive(stopper, [0.1, 0.2]) == 2
    assert drive(stopper, [0.5, 0.4, 0.3]) == 3
    assert stopper.best_epoch == 2 and stopper.stopped_epoch is None


def test_early_stopping_restores_the_running_statistics_of_the_best_epoch():
    """restore_best_weights brings back the whole state of the best epoch: the weights and
    BatchNorm1d's running statistics (flat_buffers)."""
    model = Sequential(Dense(3, 4), BatchNorm1d(4), Dense(4, 2), dtype="float64", seed=0)
    model(np.random.default_rng(0).standard_normal((8, 3)))     # running stats move
    best = model.flat_data.copy(), model.flat_buffers.copy()
    trainer = SimpleNamespace(model=model)

    class Perturb(Callback):        # runs after the stopper: the next epoch's changes
        def on_epoch_end(self, trainer, epoch, logs):
            trainer.model.flat_data[:] += 1.0
            trainer.model.flat_buffers[:] += 1.0

    stopper = EarlyStopping(patience=1, restore_best_weights=True)
    trainer.stop_training = False
    stopper.on_train_begin(trainer)
    for epoch, value in enumerate([1.0, 2.0, 3.0]):
        for callback in (stopper, Perturb()):
            callback.on_epoch_end(trainer, epoch, {"val_loss": value})
    stopper.on_train_end(trainer)
    assert trainer.stop_training and stopper.best_epoch == 0
    assert np.array_equal(model.flat_data, best[0])
    assert np.array_equal(model.flat_buffers, best[1])


def test_checkpoint_numbers_epochs_from_one(tmp_path):
    """As Keras, {epoch} in the file name counts from 1."""
    model, X, y = problem()
    Trainer(model, CrossEntropyLoss(), optim.SGD(model.parameters())).fit(
        X, y, epochs=2, verbose=0,
        callbacks=[ModelCheckpoint(tmp_path / "m-{epoch}.safetensors", monitor="loss")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m-1.safetensors",
                                                          "m-2.safetensors"]


def test_the_epoch_line_shows_what_a_callback_logged_beside_the_numbers(capsys):
    class Note(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            logs["phase"] = "warm-up" if epoch == 0 else "main"

    model, X, y = problem()
    Trainer(model, CrossEntropyLoss(), optim.SGD(model.parameters())).fit(
        X, y, epochs=2, verbose=2, callbacks=[Note()])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and "phase: warm-up" in lines[0] and "phase: main" in lines[1]
    assert re.search(r"loss: \d\.\d{3}", lines[0])


def test_early_stopping_never_stops_on_the_first_epoch():
    """As Keras (`epoch > 0`): a first value that is no improvement (NaN) does not stop
    training even with patience 0."""
    stopper = EarlyStopping(patience=0)
    assert drive(stopper, [float("nan"), 1.0, 2.0]) == 3
    assert stopper.best_epoch == 1 and stopper.stopped_epoch == 2
