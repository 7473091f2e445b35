"""Losses with PyTorch's semantics: fused softmax-cross-entropy (loss and dlogits in one
pass per row) and mean squared error. Sums accumulate in double in both dtypes."""
from cython cimport floating
from libc.math cimport exp, log
from libc.stdint cimport int64_t

import numpy as np

from cnet._memview cimport ptr1, ptr2, cptr1, cptr2

# The reduction codes the kernels take, by PyTorch's names.
REDUCTIONS = {"none": REDUCTION_NONE, "mean": REDUCTION_MEAN, "sum": REDUCTION_SUM}


cdef double softmax_cross_entropy_ptr(floating* dlogits,        # (B, C) out, or NULL to skip
                                      floating* losses,         # (B,) out, or NULL
                                      const floating* logits,   # (B, C)
                                      const int64_t* target,    # (B,) in [0, C) or ignore_index
                                      const floating* weight,   # (C,) or NULL
                                      Py_ssize_t batch, Py_ssize_t classes, int64_t ignore_index,
                                      double label_smoothing, int reduction) noexcept nogil:
    """torch.nn.functional.cross_entropy on logits. With ε = label_smoothing,
    loss_i = (1-ε) w[y_i] (-log p_{i,y_i}) + (ε/C) Σ_c w[c] (-log p_{i,c}), 0 for ignored rows.
    Returns the reduced loss (the sum for REDUCTION_NONE); 'mean' divides by Σ w[y_i] over
    the rows not ignored (NaN when that is 0, as in PyTorch). losses[i] gets loss_i and
    dlogits the gradient of the returned value (of Σ loss_i for REDUCTION_NONE)."""
    cdef Py_ssize_t i, c, y
    cdef const floating* x
    cdef floating* g = NULL
    cdef double keep = 1 - label_smoothing, smooth = label_smoothing / classes
    cdef double wsum = classes, denom = 0, scale = 1
    cdef double nll_total = 0, smooth_total = 0
    cdef double m, e, s, lse, wx, wy, nll, smooth_loss, a, b, coef
    if weight != NULL:
        wsum = 0
        for c in range(classes):
            wsum += weight[c]
    if reduction == REDUCTION_MEAN:
        for i in range(batch):
            if target[i] != ignore_index:
                denom += weight[target[i]] if weight != NULL else 1
        scale = 1 / denom
    for i in range(batch):
        x = logits + i * classes
        if dlogits != NULL:
            g = dlogits + i * classes
        if target[i] == ignore_index:
            if losses != NULL:
                losses[i] = 0
            if g != NULL:
                for c in range(classes):
                    g[c] = 0
            continue
        y = <Py_ssize_t>target[i]
        # The row max, then s = Σ exp(x - max) (each term kept in dlogits for the gradient)
        # and wx = Σ w[c] (x[c] - max); -log p_c = log(s) - (x[c] - max).
        m = x[0]
        for c in range(1, classes):
            if x[c] > m:
                m = x[c]
        s = 0
        wx = 0
        for c in range(classes):
            e = exp(x[c] - m)
            s += e
            if g != NULL:
                g[c] = <floating>e
            if label_smoothing != 0:
                wx += (x[c] - m) * (weight[c] if weight != NULL else 1)
        lse = log(s)
        wy = weight[y] if weight != NULL else 1
        nll = wy * (lse - (x[y] - m))
        smooth_loss = wsum * lse - wx if label_smoothing != 0 else 0
        nll_total += nll
        smooth_total += smooth_loss
        if losses != NULL:
            losses[i] = <floating>(keep * nll + smooth * smooth_loss)
        if g != NULL:
            # d loss_i / d x_c = (a + b Σw) p_c - a [c == y] - b w[c], scaled by the reduction
            a = scale * keep * wy
            b = scale * smooth
            coef = (a + b * wsum) / s
            for c in range(classes):
                g[c] = <floating>(coef * g[c] - b * (weight[c] if weight != NULL else 1))
            g[y] -= <floating>a
    if reduction == REDUCTION_MEAN:
        # Each term divided separately, as PyTorch does: 0/0 is NaN even when ε > 0.
        return keep * (nll_total / denom) + smooth * (smooth_total / denom)
    return keep * nll_total + smooth * smooth_total


cdef double mse_loss_ptr(floating* dinput,          # (N,) out, or NULL to skip
                         floating* losses,          # (N,) out, or NULL
                         const floating* input,     # (N,)
                         const floating* target,    # (N,)
                         Py_ssize_t n, int reduction) noexcept nogil:
    """Σ (input - target)², divided by n for REDUCTION_MEAN; losses gets each squared error
    and dinput the gradient of the returned value."""
    cdef Py_ssize_t i
    cdef double d, total = 0
    cdef double scale = 2.0 / n if reduction == REDUCTION_MEAN else 2.0
    for i in range(n):
        d = <double>input[i] - <double>target[i]
        total += d * d
        if losses != NULL:
            losses[i] = <floating>(d * d)
        if dinput != NULL:
            dinput[i] = <floating>(scale * d)
    return total / n if reduction == REDUCTION_MEAN else total


cdef object fill_loss_config(LossConfig* c, object loss, object dtype):
    """Fill c from a loss object's _kernel_spec(); returns the arrays c points into, which
    the caller must keep alive (weights converted to the model's dtype)."""
    spec = loss._kernel_spec()
    c.kind = spec["kind"]
    c.class_targets = spec["kind"] == LOSS_CROSS_ENTROPY
    c.reduction = spec["reduction"]
    c.ignore_index = spec.get("ignore_index", -100)
    c.label_smoothing = spec.get("label_smoothing", 0.0)
    weight = spec.get("weight")
    if weight is not None:
        weight = np.ascontiguousarray(weight, dtype)
    c.weight = <void*><size_t>(0 if weight is None else weight.ctypes.data)
    return [weight]


cdef double loss_ptr(const LossConfig* c,
                     floating* grad,            # (rows, cols) out: d loss / d output
                     const floating* output,    # (rows, cols)
                     const void* target,        # (rows,) int64 or (rows, cols) floating
                     Py_ssize_t rows, Py_ssize_t cols) noexcept nogil:
    """The reduced loss of one batch and its gradient, for the step runner."""
    if c.kind == LOSS_CROSS_ENTROPY:
        return softmax_cross_entropy_ptr(grad, <floating*>NULL, output, <const int64_t*>target,
                                         <const floating*>c.weight, rows, cols,
                                         c.ignore_index, c.label_smoothing, c.reduction)
    return mse_loss_ptr(grad, <floating*>NULL, output, <const floating*>target, rows * cols,
                        c.reduction)


def softmax_cross_entropy(dlogits, losses, logits, target, weight=None, ignore_index=-100,
                          label_smoothing=0.0, reduction=REDUCTION_MEAN):
    """Cross-entropy of logits (B, C) against class indices target (int64, (B,)): returns the
    reduced loss, writes per-row losses into losses (B,) and the gradient into dlogits (B, C);
    either output may be None. weight (C,) or None."""
    # Fused dispatch follows the first fused argument, so the typed twin takes logits first.
    return _softmax_cross_entropy(logits, dlogits, losses, target, weight, ignore_index,
                                  label_smoothing, reduction)


def mse_loss(dinput, losses, input, target, reduction=REDUCTION_MEAN):
    """Mean squared error over flat arrays (N,): returns the reduced loss, writes squared
    errors into losses and the gradient into dinput (either may be None)."""
    return _mse_loss(input, dinput, losses, target, reduction)


def _softmax_cross_entropy(const floating[:, ::1] logits, floating[:, ::1] dlogits,
                           floating[::1] losses, const int64_t[::1] target,
                           const floating[::1] weight, int64_t ignore_index,
                           double label_smoothing, int reduction):
    cdef double loss
    cdef const int64_t* target_ptr = &target[0] if target.shape[0] > 0 else NULL
    with nogil:
        loss = softmax_cross_entropy_ptr(ptr2(dlogits), ptr1(losses), cptr2(logits), target_ptr,
                                         cptr1(weight), logits.shape[0], logits.shape[1],
                                         ignore_index, label_smoothing, reduction)
    return loss


def _mse_loss(const floating[::1] input, floating[::1] dinput, floating[::1] losses,
              const floating[::1] target, int reduction):
    cdef double loss
    with nogil:
        loss = mse_loss_ptr(ptr1(dinput), ptr1(losses), cptr1(input), cptr1(target),
                            input.shape[0], reduction)
    return loss
