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
    """Mean squared error: returns the reduced loss, writes squared errors into losses and
    the gradient into dinput (each skipped when None)."""
    x, t, _ = _elementwise(input, target)
    return _reduce((x - t) ** 2, 2.0 * (x - t), dinput, losses, reduction)


REDUCTION_BATCHMEAN = 3  # KLDivLoss: the sum divided by the number of rows


def _reduce(values, grad, dinput, losses, reduction):
    """Write per-element losses and the gradient of the reduced loss; return the reduced loss.
    values, grad: float64 arrays of the (rows, cols) grid."""
    scale = {REDUCTION_MEAN: 1.0 / values.size,
             REDUCTION_BATCHMEAN: 1.0 / values.shape[0]}.get(reduction, 1.0)
    if losses is not None:
        losses[...] = values.reshape(losses.shape)
    if dinput is not None:
        dinput[...] = (scale * grad).reshape(dinput.shape)
    return float(values.sum() * scale)


def _elementwise(input, target, weight=None):
    """input and target as float64 (rows, cols) grids ((N,) is one row), and the weight
    broadcast to it (ones when None)."""
    shape = (1, input.shape[0]) if input.ndim == 1 else input.shape
    x = input.astype(np.float64).reshape(shape)
    t = np.asarray(target, np.float64).reshape(shape)
    w = np.ones(shape) if weight is None else np.broadcast_to(np.asarray(weight, np.float64),
                                                               shape)
    return x, t, w


def l1_loss(dinput, losses, input, target, reduction=REDUCTION_MEAN):
    """Σ |input - target| (averaged for 'mean'); gradient sign(input - target)."""
    x, t, _ = _elementwise(input, target)
    return _reduce(np.abs(x - t), np.sign(x - t), dinput, losses, reduction)


def huber_loss(dinput, losses, input, target, delta=1.0, reduction=REDUCTION_MEAN):
    """½ r² where |r| < delta, else delta (|r| - ½ delta); gradient r clipped to ±delta."""
    x, t, _ = _elementwise(input, target)
    r = x - t
    quadratic = np.abs(r) < delta
    values = np.where(quadratic, 0.5 * r * r, delta * (np.abs(r) - 0.5 * delta))
    return _reduce(values, np.clip(r, -delta, delta), dinput, losses, reduction)


def bce_loss(dinput, losses, input, target, weight=None, reduction=REDUCTION_MEAN):
    """-w (t log x + (1 - t) log(1 - x)) with each log at least -100 (PyTorch's clamp);
    PyTorch's gradient w (x - t) / max(x (1 - x), 1e-12)."""
    x, t, w = _elementwise(input, target, weight)
    with np.errstate(divide="ignore"):
        log_x = np.maximum(np.log(x), -100.0)
        log_1mx = np.maximum(np.log(1.0 - x), -100.0)
    values = -w * (t * log_x + (1.0 - t) * log_1mx)
    grad = w * (x - t) / np.maximum(x * (1.0 - x), 1e-12)
    return _reduce(values, grad, dinput, losses, reduction)


def bce_with_logits_loss(dinput, losses, input, target, weight=None, pos_weight=None,
                         reduction=REDUCTION_MEAN):
    """-w (pw t log σ(x) + (1 - t) log(1 - σ(x))), through logaddexp so any logit is safe."""
    x, t, w = _elementwise(input, target, weight)
    pw = 1.0 if pos_weight is None else np.asarray(pos_weight, np.float64)
    # -log σ(x) = log(1 + e^-x), -log(1 - σ(x)) = log(1 + e^x)
    values = w * (pw * t * np.logaddexp(0.0, -x) + (1.0 - t) * np.logaddexp(0.0, x))
    sigmoid = np.exp(-np.logaddexp(0.0, -x))
    grad = w * ((1.0 - t) * sigmoid - pw * t * (1.0 - sigmoid))
    return _reduce(values, grad, dinput, losses, reduction)


def kl_div_loss(dinput, losses, input, target, log_target=False, reduction=REDUCTION_MEAN):
    """PyTorch's kl_div: t (log t - x), 0 where t == 0 (or e^t (t - x) with log_target)."""
    x, t, _ = _elementwise(input, target)
    if log_target:
        p = np.exp(t)
        return _reduce(p * (t - x), -p, dinput, losses, reduction)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_log_t = np.where(t == 0, 0.0, t * np.log(np.where(t == 0, 1.0, t)))
    return _reduce(t_log_t - t * x, -t, dinput, losses, reduction)


def soft_cross_entropy(dlogits, losses, logits, target, weight=None, label_smoothing=0.0,
                       reduction=REDUCTION_MEAN):
    """PyTorch's cross_entropy against class probabilities target (B, C): with
    q = (1 - ε) t + ε / C, loss_i = -Σ_c w_c q_ic log softmax(x)_ic; 'mean' divides by B."""
    batch, classes = logits.shape
    x = logits.astype(np.float64)
    shifted = x - x.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    w = np.ones(classes) if weight is None else weight.astype(np.float64)
    wq = w * ((1.0 - label_smoothing) * target.astype(np.float64) + label_smoothing / classes)
    row_losses = -(wq * log_p).sum(axis=1)
    if losses is not None:
        losses[...] = row_losses
    scale = 1.0 / batch if reduction == REDUCTION_MEAN else 1.0
    if dlogits is not None:
        dlogits[...] = scale * (np.exp(log_p) * wq.sum(axis=1, keepdims=True) - wq)
    return float(row_losses.sum() * scale)


def _pairwise_distance(x, y, p, eps):
    """PyTorch's pairwise_distance ||x - y + eps||_p per row, and x - y + eps."""
    v = x - y + eps
    return np.linalg.norm(v, ord=p, axis=1), v


def _distance_grad(v, norm, p):
    """∂||v||_p / ∂v per row (0 where the norm is 0; L∞ shared among tied maxima)."""
    a = np.abs(v)
    n = norm[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        if p == np.inf:
            ties = a == n
            grad = np.sign(v) * ties / ties.sum(axis=1, keepdims=True)
        elif p == 2:
            grad = v / n
        else:
            grad = np.sign(v) * (a / n) ** (p - 1)
    return np.where(n == 0, 0.0, grad)


def triplet_margin_loss(danchor, dpositive, dnegative, losses, anchor, positive, negative,
                        margin=1.0, p=2.0, eps=1e-6, swap=False, reduction=REDUCTION_MEAN):
    """PyTorch's triplet_margin_loss: max(d(a, p) - d(a, n) + margin, 0) per row, with
    d(x, y) = ||x - y + eps||_p and, with swap, d(a, n) replaced by min(d(a, n), d(p, n))."""
    a, pos, neg = (t.astype(np.float64) for t in (anchor, positive, negative))
    d_ap, v_ap = _pairwise_distance(a, pos, p, eps)
    d_an, v_an = _pairwise_distance(a, neg, p, eps)
    d_pn, v_pn = _pairwise_distance(pos, neg, p, eps)
    w_pn = np.where(d_pn < d_an, 1.0, np.where(d_pn == d_an, 0.5, 0.0)) if swap else 0 * d_an
    w_an = 1.0 - w_pn
    d_neg = np.minimum(d_an, d_pn) if swap else d_an
    value = margin + d_ap - d_neg
    row_losses = np.maximum(value, 0.0)
    if losses is not None:
        losses[...] = row_losses
    scale = 1.0 / len(a) if reduction == REDUCTION_MEAN else 1.0
    if danchor is not None:
        active = (scale * (value >= 0))[:, None]
        g_ap = active * _distance_grad(v_ap, d_ap, p)
        g_an = active * w_an[:, None] * _distance_grad(v_an, d_an, p)
        g_pn = active * w_pn[:, None] * _distance_grad(v_pn, d_pn, p)
        danchor[...] = g_ap - g_an
        dpositive[...] = -g_ap - g_pn
        dnegative[...] = g_an + g_pn
    return float(row_losses.sum() * scale)
