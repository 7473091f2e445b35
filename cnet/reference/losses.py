import numpy as np

# Reduction codes, as the compiled kernels number them.
REDUCTION_NONE, REDUCTION_MEAN, REDUCTION_SUM = 0, 1, 2


def softmax_cross_entropy(dlogits, losses, logits, target, weight=None, ignore_index=-100,
                          label_smoothing=0.0, reduction=REDUCTION_MEAN):
    """PyTorch's cross_entropy on logits (B, C) and class indices target (B,): returns the
    reduced loss, writes per-row losses into losses and the gradient into dlogits (each
    skipped when None)."""
    batch, classes = logits.shape
    kept = target != ignore_index
    y = np.where(kept, target, 0)
    rows = np.arange(batch)
    w = np.ones(classes) if weight is None else weight.astype(np.float64)
    x = logits.astype(np.float64)
    shifted = x - x.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    wy = np.where(kept, w[y], 0.0)
    nll = np.where(kept, -log_p[rows, y] * wy, 0.0)
    smooth = np.where(kept, -(log_p * w).sum(axis=1), 0.0) if label_smoothing else np.zeros(batch)
    keep, eps = 1.0 - label_smoothing, label_smoothing / classes
    if losses is not None:
        losses[...] = keep * nll + eps * smooth
    scale = 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        if reduction == REDUCTION_MEAN:
            denom = wy.sum()
            scale = 1.0 / denom
            loss = keep * (nll.sum() / denom) + eps * (smooth.sum() / denom)
        else:
            loss = keep * nll.sum() + eps * smooth.sum()
        if dlogits is not None:
            a = (scale * keep * wy)[:, None]
            b = scale * eps
            grad = (a + b * w.sum()) * np.exp(log_p) - b * w
            grad[rows, y] -= a[:, 0]
            dlogits[...] = np.where(kept[:, None], grad, 0.0)
    return float(loss)


def mse_loss(dinput, losses, input, target, reduction=REDUCTION_MEAN):
    """Mean squared error over flat arrays (N,): returns the reduced loss, writes squared errors
    into losses and the gradient into dinput (each skipped when None)."""
    diff = input.astype(np.float64) - target
    squared = diff * diff
    if losses is not None:
        losses[...] = squared
    scale = 2.0 / diff.size if reduction == REDUCTION_MEAN else 2.0
    if dinput is not None:
        dinput[...] = scale * diff
    return float(squared.mean() if reduction == REDUCTION_MEAN else squared.sum())
