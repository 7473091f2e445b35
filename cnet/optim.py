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
from cnet._validation import check_number
from cnet.model import Parameter

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "Adagrad", "RMSprop", "LBFGS",
           "clip_grad_norm_"]

MAX_STEP = 2**62    # a loaded step count, far below the step runner's int64 counter's end


def _check_hyper(name, value, low=0.0, high=math.inf, high_open=False):
    # Not float(value) alone: that accepts "0.1", b"1" and 1-element arrays, which the
    # kernels (and JSON) then refuse.
    bracket = ")" if high_open else "]"
    return check_number(name, value, f"a finite value in [{low}, {high}{bracket}",
                        lambda v: low <= v < high if high_open else low <= v <= high)


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
    if not integer:
        return check_number(key, value, "a finite number")
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{key}: expected an int, got {value!r}")
    if not 0 <= value <= MAX_STEP:
        raise ValueError(f"{key}: expected an int in [0, 2**62], got {value}")
    return int(value)


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
        try:
            params = list(params)
        except TypeError:
            raise TypeError(f"params: expected an iterable of Parameters or of dicts "
                            f"(e.g. model.parameters()), got {params!r}") from None
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

    def zero_grad(self, set_to_none=True):
        """Zero the gradients of this optimizer's parameters. set_to_none (torch's) zeroes
        too: the arena always holds the gradients, and a backward then starts from zero."""
        for group in self.param_groups:
            for offset, length in _spans(group["params"]):
                self.flat_grad[offset:offset + length] = 0

    def _check_groups(self):
        """What the kernels need of param_groups as they are now (PyTorch lets them be edited
        between steps): no option turned on that needs a state array this optimizer did not
        allocate (the kernels would write through a null pointer), and only this model's
        parameters. Edited values are not checked again (nor are they in PyTorch): a NaN
        learning rate makes NaN weights, which fit reports as a divergence."""
        for i, group in enumerate(self.param_groups):
            if not all(isinstance(p, Parameter) and p.flat_data is self.flat_data
                       for p in group["params"]):
                raise ValueError(f"param_groups[{i}]['params']: expected parameters of the "
                                 f"model this optimizer was built for")
        for name in self.state_names:
            if self.state[name] is None and self._needs_state(name, self.param_groups):
                raise ValueError(f"param_groups: the options set since this optimizer was "
                                 f"built need its state {name!r}, which it did not allocate; "
                                 f"construct it with those options")

    def step(self):
        """One update of every parameter from its .grad."""
        self._check_groups()
        self.step_count += 1
        for group in self.param_groups:
            for offset, length in _spans(group["params"]):
                span = slice(offset, offset + length)
                state = [None if s is None else s[span] for s in self.state.values()]
                self._update(group, self.flat_data[span], self.flat_grad[span], state)

    def kernel_groups(self):
        """[(config, spans)] for the step runner: each group's hyper-parameters as the kernel
        reads them, and its arena spans."""
        self._check_groups()
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


# --- L-BFGS: a port of torch.optim.LBFGS (itself after minFunc) over one flat vector --------

def _cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds=None):
    """Minimiser of the cubic through (x1, f1, g1) and (x2, f2, g2), clamped to bounds."""
    if bounds is not None:
        xmin_bound, xmax_bound = bounds
    else:
        xmin_bound, xmax_bound = (x1, x2) if x1 <= x2 else (x2, x1)
    if x1 == x2:    # (lr=0) torch's tensor arithmetic makes d1 NaN, which ends below
        return (xmin_bound + xmax_bound) / 2.0
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1**2 - g1 * g2
    if d2_square >= 0:
        d2 = np.sqrt(d2_square)
        if x1 <= x2:
            min_pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
        else:
            min_pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
        return min(max(min_pos, xmin_bound), xmax_bound)
    return (xmin_bound + xmax_bound) / 2.0


def _strong_wolfe(obj_func, x, t, d, f, g, gtd, c1=1e-4, c2=0.9, tolerance_change=1e-9,
                  max_ls=25):
    """Line search for a step t along d meeting the strong Wolfe conditions (torch's
    _strong_wolfe, ported from lswolfe.lua): returns (f_new, g_new, t, evaluations)."""
    d_norm = np.abs(d).max()
    g = g.copy()
    f_new, g_new = obj_func(x, t, d)
    ls_func_evals = 1
    gtd_new = g_new.dot(d)
    t_prev, f_prev, g_prev, gtd_prev = 0, f, g, gtd
    done = False
    ls_iter = 0
    while ls_iter < max_ls:
        if not (math.isfinite(f_new) and math.isfinite(gtd_new)):
            # Diverged: NaN fails every test here and max_ls may be huge (max_eval), so
            # the search would never end. Keep the last finite point.
            return f_prev, g_prev, t_prev, ls_func_evals
        if f_new > (f + c1 * t * gtd) or (ls_iter > 1 and f_new >= f_prev):
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new.copy()], [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket, bracket_f, bracket_g = [t], [f_new], [g_new]
            done = True
            break
        if gtd_new >= 0:
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new.copy()], [gtd_prev, gtd_new]
            break
        # interpolate
        min_step = t + 0.01 * (t - t_prev)
        max_step = t * 10
        tmp = t
        t = _cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new,
                               bounds=(min_step, max_step))
        t_prev, f_prev, g_prev, gtd_prev = tmp, f_new, g_new.copy(), gtd_new
        f_new, g_new = obj_func(x, t, d)
        ls_func_evals += 1
        gtd_new = g_new.dot(d)
        ls_iter += 1
    if ls_iter == max_ls:
        bracket, bracket_f, bracket_g = [0, t], [f, f_new], [g, g_new]

    # zoom: refine the bracket until a point meets the conditions
    insuf_progress = False
    low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break
        t = _cubic_interpolate(bracket[0], bracket_f[0], bracket_gtd[0],
                               bracket[1], bracket_f[1], bracket_gtd[1])
        # A t too close to the bracket's ends twice in a row (or outside it) is moved to
        # 0.1 * the bracket's length from the nearest end.
        eps = 0.1 * (max(bracket) - min(bracket))
        if min(max(bracket) - t, t - min(bracket)) < eps:
            if insuf_progress or t >= max(bracket) or t <= min(bracket):
                if abs(t - max(bracket)) < abs(t - min(bracket)):
                    t = max(bracket) - eps
                else:
                    t = min(bracket) + eps
                insuf_progress = False
            else:
                insuf_progress = True
        else:
            insuf_progress = False
        f_new, g_new = obj_func(x, t, d)
        ls_func_evals += 1
        gtd_new = g_new.dot(d)
        ls_iter += 1
        if not (math.isfinite(f_new) and math.isfinite(gtd_new)):
            break       # diverged: the low end of the bracket is the best finite point
        if f_new > (f + c1 * t * gtd) or f_new >= bracket_f[low_pos]:
            # Armijo condition not met, or not lower than the lowest point
            bracket[high_pos], bracket_f[high_pos] = t, f_new
            bracket_g[high_pos], bracket_gtd[high_pos] = g_new.copy(), gtd_new
            low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high_pos] - bracket[low_pos]) >= 0:
                # the old high becomes the new low
                bracket[high_pos], bracket_f[high_pos] = bracket[low_pos], bracket_f[low_pos]
                bracket_g[high_pos] = bracket_g[low_pos]
                bracket_gtd[high_pos] = bracket_gtd[low_pos]
            bracket[low_pos], bracket_f[low_pos] = t, f_new
            bracket_g[low_pos], bracket_gtd[low_pos] = g_new.copy(), gtd_new
    return bracket_f[low_pos], bracket_g[low_pos], bracket[low_pos], ls_func_evals


class LBFGS(Optimizer):
    """Limited-memory BFGS, as torch.optim.LBFGS (a port of its algorithm, so the iterates
    agree with torch's to round-off), for full-batch training over the flat arena.

    step(closure) runs up to max_iter iterations; the closure recomputes the loss and the
    gradients (zero_grad, forward, loss, backward) and returns the loss:

    >>> def closure():
    ...     opt.zero_grad()
    ...     loss = loss_fn(model(X), y)
    ...     model.backward(loss_fn.backward())
    ...     return loss
    >>> opt.step(closure)

    Trainer.fit(..., batch_size=None) runs one step(closure) per epoch with the compiled
    full-batch forward/backward as the closure. As in torch there is one parameter group
    and the curvature history is kept across step() calls; line_search_fn is None (steps of
    lr, the first scaled by 1 / |g|_1) or "strong_wolfe".
    """

    state_names = ()

    def __init__(self, params, lr=1.0, max_iter=20, max_eval=None, tolerance_grad=1e-7,
                 tolerance_change=1e-9, history_size=100, line_search_fn=None):
        if max_eval is None:
            max_eval = _check_int("max_iter", max_iter) * 5 // 4
        super().__init__(params, dict(lr=lr, max_iter=max_iter, max_eval=max_eval,
                                      tolerance_grad=tolerance_grad,
                                      tolerance_change=tolerance_change,
                                      history_size=history_size,
                                      line_search_fn=line_search_fn))
        if len(self.param_groups) != 1:
            raise ValueError("params: LBFGS supports a single parameter group")
        self._spans = _spans(self.param_groups[0]["params"])
        self._size = sum(length for _, length in self._spans)
        self._lbfgs = {"func_evals": 0, "n_iter": 0}

    def _check(self, group):
        super()._check(group)
        _check_int("max_iter", group["max_iter"])
        _check_int("max_eval", group["max_eval"])
        _check_hyper("tolerance_grad", group["tolerance_grad"])
        _check_hyper("tolerance_change", group["tolerance_change"])
        _check_int("history_size", group["history_size"])
        search = group["line_search_fn"]
        if search is not None and not (isinstance(search, str) and search == "strong_wolfe"):
            raise ValueError(f"line_search_fn: expected None or 'strong_wolfe', got {search!r}")

    def kernel_groups(self):
        """None: LBFGS has no per-step kernel. A step runner built with it only computes
        losses and gradients (loss_and_grad), and Trainer.fit calls step(closure)."""
        return []

    # The parameters as one vector: the arena spans of the group, gathered and scattered.
    def _gather(self, flat):
        return np.concatenate([flat[o:o + n] for o, n in self._spans])

    def _scatter(self, flat, vector):
        k = 0
        for o, n in self._spans:
            flat[o:o + n] = vector[k:k + n]
            k += n

    def _add_grad(self, t, d):
        """parameters += t * d (t rounded to the arena's dtype, as torch's alpha)."""
        t = self.flat_data.dtype.type(t)
        k = 0
        for o, n in self._spans:
            self.flat_data[o:o + n] += t * d[k:k + n]
            k += n

    def _directional_evaluate(self, closure, x, t, d):
        self._add_grad(t, d)
        loss = float(closure())
        flat_grad = self._gather(self.flat_grad)
        self._scatter(self.flat_data, x)
        return loss, flat_grad

    def step(self, closure):
        """Up to max_iter L-BFGS iterations; returns the loss closure() gave at the start.
        If the closure raises (or Ctrl-C comes) mid-step, the parameters, the curvature
        history and the counts are put back as they were before the step (torch leaves a
        half-updated state that its next step cannot use)."""
        if not callable(closure):
            raise TypeError("closure: LBFGS.step needs a closure that recomputes the loss "
                            "and the gradients and returns the loss")
        before = (self._gather(self.flat_data), self.step_count,
                  {k: list(v) if isinstance(v, list) else
                   v.copy() if isinstance(v, np.ndarray) else v for k, v in self._lbfgs.items()})
        try:
            return self._step(closure)
        except BaseException:
            self._scatter(self.flat_data, before[0])
            self.step_count, self._lbfgs = before[1], before[2]
            raise

    def _step(self, closure):
        self.step_count += 1
        group = self.param_groups[0]
        # As Python numbers: a numpy float64 lr would turn the float32 step arithmetic
        # (as torch's) into float64, and change the iterates.
        lr, max_iter, max_eval = float(group["lr"]), int(group["max_iter"]), int(group["max_eval"])
        tolerance_grad = float(group["tolerance_grad"])
        tolerance_change = float(group["tolerance_change"])
        history_size, line_search_fn = int(group["history_size"]), group["line_search_fn"]
        state = self._lbfgs

        orig_loss = closure()
        loss = float(orig_loss)
        current_evals = 1
        state["func_evals"] += 1
        flat_grad = self._gather(self.flat_grad)
        if np.abs(flat_grad).max() <= tolerance_grad:
            return orig_loss

        d, t = state.get("d"), state.get("t")
        old_dirs, old_stps, ro = state.get("old_dirs"), state.get("old_stps"), state.get("ro")
        H_diag = state.get("H_diag")
        prev_flat_grad, prev_loss = state.get("prev_flat_grad"), state.get("prev_loss")

        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1
            # the descent direction
            if state["n_iter"] == 1:
                d = -flat_grad
                old_dirs, old_stps, ro = [], [], []
                H_diag = 1
            else:
                y = flat_grad - prev_flat_grad
                s = d * t
                ys = y.dot(s)
                if ys > 1e-10:
                    if len(old_dirs) == history_size:
                        old_dirs.pop(0)
                        old_stps.pop(0)
                        ro.pop(0)
                    old_dirs.append(y)
                    old_stps.append(s)
                    ro.append(1.0 / ys)
                    H_diag = ys / y.dot(y)
                # two-loop recursion: the inverse-Hessian approximation times -gradient
                num_old = len(old_dirs)
                al = [None] * num_old
                q = -flat_grad
                for i in range(num_old - 1, -1, -1):
                    al[i] = old_stps[i].dot(q) * ro[i]
                    q += (-al[i]) * old_dirs[i]
                d = r = q * H_diag
                for i in range(num_old):
                    be_i = old_dirs[i].dot(r) * ro[i]
                    r += (al[i] - be_i) * old_stps[i]
            if prev_flat_grad is None:
                prev_flat_grad = flat_grad.copy()
            else:
                prev_flat_grad[...] = flat_grad
            prev_loss = loss

            # the step length
            if state["n_iter"] == 1:
                t = min(1.0, 1.0 / np.abs(flat_grad).sum()) * lr
            else:
                t = lr
            gtd = flat_grad.dot(d)
            if gtd > -tolerance_change:
                break

            ls_func_evals = 0
            if line_search_fn is not None:
                x_init = self._gather(self.flat_data)

                def obj_func(x, t, d):
                    return self._directional_evaluate(closure, x, t, d)

                loss, flat_grad, t, ls_func_evals = _strong_wolfe(
                    obj_func, x_init, t, d, loss, flat_grad, gtd,
                    max_ls=max_eval - current_evals)
                if t != 0:      # t = 0: no finite step was found (d may hold NaN)
                    self._add_grad(t, d)
                opt_cond = np.abs(flat_grad).max() <= tolerance_grad
            else:
                self._add_grad(t, d)
                if n_iter != max_iter:
                    # re-evaluate, except after the last iteration
                    loss = float(closure())
                    flat_grad = self._gather(self.flat_grad)
                    opt_cond = np.abs(flat_grad).max() <= tolerance_grad
                    ls_func_evals = 1
            current_evals += ls_func_evals
            state["func_evals"] += ls_func_evals

            # stopping conditions
            if n_iter == max_iter or current_evals >= max_eval or opt_cond:
                break
            if np.abs(d * t).max() <= tolerance_change:
                break
            if abs(loss - prev_loss) < tolerance_change:
                break
            if not math.isfinite(loss):
                break   # diverged: NaN fails every test above, so max_iter=2**70 never ended

        state.update(d=d, t=t, old_dirs=old_dirs, old_stps=old_stps, ro=ro, H_diag=H_diag,
                     prev_flat_grad=prev_flat_grad, prev_loss=prev_loss)
        return orig_loss

    # The state: counters, and after the first iteration the direction, the step, the last
    # gradient and the curvature pairs (k rows of old_dirs / old_stps, k values of ro).
    _VECTORS = ("d", "prev_flat_grad")
    _NUMBERS = ("t", "H_diag", "prev_loss")

    def _state_out(self):
        state = self._lbfgs
        out = {"func_evals": state["func_evals"], "n_iter": state["n_iter"]}
        if state.get("d") is not None:
            dtype = self.flat_data.dtype
            out.update({k: state[k].copy() for k in self._VECTORS})
            out.update({k: float(state[k]) for k in self._NUMBERS})
            for k in ("old_dirs", "old_stps"):
                out[k] = np.array(state[k], dtype).reshape(len(state[k]), self._size)
            out["ro"] = np.array(state["ro"], dtype)
        return out

    def _stage_state(self, state):
        key = "state_dict['state']"
        _mapping(key, state, ("func_evals", "n_iter"))
        staged = {k: _as_state_number(f"{key}[{k!r}]", state[k], integer=True)
                  for k in ("func_evals", "n_iter")}
        rest = self._VECTORS + self._NUMBERS + ("old_dirs", "old_stps", "ro")
        unexpected = [k for k in state if k not in rest and k not in staged]
        if unexpected:
            raise ValueError(f"{key}: unexpected key {unexpected[0]!r}")
        if staged["n_iter"] == 0 and not any(k in state for k in rest):
            return staged
        _mapping(key, state, rest)
        dtype = self.flat_data.dtype
        for k in self._VECTORS:
            staged[k] = _as_state_array(f"{key}[{k!r}]", state[k], (self._size,), dtype)
        for k in self._NUMBERS:
            staged[k] = _as_state_number(f"{key}[{k!r}]", state[k])
        ro = np.asarray(state["ro"])
        k_pairs = ro.shape[0] if ro.ndim == 1 else -1
        staged["ro"] = _as_state_array(f"{key}['ro']", ro, (max(k_pairs, 0),), dtype)
        for k in ("old_dirs", "old_stps"):
            staged[k] = _as_state_array(f"{key}[{k!r}]", state[k], (len(staged["ro"]),
                                                                    self._size), dtype)
        return staged

    def _commit_state(self, staged):
        state = {"func_evals": staged["func_evals"], "n_iter": staged["n_iter"]}
        if "d" in staged:
            state.update({k: staged[k] for k in self._VECTORS + self._NUMBERS})
            state["old_dirs"] = list(staged["old_dirs"])
            state["old_stps"] = list(staged["old_stps"])
            state["ro"] = list(staged["ro"])
        self._lbfgs = state


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale the gradients of `parameters` in place so that their global L2 norm is at most
    max_norm (as torch.nn.utils.clip_grad_norm_: coefficient max_norm / (norm + 1e-6), capped
    at 1); returns the total norm before clipping, as a float. Call it between
    model.backward() and optimizer.step(); Trainer(max_grad_norm=...) does the same inside
    the step runner."""
    params = [parameters] if isinstance(parameters, Parameter) else list(parameters)
    for p in params:
        if not isinstance(p, Parameter):
            raise TypeError(f"parameters: expected cnet Parameters (model.parameters()), "
                            f"got {type(p).__name__}")
    if isinstance(max_norm, bool) or not isinstance(max_norm, numbers.Real):
        raise TypeError(f"max_norm: expected a number, got {max_norm!r}")
    if not max_norm >= 0:     # inf is allowed: it only measures the norm
        raise ValueError(f"max_norm: expected a number >= 0, got {max_norm}")
    if isinstance(norm_type, bool) or norm_type != 2:
        raise ValueError(f"norm_type: only the L2 norm (2.0) is supported, got {norm_type!r}")
    if not params:
        return 0.0
    if len({id(p.flat_grad) for p in params}) != 1:
        raise ValueError("parameters: expected the parameters of a single model")
    flat_grad = params[0].flat_grad
    spans = [flat_grad[o:o + n] for o, n in _spans(params)]
    if len(spans) == 1 and not error_if_nonfinite:
        return _optim.clip_grad_norm(spans[0], max_norm)     # one pass: norm and scaling
    total = math.sqrt(sum(float(np.dot(s, s)) for s in spans))
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"The total norm of the gradients is {total}: non-finite, so it "
                           f"cannot be clipped (error_if_nonfinite=True)")
    coef = flat_grad.dtype.type(max_norm / (total + 1e-6))
    if coef < 1:
        for s in spans:
            s *= coef
    return total
