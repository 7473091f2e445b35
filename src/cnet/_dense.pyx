"""Dense (fully connected) layer: y = x @ weightᵀ + bias, weight stored (out, in) as in PyTorch."""
from cython cimport floating

from cnet._blas cimport gemm
from cnet._memview cimport ptr1, ptr2, cptr1, cptr2


cdef void dense_forward_ptr(floating* y,              # (B, OUT) out
                            const floating* x,        # (B, IN)
                            const floating* weight,   # (OUT, IN)
                            const floating* bias,     # (OUT,) or NULL
                            int batch, int in_features, int out_features) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef floating* row
    cdef floating beta = 0
    if bias != NULL:
        # Seed every row with the bias, then let gemm accumulate onto it (beta = 1).
        for i in range(batch):
            row = y + i * out_features
            for j in range(out_features):
                row[j] = bias[j]
        beta = 1
    gemm(y, x, weight, batch, out_features, in_features, False, True, 1, beta)


cdef void dense_backward_ptr(floating* dweight,        # (OUT, IN) out
                             floating* dbias,          # (OUT,) out, or NULL
                             floating* dx,             # (B, IN) out, or NULL to skip
                             const floating* dy,       # (B, OUT)
                             const floating* x,        # (B, IN)
                             const floating* weight,   # (OUT, IN)
                             int batch, int in_features, int out_features,
                             floating beta) noexcept nogil:
    """beta = 1 accumulates into dweight/dbias (PyTorch's grad accumulation), 0 overwrites."""
    cdef Py_ssize_t i, j
    cdef const floating* row
    gemm(dweight, dy, x, out_features, in_features, batch, True, False, 1, beta)
    if dbias != NULL:
        if beta == 0:
            for j in range(out_features):
                dbias[j] = 0
        for i in range(batch):
            row = dy + i * out_features
            for j in range(out_features):
                dbias[j] += row[j]
    if dx != NULL:
        gemm(dx, dy, weight, batch, in_features, out_features, False, False, 1, 0)


def dense_forward(floating[:, ::1] y, const floating[:, ::1] x,
                  const floating[:, ::1] weight, const floating[::1] bias=None):
    """y = x @ weight.T + bias, written into y (B, OUT)."""
    with nogil:
        dense_forward_ptr(ptr2(y), cptr2(x), cptr2(weight), cptr1(bias),
                          x.shape[0], x.shape[1], weight.shape[0])


def dense_backward(floating[:, ::1] dweight, floating[::1] dbias, floating[:, ::1] dx,
                   const floating[:, ::1] dy, const floating[:, ::1] x,
                   const floating[:, ::1] weight, double beta=0.0):
    """Gradients of a dense layer: dx = dy @ weight (skipped when dx is None),
    dweight = beta*dweight + dyᵀ x, dbias = beta*dbias + Σ_rows dy (skipped when None)."""
    with nogil:
        dense_backward_ptr(ptr2(dweight), ptr1(dbias), ptr2(dx),
                           cptr2(dy), cptr2(x), cptr2(weight),
                           x.shape[0], x.shape[1], weight.shape[0], <floating>beta)
