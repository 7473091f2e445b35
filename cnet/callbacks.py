"""Callbacks for Trainer.fit, with Keras's names and semantics.

A callback sees the trainer at the start and end of training, before every epoch (with
its index) and after every epoch, with that epoch's logs ({"loss": ..., "val_loss": ...,
...}). Setting `trainer.stop_training = True` ends fit after the current epoch. The hooks
take the trainer first (Keras's take no model): fit checks their signatures before it
trains. There are no batch-level hooks: fit runs each epoch's batches in compiled code.
"""
import inspect
import math
import numbers
import warnings

import numpy as np

from cnet._validation import check_number

__all__ = ["Callback", "EarlyStopping", "ModelCheckpoint", "TerminateOnNaN",
           "LearningRateScheduler"]


class Callback:
    """Base class: override the hooks you need."""

    def on_train_begin(self, trainer):
        pass

    def on_epoch_begin(self, trainer, epoch):
        pass

    def on_epoch_end(self, trainer, epoch, logs):
        pass

    def on_train_end(self, trainer):
        pass


def _grows(monitor):
    """Whether a logged metric grows as the model improves: Keras's rule for mode="auto"
    (an accuracy: "acc" in its name)."""
    return "acc" in monitor


class _Monitor:
    """Tracks the best value of one logged metric ('min' for losses, 'max' otherwise)."""

    def __init__(self, monitor, mode, min_delta=0.0):
        if not isinstance(monitor, str):
            raise TypeError(f"monitor: expected the name of a logged metric (a str), "
                            f"got {monitor!r}")
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"mode: expected 'auto', 'min' or 'max', got {mode!r}")
        if mode == "auto":
            mode = "max" if _grows(monitor) else "min"
        self.monitor, self.mode, self.min_delta = monitor, mode, abs(float(min_delta))
        self.best = math.inf if mode == "min" else -math.inf

    def value(self, logs):
        if self.monitor not in logs:
            raise ValueError(f"monitor: {self.monitor!r} is not logged; available: "
                             f"{sorted(logs)} (val_* needs validation data)")
        return logs[self.monitor]

    def improved(self, value):
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta


class EarlyStopping(Callback):
    """Stop when `monitor` has not improved by min_delta for `patience` epochs; with
    restore_best_weights, end with the weights (and running statistics) of the best epoch."""

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, mode="auto",
                 restore_best_weights=False):
        self._monitor = _Monitor(monitor, mode, min_delta)
        if isinstance(patience, bool) or not isinstance(patience, numbers.Integral):
            raise TypeError(f"patience: expected an int >= 0, got {patience!r}")
        if patience < 0:
            raise ValueError(f"patience: expected an int >= 0, got {patience}")
        self.patience = int(patience)
        self.restore_best_weights = restore_best_weights
        self.stopped_epoch = None
        self.best_epoch = None

    def on_train_begin(self, trainer):
        self._monitor.best = _Monitor(self._monitor.monitor, self._monitor.mode).best
        self.wait, self.stopped_epoch, self.best_epoch, self._best = 0, None, None, None

    def on_epoch_end(self, trainer, epoch, logs):
        value = self._monitor.value(logs)
        if self._monitor.improved(value):
            self._monitor.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                model = trainer.model
                self._best = (model.flat_data.copy(), model.flat_buffers.copy())
            return
        self.wait += 1
        if self.wait >= self.patience and epoch > 0:    # as Keras (never on the first epoch)
            self.stopped_epoch = epoch
            trainer.stop_training = True

    def on_train_end(self, trainer):
        if self.restore_best_weights and self._best is not None:
            trainer.model.flat_data[:] = self._best[0]
            trainer.model.flat_buffers[:] = self._best[1]


class ModelCheckpoint(Callback):
    """Save the model (and optimizer) with cnet.save after each epoch, or only when
    `monitor` improves (save_best_only). `filepath` may use {epoch} and log names, e.g.
    "model-{epoch:02d}-{val_loss:.3f}.safetensors"; writes are atomic."""

    def __init__(self, filepath, monitor="val_loss", save_best_only=False, mode="auto",
                 save_optimizer=True):
        self.filepath = str(filepath)
        self._monitor = _Monitor(monitor, mode)
        self.save_best_only, self.save_optimizer = save_best_only, save_optimizer

    def on_epoch_end(self, trainer, epoch, logs):
        if self.save_best_only:
            value = self._monitor.value(logs)
            if not self._monitor.improved(value):
                return
            self._monitor.best = value
        from cnet.io import save
        try:
            path = self.filepath.format(epoch=epoch + 1, **logs)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"filepath: cannot fill {self.filepath!r} ({type(exc).__name__}: "
                             f"{exc}); it may name epoch and {sorted(logs)} (val_* needs "
                             f"validation data)") from None
        save(trainer.model, path, trainer.optimizer if self.save_optimizer else None)


class TerminateOnNaN(Callback):
    """Stop training when the epoch's loss is NaN or infinite."""

    def on_epoch_end(self, trainer, epoch, logs):
        if not np.isfinite(logs["loss"]):
            trainer.stop_training = True


class LearningRateScheduler(Callback):
    """Set the learning rate each epoch, from either

    - a cnet.schedulers scheduler, stepped after every epoch (ReduceLROnPlateau gets the
      value of `monitor`, and its mode must suit it: "max" for an accuracy), or
    - a function schedule(epoch, lr) -> new lr, as Keras's: called before every epoch
      with the lr of the first parameter group; every group gets the rate it returns.

    logs["lr"] is the learning rate the epoch trained with (of the first parameter group)."""

    def __init__(self, scheduler, monitor="val_loss"):
        self.scheduler = self.schedule = self._monitor = None
        self.monitor = monitor
        if callable(getattr(scheduler, "step", None)):
            self.scheduler = scheduler
            if hasattr(scheduler, "num_bad_epochs"):        # ReduceLROnPlateau
                self._monitor = _Monitor(monitor, scheduler.mode)
                _check_plateau_mode(monitor, scheduler.mode)
        elif callable(scheduler):
            _check_call(scheduler, f"scheduler: {_name(scheduler)}", ("epoch", "lr"),
                        "schedule(epoch, lr)")
            self.schedule = scheduler
        else:
            raise TypeError(f"scheduler: expected a cnet.schedulers scheduler (with step()) "
                            f"or a function schedule(epoch, lr) -> new lr, got "
                            f"{type(scheduler).__name__}")

    def on_epoch_begin(self, trainer, epoch):
        if self.schedule is None:
            return
        current = trainer.optimizer.lr
        lr = self.schedule(epoch, current)
        # Checked here, as the optimizer's own check would not name the schedule.
        trainer.optimizer.lr = check_number(f"scheduler: {_name(self.schedule)}(epoch={epoch}, "
                                            f"lr={current}) returned a bad learning rate", lr,
                                            "a finite number >= 0", lambda v: v >= 0)

    def on_epoch_end(self, trainer, epoch, logs):
        # The rate this epoch trained with (as Keras logs it), not the next epoch's.
        lr = trainer.optimizer.lr
        if self._monitor is not None:
            self.scheduler.step(self._monitor.value(logs))
        elif self.scheduler is not None:
            self.scheduler.step()
        logs["lr"] = lr


def _check_plateau_mode(monitor, mode):
    """ReduceLROnPlateau's mode is PyTorch's ("min" by default), not inferred from the
    metric: "min" on an accuracy would cut the rate while the model improves. A metric
    neither an accuracy nor a loss (one a callback logs) may go either way."""
    needed = "max" if _grows(monitor) else "min" if "loss" in monitor else mode
    if mode != needed:
        raise ValueError(f"monitor: {monitor!r} {'grows' if needed == 'max' else 'falls'} as "
                         f"the model improves, but the ReduceLROnPlateau has mode={mode!r}, "
                         f"so it would cut the learning rate while {monitor!r} improves; "
                         f"build ReduceLROnPlateau(optimizer, mode={needed!r})")


def _name(function):
    return getattr(function, "__name__", type(function).__name__)


# The hooks fit calls, with their arguments. on_epoch_begin is optional: a callback that
# does not subclass Callback may predate it.
_HOOKS = {"on_train_begin": ("trainer",), "on_epoch_begin": ("trainer", "epoch"),
          "on_epoch_end": ("trainer", "epoch", "logs"), "on_train_end": ("trainer",)}
# Keras's hooks that cnet never calls: fit runs each epoch's batches in compiled code, and
# evaluate and predict take no callbacks.
_KERAS_ONLY = ("on_batch_begin", "on_batch_end", "on_train_batch_begin", "on_train_batch_end",
               "on_test_begin", "on_test_end", "on_test_batch_begin", "on_test_batch_end",
               "on_predict_begin", "on_predict_end", "on_predict_batch_begin",
               "on_predict_batch_end")
# Parameters of these names must get the argument of the name (_check_call).
_ARGUMENTS = {"trainer", "epoch", "logs", "lr"}


def _check_callbacks(callbacks, validating):
    """fit's callbacks as a list, checked before it trains: each hook callable with the
    arguments fit passes (a TypeError naming callbacks[i], the hook and its signature),
    no monitor of a validation metric without validation data (a ValueError, where it
    would fail only after the first epoch), and a UserWarning for Keras hooks that would
    never be called."""
    try:
        callbacks = list(callbacks)
    except TypeError:
        raise TypeError(f"callbacks: expected a list of callbacks, got {callbacks!r}") from None
    uncalled = []
    for i, callback in enumerate(callbacks):
        if isinstance(callback, type):
            raise TypeError(f"callbacks[{i}]: expected a callback object, got the class "
                            f"{callback.__name__} (pass {callback.__name__}(...))")
        kind = type(callback).__name__
        for hook, arguments in _HOOKS.items():
            method = getattr(callback, hook, None)
            if method is None and hook == "on_epoch_begin":
                continue
            if not callable(method):
                raise TypeError(f"callbacks[{i}]: expected a cnet.callbacks.Callback, "
                                f"got {kind} (without {hook})")
            _check_call(method, f"callbacks[{i}]: {kind}.{hook}", arguments,
                        f"{hook}(self, {', '.join(arguments)})")
        if not validating:
            _check_monitor(f"callbacks[{i}]: {kind}", callback)
        uncalled += [f"{kind}.{hook} (callbacks[{i}])" for hook in _KERAS_ONLY
                     if callable(getattr(callback, hook, None))]
    if uncalled:    # stacklevel 4: fit's caller, above fit and its lock's wrapper
        warnings.warn(f"{', '.join(uncalled)}: cnet never calls "
                      f"{'this hook' if len(uncalled) == 1 else 'these hooks'}. fit runs "
                      f"each epoch's batches in compiled code, so there are no per-batch "
                      f"hooks, and evaluate and predict take no callbacks; cnet calls "
                      f"{', '.join(_HOOKS)}", UserWarning, stacklevel=4)
    return callbacks


def _check_monitor(what, callback):
    """A callback reading val_loss or val_accuracy each epoch, which fit logs only with
    validation data. (Other val_* names may be logged by a callback of the user's.)"""
    monitor = getattr(callback, "_monitor", None)
    if (monitor is None or monitor.monitor not in ("val_loss", "val_accuracy")
            or getattr(callback, "save_best_only", True) is False):
        return
    raise ValueError(f"{what} monitors {monitor.monitor!r}, which fit logs only with "
                     f"validation_data or validation_split; pass one, or monitor "
                     f"{monitor.monitor.removeprefix('val_')!r}")


def _check_call(function, what, arguments, expected):
    """TypeError naming `what` and the `expected` call unless `function` takes `arguments`
    (names) positionally, each by the parameter of its name where it has one: Keras's
    on_epoch_begin(self, epoch, logs=None) binds (trainer, epoch) but would take the
    trainer as its epoch."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):     # some builtins have none: left to the call
        return
    try:
        bound = signature.bind(*arguments)
    except TypeError as exc:
        reason = str(exc)
    else:
        misplaced = [(name, value) for name, value in bound.arguments.items()
                     if name in _ARGUMENTS and value != name]
        if not misplaced:
            return
        reason = f"it would take the {misplaced[0][1]} as its {misplaced[0][0]!r}"
    if "trainer" in arguments:
        reason += " (cnet's hooks take the trainer first; Keras's do not)"
    raise TypeError(f"{what}{signature} cannot be called as {expected}: {reason}")
