"""Loss objects with PyTorch's names and semantics: validate, call a fused kernel, keep the
gradient for backward().

    loss_fn = CrossEntropyLoss()
    loss = loss_fn(logits, labels)   # a float for 'mean'/'sum', an ndarray for 'none'
    dlogits = loss_fn.backward()     # d loss / d logits, for model.backward()

The gradient is computed together with the loss (one pass over the logits), so backward()
only scales it when given a grad_output.
"""
import numbers

import numpy as np

from cnet import _losses
from cnet._validation import FLOAT_DTYPES, as_matrix, as_numeric_array, resolve_dtype

__all__ = ["CrossEntropyLoss", "MSELoss"]


def _as_array(name, x, expected):
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name}: expected {expected} ({exc})") from None


def _as_output(output):
    """The model's output as a C-contiguous float32/float64 array with at least one row."""
    arr = _as_array("output", output, "an array of float32 or float64 values")
    if arr.dtype not in FLOAT_DTYPES:
        raise TypeError(f"output: expected float32 or float64 values, got dtype {arr.dtype}")
    if arr.ndim == 0 or arr.size == 0:
        raise ValueError(f"output: expected a non-empty batch, got shape {arr.shape}")
    return np.ascontiguousarray(arr)


class _Loss:
    """What every loss shares: the reduction, the kept gradient and backward()."""

    def __init__(self, reduction="mean"):
        if not isinstance(reduction, str) or reduction not in _losses.REDUCTIONS:
            raise ValueError(f"reduction: expected 'mean', 'sum' or 'none', got {reduction!r}")
        self.reduction = reduction
        self._code = _losses.REDUCTIONS[reduction]
        self._grad = None
        self._losses_shape = None

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

    def backward(self, grad_output=None):
        """The gradient of the last loss w.r.t. output. grad_output: the upstream gradient,
        a scalar for 'mean'/'sum' or one value per loss for 'none' (default: ones). Without
        grad_output the array is the one the last call computed (a new call makes a new one)."""
        if self._grad is None:
            raise RuntimeError(f"{type(self).__name__}.backward(): call the loss on "
                               "(output, target) first")
        if grad_output is None:
            return self._grad
        upstream = as_numeric_array("grad_output", grad_output)
        expected = self._losses_shape if self.reduction == "none" else ()
        if upstream.shape != expected:
            raise ValueError(f"grad_output: expected shape {expected} for "
                             f"reduction={self.reduction!r}, got {upstream.shape}")
        upstream = upstream.astype(self._grad.dtype, copy=False)
        return self._grad * upstream.reshape(expected + (1,) * (self._grad.ndim - len(expected)))


class CrossEntropyLoss(_Loss):
    """torch.nn.CrossEntropyLoss on logits (batch, classes) and class indices (batch,).

    weight: one finite value per class, or None. Rows whose target equals ignore_index add
    nothing; 'mean' divides by the summed weight of the other rows (NaN when there is none,
    as in PyTorch). Targets must be integers: a float array is a TypeError, even when its
    values are whole numbers (convert with .astype(np.int64)), as PyTorch requires.
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
        self._weights = {np.dtype(np.float64): self.weight}  # per output dtype, converted once

    def __repr__(self):
        return (f"CrossEntropyLoss(weight={self.weight!r}, ignore_index={self.ignore_index}, "
                f"reduction={self.reduction!r}, label_smoothing={self.label_smoothing})")

    @staticmethod
    def _check_weight(weight):
        arr = as_numeric_array("weight", weight)
        if arr.ndim != 1 or arr.size == 0:
            raise ValueError(f"weight: expected a 1-D array with one value per class, "
                             f"got shape {arr.shape}")
        arr = np.array(arr, dtype=np.float64)
        bad = ~np.isfinite(arr)
        if bad.any():
            index = int(np.argmax(bad))
            raise ValueError(f"weight: expected finite values, got {arr[index]} at index {index}")
        arr.flags.writeable = False
        return arr

    def _weight_for(self, classes, dtype):
        if self.weight is None:
            return None
        if self.weight.shape[0] != classes:
            raise ValueError(f"weight: expected {classes} values, one per class of output, "
                             f"got {self.weight.shape[0]}")
        if dtype not in self._weights:
            self._weights[dtype] = self.weight.astype(dtype)
        return self._weights[dtype]

    def forward(self, output, target):
        """The loss of logits `output` (batch, classes) against class indices `target`."""
        logits = _as_output(output)
        if logits.ndim != 2 or logits.shape[1] == 0:
            raise ValueError(f"output: expected a 2-D array of logits (batch, classes), "
                             f"got shape {logits.shape}")
        batch, classes = logits.shape
        labels = self._validate_target(target, classes, batch)
        weight = self._weight_for(classes, logits.dtype)
        dlogits = np.empty_like(logits)
        losses = self._new_losses(batch, logits.dtype)
        loss = _losses.softmax_cross_entropy(dlogits, losses, logits, labels, weight,
                                             self.ignore_index, self.label_smoothing, self._code)
        return self._finish(loss, losses, dlogits, (batch,))

    def _validate_target(self, target, n_outputs, n_rows, *, name="target", dtype=None):
        """target as C-contiguous int64 class indices, one per row, each in [0, n_outputs) or
        ignore_index; also checks weight against n_outputs. dtype is unused (class indices
        stay int64); name is the argument named in errors."""
        arr = _as_array(name, target, "an array of integer class indices")
        if arr.dtype.kind not in "iu":
            raise TypeError(f"{name}: expected integer class indices, got dtype {arr.dtype} "
                            "(convert with .astype(np.int64))")
        if arr.ndim != 1:
            raise ValueError(f"{name}: expected a 1-D array of class indices, got shape {arr.shape}")
        if arr.shape[0] != n_rows:
            raise ValueError(f"{name}: expected {n_rows} class indices (one per row), "
                             f"got {arr.shape[0]}")
        bad = ((arr < 0) | (arr >= n_outputs)) & (arr != self.ignore_index)
        if bad.any():
            row = int(np.argmax(bad))
            raise ValueError(f"{name}: expected class indices in [0, {n_outputs}) or "
                             f"ignore_index={self.ignore_index}, got {arr[row]} at row {row}")
        self._weight_for(n_outputs, np.dtype(np.float64))
        return np.ascontiguousarray(arr, dtype=np.int64)

    def _kernel_spec(self):
        """What the step runner needs to run this loss itself (weight still float64)."""
        return {"kind": _losses.LOSS_CROSS_ENTROPY, "weight": self.weight,
                "ignore_index": self.ignore_index, "label_smoothing": self.label_smoothing,
                "reduction": self._code}


class MSELoss(_Loss):
    """torch.nn.MSELoss: the squared error (output - target)², averaged or summed.

    target must have output's shape; a (n,) target for a (n, 1) output is read as (n, 1)
    (where PyTorch would broadcast to (n, n) with a warning). It is converted to output's
    dtype; NaN/inf pass through to the loss, as in PyTorch.
    """

    def forward(self, output, target):
        """The loss of `output` (any shape, non-empty) against `target` of the same shape."""
        arr = _as_output(output)
        expected = as_numeric_array("target", target)
        if arr.ndim == 2 and arr.shape[1] == 1 and expected.shape == arr.shape[:1]:
            expected = expected.reshape(arr.shape)
        if expected.shape != arr.shape:
            raise ValueError(f"target: expected shape {arr.shape} (output's shape), "
                             f"got {expected.shape}")
        expected = np.ascontiguousarray(expected, dtype=arr.dtype)
        dinput = np.empty_like(arr)
        losses = self._new_losses(arr.shape, arr.dtype)
        loss = _losses.mse_loss(dinput.reshape(-1), None if losses is None else losses.reshape(-1),
                                arr.reshape(-1), expected.reshape(-1), self._code)
        return self._finish(loss, losses, dinput, arr.shape)

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
        return arr

    def _kernel_spec(self):
        """What the step runner needs to run this loss itself."""
        return {"kind": _losses.LOSS_MSE, "reduction": self._code}
