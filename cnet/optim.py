"""Optimizers with PyTorch's names, defaults and update rules.

An optimizer updates the model's flat arena in place: its state (momentum, Adam's moments)
lives in flat arrays of the arena's size, and one step is one compiled loop per parameter
group over contiguous spans of the arena. The step runner (Trainer.fit) calls the same
loops without returning to Python.
"""
import math

import numpy as np

from cnet import _optim
from cnet.model import Parameter

__all__ = ["Optimizer", "SGD", "Adam", "AdamW"]


def _check_hyper(name, value, low=0.0, high=math.inf, high_open=False):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected a number, got {value!r}") from None
    if not (low <= value < high if high_open else low <= value <= high):
        bracket = ")" if high_open else "]"
        raise ValueError(f"{name}: expected a value in [{low}, {high}{bracket}, got {value}")
    return value


def _spans(params):
    """Merge the parameters' arena slices into as few contiguous (offset, length) spans as possible."""
    spans = []
    for p in sorted(params, key=lambda p: p.offset):
        if spans and spans[-1][0] + spans[-1][1] == p.offset:
            spans[-1][1] += p.size
        else:
            spans.append([p.offset, p.size])
    return [tuple(s) for s in spans]


class Optimizer:
    """Base class: parameter groups over one model's arena, and flat state arrays."""

    kind = None          # the kernel's OPT_* code
    state_names = ()     # flat state arrays, in the order the kernel takes them

    def __init__(self, params, defaults):
        params = list(params)
        if not params:
            raise ValueError("params: expected at least one parameter")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.param_groups = []
        for i, group in enumerate(groups):
            members = list(group.get("params", []))
            for p in members:
                if not isinstance(p, Parameter):
                    raise TypeError(f"params: expected cnet Parameters (model.parameters()), "
                                    f"got {type(p).__name__}")
            full = {**defaults, **{k: v for k, v in group.items() if k != "params"}}
            self._check(full)
            self.param_groups.append({"params": members, **full})
        everything = [p for g in self.param_groups for p in g["params"]]
        arenas = {id(p.flat_data) for p in everything}
        if len(arenas) != 1:
            raise ValueError("params: expected the parameters of a single model")
        if len({id(p) for p in everything}) != len(everything):
            raise ValueError("params: a parameter appears in more than one group")
        self.flat_data, self.flat_grad = everything[0].flat_data, everything[0].flat_grad
        self.state = {name: np.zeros_like(self.flat_data) if self._needs_state(name)
                      else None for name in self.state_names}
        self.step_count = 0

    # Subclasses: validate a group's hyper-parameters, and say which state they need.
    def _check(self, group):
        _check_hyper("lr", group["lr"])
        _check_hyper("weight_decay", group["weight_decay"])

    def _needs_state(self, name):
        return True

    @property
    def lr(self):
        return self.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value):
        for group in self.param_groups:
            group["lr"] = _check_hyper("lr", value)

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
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("nesterov: requires momentum > 0 and dampening == 0")

    def _needs_state(self, name):
        return any(g["momentum"] != 0 for g in self.param_groups)

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

    def _needs_state(self, name):
        return name != "max_exp_avg_sq" or any(g["amsgrad"] for g in self.param_groups)

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
