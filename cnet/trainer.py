"""Trainer: fit / evaluate / predict a Sequential with a loss and an optimizer.

`fit` validates and converts the data once, then runs each epoch's mini-batches through
the compiled step runner (cnet._engine.StepRunner): forward, loss, backward and update
with no Python per layer and no new arrays per step. Finiteness of X is checked as each
batch is gathered, not by a scan of the whole data set per call.
"""
import collections
import contextlib
import functools
import math
import numbers
import time
import warnings

import numpy as np

from cnet import _activations, _blas
from cnet._engine import StepRunner
from cnet._validation import (as_generator, as_matrix, check_positive_int,
                              first_non_finite)
from cnet.callbacks import _check_callbacks
from cnet.losses import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss
from cnet.layers import Dense
from cnet.model import Sequential, _InUse
from cnet.optim import LBFGS, Optimizer
from cnet.progress import EpochProgress

__all__ = ["History", "Trainer"]

PREDICT_BATCH = 1024  # rows per forward pass when predicting: large enough for BLAS to be efficient
# Step runners a Trainer keeps (the least recently used goes first): each holds its
# workspace and its team's parked threads, so a sweep over batch sizes must not pile them up;
# training, validation and prediction on another number of rows use three.
MAX_RUNNERS = 4
# A compiled training call's length at most (about): signals such as Ctrl-C are handled
# between calls, and a call's fixed cost (waking the team) is ~50 µs.
CALL_SECONDS = 0.25


class _NonFiniteRow(Exception):
    """Raised inside an LBFGS closure when X holds a NaN/inf (args[0]: its row)."""


class History:
    """Per-epoch metrics, as Keras's History: `history.history["loss"]`, `history.epoch`."""

    def __init__(self):
        self.history = {}
        self.epoch = []

    def _append(self, epoch, logs):
        self.epoch.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"

    def plot(self, path=None):
        """Loss and accuracy per epoch, training and validation (those logged), drawn with
        matplotlib (an optional extra: pip install cnet[plot]). Saves to `path` when given;
        returns the figure."""
        try:
            import matplotlib
            if path is not None:
                matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            raise ImportError("History.plot needs matplotlib: pip install matplotlib") from None
        # Either curve alone is drawn (a callback may log one without the other).
        metrics = [m for m in ("loss", "accuracy")
                   if m in self.history or "val_" + m in self.history]
        fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.5), squeeze=False)
        epochs = [e + 1 for e in self.epoch]
        for ax, metric in zip(axes[0], metrics):
            for key, label in ((metric, "training"), ("val_" + metric, "validation")):
                if key in self.history:
                    ax.plot(epochs, self.history[key], marker=".", label=label)
            ax.set(xlabel="epoch", ylabel=metric)
            ax.grid(alpha=0.3)
            ax.legend()
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=120)
            plt.close(fig)
        return fig


class _Snapshot:
    """A copy of everything a training step changes (weights, running statistics, optimizer
    state and step count, dropout streams), taken into buffers allocated once per fit."""

    def __init__(self, model, optimizer):
        self.optimizer = optimizer
        self.live = [model.flat_data, model.flat_buffers]
        self.live += [s for s in optimizer.state.values() if s is not None]
        self.live += [getattr(layer, name) for layer in model.layers
                      for name in ("rng_state", "num_batches_tracked") if hasattr(layer, name)]
        self.saved = [np.empty_like(a) for a in self.live]
        self.step_count = optimizer.step_count

    def save(self):
        for live, saved in zip(self.live, self.saved):
            np.copyto(saved, live)
        self.step_count = self.optimizer.step_count

    def restore(self):
        for live, saved in zip(self.live, self.saved):
            np.copyto(live, saved)
        self.optimizer.step_count = self.step_count


def _check_optimizer_of(model, optimizer):
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer: expected a cnet optimizer, got {type(optimizer).__name__}")
    if optimizer.flat_data is not model.flat_data:
        raise ValueError("optimizer: expected an optimizer over this model's parameters")


@contextlib.contextmanager
def _mode(model, training):
    """The model in training (or eval) mode for one call, then back in the mode it was in,
    as Keras's fit and predict leave it."""
    was_training = model.training
    model.train(training)
    try:
        yield
    finally:
        model.train(was_training)


_TRAINER_BUSY = ("trainer: another thread is in this Trainer's fit, whose callbacks could be "
                 "waiting for this thread; call it from that fit's callbacks, after fit "
                 "returns, or through a Trainer of a copy.deepcopy of the model")


def _materialised(value):
    """value as an ndarray where numpy makes one, else as it is (for the checks to name what
    is wrong): np.asarray may run user code (an __array__, a lazy array's compute), which
    must not run while another thread waits for an evaluate or predict."""
    if isinstance(value, np.ndarray):
        return value
    try:
        return np.asarray(value)
    except Exception:       # noqa: BLE001 (ragged lists and the like: reported by the checks)
        return value


def _one_call_at_a_time(method):
    """Serialise a Trainer's calls (fit, evaluate and predict share its step runners'
    workspaces) and give the model's arena to one call at a time, whichever of its Trainers
    makes it. Both locks follow one rule (cnet.model._InUse): another thread's call waits
    for an evaluate or predict, which run no user code, and is refused during a fit, whose
    callbacks could be waiting for that thread. The calling thread itself may nest calls (a
    callback evaluating with another Trainer of the model). Different models train in
    parallel: the kernels release the GIL."""
    fitting = method.__name__ == "fit"

    @functools.wraps(method)
    def serialised(self, *args, **kwargs):
        if not fitting:     # another thread's call waits for this one: no user code under it
            args = tuple(_materialised(a) for a in args)
            kwargs = {k: _materialised(v) for k, v in kwargs.items()}
        # The Trainer's lock before reading self.model, which the setter swaps under it.
        with self._lock.fitting if fitting else self._lock.plain:
            calls = self.model._calls
            with calls.fitting if fitting else calls.plain:
                return method(self, *args, **kwargs)
    return serialised


class Trainer:
    """Trains `model` to minimise `loss` with `optimizer`.

    >>> trainer = Trainer(model, CrossEntropyLoss(), Adam(model.parameters(), lr=1e-3))
    >>> history = trainer.fit(X, y, epochs=10, batch_size=32)

    max_grad_norm clips the global L2 norm of the gradients before each update, as
    torch.nn.utils.clip_grad_norm_ between backward() and step().
    """

    def __init__(self, model, loss, optimizer, max_grad_norm=None):
        self.model = model
        if isinstance(loss, type) or not hasattr(loss, "_kernel_spec"):
            raise TypeError(f"loss: expected a cnet loss (e.g. CrossEntropyLoss()), "
                            f"got {type(loss).__name__}")
        _check_optimizer_of(model, optimizer)
        if max_grad_norm is not None:
            if isinstance(max_grad_norm, bool) or not isinstance(max_grad_norm, numbers.Real):
                raise TypeError(f"max_grad_norm: expected a positive number, "
                                f"got {max_grad_norm!r}")
            max_grad_norm = float(max_grad_norm)
            if not max_grad_norm > 0 or not math.isfinite(max_grad_norm):
                raise ValueError(f"max_grad_norm: expected a positive number, got {max_grad_norm}")
        self.loss, self.optimizer = loss, optimizer
        self.max_grad_norm = max_grad_norm
        self._runners = collections.OrderedDict()
        self._lock = _InUse(_TRAINER_BUSY)

    def __repr__(self):
        # the model last: its repr spans lines and ends with a comment (its dtype)
        clip = "" if self.max_grad_norm is None else f"  max_grad_norm={self.max_grad_norm},\n"
        model = repr(self.model).replace("\n", "\n  ")
        return (f"Trainer(\n  loss={self.loss!r},\n  optimizer={self.optimizer!r},\n{clip}"
                f"  model={model}\n)")

    # copy.deepcopy and pickle: the step runners (compiled, holding pointers into this
    # trainer's arrays) and the lock are not copied; the copy builds its own when it runs.
    # Deep-copied together, the model and optimizer of the copy share the copied arena.
    def __getstate__(self):
        state = dict(self.__dict__)
        del state["_runners"], state["_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._runners = collections.OrderedDict()
        self._lock = _InUse(_TRAINER_BUSY)

    @property
    def model(self):
        return self._model

    @model.setter
    def model(self, model):     # may be swapped between calls (the runners follow)
        if not isinstance(model, Sequential):
            raise TypeError(f"model: expected a cnet Sequential, got {type(model).__name__}")
        if model.in_features is None:
            raise ValueError("model: expected a Dense or BatchNorm1d layer that fixes the "
                             "input width")
        lock = self.__dict__.get("_lock")       # none yet in __init__
        if lock is None:
            self._model = model
            return
        # Under the calls' lock, which a call holds from before it reads self.model; held
        # already by this thread's call (e.g. from a callback) when its depth is not 0.
        if not lock._lock.acquire(blocking=False):
            raise self._busy()
        try:
            if lock._depth:
                raise self._busy()
            self._model = model
        finally:
            lock._lock.release()

    @staticmethod
    def _busy():
        return RuntimeError("model: cannot be replaced while this Trainer's fit, evaluate or "
                            "predict runs (e.g. from a callback), as that call goes on with "
                            "the model it started with; replace it between calls")

    @property
    def is_classifier(self):
        return isinstance(self.loss, CrossEntropyLoss)

    @property
    def is_multilabel(self):
        """k independent 0/1 labels per row: BCEWithLogitsLoss (logits) or BCELoss."""
        return isinstance(self.loss, (BCELoss, BCEWithLogitsLoss))

    def _runner(self, batch_size, training, y=None):
        """A step runner for this batch size, kept for the next call (with its workspace and
        threads) while nothing it copied has changed since: the model and its layers'
        settings, and for
        training the optimizer object, max_grad_norm and the loss's settings. (The
        optimizer's hyper-parameters it re-reads at every call.)"""
        if training:            # trainer.optimizer may have been replaced since __init__
            _check_optimizer_of(self.model, self.optimizer)
        loss = self.loss if y is None else self.loss._for_targets(y)  # e.g. soft labels
        key = (batch_size, training) if loss is self.loss else (batch_size, training, type(loss))
        settings = self._runner_settings(loss if training else None)
        if key in self._runners and self._runners[key][1] == settings:
            self._runners.move_to_end(key)
            return self._runners[key][0]
        self._runners.pop(key, None)
        runner = (StepRunner(self.model, batch_size, loss, self.optimizer,
                             self.max_grad_norm or 0.0)
                  if training else StepRunner(self.model, batch_size))
        if len(self._runners) >= MAX_RUNNERS:
            self._runners.popitem(last=False)      # its threads exit with it
        self._runners[key] = (runner, settings)
        return runner

    def _runner_settings(self, loss):
        """What a step runner copies when it is built, as a value to compare; checks that
        model.layers was not edited since (a step runner would read past the arena)."""
        layers = id(self.model), self.model._check_layers()
        if loss is None:
            return layers
        spec = tuple((k, v.tobytes() if isinstance(v, np.ndarray) else v)
                     for k, v in sorted(loss._kernel_spec().items()))
        return layers, id(self.optimizer), self.max_grad_norm, spec

    def _check_X(self, X, check_finite, name="X"):
        return as_matrix(name, X, self.model.dtype, self.model.in_features, check_finite)

    def _check_y(self, y, n_rows, name="y"):
        return self.loss._validate_target(y, self.model.out_features, n_rows, name=name,
                                          dtype=self.model.dtype)

    # --- training ------------------------------------------------------------------------

    @_one_call_at_a_time
    def fit(self, X, y, epochs=1, batch_size=32, shuffle=True, validation_data=None,
            validation_split=0.0, seed=None, verbose=1, callbacks=(), on_nan="raise",
            initial_epoch=0):
        """Train for `epochs` passes over (X, y). batch_size=None is full-batch gradient
        descent, batch_size=1 stochastic gradient descent. callbacks (cnet.callbacks) run
        before and after every epoch and may stop training; their hooks' signatures are
        checked before training starts. With LBFGS (full-batch only: batch_size=None)
        each epoch is one optimizer.step(closure). Returns a History.

        When a batch's loss is NaN or infinite, training stops before that batch's update
        and the last finite weights are kept (those of the start of the epoch if the
        current ones are not finite); so it does when an epoch's updates leave the weights
        or running statistics NaN or infinite after finite losses. on_nan="raise" then
        raises FloatingPointError naming the epoch (and batch), "stop" warns and returns the
        History so far (the diverged epoch's loss is NaN), "continue" trains on regardless,
        as Keras does. NaN or inf in X (validation_split's rows included) raises ValueError
        with the model left as it was before fit.

        seed: the shuffles' generator: None, an int, or a numpy.random.Generator, which is
        used as it is, so its state carries on from call to call. To resume a run from a
        checkpoint, save the model and optimizer with `generator.bit_generator.state` and
        the epoch in cnet.save's `extra`, then restore them and call fit with a Generator
        in that state and initial_epoch=<epochs done>: training then runs epochs
        initial_epoch .. epochs-1 (as Keras; History and callbacks see those numbers) and
        ends with the weights of an uninterrupted run."""
        epochs = check_positive_int("epochs", epochs)
        if isinstance(initial_epoch, bool) or not isinstance(initial_epoch, numbers.Integral):
            raise TypeError(f"initial_epoch: expected an int >= 0, got {initial_epoch!r}")
        if initial_epoch < 0:
            raise ValueError(f"initial_epoch: expected an int >= 0, got {initial_epoch}")
        if isinstance(verbose, str) and verbose == "auto":     # Keras's default: a bar
            verbose = 1
        if not isinstance(verbose, numbers.Integral) or verbose not in (0, 1, 2):
            raise ValueError(f"verbose: expected 0 (silent), 1 or 'auto' (progress bar) or 2 "
                             f"(one line per epoch), got {verbose!r}")
        if not isinstance(on_nan, str) or on_nan not in ("raise", "stop", "continue"):
            raise ValueError(f"on_nan: expected 'raise', 'stop' or 'continue', got {on_nan!r}")
        rng = as_generator("seed", seed)
        self._check_trainable()
        X = self._check_X(X, check_finite=False)   # finiteness: checked batch by batch
        y = self._check_y(y, len(X))
        X, y, validation_data = self._split_validation(X, y, validation_data, validation_split)
        callbacks = _check_callbacks(callbacks, validating=validation_data is not None)
        n = len(X)
        lbfgs = isinstance(self.optimizer, LBFGS)
        if lbfgs and batch_size is not None:
            raise ValueError(f"batch_size: LBFGS is a full-batch method; pass batch_size=None "
                             f"(got {batch_size!r})")
        if lbfgs and self.max_grad_norm is not None:
            raise ValueError("max_grad_norm: gradient clipping is not supported with LBFGS")
        batch_size = n if batch_size is None else min(check_positive_int("batch_size",
                                                                         batch_size), n)
        n_batches = math.ceil(n / batch_size)
        if (n - batch_size * (n_batches - 1) == 1
                and any(layer.op == "batchnorm" for layer in self.model.layers)):
            raise ValueError(f"batch_size: {batch_size} leaves a batch of 1 row out of {n}, "
                             f"which BatchNorm1d cannot normalise in training; choose another")
        runner = self._runner(batch_size, training=True, y=y)
        rows = np.full(n_batches, batch_size, np.float64)
        rows[-1] = n - batch_size * (n_batches - 1)
        losses = np.empty(n_batches)
        correct = np.zeros(n_batches, np.int64)
        counted = self._counted(y)
        row_weights = self._row_weights(y, counted)
        # A guess of a batch's time, for the length of the compiled calls: its products at
        # 100 GFLOP/s (forward, and two products a layer backward).
        batch_seconds = 6e-11 * batch_size * sum(
            layer.in_features * layer.out_features for layer in self.model.layers
            if isinstance(layer, Dense))
        history = History()
        snapshot = _Snapshot(self.model, self.optimizer)
        progress = EpochProgress(verbose, epochs, n_batches, n)
        self.stop_training = False
        with _mode(self.model, training=True):
            for callback in callbacks:
                callback.on_train_begin(self)
            epoch_begins = [callback.on_epoch_begin for callback in callbacks
                            if hasattr(callback, "on_epoch_begin")]
            for epoch in range(initial_epoch, epochs):
                start = time.perf_counter()
                for on_epoch_begin in epoch_begins:
                    on_epoch_begin(self, epoch)
                order = rng.permutation(n) if shuffle else None
                snapshot.save()
                progress.start(epoch)
                done, bad = (self._lbfgs_step(runner, X, y, losses, correct) if lbfgs else
                             self._train_epoch(runner, X, y, order, losses, correct,
                                               on_nan != "continue", progress, batch_seconds))
                if bad >= 0:    # every row is seen in the first epoch: the model is as before fit
                    snapshot.restore()
                    raise ValueError(f"X: expected finite values, got "
                                     f"{X[bad][~np.isfinite(X[bad])][0]} at row {bad}")
                if done < n_batches:
                    diverged = f"loss: became {losses[done]} at epoch {epoch + 1}, batch {done + 1}"
                elif on_nan != "continue" and not self._finite_state():
                    diverged = f"weights: became NaN or infinite in epoch {epoch + 1}"
                else:
                    diverged = None
                if diverged:
                    self._diverged(snapshot, on_nan, epoch, diverged)
                    # NaN for every metric logged so far, so that each history list still has
                    # one value per epoch (History.plot, pandas.DataFrame(history.history)).
                    history._append(epoch, {key: float("nan")
                                            for key in history.history or ("loss",)})
                    break
                logs = {"loss": self._epoch_loss(losses, rows, n, row_weights, order, batch_size)}
                if self.is_classifier or self.is_multilabel:    # counted by the step runner
                    logs["accuracy"] = float(correct.sum() / counted)
                if validation_data is not None:
                    for key, value in self.evaluate(*validation_data).items():
                        logs["val_" + key] = value
                for callback in callbacks:
                    callback.on_epoch_end(self, epoch, logs)
                history._append(epoch, logs)
                progress.end(epoch, logs, time.perf_counter() - start)
                if self.stop_training:
                    break
            for callback in callbacks:
                callback.on_train_end(self)
            return history

    def _lbfgs_step(self, runner, X, y, losses, correct):
        """One LBFGS step(closure) whose closure is the compiled full-batch forward/backward.
        As train_batches: (steps, -1 or a non-finite row of X); losses[0] and correct[0]
        get the loss and hits at the start of the step."""
        first = []

        def closure():
            loss, bad = runner.loss_and_grad(X, y, correct)
            if bad >= 0:
                raise _NonFiniteRow(bad)
            if not first:
                first.append((loss, correct[0]))
            return loss

        try:
            self.optimizer.step(closure)
        except _NonFiniteRow as exc:
            return 0, exc.args[0]
        losses[0], correct[0] = first[0]
        return 1, -1

    @staticmethod
    def _train_epoch(runner, X, y, order, losses, correct, stop_on_nan, progress,
                     batch_seconds):
        """The epoch's batches through the step runner, in as few calls as the progress
        display allows (one, without a bar), each of about CALL_SECONDS at most: Python,
        and so Ctrl-C, runs only between calls. batch_seconds: a first guess of a batch's
        time, then each call's measured one. Returns (updates made, -1 or a bad row).

        Where the network has products large enough to be threaded, the first batches are
        a trial (see cnet._blas.set_thread_autotune): one untimed batch that wakes the BLAS
        threads, `trial` batches threaded, `trial` on one thread; the rest of the epoch runs
        the faster way. Every batch is a real training step, in order."""
        n_batches, chunk = len(losses), progress.chunk()
        first, bad = 0, -1

        def run(count, one_thread):
            nonlocal first, bad
            done, bad = runner.train_batches(X, y, order, first, count, losses[first:],
                                             correct[first:], stop_on_nan, one_thread)
            progress.advance(done)
            first += done
            return done == count

        one_thread, trial = False, 0
        if n_batches >= 16 and _blas.get_thread_autotune() and runner.threaded():
            trial = min(16, max(2, n_batches // 64))
        if trial:
            if not run(1, False):
                return first, bad
            seconds = {}
            for mode in (False, True):
                start = time.perf_counter()
                if not run(trial, mode):
                    return first, bad
                seconds[mode] = time.perf_counter() - start
            one_thread = seconds[True] < seconds[False]
        while first < n_batches:
            count = min(chunk, n_batches - first, max(1, int(CALL_SECONDS / batch_seconds)))
            start = time.perf_counter()
            if not run(count, one_thread):
                return first, bad
            batch_seconds = max(time.perf_counter() - start, 1e-9) / count
        return n_batches, -1

    def _row_weights(self, y, counted):
        """What each row weighs in a batch's mean loss when not all rows weigh 1: for class
        indices with class weights or ignored labels, PyTorch's weighted mean divides by
        the summed weight of the rows counted. None otherwise."""
        loss = self.loss
        if not (self.is_classifier and y.ndim == 1
                and (loss.weight is not None or counted < len(y))):
            return None
        weight = 1.0 if loss.weight is None else np.asarray(loss.weight)[np.clip(y, 0, None)]
        return (y != loss.ignore_index) * weight

    def _epoch_loss(self, losses, rows, n, row_weights, order, batch_size):
        """The epoch's loss from its batches' losses, as evaluate would give it for the same
        weights: with reduction="sum" their sum; with "mean" their mean, each batch weighed
        by what its mean divides by (its rows, or its rows' summed weight)."""
        if self.loss.reduction == "sum":
            return float(losses.sum())
        if row_weights is not None:
            ordered = row_weights if order is None else row_weights[order]
            mass = np.add.reduceat(ordered, np.arange(0, len(ordered), batch_size))
            if mass.sum() > 0:              # else every label ignored: no weighted mean
                return float(np.dot(losses, mass) / mass.sum())
        return float(np.dot(losses, rows) / n)

    def _finite_state(self):
        """Whether the weights and running statistics are all finite (an update can overflow
        them while the loss it followed was finite). A NaN or inf makes the dot product of an
        array with itself non-finite (one pass, no temporary array); so can large finite
        values, which min and max then tell apart."""
        with np.errstate(over="ignore", invalid="ignore"):
            return all(a.size == 0 or math.isfinite(np.dot(a, a))
                       or (math.isfinite(a.min()) and math.isfinite(a.max()))
                       for a in (self.model.flat_data, self.model.flat_buffers))

    def _diverged(self, snapshot, on_nan, epoch, what):
        if not self._finite_state():
            snapshot.restore()
            kept = f"the weights of the start of epoch {epoch + 1}"
        else:
            kept = "the weights of the last update, which are finite"
        message = (f"{what}; training stopped and kept {kept} (lower the learning rate, or "
                   f"clip gradients with max_grad_norm)")
        if on_nan == "raise":
            raise FloatingPointError(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)

    def _check_trainable(self):
        if self.loss.reduction not in ("mean", "sum"):
            raise ValueError(f"loss: Trainer.fit needs reduction 'mean' or 'sum', "
                             f"got {self.loss.reduction!r}")
        for i, layer in enumerate(self.model.layers):
            if getattr(layer, "kind", None) == _activations.ACT_STEP:
                raise ValueError(f"model[{i}]: Step has no gradient and cannot be trained "
                                 f"through; train with Sigmoid and swap in Step afterwards")

    def _counted(self, y):
        """The predictions fit's accuracy counts: every label of multi-label targets, the
        rows not ignored of class indices, else every row."""
        if self.is_multilabel:
            return y.size
        if not self.is_classifier or y.ndim != 1:
            return len(y)
        return max(1, int(np.count_nonzero(y != self.loss.ignore_index)))

    def _split_validation(self, X, y, validation_data, validation_split):
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise TypeError("validation_data: expected a pair (X_val, y_val)")
            X_val = self._check_X(validation_data[0], True, name="validation_data[0]")
            y_val = self._check_y(validation_data[1], len(X_val), name="validation_data[1]")
            return X, y, (X_val, y_val)
        if isinstance(validation_split, bool) or not isinstance(validation_split, numbers.Real):
            raise TypeError(f"validation_split: expected a float in [0, 1), "
                            f"got {validation_split!r}")
        if not 0.0 <= validation_split < 1.0:
            raise ValueError(f"validation_split: expected a float in [0, 1), "
                             f"got {validation_split}")
        if validation_split == 0.0:
            return X, y, None
        # As Keras: the last fraction of the rows, taken before any shuffling.
        n_val = math.ceil(len(X) * validation_split)
        if n_val >= len(X):
            raise ValueError(f"validation_split: {validation_split} leaves no training rows")
        # Checked now: training checks only its own rows, and the model must stay untouched.
        found = first_non_finite(X[-n_val:])
        if found is not None:
            raise ValueError(f"X: expected finite values, got {found[1]} at row "
                             f"{len(X) - n_val + found[0]}")
        return X[:-n_val], y[:-n_val], (X[-n_val:], y[-n_val:])

    # --- inference -----------------------------------------------------------------------

    def _outputs(self, X):
        X = self._check_X(X, check_finite=False)   # finiteness: checked chunk by chunk
        out = np.empty((len(X), self.model.out_features), self.model.dtype)
        # Runners for powers of two only: a few serve every size of X (each keeps its
        # workspace and its team's threads). A BatchNorm1d without running statistics
        # normalises with the statistics of what it is given: all of X at once, as PyTorch.
        whole = any(getattr(layer, "track_running_stats", True) is False
                    for layer in self.model.layers)
        batch = 1 << max(0, len(X) - 1).bit_length()
        runner = self._runner(batch if whole else min(PREDICT_BATCH, batch),
                              training=False)
        with _mode(self.model, training=False):
            bad = runner.predict(X, out)
        if bad >= 0:
            raise ValueError(f"X: expected finite values, got "
                             f"{X[bad][~np.isfinite(X[bad])][0]} at row {bad}")
        return out

    @_one_call_at_a_time
    def evaluate(self, X, y):
        """{"loss": ..., "accuracy": ...} over all of (X, y): for classifiers the fraction of
        rows whose top class is the label (the most probable class of probability targets),
        for multi-label losses the fraction of the n * k labels predicted right."""
        if self.loss.reduction == "none":
            raise ValueError("loss: Trainer.evaluate needs a reduced loss (reduction 'mean' "
                             "or 'sum'), got reduction='none'")
        outputs = self._outputs(X)
        y = self._check_y(y, len(outputs))
        logs = {"loss": float(self.loss(outputs, y))}
        if self.is_multilabel:
            logs["accuracy"] = float(np.mean(self._multilabel(outputs) == (y > 0.5)))
        elif self.is_classifier:
            keep = y != self.loss.ignore_index if y.ndim == 1 else slice(None)
            labels = y[keep] if y.ndim == 1 else np.argmax(y, axis=1)
            hits = np.argmax(outputs, axis=1)[keep] == labels
            logs["accuracy"] = float(hits.mean()) if hits.size else float("nan")
        return logs

    def _multilabel(self, outputs):
        """0/1 labels (int64): logits above 0, or probabilities above 0.5 for BCELoss."""
        return (outputs > (0.5 if isinstance(self.loss, BCELoss) else 0.0)).astype(np.int64)

    @_one_call_at_a_time
    def predict(self, X):
        """Class labels (int64) for a classifier, 0/1 labels (int64, (n, k)) for a
        multi-label loss, the model's outputs otherwise."""
        outputs = self._outputs(X)
        if self.is_multilabel:
            return self._multilabel(outputs)
        return np.argmax(outputs, axis=1) if self.is_classifier else outputs

    @_one_call_at_a_time
    def predict_proba(self, X):
        """Class probabilities (softmax of the outputs) for a classifier; for a multi-label
        loss each label's probability (sigmoid of the logits; BCELoss's outputs as they are)."""
        if not (self.is_classifier or self.is_multilabel):
            raise ValueError("predict_proba: only for classifiers (a CrossEntropyLoss) and "
                             "multi-label losses (BCEWithLogitsLoss, BCELoss)")
        outputs = self._outputs(X)
        if isinstance(self.loss, BCEWithLogitsLoss):
            _activations.sigmoid_forward(outputs, outputs)
        elif self.is_classifier:
            _activations.softmax_forward(outputs, outputs)
        return outputs
