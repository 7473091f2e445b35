import numpy as np

_GOLDEN, _MUL1, _MUL2 = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9),
                         np.uint64(0x94D049BB133111EB))


def _splitmix64(z):
    z = z + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MUL1
    z = (z ^ (z >> np.uint64(27))) * _MUL2
    return z ^ (z >> np.uint64(31))


def dropout_forward(y, mask, x, p, rng):
    """y = x * mask, mask = 1/(1-p) where the element's hash bits >= p * 2^32, else 0."""
    n = x.size
    with np.errstate(over="ignore"):
        bits = _splitmix64(rng[0] + rng[1] + np.arange(n, dtype=np.uint64)) >> np.uint64(32)
    threshold = 0xFFFFFFFF if p >= 1 else int(p * 2**32)
    scale = 0.0 if p >= 1 else 1.0 / (1.0 - p)
    mask[...] = np.where(bits >= threshold, scale, 0.0).astype(mask.dtype).reshape(mask.shape)
    np.multiply(x, mask, out=y)
    rng[1] += np.uint64(n)


def dropout_backward(dx, dy, mask):
    np.multiply(dy, mask, out=dx)


def batchnorm_forward(y, xhat, mean, invstd, running_mean, running_var, num_batches_tracked,
                      x, gamma, beta, eps, momentum, training):
    """Batch normalisation per column (PyTorch's BatchNorm1d); see cnet._batchnorm."""
    if training or running_mean is None:
        mean[...] = x.mean(axis=0)
        var = x.var(axis=0)
        if training and running_mean is not None:
            num_batches_tracked[0] += 1
            factor = momentum if momentum >= 0 else 1.0 / num_batches_tracked[0]
            rows = x.shape[0]
            running_mean[...] = (1 - factor) * running_mean + factor * mean
            running_var[...] = (1 - factor) * running_var + factor * var * rows / max(rows - 1, 1)
        invstd[...] = 1 / np.sqrt(var + eps)
    else:
        mean[...] = running_mean
        invstd[...] = 1 / np.sqrt(running_var + eps)
    xhat[...] = (x - mean) * invstd
    y[...] = xhat if gamma is None else gamma * xhat + beta


def batchnorm_backward(dx, dgamma, dbeta, sums, dy, xhat, invstd, gamma, accumulate):
    rows = dy.shape[0]
    sum_dy, sum_dy_xhat = dy.sum(axis=0), (dy * xhat).sum(axis=0)
    if dgamma is not None:
        dgamma[...] = sum_dy_xhat + (dgamma if accumulate else 0)
        dbeta[...] = sum_dy + (dbeta if accumulate else 0)
    g = 1 if gamma is None else gamma
    dx[...] = g * invstd / rows * (rows * dy - sum_dy - xhat * sum_dy_xhat)
