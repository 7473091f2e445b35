"""Optimizers with PyTorch's names, defaults and update rules.

An optimizer updates the model's flat arena in place: its state (momentum, Adam's moments)
lives in flat arrays of the arena's size, and one step is one compiled loop per parameter
group over contiguous spans of the arena. The step runner (Trainer.fit) calls the same
loops without returning to Python, through the pointers it took to those state arrays:
so they are never rebound, and load_state_dict copies into them.

LBFGS is the exception: a full-batch method driven by a closure (`step(closure)`), written
in Python over one flat vector (a port of torch.optim.LBFGS).
"""
import math
import numbers

import numpy as np

from cnet import _optim
from cnet.model import Parameter

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "Adagrad", "RMSprop", "LBFGS",
           "clip_grad_norm_"]


def _check_hyper(name, value, low=0.0, high=math.inf, high_open=False):
    if isinstance(value, bool):
        raise TypeError(f"{name}: expected a number, got {value!r}")
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected a number, got {value!r}") from None
    if not math.isfinite(value) or not (low <= value < high if high_open
                                        else low <= value <= high):
        bracket = ")" if high_open else "]"
        raise ValueError(f"{name}: expected a finite value in [{low}, {high}{bracket}, "
                         f"got {value}")
    return value


def _check_bool(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {value!r}")
    return bool(value)


def _check_int(name, value, low=1):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int >= {low}, got {value!r}")
    if value < low:
        raise ValueError(f"{name}: expected an int >= {low}, got {value}")
    return int(value)


def _spans(params):
    """Merge the parameters' arena slices into as few contiguous (offset, length) spans as possible."""
    spans = []
    for p in sorted(params, key=lambda p: p.offset):
        if spans and spans[-1][0] + spans[-1][1] == p.offset:
            spans[-1][1] += p.size
        else:
            spans.append([p.offset, p.size])
    return [tuple(s) for s in spans]


def _as_state_array(key, value, shape, dtype):
    """value checked (real numbers, `shape`, finite) and converted to `dtype` (a new array)."""
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{key}: expected an array of real numbers ({exc})") from None
    if arr.dtype.kind not in "fiu" or arr.dtype.itemsize > 8:
        raise TypeError(f"{key}: expected real numbers, got dtype {arr.dtype}")
    if arr.shape != tuple(shape):
        raise ValueError(f"{key}: expected shape {tuple(shape)}, got {arr.shape}")
    arr = arr.astype(dtype, copy=True)
    if not np.isfinite(arr).all():
        raise ValueError(f"{key}: expected finite values")
    return arr


def _as_state_number(key, value, integer=False):
    if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, numbers.Integral if integer else numbers.Real):
        raise TypeError(f"{key}: expected {'an int' if integer else 'a number'}, got {value!r}")
    if integer and value < 0:
        raise ValueError(f"{key}: expected an int >= 0, got {value}")
    if not integer and not math.isfinite(value):
        raise ValueError(f"{key}: expected a finite number, got {value}")
    return int(value) if integer else float(value)


def _mapping(key, value, keys):
    """value as a mapping holding every name in `keys` (a ValueError naming the missing one)."""
    if not hasattr(value, "keys"):
        raise TypeError(f"{key}: expected a mapping, got {type(value).__name__}")
    missing = [k for k in keys if k not in value]
    if missing:
        raise ValueError(f"{key}: missing key {missing[0]!r}")
    return value


class Optimizer:
    """Base class: parameter groups over one model's arena, and flat state arrays."""

    kind = None          # the kernel's OPT_* code
    state_names = ()     # flat state arrays, in the order the kernel takes them

    def __init__(self, params, defaults):
        if isinstance(params, Parameter):
            raise TypeError("params: expected an iterable of Parameters or of dicts "
                            "(e.g. model.parameters()), got a single Parameter")
        params = list(params)
        if not params:
            raise ValueError("params: expected at least one parameter")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.param_groups = []
        for i, group in enumerate(groups):
            if not isinstance(group, dict):
                raise TypeError(f"params[{i}]: expected a dict like the first entry, "
                                f"got {type(group).__name__}")
            members = group.get("params", [])
            members = [members] if isinstance(members, Parameter) else list(members)
            for p in members:
                if not isinstance(p, Parameter):
                    raise TypeError(f"params: expected cnet Parameters (model.parameters()), "
                                    f"got {type(p).__name__}")
            full = {**defaults, **{k: v for k, v in group.items() if k != "params"}}
            self._check(full)
            self.param_groups.append({"params": members, **full})
        everything = [p for g in self.param_groups for p in g["params"]]
        if not everything:
            raise ValueError("params: expected at least one parameter")
        arenas = {id(p.flat_data) for p in everything}
        if len(arenas) != 1:
            raise ValueError("params: expected the parameters of a single model")
        if len({id(p) for p in everything}) != len(everything):
            raise ValueError("params: a parameter appears in more than one group")
        self.flat_data, self.flat_grad = everything[0].flat_data, everything[0].flat_grad
        self.state = {name: np.zeros_like(self.flat_data)
                      if self._needs_state(name, self.param_groups) else None
                      for name in self.state_names}
        self.step_count = 0

    # Subclasses: validate a group's hyper-parameters, and say which state they need.
    def _check(self, group):
        _check_hyper("lr", group["lr"])
        if "weight_decay" in group:
            _check_hyper("weight_decay", group["weight_decay"])

    def _needs_state(self, name, groups):
        return True

    @property
    def lr(self):
        return self.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value):
        value = _check_hyper("lr", value)
        for group in self.param_groups:
            group["lr"] = value

    def zero_grad(self):
        for group in self.param_groups:
            for offset, length in _spans(group["params"]):
                self.flat_grad[offset:offset + length] = 0

    def step(self):
        """One update of every parameter from its .grad."""
        self.step_count += 1
        for group in self.param_groups:
            for offset, length in _spans(group["params"]):
                span = slice(offset, offset + length)
                state = [None if s is None else s[span] for s in self.state.values()]
                self._update(group, self.flat_data[span], self.flat_grad[span], state)

    def kernel_groups(self):
        """[(config, spans)] for the step runner: each group's hyper-parameters as the kernel
        reads them, and its arena spans."""
        return [(self._config(g), _spans(g["params"])) for g in self.param_groups]

    # --- saving and resuming -------------------------------------------------------------

    def state_dict(self):
        """{"step", "param_groups", "state"}: copies of the step count, each group's
        hyper-parameters (with its parameters' names under "params") and the state arrays
        (flat, the size of the model's arena)."""
        groups = [{**{k: (list(v) if isinstance(v, tuple) else v)
                      for k, v in g.items() if k != "params"},
                   "params": [p.name for p in g["params"]]} for g in self.param_groups]
        return {"step": self.step_count, "param_groups": groups, "state": self._state_out()}

    def load_state_dict(self, state_dict):
        """Resume from state_dict(): every key is checked before anything is written; the
        state arrays are copied into the existing ones (a Trainer keeps pointers to them)."""
        _mapping("state_dict", state_dict, ("step", "param_groups", "state"))
        step = _as_state_number("state_dict['step']", state_dict["step"], integer=True)
        saved = state_dict["param_groups"]
        if not isinstance(saved, (list, tuple)):
            raise TypeError(f"state_dict['param_groups']: expected a list, "
                            f"got {type(saved).__name__}")
        if len(saved) != len(self.param_groups):
            raise ValueError(f"state_dict['param_groups']: expected {len(self.param_groups)} "
                             f"groups, got {len(saved)}")
        groups = []
        for i, (group, new) in enumerate(zip(self.param_groups, saved)):
            key = f"state_dict['param_groups'][{i}]"
            _mapping(key, new, ("params",))
            names = [p.name for p in group["params"]]
            if list(new["params"]) != names:
                raise ValueError(f"{key}['params']: expected the parameters {names}, "
                                 f"got {list(new['params'])}")
            merged = {k: v for k, v in group.items() if k != "params"}
            for k, v in new.items():
                if k != "params":
                    merged[k] = tuple(v) if isinstance(merged.get(k), tuple) else v
            try:
                self._check(merged)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"{key}: {exc}") from None
            groups.append(merged)
        for name in self.state_names:
            if self._needs_state(name, groups) != (self.state[name] is not None):
                raise ValueError(f"state_dict['param_groups']: these hyper-parameters need "
                                 f"a different set of state arrays than this optimizer was "
                                 f"built with ({name!r}); construct it with the same options")
        staged = self._stage_state(state_dict["state"])
        self.step_count = step
        for group, new in zip(self.param_groups, groups):
            group.update(new)
        self._commit_state(staged)

    def _state_out(self):
        return {name: s.copy() for name, s in self.state.items() if s is not None}

    def _stage_state(self, state):
        expected = [name for name, s in self.state.items() if s is not None]
        _mapping("state_dict['state']", state, expected)
        unexpected = [k for k in state if k not in expected]
        if unexpected:
            raise ValueError(f"state_dict['state']: unexpected key {unexpected[0]!r} "
                             f"(expected {expected})")
        return {name: _as_state_array(f"state_dict['state'][{name!r}]", state[name],
                                      self.flat_data.shape, self.flat_data.dtype)
                for name in expected}

    def _commit_state(self, staged):
        for name, value in staged.items():
            self.state[name][...] = value     # in place: never rebind a state array

    def __repr__(self):
        hyper = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in hyper.items())})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum, as torch.optim.SGD."""

    kind = _optim.OPT_SGD
    state_names = ("momentum_buffer",)

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def _check(self, group):
        super()._check(group)
        _check_hyper("momentum", group["momentum"])
        _check_hyper("dampening", group["dampening"])
        if _check_bool("nesterov", group["nesterov"]) and (group["momentum"] <= 0
                                                           or group["dampening"] != 0):
            raise ValueError("nesterov: requires momentum > 0 and dampening == 0")

    def _needs_state(self, name, groups):
        return any(g["momentum"] != 0 for g in groups)

    def _update(self, group, param, grad, state):
        _optim.sgd_step(param, state[0], grad, self.step_count, group["lr"], group["momentum"],
                        group["dampening"], group["weight_decay"], group["nesterov"])

    def _config(self, group):
        return dict(kind=self.kind, lr=group["lr"], weight_decay=group["weight_decay"],
                    momentum=group["momentum"], dampening=group["dampening"],
                    nesterov=group["nesterov"])


class Adam(Optimizer):
    """Adam (Kingma & Ba), as torch.optim.Adam, with bias correction and optional AMSGrad."""

    kind = _optim.OPT_ADAM
    state_names = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    decoupled_weight_decay = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad))

    def _check(self, group):
        super()._check(group)
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas: expected a pair (beta1, beta2), got {betas!r}")
        _check_hyper("betas[0]", betas[0], 0.0, 1.0, high_open=True)
        _check_hyper("betas[1]", betas[1], 0.0, 1.0, high_open=True)
        _check_hyper("eps", group["eps"])
        _check_bool("amsgrad", group["amsgrad"])

    def _needs_state(self, name, groups):
        return name != "max_exp_avg_sq" or any(g["amsgrad"] for g in groups)

    def _update(self, group, param, grad, state):
        beta1, beta2 = group["betas"]
        _optim.adam_step(param, state[0], state[1], state[2], grad, self.step_count,
                         group["lr"], beta1, beta2, group["eps"], group["weight_decay"],
                         group["amsgrad"], self.decoupled_weight_decay)

    def _config(self, group):
        beta1, beta2 = group["betas"]
        return dict(kind=self.kind, lr=group["lr"], weight_decay=group["weight_decay"],
                    beta1=beta1, beta2=beta2, eps=group["eps"], amsgrad=group["amsgrad"],
                    decoupled_weight_decay=self.decoupled_weight_decay)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as torch.optim.AdamW."""

    decoupled_weight_decay = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)


class Adagrad(Optimizer):
    """Adagrad (Duchi et al.), as torch.optim.Adagrad: each parameter's step is divided by
    the root of the sum of its squared gradients; `lr_decay` shrinks lr as 1 / (1 + t*decay).
    The accumulator ("sum") starts at initial_accumulator_value."""

    kind = _optim.OPT_ADAGRAD
    state_names = ("sum",)

    def __init__(self, params, lr=1e-2, lr_decay=0.0, weight_decay=0.0,
                 initial_accumulator_value=0.0, eps=1e-10):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value,
                                      eps=eps))
        for group in self.param_groups:
            for offset, length in _spans(group["params"]):
                self.state["sum"][offset:offset + length] = group["initial_accumulator_value"]

    def _check(self, group):
        super()._check(group)
        _check_hyper("lr_decay", group["lr_decay"])
        _check_hyper("initial_accumulator_value", group["initial_accumulator_value"])
        _check_hyper("eps", group["eps"])

    def _update(self, group, param, grad, state):
        _optim.adagrad_step(param, state[0], grad, self.step_count, group["lr"],
                            group["lr_decay"], group["weight_decay"], group["eps"])

    def _config(self, group):
        return dict(kind=self.kind, lr=group["lr"], lr_decay=group["lr_decay"],
                    weight_decay=group["weight_decay"], eps=group["eps"])


class RMSprop(Optimizer):
    """RMSprop (Hinton), as torch.optim.RMSprop: the step is divided by the root of a running
    average of squared gradients; `centered` subtracts the square of the gradients' running
    average (Graves), `momentum` accumulates the scaled steps."""

    kind = _optim.OPT_RMSPROP
    state_names = ("square_avg", "momentum_buffer", "grad_avg")

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered))

    def _check(self, group):
        super()._check(group)
        _check_hyper("alpha", group["alpha"], 0.0, 1.0)
        _check_hyper("eps", group["eps"])
        _check_hyper("momentum", group["momentum"])
        _check_bool("centered", group["centered"])

    def _needs_state(self, name, groups):
        if name == "momentum_buffer":
            return any(g["momentum"] > 0 for g in groups)
        if name == "grad_avg":
            return any(g["centered"] for g in groups)
        return True

    def _update(self, group, param, grad, state):
        _optim.rmsprop_step(param, state[0], state[1], state[2], grad, self.step_count,
                            group["lr"], group["alpha"], group["eps"], group["weight_decay"],
                            group["momentum"], group["centered"])

    def _config(self, group):
        return dict(kind=self.kind, lr=group["lr"], alpha=group["alpha"], eps=group["eps"],
                    weight_decay=group["weight_decay"], momentum=group["momentum"],
                    centered=group["centered"])
