"""Callbacks for Trainer.fit, with Keras's names and semantics.

A callback sees the trainer at the start and end of training and after every epoch,
with that epoch's logs ({"loss": ..., "val_loss": ..., ...}). Setting
`trainer.stop_training = True` ends fit after the current epoch.
"""
import math
import numbers

import numpy as np

__all__ = ["Callback", "EarlyStopping", "ModelCheckpoint", "TerminateOnNaN",
           "LearningRateScheduler"]


class Callback:
    """Base class: override the hooks you need."""

    def on_train_begin(self, trainer):
        pass

    def on_epoch_end(self, trainer, epoch, logs):
        pass

    def on_train_end(self, trainer):
        pass


class _Monitor:
    """Tracks the best value of one logged metric ('min' for losses, 'max' otherwise)."""

    def __init__(self, monitor, mode, min_delta=0.0):
        if not isinstance(monitor, str):
            raise TypeError(f"monitor: expected the name of a logged metric (a str), "
                            f"got {monitor!r}")
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"mode: expected 'auto', 'min' or 'max', got {mode!r}")
        if mode == "auto":
            mode = "max" if "acc" in monitor else "min"
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
    """Step a cnet.schedulers scheduler after every epoch (ReduceLROnPlateau gets the
    value of `monitor`); logs["lr"] is the learning rate the epoch trained with (of the
    first parameter group)."""

    def __init__(self, scheduler, monitor="val_loss"):
        if not callable(getattr(scheduler, "step", None)):
            raise TypeError(f"scheduler: expected a cnet.schedulers scheduler (with step()), "
                            f"got {type(scheduler).__name__} (for a schedule of your own, "
                            f"subclass cnet.schedulers.LRScheduler)")
        self.scheduler, self.monitor = scheduler, monitor

    def on_epoch_end(self, trainer, epoch, logs):
        # The rate this epoch trained with (as Keras logs it), not the next epoch's.
        lr = trainer.optimizer.lr
        if hasattr(self.scheduler, "num_bad_epochs"):      # ReduceLROnPlateau
            self.scheduler.step(_Monitor(self.monitor, "auto").value(logs))
        else:
            self.scheduler.step()
        logs["lr"] = lr
