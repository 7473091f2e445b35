"""Batch normalisation over the rows of a (rows, cols) batch, one statistic per column,
with PyTorch's BatchNorm1d semantics: biased variance to normalise, unbiased variance in
the running estimate, running = (1 - momentum) * running + momentum * batch statistic
(momentum < 0 means PyTorch's momentum=None: a cumulative average).

Loops run rows outer and columns inner, so the per-column sums vectorise over columns.
"""
from cython cimport floating
from libc.math cimport sqrt
from libc.stdint cimport int64_t

from cnet._memview cimport cptr1, cptr2, ptr1, ptr2


cdef void batchnorm_forward_ptr(floating* y,               # (rows, cols) out
                                floating* xhat,            # (rows, cols) out: normalised x
                                floating* mean,            # (cols,) out: batch mean
                                floating* invstd,          # (cols,) out: 1 / sqrt(var + eps)
                                floating* running_mean,    # (cols,) in/out, or NULL
                                floating* running_var,     # (cols,) in/out, or NULL
                                int64_t* num_batches_tracked,   # in/out, or NULL
                                const floating* x,         # (rows, cols)
                                const floating* gamma,     # (cols,) or NULL (no affine)
                                const floating* beta,      # (cols,) or NULL
                                Py_ssize_t rows, Py_ssize_t cols, double eps, double momentum,
                                bint training) noexcept nogil:
    """Training (or no running statistics): normalise with the batch's statistics and
    update the running ones; evaluation: normalise with the running statistics."""
    cdef Py_ssize_t r, j
    cdef const floating* xr
    cdef floating* yr
    cdef floating* hr
    cdef floating d, factor
    cdef bint batch_stats = training or running_mean == NULL
    if batch_stats:
        for j in range(cols):
            mean[j] = 0
            invstd[j] = 0
        for r in range(rows):
            xr = x + r * cols
            for j in range(cols):
                mean[j] += xr[j]
        for j in range(cols):
            mean[j] /= rows
        for r in range(rows):              # two passes: the variance without cancellation
            xr = x + r * cols
            for j in range(cols):
                d = xr[j] - mean[j]
                invstd[j] += d * d
        if training and running_mean != NULL:
            num_batches_tracked[0] += 1
            factor = <floating>(momentum if momentum >= 0 else 1.0 / num_batches_tracked[0])
            for j in range(cols):
                running_mean[j] = (1 - factor) * running_mean[j] + factor * mean[j]
                running_var[j] = ((1 - factor) * running_var[j]
                                  + factor * invstd[j] / (rows - 1 if rows > 1 else 1))
        for j in range(cols):
            invstd[j] = <floating>(1 / sqrt(invstd[j] / rows + eps))
    else:
        for j in range(cols):
            mean[j] = running_mean[j]
            invstd[j] = <floating>(1 / sqrt(running_var[j] + eps))
    for r in range(rows):
        xr = x + r * cols
        yr = y + r * cols
        hr = xhat + r * cols
        for j in range(cols):
            hr[j] = (xr[j] - mean[j]) * invstd[j]
            yr[j] = hr[j]
            if gamma != NULL:
                yr[j] = gamma[j] * hr[j] + beta[j]


cdef void batchnorm_backward_ptr(floating* dx,             # (rows, cols) out, or NULL
                                 floating* dgamma,         # (cols,) out, or NULL
                                 floating* dbeta,          # (cols,) out, or NULL
                                 floating* sums,           # (2, cols) scratch
                                 const floating* dy,       # (rows, cols)
                                 const floating* xhat,     # (rows, cols) from forward
                                 const floating* invstd,   # (cols,) from forward
                                 const floating* gamma,    # (cols,) or NULL
                                 Py_ssize_t rows, Py_ssize_t cols,
                                 bint accumulate) noexcept nogil:
    """Gradients through training-mode normalisation:
    dx = gamma * invstd / rows * (rows * dy - Σ dy - xhat * Σ dy·xhat)."""
    cdef Py_ssize_t r, j
    cdef floating* sum_dy = sums
    cdef floating* sum_dy_xhat = sums + cols
    cdef const floating* dyr
    cdef const floating* hr
    cdef floating* dxr
    cdef floating g
    for j in range(cols):
        sum_dy[j] = 0
        sum_dy_xhat[j] = 0
    for r in range(rows):
        dyr = dy + r * cols
        hr = xhat + r * cols
        for j in range(cols):
            sum_dy[j] += dyr[j]
            sum_dy_xhat[j] += dyr[j] * hr[j]
    if dgamma != NULL:
        for j in range(cols):
            dgamma[j] = sum_dy_xhat[j] + (dgamma[j] if accumulate else 0)
            dbeta[j] = sum_dy[j] + (dbeta[j] if accumulate else 0)
    if dx == NULL:
        return
    for r in range(rows):
        dyr = dy + r * cols
        hr = xhat + r * cols
        dxr = dx + r * cols
        for j in range(cols):
            g = gamma[j] if gamma != NULL else 1
            dxr[j] = g * invstd[j] / rows * (rows * dyr[j] - sum_dy[j] - hr[j] * sum_dy_xhat[j])


def batchnorm_forward(floating[:, ::1] y, floating[:, ::1] xhat, floating[::1] mean,
                      floating[::1] invstd, floating[::1] running_mean,
                      floating[::1] running_var, int64_t[::1] num_batches_tracked,
                      const floating[:, ::1] x, const floating[::1] gamma,
                      const floating[::1] beta, double eps, double momentum, bint training):
    """See batchnorm_forward_ptr; None for running statistics or affine parameters."""
    with nogil:
        batchnorm_forward_ptr(ptr2(y), ptr2(xhat), ptr1(mean), ptr1(invstd), ptr1(running_mean),
                              ptr1(running_var),
                              &num_batches_tracked[0] if num_batches_tracked is not None
                              else NULL,
                              cptr2(x), cptr1(gamma), cptr1(beta), x.shape[0], x.shape[1], eps,
                              momentum, training)


def batchnorm_backward(floating[:, ::1] dx, floating[::1] dgamma, floating[::1] dbeta,
                       floating[::1] sums, const floating[:, ::1] dy,
                       const floating[:, ::1] xhat, const floating[::1] invstd,
                       const floating[::1] gamma, bint accumulate):
    """See batchnorm_backward_ptr."""
    with nogil:
        batchnorm_backward_ptr(ptr2(dx), ptr1(dgamma), ptr1(dbeta), ptr1(sums), cptr2(dy),
                               cptr2(xhat), cptr1(invstd), cptr1(gamma), dy.shape[0],
                               dy.shape[1], accumulate)
