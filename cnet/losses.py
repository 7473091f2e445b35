"""Loss objects with PyTorch's names and semantics: validate, call a fused kernel, keep the
gradient for backward().

    loss_fn = CrossEntropyLoss()
    loss = loss_fn(logits, labels)   # a float for 'mean'/'sum', an ndarray for 'none'
    dlogits = loss_fn.backward()     # d loss / d logits, for model.backward()

The gradient is computed together with the loss (one pass over the output), so backward()
only scales it when given a grad_output. TripletMarginLoss takes three inputs,
`loss_fn(anchor, positive, negative)`, and its backward() returns three gradients.

Trainer.fit runs a loss through the compiled step runner, which needs two more methods:
`_validate_target(target, n_outputs, n_rows, *, name, dtype)` (the whole target array,
checked and converted once) and `_kernel_spec()` (the kernel and its options).
"""
import math
import numbers
import warnings

import numpy as np

from cnet import _losses
from cnet._validation import FLOAT_DTYPES, as_matrix, as_numeric_array, c_array, resolve_dtype

__all__ = ["CrossEntropyLoss", "MSELoss", "L1Loss", "HuberLoss", "BCELoss",
           "BCEWithLogitsLoss", "KLDivLoss", "TripletMarginLoss"]


def _as_array(name, x, expected):
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name}: expected {expected} ({exc})") from None


def _as_output(output, name="output"):
    """A model output as a C-contiguous float32/float64 array with at least one row."""
    arr = _as_array(name, output, "an array of float32 or float64 values")
    if arr.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected float32 or float64 values, got dtype {arr.dtype}")
    if arr.ndim == 0 or arr.size == 0:
        raise ValueError(f"{name}: expected a non-empty batch, got shape {arr.shape}")
    return c_array(arr)


def _check_real(name, value, low=-math.inf, low_open=False, allow_inf=False):
    """value as a float: a real number (not a bool), > low (low_open) or >= low, finite
    unless allow_inf."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {value!r}")
    value = float(value)
    bad = (math.isnan(value) or (math.isinf(value) and not allow_inf)
           or (value <= low if low_open else value < low))
    if bad:
        bound = f" {'>' if low_open else '>='} {low}" if low > -math.inf else ""
        raise ValueError(f"{name}: expected a {'' if allow_inf else 'finite '}number{bound}, "
                         f"got {value}")
    return value


def _first(bad):
    """The index of the first True in bad: to read the array with, and to print."""
    index = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), bad.shape))
    return index, (index[0] if len(index) == 1 else index)


def _check_probabilities(name, values, hint=""):
    bad = ~((values >= 0) & (values <= 1))
    if bad.any():
        index, where = _first(bad)
        raise ValueError(f"{name}: expected probabilities in [0, 1]{hint}, got {values[index]} "
                         f"at index {where}")


def _check_values(name, values, max_ndim=None):
    """values as a read-only float64 array of finite numbers (a weight or pos_weight)."""
    arr = as_numeric_array(name, values)
    if max_ndim is not None and arr.ndim > max_ndim:
        raise ValueError(f"{name}: expected at most {max_ndim} dimension(s), got shape "
                         f"{arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name}: expected at least one value, got shape {arr.shape}")
    arr = np.array(arr, dtype=np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        index, where = _first(bad)
        raise ValueError(f"{name}: expected finite values, got {arr[index]} at index {where}")
    arr.flags.writeable = False
    return arr


class _Loss:
    """What every loss shares: the reduction, the kept gradient and backward()."""

    _reductions = _losses.REDUCTIONS

    def __init__(self, reduction="mean"):
        if not isinstance(reduction, str) or reduction not in self._reductions:
            names = ", ".join(repr(r) for r in self._reductions)
            raise ValueError(f"reduction: expected one of {names}, got {reduction!r}")
        self.reduction = reduction
        self._code = self._reductions[reduction]
        self._grad = None
        self._losses_shape = None
        self._converted = {}   # (name, dtype) -> a weight converted to an output's dtype

    def __call__(self, output, target):
        return self.forward(output, target)

    def __repr__(self):
        return f"{type(self).__name__}(reduction={self.reduction!r})"

    def _new_losses(self, shape, dtype):
        return np.empty(shape, dtype) if self.reduction == "none" else None

    def _finish(self, loss, losses, grad, losses_shape):
        self._grad = grad
        self._losses_shape = losses_shape
        return losses if self.reduction == "none" else loss

    def _as_dtype(self, name, values, dtype):
        """A weight (float64, or None) in an output's dtype, converted once per dtype."""
        if values is None:
            return None
        key = (name, dtype)
        if key not in self._converted:
            self._converted[key] = values.astype(dtype)
        return self._converted[key]

    def _for_targets(self, target):
        """The loss the step runner runs for this (validated) target: itself."""
        return self

    def backward(self, grad_output=None):
        """The gradient of the last loss w.r.t. output. grad_output: the upstream gradient,
        a scalar for 'mean'/'sum' or one value per loss for 'none' (default: ones). Without
        grad_output the array is the one the last call computed (a new call makes a new one)."""
        if self._grad is None:
            raise RuntimeError(f"{type(self).__name__}.backward(): call the loss on "
                               "(output, target) first")
        return self._scaled(self._grad, grad_output)

    def _scaled(self, grad, grad_output):
        if grad_output is None:
            return grad
        upstream = as_numeric_array("grad_output", grad_output)
        expected = self._losses_shape if self.reduction == "none" else ()
        if upstream.shape != expected:
            raise ValueError(f"grad_output: expected shape {expected} for "
                             f"reduction={self.reduction!r}, got {upstream.shape}")
        upstream = upstream.astype(grad.dtype, copy=False)
        return grad * upstream.reshape(expected + (1,) * (grad.ndim - len(expected)))


class CrossEntropyLoss(_Loss):
    """torch.nn.CrossEntropyLoss on logits (batch, classes) against class indices (batch,)
    or class probabilities (batch, classes).

    weight: one finite value per class, or None. Rows whose target equals ignore_index add
    nothing; 'mean' divides by the summed weight of the other rows (NaN when there is none,
    as in PyTorch). Class indices must be integers: a float array is a TypeError, even when
    its values are whole numbers (convert with .astype(np.int64)), as PyTorch requires.

    Class probabilities (soft labels): a float target of the logits' shape, as PyTorch
    decides. Then loss_i = -Σ_c weight[c] q[i,c] log softmax(x)[i,c] with
    q = (1 - label_smoothing) target + label_smoothing / classes, 'mean' divides by the
    batch size, and ignore_index does not apply (a non-negative one is an error, as in
    PyTorch). The rows are not checked to sum to 1 (neither does PyTorch). Trainer.fit
    trains with either kind of target.
    """

    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        super().__init__(reduction)
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
            raise TypeError(f"ignore_index: expected an int, got {ignore_index!r}")
        if not -2**63 <= ignore_index < 2**63:
            raise ValueError(f"ignore_index: expected a 64-bit int, got {ignore_index}")
        if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, numbers.Real):
            raise TypeError(f"label_smoothing: expected a float in [0, 1], "
                            f"got {label_smoothing!r}")
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"label_smoothing: expected a float in [0, 1], got {label_smoothing}")
        self.ignore_index = int(ignore_index)
        self.label_smoothing = float(label_smoothing)
        self.weight = None if weight is None else self._check_weight(weight)

    def __repr__(self):
        return (f"CrossEntropyLoss(weight={self.weight!r}, ignore_index={self.ignore_index}, "
                f"reduction={self.reduction!r}, label_smoothing={self.label_smoothing})")

    @staticmethod
    def _check_weight(weight):
        arr = _check_values("weight", weight)
        if arr.ndim != 1:
            raise ValueError(f"weight: expected a 1-D array with one value per class, "
                             f"got shape {arr.shape}")
        return arr

    def _weight_for(self, classes, dtype):
        if self.weight is not None and self.weight.shape[0] != classes:
            raise ValueError(f"weight: expected {classes} values, one per class of output, "
                             f"got {self.weight.shape[0]}")
        return self._as_dtype("weight", self.weight, dtype)

    def forward(self, output, target):
        """The loss of logits `output` (batch, classes) against class indices `target` (batch,)
        or class probabilities of output's shape."""
        logits = _as_output(output)
        if logits.ndim != 2 or logits.shape[1] == 0:
            raise ValueError(f"output: expected a 2-D array of logits (batch, classes), "
                             f"got shape {logits.shape}")
        batch, classes = logits.shape
        weight = self._weight_for(classes, logits.dtype)
        dlogits = np.empty_like(logits)
        losses = self._new_losses(batch, logits.dtype)
        arr = _as_array("target", target, "class indices or class probabilities")
        if arr.shape == logits.shape:
            probs = c_array(self._check_probabilities(arr), logits.dtype)
            loss = _losses.soft_cross_entropy(dlogits, losses, logits, probs, weight,
                                              self.label_smoothing, self._code)
        else:
            labels = self._validate_target(arr, classes, batch)
            loss = _losses.softmax_cross_entropy(dlogits, losses, logits, labels, weight,
                                                 self.ignore_index, self.label_smoothing,
                                                 self._code)
        return self._finish(loss, losses, dlogits, (batch,))

    def _check_probabilities(self, arr, name="target"):
        """A target shaped like the logits: PyTorch's rules for class probabilities."""
        if arr.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{name}: a target of the logits' shape {arr.shape} holds class "
                            f"probabilities and must be float32 or float64, got dtype "
                            f"{arr.dtype} (class indices are one per row)")
        if self.ignore_index >= 0:
            raise ValueError(f"ignore_index: not supported with class-probability targets, "
                             f"got {self.ignore_index} (use a negative value)")
        return arr

    def _validate_target(self, target, n_outputs, n_rows, *, name="target", dtype=None):
        """target as C-contiguous int64 class indices, one per row, each in [0, n_outputs) or
        ignore_index; or, when shaped (n_rows, n_outputs), as finite class probabilities of
        dtype (default float32 unless target is float64). Also checks weight against
        n_outputs. name is the argument named in errors."""
        arr = _as_array(name, target, "an array of integer class indices")
        self._weight_for(n_outputs, np.dtype(np.float64))
        if arr.shape == (n_rows, n_outputs):
            probs = self._check_probabilities(arr, name)
            return as_matrix(name, probs, resolve_dtype(dtype or probs.dtype), n_outputs)
        if arr.dtype.kind not in "iu":
            raise TypeError(f"{name}: expected integer class indices, got dtype {arr.dtype} "
                            "(convert with .astype(np.int64))")
        if arr.ndim != 1:
            raise ValueError(f"{name}: expected a 1-D array of class indices, got shape {arr.shape}")
        if arr.shape[0] != n_rows:
            raise ValueError(f"{name}: expected {n_rows} class indices (one per row), "
                             f"got {arr.shape[0]}")
        # The extremes first: labels in range (the usual case) need no temporary arrays.
        if arr.size and (arr.min() < 0 or arr.max() >= n_outputs):
            bad = ((arr < 0) | (arr >= n_outputs)) & (arr != self.ignore_index)
            if bad.any():
                row = int(np.argmax(bad))
                raise ValueError(f"{name}: expected class indices in [0, {n_outputs}) or "
                                 f"ignore_index={self.ignore_index}, got {arr[row]} at row {row}")
        return c_array(arr, np.int64)

    def _kernel_spec(self):
        """What the step runner needs to run this loss itself (weight still float64)."""
        return {"kind": _losses.LOSS_CROSS_ENTROPY, "weight": self.weight,
                "ignore_index": self.ignore_index, "label_smoothing": self.label_smoothing,
                "reduction": self._code}

    def _for_targets(self, target):
        """The step runner's loss for a validated target: this one for class indices, a view
        running the class-probability kernel for (n, classes) float targets."""
        return self if target.ndim == 1 else _ClassProbabilities(self)


class _ClassProbabilities:
    """A CrossEntropyLoss as the step runner sees it when the targets are probabilities."""

    def __init__(self, loss):
        self.loss = loss

    def _kernel_spec(self):
        return {**self.loss._kernel_spec(), "kind": _losses.LOSS_SOFT_CROSS_ENTROPY}


class _ElementwiseLoss(_Loss):
    """A loss of output against a target of the same shape, element by element.

    The target is converted to output's dtype; NaN/inf pass through to the loss, as in
    PyTorch. A (n,) target for a (n, 1) output is read as (n, 1) (where PyTorch would
    broadcast to (n, n) with a warning).
    """

    _kernel = None   # the cnet._losses function
    _kind = None     # its LOSS_* code for the step runner

    def forward(self, output, target):
        """The loss of `output` (any shape, non-empty) against `target` of the same shape."""
        arr = _as_output(output)
        expected = as_numeric_array("target", target)
        if arr.ndim == 2 and arr.shape[1] == 1 and expected.shape == arr.shape[:1]:
            expected = expected.reshape(arr.shape)
        if expected.shape != arr.shape:
            raise ValueError(f"target: expected shape {arr.shape} (output's shape), "
                             f"got {expected.shape}")
        self._check_output(arr)
        expected = c_array(expected, arr.dtype)
        self._check_target(expected)
        dinput = np.empty_like(arr)
        losses = self._new_losses(arr.shape, arr.dtype)
        grid = self._grid(arr.shape)
        loss = type(self)._kernel(dinput.reshape(grid),
                                  None if losses is None else losses.reshape(grid),
                                  arr.reshape(grid), expected.reshape(grid),
                                  *self._kernel_args(arr.shape, arr.dtype),
                                  reduction=self._code)
        return self._finish(loss, losses, dinput, arr.shape)

    @staticmethod
    def _grid(shape):
        """The (rows, cols) the kernel sees: the last axis is the column (pos_weight's axis)."""
        return (-1, shape[-1])

    def _check_output(self, output):
        """Value checks on the output (BCELoss: probabilities)."""

    def _check_target(self, target, name="target"):
        """Value checks on the target (BCELoss: probabilities)."""

    def _kernel_args(self, shape, dtype):
        """The kernel's options after input and target."""
        return ()

    def _validate_target(self, target, n_outputs, n_rows, *, name="target", dtype=None):
        """target as a finite C-contiguous (n_rows, n_outputs) float array, of dtype when given
        (else float32 or float64 as target is, float32 for integers); (n,) is read as (n, 1)
        when n_outputs is 1. name is the argument named in errors."""
        arr = as_numeric_array(name, target)
        if arr.ndim == 1 and n_outputs == 1:
            arr = arr.reshape(-1, 1)
        if dtype is None:
            dtype = arr.dtype if arr.dtype in FLOAT_DTYPES else np.float32
        arr = as_matrix(name, arr, resolve_dtype(dtype), n_features=n_outputs)
        if arr.shape[0] != n_rows:
            raise ValueError(f"{name}: expected {n_rows} rows (one per sample), got {arr.shape[0]}")
        self._check_target(arr, name)
        return arr

    def _kernel_spec(self):
        """What the step runner needs to run this loss itself."""
        return {"kind": self._kind, "reduction": self._code}


class MSELoss(_ElementwiseLoss):
    """torch.nn.MSELoss: the squared error (output - target)², averaged or summed."""

    _kernel = _losses.mse_loss
    _kind = _losses.LOSS_MSE


class L1Loss(_ElementwiseLoss):
    """torch.nn.L1Loss: the absolute error |output - target|, averaged or summed. Its
    gradient is sign(output - target), 0 where they are equal (as PyTorch)."""

    _kernel = _losses.l1_loss
    _kind = _losses.LOSS_L1


class HuberLoss(_ElementwiseLoss):
    """torch.nn.HuberLoss: with r = output - target, ½ r² where |r| < delta and
    delta (|r| - ½ delta) elsewhere (quadratic near 0, linear beyond delta > 0)."""

    _kernel = _losses.huber_loss
    _kind = _losses.LOSS_HUBER

    def __init__(self, reduction="mean", delta=1.0):
        super().__init__(reduction)
        self.delta = _check_real("delta", delta, low=0.0, low_open=True)

    def __repr__(self):
        return f"HuberLoss(reduction={self.reduction!r}, delta={self.delta})"

    def _kernel_args(self, shape, dtype):
        return (self.delta,)

    def _kernel_spec(self):
        return {**super()._kernel_spec(), "delta": self.delta}


class _WeightedBinaryLoss(_ElementwiseLoss):
    """BCE's weight: any shape that broadcasts to the output's (PyTorch's rule). For
    Trainer.fit it must be one value per output column (shape (k,) or (1, k)) or a single
    value, since rows are shuffled into batches."""

    def __init__(self, weight=None, reduction="mean"):
        super().__init__(reduction)
        self.weight = None if weight is None else _check_values("weight", weight)

    def __repr__(self):
        return f"{type(self).__name__}(weight={self.weight!r}, reduction={self.reduction!r})"

    def _broadcast_weight(self, shape, dtype):
        if self.weight is None:
            return None
        try:
            fits = np.broadcast_shapes(self.weight.shape, shape) == tuple(shape)
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(f"weight: expected a shape that broadcasts to output's {shape}, "
                             f"got {self.weight.shape}")
        weight = self._as_dtype("weight", self.weight, dtype)
        return np.broadcast_to(weight, shape).reshape(self._grid(shape))

    def _kernel_args(self, shape, dtype):
        return (self._broadcast_weight(shape, dtype),)

    @staticmethod
    def _columns(name, values, n_outputs=None):
        """values as 1-D (one per output column, or one for all), as the step runner takes
        them; a ValueError naming `name` when they vary by row or do not fit n_outputs."""
        if values is None:
            return None
        if values.ndim > 2 or (values.ndim == 2 and values.shape[0] != 1):
            raise ValueError(f"{name}: Trainer.fit needs one value per output column "
                             f"(shape (k,) or (1, k)) or a single value, got shape "
                             f"{values.shape}")
        flat = values.reshape(-1)
        if n_outputs is not None and flat.size not in (1, n_outputs):
            raise ValueError(f"{name}: expected 1 or {n_outputs} values (one per output "
                             f"column), got {flat.size}")
        return flat

    def _validate_target(self, target, n_outputs, n_rows, *, name="target", dtype=None):
        self._columns("weight", self.weight, n_outputs)
        return super()._validate_target(target, n_outputs, n_rows, name=name, dtype=dtype)

    def _kernel_spec(self):
        return {**super()._kernel_spec(), "weight": self._columns("weight", self.weight)}


class BCELoss(_WeightedBinaryLoss):
    """torch.nn.BCELoss on probabilities (e.g. after Sigmoid):
    -weight (t log x + (1 - t) log(1 - x)), each log clamped at -100 as PyTorch, so x = 0
    or 1 gives a finite loss. The gradient is PyTorch's, (x - t) / max(x (1 - x), 1e-12).
    Outputs and targets outside [0, 1] (or NaN) are a ValueError, as in PyTorch. In
    Trainer.fit the output is not checked (end the model with Sigmoid)."""

    _kernel = _losses.bce_loss
    _kind = _losses.LOSS_BCE

    def _check_output(self, output):
        _check_probabilities("output", output, " (e.g. after Sigmoid)")

    def _check_target(self, target, name="target"):
        _check_probabilities(name, target)


class BCEWithLogitsLoss(_WeightedBinaryLoss):
    """torch.nn.BCEWithLogitsLoss: Sigmoid and BCE in one numerically stable step,
    (1 - t) x - (1 + (pos_weight - 1) t) log σ(x), times weight. pos_weight weighs the
    positive targets of each output column (the last axis): one value per column, or one
    for all. For multi-label classification (targets of 0/1 floats, shape (n, k)) through
    Trainer.fit; Trainer.predict then gives (output > 0) as 0/1 int64."""

    _kernel = _losses.bce_with_logits_loss
    _kind = _losses.LOSS_BCE_WITH_LOGITS

    def __init__(self, weight=None, reduction="mean", pos_weight=None):
        super().__init__(weight, reduction)
        self.pos_weight = (None if pos_weight is None
                           else _check_values("pos_weight", pos_weight, max_ndim=1))

    def __repr__(self):
        return (f"BCEWithLogitsLoss(weight={self.weight!r}, reduction={self.reduction!r}, "
                f"pos_weight={self.pos_weight!r})")

    def _kernel_args(self, shape, dtype):
        pos_weight = self._columns("pos_weight", self.pos_weight, shape[-1])
        return super()._kernel_args(shape, dtype) + (
            self._as_dtype("pos_weight", pos_weight, dtype),)

    def _validate_target(self, target, n_outputs, n_rows, *, name="target", dtype=None):
        self._columns("pos_weight", self.pos_weight, n_outputs)
        return super()._validate_target(target, n_outputs, n_rows, name=name, dtype=dtype)

    def _kernel_spec(self):
        return {**super()._kernel_spec(), "pos_weight": self.pos_weight}


class KLDivLoss(_ElementwiseLoss):
    """torch.nn.KLDivLoss: output holds log-probabilities, target probabilities (or
    log-probabilities with log_target=True); each element is t (log t - x), 0 where t is 0,
    or e^t (t - x). reduction: 'batchmean' (the sum divided by the batch size, the true KL
    divergence per sample), 'sum', 'none', or 'mean' (PyTorch's default: the mean over all
    elements, which is not the KL divergence; a UserWarning says so when the loss is made)."""

    _kernel = _losses.kl_div_loss
    _kind = _losses.LOSS_KL_DIV
    _reductions = {**_losses.REDUCTIONS, "batchmean": _losses.BATCHMEAN}

    def __init__(self, reduction="mean", log_target=False):
        super().__init__(reduction)
        if not isinstance(log_target, (bool, np.bool_)):
            raise TypeError(f"log_target: expected a bool, got {log_target!r}")
        self.log_target = bool(log_target)
        if reduction == "mean":
            warnings.warn("KLDivLoss: reduction='mean' divides the total loss by both the "
                          "batch size and the support size; 'batchmean' divides only by the "
                          "batch size, and aligns with the KL div math definition (as "
                          "PyTorch warns)", UserWarning, stacklevel=2)

    def __repr__(self):
        return f"KLDivLoss(reduction={self.reduction!r}, log_target={self.log_target})"

    @staticmethod
    def _grid(shape):
        return (shape[0], -1)   # 'batchmean' divides by the first axis

    def _kernel_args(self, shape, dtype):
        return (self.log_target,)

    def _kernel_spec(self):
        return {**super()._kernel_spec(), "log_target": self.log_target}


class TripletMarginLoss(_Loss):
    """torch.nn.TripletMarginLoss: for embeddings anchor, positive, negative (batch, dim)
    or (dim,), loss_i = max(d(a_i, p_i) - d(a_i, n_i) + margin, 0) with PyTorch's
    pairwise distance d(x, y) = ||x - y + eps||_p. swap=True uses min(d(a, n), d(p, n)) as
    the negative distance (the distance swap of Balntas et al.). margin must be > 0 and p > 0
    (p = inf is the L∞ distance), as in PyTorch.

        loss = loss_fn(model(a), model(p), model(n))
        da, dp, dn = loss_fn.backward()

    Not for Trainer.fit (three inputs per sample): train it in the manual loop, as
    examples/triplet_digits.py does.
    """

    def __init__(self, margin=1.0, p=2.0, eps=1e-6, swap=False, reduction="mean"):
        super().__init__(reduction)
        self.margin = _check_real("margin", margin, low=0.0, low_open=True)   # as torch
        self.p = _check_real("p", p, low=0.0, low_open=True, allow_inf=True)
        self.eps = _check_real("eps", eps)
        if not isinstance(swap, (bool, np.bool_)):
            raise TypeError(f"swap: expected a bool, got {swap!r}")
        self.swap = bool(swap)

    def __repr__(self):
        return (f"TripletMarginLoss(margin={self.margin}, p={self.p}, eps={self.eps}, "
                f"swap={self.swap}, reduction={self.reduction!r})")

    def __call__(self, anchor, positive, negative):
        return self.forward(anchor, positive, negative)

    def forward(self, anchor, positive, negative):
        """The loss of three embedding arrays of one shape and dtype."""
        a = _as_output(anchor, "anchor")
        if a.ndim > 2:
            raise ValueError(f"anchor: expected (batch, dim) or (dim,), got shape {a.shape}")
        inputs = [a]
        for name, x in (("positive", positive), ("negative", negative)):
            arr = _as_output(x, name)
            if arr.shape != a.shape:
                raise ValueError(f"{name}: expected anchor's shape {a.shape}, got {arr.shape}")
            if arr.dtype != a.dtype:
                raise TypeError(f"{name}: expected anchor's dtype {a.dtype}, got {arr.dtype}")
            inputs.append(arr)
        rows = [x.reshape(-1, a.shape[-1]) for x in inputs]
        grads = [np.empty_like(x) for x in rows]
        losses = self._new_losses(rows[0].shape[0], a.dtype)
        loss = _losses.triplet_margin_loss(*grads, losses, *rows, self.margin, self.p,
                                           self.eps, self.swap, self._code)
        shape = a.shape[:-1]     # () for a single triplet of (dim,) vectors
        if losses is not None:
            losses = losses.reshape(shape)
        return self._finish(loss, losses, tuple(g.reshape(a.shape) for g in grads), shape)

    def backward(self, grad_output=None):
        """(d loss / d anchor, d loss / d positive, d loss / d negative) of the last call,
        scaled by grad_output as in _Loss.backward."""
        if self._grad is None:
            raise RuntimeError("TripletMarginLoss.backward(): call the loss on "
                               "(anchor, positive, negative) first")
        return tuple(self._scaled(g, grad_output) for g in self._grad)
