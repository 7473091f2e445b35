"""Learning-rate schedules with torch.optim.lr_scheduler's names and semantics.

A scheduler changes `optimizer.param_groups[i]["lr"]`; call `scheduler.step()` once per
epoch, after that epoch's training (ReduceLROnPlateau: `scheduler.step(metric)`). The step
runner re-reads the hyper-parameters at each Trainer.fit call, and cnet.callbacks'
LearningRateScheduler steps a scheduler after every epoch of a fit.

    >>> opt = optim.SGD(model.parameters(), lr=0.1)
    >>> sched = StepLR(opt, step_size=30, gamma=0.1)   # 0.1 for 30 epochs, then 0.01, ...
    >>> for epoch in range(100):
    ...     trainer.fit(X, y, epochs=1)
    ...     sched.step()

As in torch, constructing a scheduler records each group's starting lr as
`group["initial_lr"]` (saved with the optimizer's state_dict), and the schedules are
computed recursively from the current lr (torch's "chainable" form), so they agree with
torch's lr sequences to the last bit.
"""
import math
import numbers

from cnet.optim import Optimizer

__all__ = ["LRScheduler", "StepLR", "ExponentialLR", "CosineAnnealingLR", "ReduceLROnPlateau"]


# --- checks shared by the constructors and load_state_dict ---------------------------------

def _int(name, value, low):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int >= {low}, got {value!r}")
    if value < low:
        raise ValueError(f"{name}: expected an int >= {low}, got {value}")
    return int(value)


def _number(name, value, low=0.0, high=math.inf, high_open=False, low_open=False,
            finite=True):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a number, got {value!r}")
    value = float(value)
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if math.isnan(value) or (finite and math.isinf(value)) or not (above and below):
        interval = (f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}")
        raise ValueError(f"{name}: expected a {'finite ' if finite else ''}number in "
                         f"{interval}, got {value}")
    return value


def _choice(name, value, options):
    if value not in options:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, options))}, "
                         f"got {value!r}")
    return value


def _lrs(name, value, n_groups):
    """One non-negative finite number per parameter group, as a list."""
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{name}: expected a list of {n_groups} numbers, got {value!r}")
    if len(value) != n_groups:
        raise ValueError(f"{name}: expected {n_groups} values (one per parameter group), "
                         f"got {len(value)}")
    return [_number(f"{name}[{i}]", v) for i, v in enumerate(value)]


def _check_optimizer(optimizer):
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer: expected a cnet optimizer, got {type(optimizer).__name__}")
    return optimizer


class _Stateful:
    """state_dict / load_state_dict over the attributes named in _fields(): each one is
    checked (with the constructor's checks) before any is written."""

    def _fields(self):
        """{attribute: check(name, value) -> value}."""
        raise NotImplementedError

    def state_dict(self):
        return {name: (list(value) if isinstance(value, list) else value)
                for name in self._fields() for value in [getattr(self, name)]}

    def load_state_dict(self, state_dict):
        if not hasattr(state_dict, "keys"):
            raise TypeError(f"state_dict: expected a mapping, got {type(state_dict).__name__}")
        fields = self._fields()
        missing = [k for k in fields if k not in state_dict]
        if missing:
            raise ValueError(f"state_dict: missing key {missing[0]!r}")
        unexpected = [k for k in state_dict if k not in fields]
        if unexpected:
            raise ValueError(f"state_dict: unexpected key {unexpected[0]!r}")
        staged = {k: check(f"state_dict[{k!r}]", state_dict[k]) for k, check in fields.items()}
        self.__dict__.update(staged)


class LRScheduler(_Stateful):
    """Base class of the epoch-indexed schedules (torch.optim.lr_scheduler.LRScheduler).

    last_epoch=-1 starts a schedule (recording group["initial_lr"]); a later epoch resumes
    one, and needs "initial_lr" in the groups (from the optimizer's saved state_dict).
    """

    def __init__(self, optimizer, last_epoch=-1):
        self.optimizer = _check_optimizer(optimizer)
        self.last_epoch = _int("last_epoch", last_epoch, -1)
        groups = optimizer.param_groups
        if last_epoch == -1:
            for group in groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(groups):
                if "initial_lr" not in group:
                    raise ValueError(f"last_epoch: resuming at epoch {last_epoch} needs "
                                     f"'initial_lr' in optimizer.param_groups[{i}] (load the "
                                     f"optimizer's state_dict first)")
        self.base_lrs = [group["initial_lr"] for group in groups]
        # The first step sets epoch 0 (or last_epoch + 1) and keeps the current lrs.
        self._step_count = 0
        self._initial = True
        try:
            self.step()
        finally:
            self._initial = False

    def get_lr(self):
        """The lrs for epoch self.last_epoch, from the groups' current lrs."""
        raise NotImplementedError

    def step(self):
        """Advance one epoch and set each group's lr."""
        self._step_count += 1
        self.last_epoch += 1
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self):
        """The lr of each group as this scheduler last set it."""
        return list(self._last_lr)

    def _current(self):
        return [group["lr"] for group in self.optimizer.param_groups]

    def _fields(self):
        n = len(self.optimizer.param_groups)
        return {"base_lrs": lambda k, v: _lrs(k, v, n),
                "last_epoch": lambda k, v: _int(k, v, 0),
                "_step_count": lambda k, v: _int(k, v, 1),
                "_last_lr": lambda k, v: _lrs(k, v, n)}

    def __repr__(self):
        return f"{type(self).__name__}(last_epoch={self.last_epoch}, lr={self.get_last_lr()})"


class StepLR(LRScheduler):
    """Multiply each group's lr by gamma every step_size epochs."""

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        self.step_size = _int("step_size", step_size, 1)
        self.gamma = _number("gamma", gamma)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        # As torch: only epoch 0 keeps the lrs, so a schedule resumed (last_epoch >= 0) at a
        # multiple of step_size decays already when it is built.
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return self._current()
        return [lr * self.gamma for lr in self._current()]

    def _fields(self):
        return {**super()._fields(), "step_size": lambda k, v: _int(k, v, 1),
                "gamma": _number}


class ExponentialLR(LRScheduler):
    """Multiply each group's lr by gamma every epoch."""

    def __init__(self, optimizer, gamma, last_epoch=-1):
        self.gamma = _number("gamma", gamma)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self._initial:
            return self._current()
        return [lr * self.gamma for lr in self._current()]

    def _fields(self):
        return {**super()._fields(), "gamma": _number}


class CosineAnnealingLR(LRScheduler):
    """Anneal each group's lr from its initial value to eta_min along half a cosine over
    T_max epochs: eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2 (then
    back up, periodically, past T_max, as torch)."""

    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1):
        self.T_max = _int("T_max", T_max, 1)
        self.eta_min = _number("eta_min", eta_min)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self._initial:
            return self._current()
        epoch, T, eta_min = self.last_epoch, self.T_max, self.eta_min
        if (epoch - 1 - T) % (2 * T) == 0:
            return [lr + (base_lr - eta_min) * (1 - math.cos(math.pi / T)) / 2
                    for base_lr, lr in zip(self.base_lrs, self._current())]
        return [(1 + math.cos(math.pi * epoch / T)) / (1 + math.cos(math.pi * (epoch - 1) / T))
                * (lr - eta_min) + eta_min for lr in self._current()]

    def _fields(self):
        return {**super()._fields(), "T_max": lambda k, v: _int(k, v, 1), "eta_min": _number}


class ReduceLROnPlateau(_Stateful):
    """Multiply each group's lr by `factor` when a metric has not improved for more than
    `patience` epochs (torch's rules for threshold, threshold_mode, cooldown, min_lr, eps):

    >>> sched = ReduceLROnPlateau(opt, mode="min", patience=3)
    >>> for epoch in range(50):
    ...     trainer.fit(X, y, epochs=1)
    ...     sched.step(trainer.evaluate(X_val, y_val)["loss"])
    """

    def __init__(self, optimizer, mode="min", factor=0.1, patience=10, threshold=1e-4,
                 threshold_mode="rel", cooldown=0, min_lr=0.0, eps=1e-8):
        self.optimizer = _check_optimizer(optimizer)
        n = len(optimizer.param_groups)
        self.mode = _choice("mode", mode, ("min", "max"))
        self.factor = _number("factor", factor, 0.0, 1.0, high_open=True)
        self.patience = _int("patience", patience, 0)
        self.threshold = _number("threshold", threshold)
        self.threshold_mode = _choice("threshold_mode", threshold_mode, ("rel", "abs"))
        self.cooldown = _int("cooldown", cooldown, 0)
        if isinstance(min_lr, (list, tuple)):
            self.min_lrs = _lrs("min_lr", min_lr, n)
        else:
            self.min_lrs = [_number("min_lr", min_lr)] * n
        self.eps = _number("eps", eps)
        self.last_epoch = 0
        self.best = math.inf if self.mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self._last_lr = [group["lr"] for group in optimizer.param_groups]

    @property
    def in_cooldown(self):
        return self.cooldown_counter > 0

    def _is_better(self, value):
        if self.mode == "min":
            return value < (self.best * (1 - self.threshold) if self.threshold_mode == "rel"
                            else self.best - self.threshold)
        return value > (self.best * (1 + self.threshold) if self.threshold_mode == "rel"
                        else self.best + self.threshold)

    def step(self, metrics):
        """Record one epoch's metric (e.g. the validation loss) and reduce the lrs if it has
        not improved for more than `patience` epochs."""
        if isinstance(metrics, bool) or not isinstance(metrics, numbers.Real):
            try:
                metrics = float(metrics)        # a 0-d or 1-element array
            except (TypeError, ValueError):
                raise TypeError(f"metrics: expected a number, got {metrics!r}") from None
        current = float(metrics)
        self.last_epoch += 1
        if self._is_better(current):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0       # bad epochs in cooldown do not count
        if self.num_bad_epochs > self.patience:
            for group, min_lr in zip(self.optimizer.param_groups, self.min_lrs):
                old_lr = float(group["lr"])
                new_lr = max(old_lr * self.factor, min_lr)
                if old_lr - new_lr > self.eps:
                    group["lr"] = new_lr
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self):
        return list(self._last_lr)

    def _fields(self):
        n = len(self.optimizer.param_groups)
        return {"mode": lambda k, v: _choice(k, v, ("min", "max")),
                "factor": lambda k, v: _number(k, v, 0.0, 1.0, high_open=True),
                "patience": lambda k, v: _int(k, v, 0),
                "threshold": _number,
                "threshold_mode": lambda k, v: _choice(k, v, ("rel", "abs")),
                "cooldown": lambda k, v: _int(k, v, 0),
                "min_lrs": lambda k, v: _lrs(k, v, n),
                "eps": _number,
                "last_epoch": lambda k, v: _int(k, v, 0),
                "best": lambda k, v: _number(k, v, -math.inf, finite=False),
                "num_bad_epochs": lambda k, v: _int(k, v, 0),
                "cooldown_counter": lambda k, v: _int(k, v, 0),
                "_last_lr": lambda k, v: _lrs(k, v, n)}

    def __repr__(self):
        return (f"ReduceLROnPlateau(mode={self.mode!r}, factor={self.factor}, "
                f"patience={self.patience}, best={self.best}, lr={self.get_last_lr()})")
